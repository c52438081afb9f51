package tib

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"sort"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// Key management: an encrypted repository's master key is sealed in one or more key files
// (keys/ID), one per password. Adding a key seals the same master key under a new password;
// nothing else in the repository changes, so a key change never rewrites data.

// KeyInfo describes one key file.
type KeyInfo struct {
	ID       string // the file's name in keys/
	Created  time.Time
	Hostname string
	Username string // "" when the key file does not record one
	// Current is the key file that opened this session.
	Current bool
	// Unusable says why the file cannot open the repository with any password (junk, an
	// unknown KDF, parameters out of bounds); nil for a well-formed key file.
	Unusable error
}

// ErrUnencrypted is returned by the key commands: an unencrypted repository has no keys.
var ErrUnencrypted = errors.New("the repository is unencrypted: it has no keys (its config is not sealed under a password; create an encrypted repository with `cauldron init` to use passwords)")

// ErrKeyInUse is returned when removing the key file that opened this session.
var ErrKeyInUse = errors.New("it opened this session")

// KeyName is the key file that opened the repository ("" when it is unencrypted).
func (r *Repository) KeyName() string { return r.keyName }

// Keys lists every key file, those that cannot be used included (each saying why), sorted by
// creation time and then name.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	if !r.cfg.Encrypted {
		return nil, fmt.Errorf("%s: %w", r.Location(), ErrUnencrypted)
	}
	var names []string
	if err := r.be.List(ctx, backend.Key, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("%s: listing keys: %w", r.Location(), err)
	}
	keys := make([]KeyInfo, 0, len(names))
	for _, n := range names {
		kf, err := readKeyFile(ctx, r.be, n)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		keys = append(keys, KeyInfo{ID: n, Created: kf.Created, Hostname: kf.Hostname, Username: kf.Username,
			Current: n == r.keyName, Unusable: err})
	}
	sort.Slice(keys, func(i, j int) bool {
		if !keys[i].Created.Equal(keys[j].Created) {
			return keys[i].Created.Before(keys[j].Created)
		}
		return keys[i].ID < keys[j].ID
	})
	return keys, nil
}

// AddKey seals the master key under a new password (with the same key-derivation parameters as
// Init) and returns the new key file's name. It takes the exclusive lock.
func (r *Repository) AddKey(ctx context.Context, password []byte) (string, error) {
	if err := r.checkKeyChange(password); err != nil {
		return "", err
	}
	lock, err := r.Lock(ctx, true, "key add")
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	return r.addKey(ctx, password)
}

func (r *Repository) addKey(ctx context.Context, password []byte) (string, error) {
	name, err := addKey(ctx, r.be, r.key, password)
	if err != nil {
		return "", fmt.Errorf("%s: adding a key file: %w", r.Location(), err)
	}
	return name, nil
}

func (r *Repository) checkKeyChange(password []byte) error {
	if !r.cfg.Encrypted {
		return fmt.Errorf("%s: %w", r.Location(), ErrUnencrypted)
	}
	if len(password) == 0 {
		return errors.New("the new password is empty")
	}
	return nil
}

// RemoveKey removes the key file named id (its whole name, or a prefix only it has). It refuses
// the key file that opened this session and the last usable one. It takes the exclusive lock and
// returns the whole name removed.
func (r *Repository) RemoveKey(ctx context.Context, id string) (string, error) {
	if !r.cfg.Encrypted {
		return "", fmt.Errorf("%s: %w", r.Location(), ErrUnencrypted)
	}
	lock, err := r.Lock(ctx, true, "key remove")
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	keys, err := r.Keys(ctx)
	if err != nil {
		return "", err
	}
	k, err := findKey(keys, id)
	if err != nil {
		return "", fmt.Errorf("%s: %w", r.Location(), err)
	}
	if k.Current {
		return "", fmt.Errorf("%s: refusing to remove key file keys/%s: %w (open the repository with another key's password to remove it, or use `cauldron key passwd`)",
			r.Location(), k.ID, ErrKeyInUse)
	}
	usable := 0
	for _, o := range keys {
		if o.ID != k.ID && o.Unusable == nil {
			usable++
		}
	}
	if usable == 0 {
		return "", fmt.Errorf("%s: refusing to remove key file keys/%s: no other usable key file would be left", r.Location(), k.ID)
	}
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.Key, Name: k.ID}); err != nil {
		return "", fmt.Errorf("%s: removing key file keys/%s: %w", r.Location(), k.ID, err)
	}
	return k.ID, nil
}

// findKey finds the key file id names: its whole name, else the one name it begins.
func findKey(keys []KeyInfo, id string) (KeyInfo, error) {
	if id == "" {
		return KeyInfo{}, errors.New("no key ID given")
	}
	var found []KeyInfo
	for _, k := range keys {
		if k.ID == id {
			return k, nil
		}
		if strings.HasPrefix(k.ID, id) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return KeyInfo{}, fmt.Errorf("no key file keys/%s (`cauldron key list` shows them)", id)
	case 1:
		return found[0], nil
	}
	return KeyInfo{}, fmt.Errorf("key ID %s is ambiguous: %d key files begin with it; give more of it", id, len(found))
}

// ChangePassword replaces the key file that opened this session with one for a new password:
// the new key file is written first and the old one removed after, so that a crash between
// the two leaves both (either password opens the repository), never neither. It takes the
// exclusive lock and returns the new key file's name.
func (r *Repository) ChangePassword(ctx context.Context, password []byte) (string, error) {
	if err := r.checkKeyChange(password); err != nil {
		return "", err
	}
	lock, err := r.Lock(ctx, true, "key passwd")
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	name, err := r.addKey(ctx, password)
	if err != nil {
		return "", err
	}
	old := r.keyName
	r.keyName = name
	if err := r.be.Remove(ctx, backend.Handle{Type: backend.Key, Name: old}); err != nil {
		return name, fmt.Errorf("%s: the new password's key file keys/%s is written, but removing the old one keys/%s failed (the old password still opens the repository; remove it with `cauldron key remove %s`): %w",
			r.Location(), name, old, old, err)
	}
	return name, nil
}

// KeysOpenedBy lists the key files other than the one in use that password opens (each costs a
// key derivation): after a password change, the old password still opens the repository
// through them.
func (r *Repository) KeysOpenedBy(ctx context.Context, password []byte) ([]string, error) {
	keys, err := r.Keys(ctx)
	if err != nil {
		return nil, err
	}
	var opened []string
	for _, k := range keys {
		if k.Current || k.Unusable != nil {
			continue
		}
		key, err := tryKey(ctx, r.be, k.ID, password)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err == nil && key != nil {
			opened = append(opened, k.ID)
		}
	}
	return opened, nil
}

// userName is the user a new key file records, "" when unknown.
func userName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}
