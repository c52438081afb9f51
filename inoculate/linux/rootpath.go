package linux

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// maxSymlinks bounds symlink resolution, as the kernel's ELOOP does.
const maxSymlinks = 40

// errLoop is returned for a symlink cycle.
var errLoop = errors.New("too many levels of symbolic links")

// resolve returns the host path of p (an absolute path inside the system at root), following
// symlinks as the system itself would see them: an absolute link target starts again at root,
// and ".." never climbs above root. The last component need not exist (then it is returned as
// named, so that a new file can be created there); a missing directory on the way is an error
// only when it is followed by more components that must be looked up.
func resolve(root, p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("%q is not an absolute path", p)
	}
	// done is the resolved part, as a clean absolute path inside the system.
	done := "/"
	rest := strings.Split(strings.TrimPrefix(path.Clean(p), "/"), "/")
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			done = path.Dir(done)
			continue
		}
		next := path.Join(done, c)
		host := filepath.Join(root, filepath.FromSlash(next))
		fi, err := os.Lstat(host)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				// Whatever follows does not exist either; return it as named.
				return filepath.Join(root, filepath.FromSlash(path.Join(append([]string{next}, rest...)...))), nil
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			done = next
			continue
		}
		links++
		if links > maxSymlinks {
			return "", fmt.Errorf("%s: %w", p, errLoop)
		}
		target, err := os.Readlink(host)
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			done = "/"
		}
		rest = append(strings.Split(target, "/"), rest...)
	}
	return filepath.Join(root, filepath.FromSlash(done)), nil
}

// sysFile is a file of the restored system: its path as the system names it and where it is on
// the host.
type sysFile struct {
	Path string // inside the system, e.g. /etc/fstab
	Host string // resolved on the host
}

// lookup resolves p inside root.
func lookup(root, p string) (sysFile, error) {
	h, err := resolve(root, p)
	if err != nil {
		return sysFile{}, fmt.Errorf("%s: %w", p, err)
	}
	return sysFile{Path: p, Host: h}, nil
}

// readSys reads p inside root; a missing file gives (nil, false, nil).
func readSys(root, p string) ([]byte, bool, error) {
	f, err := lookup(root, p)
	if err != nil {
		return nil, false, err
	}
	b, err := os.ReadFile(f.Host)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading %s: %w", p, err)
	}
	return b, true, nil
}

// existsSys reports whether p exists inside root (after symlinks).
func existsSys(root, p string) bool {
	h, err := resolve(root, p)
	if err != nil {
		return false
	}
	_, err = os.Stat(h)
	return err == nil
}

// isDirSys reports whether p is a directory inside root.
func isDirSys(root, p string) bool {
	h, err := resolve(root, p)
	if err != nil {
		return false
	}
	fi, err := os.Stat(h)
	return err == nil && fi.IsDir()
}

// globSys returns the paths inside root (as the system names them, sorted) of the entries of
// directory dir whose names match pattern (path.Match syntax).
func globSys(root, dir, pattern string) []string {
	h, err := resolve(root, dir)
	if err != nil {
		return nil
	}
	entries, err := os.ReadDir(h)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if ok, _ := path.Match(pattern, e.Name()); ok {
			out = append(out, path.Join(dir, e.Name()))
		}
	}
	return out
}

// findTool returns the path inside root of the first of names found in the usual program
// folders, or "".
func findTool(root string, names ...string) string {
	for _, n := range names {
		for _, dir := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
			p := path.Join(dir, n)
			h, err := resolve(root, p)
			if err != nil {
				continue
			}
			if fi, err := os.Stat(h); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}
