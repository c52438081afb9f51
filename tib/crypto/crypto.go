// Package crypto seals and opens every object a Cauldron repository stores, and derives the
// repository's master key from a password.
//
// Every object (pack blob, pack header, index, generation manifest, config, lock) is sealed with
// AES-256-GCM under the repository's master key: a random 12-byte nonce, then the ciphertext with
// its 16-byte tag. Chunk IDs are keyed BLAKE3 hashes of the plaintext, so equal chunks deduplicate
// without the stored IDs revealing content to someone who guesses it.
//
// An unencrypted repository uses the same framing under a fixed, publicly known key: its objects
// are checksummed and tamper-evident against accidents, not secret. This keeps one code path.
//
// The master key is random; it is stored in key files, each wrapping it under a key derived from a
// password with Argon2id (RFC 9106's second recommended setting: t=3, 64 MiB).
package crypto

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
	"golang.org/x/crypto/argon2"
)

// ID names a chunk or a stored file: 32 bytes, written as 64 hex digits.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex digits, for messages.
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }

// IsZero reports whether id is all zero bytes.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID reads 64 hex digits.
func ParseID(s string) (ID, error) {
	var id ID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(id) {
		return id, fmt.Errorf("invalid ID %q: want 64 hex digits", s)
	}
	copy(id[:], b)
	return id, nil
}

// MarshalText writes the ID as hex (used in JSON).
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText reads a hex ID.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Overhead is what sealing adds to a plaintext: nonce and tag.
const Overhead = NonceSize + TagSize

const (
	NonceSize = 12
	TagSize   = 16
	keyLen    = 32
)

// ErrAuth means an object failed authentication: it was damaged or sealed under another key.
var ErrAuth = errors.New("authentication failed (data damaged or wrong key)")

// Key is a repository master key: one AES-256 key for sealing and one BLAKE3 key for chunk IDs.
type Key struct {
	Encrypt []byte `json:"encrypt"`
	IDKey   []byte `json:"id"`
	aead    cipher.AEAD
}

// NewRandomKey makes a fresh master key.
func NewRandomKey() (*Key, error) {
	k := &Key{Encrypt: make([]byte, keyLen), IDKey: make([]byte, keyLen)}
	if _, err := rand.Read(k.Encrypt); err != nil {
		return nil, err
	}
	if _, err := rand.Read(k.IDKey); err != nil {
		return nil, err
	}
	return k, k.init()
}

// PublicKey is the fixed key of unencrypted repositories (see the package doc): derived from a
// constant string so that anyone can read such a repository.
func PublicKey() *Key {
	enc := blake3.Sum256([]byte("cauldron unencrypted repository: seal key"))
	idk := blake3.Sum256([]byte("cauldron unencrypted repository: chunk ID key"))
	k := &Key{Encrypt: enc[:], IDKey: idk[:]}
	if err := k.init(); err != nil {
		panic(err) // constant input: cannot fail
	}
	return k
}

func (k *Key) init() error {
	if len(k.Encrypt) != keyLen || len(k.IDKey) != keyLen {
		return errors.New("master key has the wrong length")
	}
	block, err := aes.NewCipher(k.Encrypt)
	if err != nil {
		return err
	}
	k.aead, err = cipher.NewGCM(block)
	return err
}

// Init prepares a key decoded from JSON for use.
func (k *Key) Init() error { return k.init() }

// Seal appends nonce‖ciphertext‖tag of plaintext to dst and returns it.
func (k *Key) Seal(dst, plaintext []byte) []byte {
	var nonce [NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the OS has no randomness: nothing safe to do
	}
	dst = append(dst, nonce[:]...)
	return k.aead.Seal(dst, nonce[:], plaintext, nil)
}

// Open authenticates and decrypts a sealed object, appending the plaintext to dst.
func (k *Key) Open(dst, sealed []byte) ([]byte, error) {
	if len(sealed) < Overhead {
		return nil, fmt.Errorf("sealed object of %d bytes is shorter than nonce and tag", len(sealed))
	}
	out, err := k.aead.Open(dst, sealed[:NonceSize], sealed[NonceSize:], nil)
	if err != nil {
		return nil, ErrAuth
	}
	return out, nil
}

// ChunkID is the keyed BLAKE3 hash of a chunk's plaintext.
func (k *Key) ChunkID(data []byte) ID {
	h, err := blake3.NewKeyed(k.IDKey)
	if err != nil {
		panic(err) // key length checked in init
	}
	_, _ = h.Write(data)
	var id ID
	h.Sum(id[:0])
	return id
}

// Hash is the plain (unkeyed) BLAKE3 hash, used to name stored files by their content.
func Hash(data []byte) ID { return ID(blake3.Sum256(data)) }

// KDFParams are the Argon2id parameters stored in a key file.
type KDFParams struct {
	Time    uint32 `json:"time"`
	Memory  uint32 `json:"memory"` // KiB
	Threads uint8  `json:"threads"`
	Salt    []byte `json:"salt"`
}

// DefaultKDFParams returns RFC 9106's second recommended Argon2id setting with a fresh salt.
func DefaultKDFParams() (KDFParams, error) {
	p := KDFParams{Time: 3, Memory: 64 * 1024, Threads: 4, Salt: make([]byte, 16)}
	_, err := rand.Read(p.Salt)
	return p, err
}

// Bounds on the Argon2id parameters a key file may ask for. A key file is plaintext and, on a
// server a client does not fully trust, anyone's to write: without bounds one file asking for
// time 2³²−1 made every client spin at full CPU and 1 GiB forever before it could even try the
// next key file. The bounds allow today's defaults (t=3, 64 MiB, 4 threads) with a wide margin
// (about 85 times their cost), so that a key file written by a future, costlier default still
// opens, while the worst a hostile file can cost stays under a minute of one core (41 s for
// t=64 at 256 MiB on one thread, measured on a loaded test machine) and 1 GiB.
const (
	MaxKDFTime    = 64      // passes
	MaxKDFMemory  = 1 << 20 // KiB: 1 GiB
	MaxKDFThreads = 64
	// MaxKDFCost bounds time × memory (KiB-passes): 16 GiB-passes, e.g. t=16 at 1 GiB or
	// t=64 at 256 MiB. The defaults cost 192 MiB-passes.
	MaxKDFCost  = 16 << 20
	MinSaltLen  = 8
	MaxSaltLen  = 64
	minMemPerTh = 8 // Argon2 needs at least 8 KiB of memory per lane
)

// Check refuses parameters outside the bounds above, naming the parameter and its value. It
// is called before anything is derived.
func (p KDFParams) Check() error {
	switch {
	case p.Time == 0 || p.Time > MaxKDFTime:
		return fmt.Errorf("Argon2id time %d is outside 1…%d", p.Time, MaxKDFTime)
	case p.Memory == 0 || p.Memory > MaxKDFMemory:
		return fmt.Errorf("Argon2id memory %d KiB is outside 1…%d KiB (1 GiB)", p.Memory, MaxKDFMemory)
	case p.Threads == 0 || p.Threads > MaxKDFThreads:
		return fmt.Errorf("Argon2id threads %d is outside 1…%d", p.Threads, MaxKDFThreads)
	case p.Memory < minMemPerTh*uint32(p.Threads):
		return fmt.Errorf("Argon2id memory %d KiB is below 8 KiB per thread (%d threads)", p.Memory, p.Threads)
	case uint64(p.Time)*uint64(p.Memory) > MaxKDFCost:
		return fmt.Errorf("Argon2id time %d × memory %d KiB exceeds %d KiB-passes (16 GiB-passes)", p.Time, p.Memory, MaxKDFCost)
	case len(p.Salt) < MinSaltLen || len(p.Salt) > MaxSaltLen:
		return fmt.Errorf("Argon2id salt of %d bytes is outside %d…%d bytes", len(p.Salt), MinSaltLen, MaxSaltLen)
	}
	return nil
}

// DeriveKey turns a password into the key that wraps the master key. It refuses parameters
// outside the bounds (Check) before deriving anything, and returns ctx's error as soon as ctx
// is cancelled: Argon2 cannot be interrupted, so the derivation goes on in the background
// (bounded by Check) while the caller, typically a process told to stop, goes on to exit.
func DeriveKey(ctx context.Context, password []byte, p KDFParams) (*Key, error) {
	if err := p.Check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	done := make(chan []byte, 1)
	go func() { done <- argon2.IDKey(password, p.Salt, p.Time, p.Memory, p.Threads, 2*keyLen) }()
	var b []byte
	select {
	case b = <-done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	k := &Key{Encrypt: b[:keyLen], IDKey: b[keyLen:]}
	return k, k.init()
}
