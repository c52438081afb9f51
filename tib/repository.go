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
	"sort"
	"strings"
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
	// keyName is the key file that opened the repository ("" when unencrypted): `key remove`
	// refuses it, `key passwd` replaces it.
	keyName string
	cfg     Config
	idx     *Index
	// warnings are what Open noticed and worked around (key files it could not use, key files
	// an unencrypted repository ignores); the command shows them.
	warnings []string
	// log hears about waits and damage worked around that the user should know of (SetLog);
	// nil: silent.
	log func(string)
	// meta knows the generations' own metadata packs, the second copies of chunk lists and
	// used maps.
	meta metaCopies
}

// SetLog gives the repository somewhere to say what it waits for (watching another host's
// lock takes minutes) and what damage it works around (damaged manifests and index files
// skipped); nil keeps it silent.
func (r *Repository) SetLog(f func(string)) { r.log = f }

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
	keyName := ""
	encrypted := len(o.Password) > 0
	if encrypted {
		var err error
		if key, err = crypto.NewRandomKey(); err != nil {
			return nil, err
		}
		if keyName, err = addKey(ctx, be, key, o.Password); err != nil {
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
	return &Repository{be: be, key: key, keyName: keyName, cfg: cfg, idx: newIndex()}, nil
}

// keyFile is the JSON of keys/ID: the master key sealed under a password-derived key.
type keyFile struct {
	Created  time.Time        `json:"created"`
	Hostname string           `json:"hostname"`
	Username string           `json:"username,omitempty"`
	KDF      string           `json:"kdf"`
	Params   crypto.KDFParams `json:"params"`
	Data     []byte           `json:"data"` // sealed JSON of crypto.Key
}

// addKey seals master under password in a new key file and returns its name.
func addKey(ctx context.Context, be backend.Backend, master *crypto.Key, password []byte) (string, error) {
	params, err := crypto.DefaultKDFParams()
	if err != nil {
		return "", err
	}
	wrap, err := crypto.DeriveKey(ctx, password, params)
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(master)
	if err != nil {
		return "", err
	}
	host, _ := os.Hostname()
	kf := keyFile{Created: time.Now().UTC(), Hostname: host, Username: userName(), KDF: "argon2id", Params: params, Data: wrap.Seal(nil, plain)}
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return "", err
	}
	name := crypto.Hash(b).String()
	return name, be.Save(ctx, backend.Handle{Type: backend.Key, Name: name}, b)
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
	sort.Strings(keyNames)
	var warnings []string
	key := crypto.PublicKey()
	// The config says whether the repository is encrypted. An unencrypted one's config opens
	// with the public key, and then key files are not what decides: one added later (by anyone
	// who can write to the storage) must not make the repository demand a password.
	if _, err := key.Open(nil, sealedCfg); err == nil {
		cfg, err := readConfig(sealedCfg, key)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", be.Location(), err)
		}
		if cfg.Encrypted {
			return nil, fmt.Errorf("%s: config: sealed with the public key of unencrypted repositories but says the repository is encrypted", be.Location())
		}
		if len(keyNames) > 0 {
			warnings = append(warnings, fmt.Sprintf("the repository is unencrypted (its config says so): key file(s) %s ignored; remove them",
				strings.Join(prefixAll("keys/", keyNames), ", ")))
		}
		return &Repository{be: be, key: key, cfg: cfg, idx: newIndex(), warnings: warnings}, nil
	}
	if len(keyNames) == 0 {
		return nil, fmt.Errorf("%s: config: %w (and the repository has no key files)", be.Location(), crypto.ErrAuth)
	}
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
	key, keyName, bad, err := openKey(ctx, be, keyNames, pw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", be.Location(), err)
	}
	for _, b := range bad {
		warnings = append(warnings, b.Error()+" (another key file opened the repository)")
	}
	cfg, err := readConfig(sealedCfg, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", be.Location(), err)
	}
	if !cfg.Encrypted {
		return nil, fmt.Errorf("%s: config: sealed under a key file's master key but says the repository is unencrypted", be.Location())
	}
	return &Repository{be: be, key: key, keyName: keyName, cfg: cfg, idx: newIndex(), warnings: warnings}, nil
}

func prefixAll(prefix string, names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = prefix + n
	}
	return out
}

// readConfig opens and checks the sealed config with key.
func readConfig(sealed []byte, key *crypto.Key) (Config, error) {
	var cfg Config
	plain, err := key.Open(nil, sealed)
	if err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if err := json.Unmarshal(plain, &cfg); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	if cfg.Version != FormatVersion {
		return cfg, fmt.Errorf("repository format version %d; this cauldron reads version %d", cfg.Version, FormatVersion)
	}
	if cfg.ChunkSize%4096 != 0 || cfg.ChunkSize <= 0 || cfg.PackSize <= 0 {
		return cfg, fmt.Errorf("config has an invalid chunk size %d or pack size %d", cfg.ChunkSize, cfg.PackSize)
	}
	return cfg, nil
}

// maxKeyFile bounds what is read of a key file: real ones are well under 1 KiB.
const maxKeyFile = 64 << 10

// openKey tries the password on every key file. A key file that cannot be used (unreadable,
// not JSON, an unknown KDF, parameters out of bounds) does not stop the others from being
// tried: anyone who can write to the storage could add one. Those are returned as bad, each
// error naming its file; if no file opens, the error names them too. name is the file that
// opened.
func openKey(ctx context.Context, be backend.Backend, names []string, pw []byte) (key *crypto.Key, name string, bad []error, err error) {
	for _, n := range names {
		k, err := tryKey(ctx, be, n, pw)
		if err != nil {
			if ctx.Err() != nil {
				return nil, "", nil, ctx.Err()
			}
			bad = append(bad, fmt.Errorf("key file keys/%s: %w", n, err))
			continue
		}
		if k != nil {
			return k, n, bad, nil
		}
	}
	if len(bad) > 0 {
		return nil, "", nil, fmt.Errorf("%w (and %w)", ErrWrongPassword, errors.Join(bad...))
	}
	return nil, "", nil, ErrWrongPassword
}

// tryKey opens one key file with pw: the master key, nil if the password does not open it, or
// an error saying why the file cannot be used.
func tryKey(ctx context.Context, be backend.Backend, name string, pw []byte) (*crypto.Key, error) {
	kf, err := readKeyFile(ctx, be, name)
	if err != nil {
		return nil, err
	}
	wrap, err := crypto.DeriveKey(ctx, pw, kf.Params)
	if err != nil {
		return nil, err
	}
	plain, err := wrap.Open(nil, kf.Data)
	if err != nil {
		return nil, nil // another key file may match this password
	}
	var k crypto.Key
	if err := json.Unmarshal(plain, &k); err != nil {
		return nil, fmt.Errorf("master key: %w", err)
	}
	if err := k.Init(); err != nil {
		return nil, err
	}
	return &k, nil
}

// readKeyFile reads a key file and checks it can be used: size, JSON, KDF and parameters
// within bounds. The parameters are checked before anything is derived (DeriveKey checks
// again): a hostile file must cost nothing.
func readKeyFile(ctx context.Context, be backend.Backend, name string) (keyFile, error) {
	var kf keyFile
	h := backend.Handle{Type: backend.Key, Name: name}
	fi, err := be.Stat(ctx, h)
	if err != nil {
		return kf, err
	}
	if fi.Size > maxKeyFile {
		return kf, fmt.Errorf("%d bytes: more than a key file can be (%d)", fi.Size, maxKeyFile)
	}
	b, err := backend.ReadAll(ctx, be, h)
	if err != nil {
		return kf, err
	}
	if err := json.Unmarshal(b, &kf); err != nil {
		return kf, fmt.Errorf("not a key file: %w", err)
	}
	if kf.KDF != "argon2id" {
		return kf, fmt.Errorf("unknown KDF %q", kf.KDF)
	}
	return kf, kf.Params.Check()
}

// Warnings are what Open noticed and worked around, for the command to show.
func (r *Repository) Warnings() []string { return r.warnings }

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
