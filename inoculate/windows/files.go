package windows

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cauldron-dr/cauldron/internal/atomicfile"
)

// BackupSuffix is appended to a changed file's name for the copy of it as it was found.
const BackupSuffix = ".cauldron-backup"

// resolve finds rel (backslash- or slash-separated, relative to root) case-insensitively, as
// Windows would, on a case-sensitive mount. It returns the host path and whether the whole path
// exists; components that do not exist keep the spelling given, so the result can be created.
// An exact match wins over a case-insensitive one; two entries differing only in case (which
// Windows cannot have made) make the name ambiguous and are an error.
func resolve(root, rel string) (string, bool, error) {
	cur := root
	parts := strings.FieldsFunc(rel, func(r rune) bool { return r == '\\' || r == '/' })
	for i, p := range parts {
		if p == "." || p == ".." {
			return "", false, fmt.Errorf("%s: %q is not allowed in a path inside the Windows volume", rel, p)
		}
		if _, err := os.Lstat(filepath.Join(cur, p)); err == nil {
			cur = filepath.Join(cur, p)
			continue
		}
		ents, err := os.ReadDir(cur)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return filepath.Join(append([]string{cur}, parts[i:]...)...), false, nil
			}
			return "", false, err
		}
		found := ""
		for _, e := range ents {
			if strings.EqualFold(e.Name(), p) {
				if found != "" {
					return "", false, fmt.Errorf("%s: both %s and %s exist in %s: Windows could not tell them apart", rel, found, e.Name(), cur)
				}
				found = e.Name()
			}
		}
		if found == "" {
			return filepath.Join(append([]string{cur}, parts[i:]...)...), false, nil
		}
		cur = filepath.Join(cur, found)
	}
	return cur, true, nil
}

// exists resolves rel and says whether it is there.
func exists(root, rel string) (string, bool) {
	p, ok, err := resolve(root, rel)
	return p, ok && err == nil
}

// writeAtomic writes data to path through a temporary file in the same folder, fsync and rename,
// so a crash leaves the old file or the new one, never a mix. Missing folders are created.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, data, nil)
}

// backup keeps a copy of a file as it was found, beside it, unless one exists already: a second
// run must not replace the original with the first run's result. It reports whether an earlier
// backup was kept.
func backup(path string, data []byte) (string, bool, error) {
	b := path + BackupSuffix
	if _, err := os.Lstat(b); err == nil {
		return b, true, nil
	}
	if err := writeAtomic(b, data); err != nil {
		return b, false, err
	}
	return b, false, nil
}
