package initramfs

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/u-root/mkuimage/cpio"
)

// tree is the initramfs being assembled: every entry by its path (relative, no leading slash).
// It is written sorted by path with fixed metadata, so the same contents give the same bytes.
type tree struct {
	entries map[string]*entry
}

type entry struct {
	mode   uint64 // cpio mode: type and permission bits
	src    string // host file with the contents (regular files), or
	data   []byte // the contents
	link   string // symlink target
	rmajor uint64 // device numbers of device nodes
	rminor uint64
	size   int64
}

func newTree() *tree { return &tree{entries: map[string]*entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// mkdirAll adds p and its parents as directories.
func (t *tree) mkdirAll(p string) {
	p = clean(p)
	for p != "" && p != "." {
		if _, ok := t.entries[p]; ok {
			return
		}
		t.entries[p] = &entry{mode: cpio.S_IFDIR | 0o755}
		p = path.Dir(p)
		if p == "." {
			return
		}
	}
}

// addFile adds a host file at p; an existing entry at p is replaced.
func (t *tree) addFile(p, src string, perm uint64) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	p = clean(p)
	t.mkdirAll(path.Dir(p))
	t.entries[p] = &entry{mode: cpio.S_IFREG | perm, src: src, size: fi.Size()}
	return nil
}

// addData adds a file with the given contents at p.
func (t *tree) addData(p string, data []byte, perm uint64) {
	p = clean(p)
	t.mkdirAll(path.Dir(p))
	t.entries[p] = &entry{mode: cpio.S_IFREG | perm, data: data, size: int64(len(data))}
}

// addSymlink adds a symlink at p pointing to target.
func (t *tree) addSymlink(p, target string) {
	p = clean(p)
	t.mkdirAll(path.Dir(p))
	t.entries[p] = &entry{mode: cpio.S_IFLNK | 0o777, link: target, size: int64(len(target))}
}

// addRecord adds a record read from another cpio archive (u-root's).
func (t *tree) addRecord(r cpio.Record) error {
	p := clean(r.Name)
	if p == "" || p == "." {
		return nil
	}
	e := &entry{mode: r.Mode, rmajor: r.Rmajor, rminor: r.Rminor}
	switch r.Mode & cpio.S_IFMT {
	case cpio.S_IFDIR:
		if _, ok := t.entries[p]; ok {
			return nil
		}
	case cpio.S_IFREG, cpio.S_IFLNK:
		data, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
		if err != nil {
			return fmt.Errorf("reading %s from the u-root archive: %w", r.Name, err)
		}
		if r.Mode&cpio.S_IFMT == cpio.S_IFLNK {
			e.link = string(data)
		} else {
			e.data = data
		}
		e.size = int64(len(data))
	}
	t.mkdirAll(path.Dir(p))
	t.entries[p] = e
	return nil
}

// has reports whether p is in the tree.
func (t *tree) has(p string) bool {
	_, ok := t.entries[clean(p)]
	return ok
}

// paths returns every path, sorted.
func (t *tree) paths() []string {
	ps := make([]string, 0, len(t.entries))
	for p := range t.entries {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// writeDir writes the tree under root as files, directories and symlinks, every time stamp mtime
// (for tools that make images from a folder, such as mksquashfs).
func (t *tree) writeDir(root string, mtime int64) error {
	for _, p := range t.paths() {
		e := t.entries[p]
		dst := filepath.Join(root, filepath.FromSlash(p))
		perm := os.FileMode(e.mode & 0o7777)
		var err error
		switch e.mode & cpio.S_IFMT {
		case cpio.S_IFDIR:
			// Chmod as well: MkdirAll's mode passes through the builder's umask, and mksquashfs
			// records folders' modes as they are on disk.
			if err = os.MkdirAll(dst, perm); err == nil {
				err = os.Chmod(dst, perm)
			}
		case cpio.S_IFLNK:
			err = os.Symlink(e.link, dst)
		case cpio.S_IFREG:
			if e.src != "" {
				err = copyFile(e.src, dst, perm, mtime)
			} else {
				err = writeFile(dst, e.data, perm, mtime)
			}
		default:
			err = fmt.Errorf("%s: only files, folders and symlinks can be written to a folder", p)
		}
		if err != nil {
			return err
		}
	}
	return setTreeTimes(root, mtime)
}

// hiddenBy returns the files and symlinks under dir, which a file system mounted on dir at boot
// would hide (empty folders, such as u-root's base usr/lib, hide nothing).
func (t *tree) hiddenBy(dir string) []string {
	var out []string
	for _, p := range t.paths() {
		if strings.HasPrefix(p, clean(dir)+"/") && t.entries[p].mode&cpio.S_IFMT != cpio.S_IFDIR {
			out = append(out, p)
		}
	}
	return out
}

// writeCPIO writes the tree as a newc cpio archive: sorted paths (so parents come before their
// children), inode numbers in that order, uid/gid 0, every time stamp mtime. It returns the bytes
// written.
func (t *tree) writeCPIO(w io.Writer, mtime int64) (int64, error) {
	cw := &countWriter{w: w}
	rw := cpio.Newc.Writer(cw)
	for i, p := range t.paths() {
		e := t.entries[p]
		info := cpio.Info{
			Ino:    uint64(i + 1),
			Mode:   e.mode,
			NLink:  1,
			MTime:  uint64(mtime),
			Rmajor: e.rmajor,
			Rminor: e.rminor,
			Name:   p,
		}
		var r cpio.Record
		switch e.mode & cpio.S_IFMT {
		case cpio.S_IFDIR:
			info.NLink = 2
			r = cpio.Record{Info: info}
		case cpio.S_IFLNK:
			r = cpio.StaticRecord([]byte(e.link), info)
		case cpio.S_IFREG:
			if e.src != "" {
				f, err := os.Open(e.src)
				if err != nil {
					return cw.n, err
				}
				fi, err := f.Stat()
				if err != nil {
					f.Close()
					return cw.n, err
				}
				info.FileSize = uint64(fi.Size())
				r = cpio.Record{ReaderAt: f, Info: info} // the writer closes it
			} else {
				r = cpio.StaticRecord(e.data, info)
			}
		default:
			r = cpio.Record{Info: info}
		}
		if err := rw.WriteRecord(r); err != nil {
			return cw.n, fmt.Errorf("writing %s to the initramfs: %w", p, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return cw.n, err
	}
	return cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// readCPIO reads every record of a newc archive.
func readCPIO(data []byte) ([]cpio.Record, error) {
	return cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(data)))
}
