// Package tib is Cauldron's backup archive: a repository of machines' disk generations.
//
// A generation is every disk of one machine at one moment: each disk's layout (package
// partition) and its data, split into fixed cells aligned to the volume (so that an unchanged
// region of a disk always yields the same chunks), each cell keeping only the blocks its filesystem
// uses. Cells are content-addressed chunks, deduplicated across generations and machines,
// compressed with zstd, sealed (package crypto) and packed (package pack) into files that a
// backend (package backend) stores. docs/archive-format.md specifies the format exactly.
package tib

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
)

// FormatVersion is the repository format this code writes and reads.
const FormatVersion = 1

// Defaults for a new repository.
const (
	DefaultChunkSize = 256 << 10
	DefaultPackSize  = 16 << 20
)

// Config is a repository's settings, stored sealed in the config file.
type Config struct {
	Version   int       `json:"version"`
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	Encrypted bool      `json:"encrypted"`
	ChunkSize int       `json:"chunkSize"` // bytes per cell; a multiple of 4096
	PackSize  int       `json:"packSize"`  // target bytes per pack file
}

// Repository is an open repository.
type Repository struct {
	be  backend.Backend
	key *crypto.Key
	cfg Config
	idx *Index
}

// InitOptions choose a new repository's settings.
type InitOptions struct {
	Password  []byte // nil or empty: unencrypted
	ChunkSize int    // 0: DefaultChunkSize
	PackSize  int    // 0: DefaultPackSize
}

// ErrNoRepository means there is no repository at the location.
var ErrNoRepository = errors.New("no repository")

// ErrWrongPassword means no key file opens with the password given.
var ErrWrongPassword = errors.New("wrong password")

// ErrNeedPassword means the repository is encrypted and no password was given.
var ErrNeedPassword = errors.New("the repository is encrypted: a password is needed")

// Init creates a new repository.
func Init(ctx context.Context, be backend.Backend, o InitOptions) (*Repository, error) {
	if o.ChunkSize == 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.PackSize == 0 {
		o.PackSize = DefaultPackSize
	}
	if o.ChunkSize%4096 != 0 || o.ChunkSize < 64<<10 || o.ChunkSize > 8<<20 {
		return nil, fmt.Errorf("chunk size %d: must be a multiple of 4096 between 64 KiB and 8 MiB", o.ChunkSize)
	}
	if o.PackSize < 1<<20 || o.PackSize > 1<<30 {
		return nil, fmt.Errorf("pack size %d: must be between 1 MiB and 1 GiB", o.PackSize)
	}
	if err := be.Create(ctx); err != nil {
		return nil, err
	}
	key := crypto.PublicKey()
	encrypted := len(o.Password) > 0
	if encrypted {
		var err error
		if key, err = crypto.NewRandomKey(); err != nil {
			return nil, err
		}
		if err := addKey(ctx, be, key, o.Password); err != nil {
			return nil, err
		}
	}
	cfg := Config{Version: FormatVersion, ID: randomHex(16), Created: time.Now().UTC(),
		Encrypted: encrypted, ChunkSize: o.ChunkSize, PackSize: o.PackSize}
	plain, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if err := be.Save(ctx, backend.Handle{Type: backend.Config}, key.Seal(nil, plain)); err != nil {
		return nil, err
	}
	return &Repository{be: be, key: key, cfg: cfg, idx: newIndex()}, nil
}

// keyFile is the JSON of keys/ID: the master key sealed under a password-derived key.
type keyFile struct {
	Created  time.Time        `json:"created"`
	Hostname string           `json:"hostname"`
	KDF      string           `json:"kdf"`
	Params   crypto.KDFParams `json:"params"`
	Data     []byte           `json:"data"` // sealed JSON of crypto.Key
}

func addKey(ctx context.Context, be backend.Backend, master *crypto.Key, password []byte) error {
	params, err := crypto.DefaultKDFParams()
	if err != nil {
		return err
	}
	wrap, err := crypto.DeriveKey(password, params)
	if err != nil {
		return err
	}
	plain, err := json.Marshal(master)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	kf := keyFile{Created: time.Now().UTC(), Hostname: host, KDF: "argon2id", Params: params, Data: wrap.Seal(nil, plain)}
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	return be.Save(ctx, backend.Handle{Type: backend.Key, Name: crypto.Hash(b).String()}, b)
}

// Open opens an existing repository. password is called only when the repository is encrypted.
func Open(ctx context.Context, be backend.Backend, password func() ([]byte, error)) (*Repository, error) {
	sealedCfg, err := backend.ReadAll(ctx, be, backend.Handle{Type: backend.Config})
	if errors.Is(err, backend.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (create one with `cauldron init --repo %s`)", be.Location(), ErrNoRepository, be.Location())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: reading config: %w", be.Location(), err)
	}
	var keyNames []string
	if err := be.List(ctx, backend.Key, func(fi backend.FileInfo) error {
		keyNames = append(keyNames, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%s: listing keys: %w", be.Location(), err)
	}
	key := crypto.PublicKey()
	if len(keyNames) > 0 {
		if password == nil {
			return nil, fmt.Errorf("%s: %w", be.Location(), ErrNeedPassword)
		}
		pw, err := password()
		if err != nil {
			return nil, err
		}
		if len(pw) == 0 {
			return nil, fmt.Errorf("%s: %w", be.Location(), ErrNeedPassword)
		}
		if key, err = openKey(ctx, be, keyNames, pw); err != nil {
			return nil, fmt.Errorf("%s: %w", be.Location(), err)
		}
	}
	plain, err := key.Open(nil, sealedCfg)
	if err != nil {
		return nil, fmt.Errorf("%s: config: %w", be.Location(), err)
	}
	var cfg Config
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return nil, fmt.Errorf("%s: config: %w", be.Location(), err)
	}
	if cfg.Version != FormatVersion {
		return nil, fmt.Errorf("%s: repository format version %d; this cauldron reads version %d", be.Location(), cfg.Version, FormatVersion)
	}
	if cfg.ChunkSize%4096 != 0 || cfg.ChunkSize <= 0 || cfg.PackSize <= 0 {
		return nil, fmt.Errorf("%s: config has an invalid chunk size %d or pack size %d", be.Location(), cfg.ChunkSize, cfg.PackSize)
	}
	return &Repository{be: be, key: key, cfg: cfg, idx: newIndex()}, nil
}

func openKey(ctx context.Context, be backend.Backend, names []string, pw []byte) (*crypto.Key, error) {
	for _, n := range names {
		b, err := backend.ReadAll(ctx, be, backend.Handle{Type: backend.Key, Name: n})
		if err != nil {
			return nil, err
		}
		var kf keyFile
		if err := json.Unmarshal(b, &kf); err != nil {
			return nil, fmt.Errorf("key file %s: %w", n, err)
		}
		if kf.KDF != "argon2id" {
			return nil, fmt.Errorf("key file %s: unknown KDF %q", n, kf.KDF)
		}
		wrap, err := crypto.DeriveKey(pw, kf.Params)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", n, err)
		}
		plain, err := wrap.Open(nil, kf.Data)
		if err != nil {
			continue // another key file may match this password
		}
		var k crypto.Key
		if err := json.Unmarshal(plain, &k); err != nil {
			return nil, fmt.Errorf("key file %s: %w", n, err)
		}
		return &k, k.Init()
	}
	return nil, ErrWrongPassword
}

// Config returns the repository's settings.
func (r *Repository) Config() Config { return r.cfg }

// Backend returns the storage.
func (r *Repository) Backend() backend.Backend { return r.be }

// Location says where the repository is.
func (r *Repository) Location() string { return r.be.Location() }

// Key returns the master key.
func (r *Repository) Key() *crypto.Key { return r.key }

// Index returns the in-memory index (loaded by LoadIndex).
func (r *Repository) Index() *Index { return r.idx }

// loadSealed reads and opens a sealed file.
func (r *Repository) loadSealed(ctx context.Context, h backend.Handle) ([]byte, error) {
	b, err := backend.ReadAll(ctx, r.be, h)
	if err != nil {
		return nil, err
	}
	plain, err := r.key.Open(nil, b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h, err)
	}
	return plain, nil
}
