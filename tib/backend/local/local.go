// Package local stores a repository in a directory of the local filesystem (a disk, a USB stick,
// an NFS or SMB mount).
//
// Layout: REPO/config, REPO/keys/ID, REPO/data/XX/ID (XX: the first two hex digits, so no folder
// grows past a few thousand entries), REPO/index/ID, REPO/generations/ID, REPO/locks/ID,
// REPO/sessions/NAME, REPO/journals/NAME,
// REPO/reports/ID. Files are written to REPO/tmp, fsynced, then renamed into place and the
// folder fsynced, so a crash leaves each file whole or absent.
package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// Local is a repository directory.
type Local struct {
	dir string
}

// New returns a backend for dir (which need not exist yet: see Create).
func New(dir string) *Local { return &Local{dir: filepath.Clean(dir)} }

func (l *Local) Location() string { return l.dir }

func (l *Local) path(h backend.Handle) string {
	if h.Type == backend.Config {
		return filepath.Join(l.dir, "config")
	}
	if h.Type == backend.Pack && len(h.Name) >= 2 {
		return filepath.Join(l.dir, string(h.Type), h.Name[:2], h.Name)
	}
	return filepath.Join(l.dir, string(h.Type), h.Name)
}

func validName(h backend.Handle) error {
	if h.Type == backend.Config {
		return nil
	}
	if h.Name == "" || strings.ContainsAny(h.Name, "/\\") || h.Name == "." || h.Name == ".." {
		return fmt.Errorf("invalid file name %q", h.Name)
	}
	return nil
}

// Create makes the repository's folders.
func (l *Local) Create(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(l.dir, "config")); err == nil {
		return fmt.Errorf("%s: a repository already exists here: %w", l.dir, backend.ErrExist)
	}
	if entries, err := os.ReadDir(l.dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("%s: directory is not empty; a new repository needs an empty or missing directory", l.dir)
	}
	dirs := []string{"tmp"}
	for _, t := range backend.Types {
		dirs = append(dirs, string(t))
	}
	for i := 0; i < 256; i++ {
		dirs = append(dirs, filepath.Join(string(backend.Pack), fmt.Sprintf("%02x", i)))
	}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(l.dir, d), 0o700); err != nil {
			return err
		}
	}
	return nil
}

func (l *Local) Save(ctx context.Context, h backend.Handle, data []byte) error {
	return l.SaveFrom(ctx, h, bytes.NewReader(data))
}

// SaveFrom stores what r yields up to its io.EOF, as Save does, without holding it in memory:
// an HTTP server streams an upload of any size through it. If r fails, nothing is stored and
// r's error is returned (wrapped), so a reader that checks what it yields can refuse the file.
func (l *Local) SaveFrom(ctx context.Context, h backend.Handle, r io.Reader) error {
	if err := validName(h); err != nil {
		return err
	}
	final := l.path(h)
	replace := h.Type.Replaceable()
	if !replace {
		if _, err := os.Stat(final); err == nil {
			return fmt.Errorf("%s: %w", h, backend.ErrExist)
		}
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o700); err != nil {
		return err
	}
	tmpDir := filepath.Join(l.dir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(tmpDir, strings.ReplaceAll(h.String(), "/", "-")+"-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("writing %s: %w", h, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", h, err)
	}
	if err := f.Close(); err != nil {
		return err
	}
	if !replace {
		// Link instead of rename so that two writers of the same immutable name cannot
		// overwrite each other: the second gets EEXIST.
		if err := os.Link(tmp, final); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s: %w", h, backend.ErrExist)
			}
			return err
		}
		os.Remove(tmp)
	} else if err := os.Rename(tmp, final); err != nil {
		return err
	}
	ok = true
	return syncDir(filepath.Dir(final))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return err
	}
	return nil
}

func (l *Local) Load(ctx context.Context, h backend.Handle, length int, offset int64) ([]byte, error) {
	if err := validName(h); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(h))
	if err != nil {
		return nil, wrap(h, err)
	}
	defer f.Close()
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("%s: invalid range offset %d length %d", h, offset, length)
	}
	if length == 0 {
		fi, err := f.Stat()
		if err != nil {
			return nil, err
		}
		if offset > fi.Size() {
			return nil, fmt.Errorf("%s: offset %d past the end (%d bytes): %w", h, offset, fi.Size(), io.ErrUnexpectedEOF)
		}
		length = int(fi.Size() - offset)
	}
	buf := make([]byte, length)
	n, err := f.ReadAt(buf, offset)
	if err == io.EOF && n < length {
		return buf[:n], fmt.Errorf("%s: short read at %d (wanted %d bytes, got %d): %w", h, offset, length, n, io.ErrUnexpectedEOF)
	}
	if err != nil && err != io.EOF {
		return nil, err
	}
	return buf, nil
}

// Open opens a stored file for reading, so that a server can send it without loading it; the
// caller closes it.
func (l *Local) Open(ctx context.Context, h backend.Handle) (*os.File, error) {
	if err := validName(h); err != nil {
		return nil, err
	}
	f, err := os.Open(l.path(h))
	if err != nil {
		return nil, wrap(h, err)
	}
	return f, nil
}

func (l *Local) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := validName(h); err != nil {
		return backend.FileInfo{}, err
	}
	fi, err := os.Stat(l.path(h))
	if err != nil {
		return backend.FileInfo{}, wrap(h, err)
	}
	return backend.FileInfo{Name: h.Name, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

func (l *Local) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	base := filepath.Join(l.dir, string(t))
	var dirs []string
	if t == backend.Pack {
		entries, err := os.ReadDir(base)
		if err != nil {
			return wrap(backend.Handle{Type: t, Name: "."}, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				dirs = append(dirs, filepath.Join(base, e.Name()))
			}
		}
	} else {
		dirs = []string{base}
	}
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			return wrap(backend.Handle{Type: t, Name: "."}, err)
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			info, err := e.Info()
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // removed while listing
				}
				return err
			}
			if err := fn(backend.FileInfo{Name: e.Name(), Size: info.Size(), ModTime: info.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

func (l *Local) Remove(ctx context.Context, h backend.Handle) error {
	if err := validName(h); err != nil {
		return err
	}
	if err := os.Remove(l.path(h)); err != nil {
		return wrap(h, err)
	}
	return nil
}

func (l *Local) Close() error { return nil }

// clockProbe prefixes the file CleanTemp writes to read the storage's clock.
const clockProbe = ".clock-"

// CleanTemp removes the files in REPO/tmp that were last modified more than backend.TempAge
// ago. Ages are judged by the storage's clock (an NFS or SMB server's may be far from this
// host's): against the modification time of a file CleanTemp writes there first.
func (l *Local) CleanTemp(ctx context.Context) (int, error) {
	tmpDir := filepath.Join(l.dir, "tmp")
	entries, err := os.ReadDir(tmpDir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	now, err := storageNow(tmpDir)
	if err != nil {
		return 0, fmt.Errorf("%s: reading the storage's clock: %w", tmpDir, err)
	}
	removed := 0
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		// Another CleanTemp's clock probe lives for a moment; an old one was left by a kill.
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil || now.Sub(info.ModTime()) <= backend.TempAge {
			continue // gone already, or young enough to be a writer's
		}
		if err := os.Remove(filepath.Join(tmpDir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// storageNow is the time by the clock of the filesystem dir is on: a new file's modification
// time.
func storageNow(dir string) (time.Time, error) {
	f, err := os.CreateTemp(dir, clockProbe+"*")
	if err != nil {
		return time.Time{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return time.Time{}, err
	}
	return fi.ModTime(), nil
}

func wrap(h backend.Handle, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", h, backend.ErrNotExist)
	}
	return fmt.Errorf("%s: %w", h, err)
}
