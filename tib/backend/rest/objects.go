package rest

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
	"github.com/zeebo/blake3"
)

// What a server that does not hold the repository's key can still check of a file before it
// stores it (HandlerOptions.CheckObjects), from the format (docs/archive-format.md, section 1):
//
//   - names: content-named files (keys, data, index, generations, reports) and sessions and
//     journals are named by 64 lower-case hex digits; locks by 16 to 64;
//   - content-named files are named by the unkeyed BLAKE3-256 of their bytes, so their content
//     is checked against their name;
//   - every file but a key file is sealed (nonce and tag: at least crypto.Overhead bytes);
//   - a pack ends in a header length that fits it (pack.HeaderLength) and covers whole
//     header entries;
//   - a key file is a small JSON object of the key-file form.
//
// What it cannot check without the key: that a sealed file opens, and so that a well-formed file
// of the right size under its own hash is not junk. Clients check that when they read.

// maxKeyFile bounds a key file, which is gathered to be parsed (real ones are about 400 bytes).
const maxKeyFile = 64 << 10

// contentNamed reports the types whose names are the BLAKE3 of their bytes.
func contentNamed(t backend.FileType) bool {
	switch t {
	case backend.Key, backend.Pack, backend.Index, backend.Generation, backend.Report:
		return true
	}
	return false
}

// checkFormatName refuses a name the format does not give files of h's type.
func checkFormatName(h backend.Handle) error {
	if h.Type == backend.Config {
		return nil
	}
	lo, hi := 64, 64
	if h.Type == backend.Lock {
		lo = 16
	}
	if len(h.Name) < lo || len(h.Name) > hi {
		if lo == hi {
			return fmt.Errorf("name %q is not %d hex digits, which %s files are named by", h.Name, lo, h.Type)
		}
		return fmt.Errorf("name %q is not %d to %d hex digits, which %s files are named by", h.Name, lo, hi, h.Type)
	}
	for i := 0; i < len(h.Name); i++ {
		if c := h.Name[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return fmt.Errorf("name %q is not lower-case hex, which %s files are named by", h.Name, h.Type)
		}
	}
	return nil
}

// objectCheck follows one upload's bytes and judges them at the end.
type objectCheck struct {
	h    backend.Handle
	size int64
	sum  *blake3.Hasher // content-named types
	tail []byte         // a pack's last 4 bytes so far
	key  []byte         // a key file, gathered
}

// newObjectCheck refuses what the name and announced size already rule out.
func newObjectCheck(h backend.Handle, size int64) (*objectCheck, error) {
	if err := checkFormatName(h); err != nil {
		return nil, err
	}
	c := &objectCheck{h: h, size: size}
	switch h.Type {
	case backend.Key:
		if size > maxKeyFile {
			return nil, fmt.Errorf("%d bytes is too large for a key file (at most %d)", size, maxKeyFile)
		}
	case backend.Pack:
		if size < 4+crypto.Overhead {
			return nil, fmt.Errorf("%d bytes is too short for a pack (a sealed header and its length take at least %d)", size, 4+crypto.Overhead)
		}
	default:
		if size < crypto.Overhead {
			return nil, fmt.Errorf("%d bytes is too short for a sealed file (at least %d)", size, crypto.Overhead)
		}
	}
	if contentNamed(h.Type) {
		c.sum = blake3.New()
	}
	return c, nil
}

func (c *objectCheck) write(p []byte) {
	if c.sum != nil {
		c.sum.Write(p)
	}
	switch c.h.Type {
	case backend.Pack:
		c.tail = append(c.tail, p[max(0, len(p)-4):]...)
		c.tail = c.tail[max(0, len(c.tail)-4):]
	case backend.Key:
		if len(c.key)+len(p) <= maxKeyFile {
			c.key = append(c.key, p...)
		}
	}
}

// finish judges the whole file (the upload's length is already checked).
func (c *objectCheck) finish() error {
	if c.sum != nil {
		if got := hex.EncodeToString(c.sum.Sum(nil)); got != c.h.Name {
			return fmt.Errorf("its content hashes to %s (BLAKE3), not to its name: a %s file is named by the hash of its bytes", got, c.h.Type)
		}
	}
	switch c.h.Type {
	case backend.Pack:
		n, err := pack.HeaderLength(c.tail, c.size)
		if err != nil {
			return err
		}
		if (n-crypto.Overhead)%pack.EntrySize != 0 {
			return fmt.Errorf("pack header: %d bytes is not a sealed whole number of %d-byte entries", n, pack.EntrySize)
		}
	case backend.Key:
		return checkKeyFile(c.key)
	}
	return nil
}

// checkKeyFile checks a key file's form (format section 2). Whether its parameters are sane to
// derive with is the client's to judge before deriving; that it opens, the password's.
func checkKeyFile(b []byte) error {
	var kf struct {
		KDF    string          `json:"kdf"`
		Params json.RawMessage `json:"params"`
		Data   []byte          `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&kf); err != nil {
		return fmt.Errorf("not a key file (JSON with kdf, params and data): %v", err)
	}
	if dec.More() {
		return errors.New("not a key file: data after its JSON object")
	}
	switch {
	case kf.KDF != "argon2id":
		return fmt.Errorf("key file with kdf %q: only argon2id is part of the format", kf.KDF)
	case len(kf.Params) == 0 || kf.Params[0] != '{':
		return errors.New("key file without a params object")
	case len(kf.Data) < crypto.Overhead:
		return errors.New("key file without sealed data")
	}
	return nil
}
