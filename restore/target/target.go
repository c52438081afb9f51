// Package target is the recovery's model of where a restored disk goes: what a target is, how the
// safety gate judges it, how it is opened and written, how its partitions are reached by
// filesystem tools, where the journal of a recovery onto it lives, how it is finalized and how it
// is read back to verify it. The recovery's stages (package restore) and the disk writer
// (package restore/write) know targets only through this interface, so that a new kind — a VM
// disk in a hypervisor's format, a hypervisor's storage volume, an NBD export — is one more
// implementation, not a change to the stages.
//
// A kind of target implements Target:
//
//	Name() string                      how the technician named it (a path)
//	Kind() Kind                        block device, image file, …
//	Exists() bool                      false for a target the restore creates (a new image)
//	Layout() (*partition.Disk, error)  what it holds now, for planning (a new one: empty)
//	Check(*Gate) error                 the safety gate's rules for this kind; writes nothing;
//	                                   remembers what it judged
//	Open(size int64) (Writer, error)   open it to take a disk of size bytes (creating it if new);
//	                                   refuses anything but what Check judged
//	WriteTable(plan, *Gate)            write a planned partition table onto it (and say what was
//	                                   wiped and how the kernel learnt it)
//	WithPartition(plan, n, fn)         run fn with a block device holding exactly partition n
//	Attach(layout)                     the whole disk as a block device with its partitions' nodes
//	ID() string                        what it is whatever its name (two targets, one ID: one disk)
//	OpenRead() (Reader, error)         read it back (verification)
//	Finalize() error                   make what was written durable and visible (fsync, caches)
//	JournalBeside() string             a journal file kept beside it, or "" (journal in the repository)
//
// and its opened form, Writer: io.ReaderAt and io.WriterAt over the disk's bytes, Size, Fresh (it
// reads as zeros everywhere: nothing need be zeroed), Zero(off, n), Sync and Close.
//
// The two kinds today are BlockDevice and ImageFile (an existing raw image, or a new one created
// sparse). New reports which kind a path names. What a VM disk or an NBD export will still need
// (issues 17 and 19): a table writer that works over a Writer instead of a kernel path, a way to
// release an attachment (a qemu-nbd connection), creation with a chosen size and sector size, and
// a gate rule for remote volumes that a list of local paths cannot judge.
package target

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cauldron-dr/cauldron/partition"
)

// Kind names a kind of target.
type Kind string

const (
	KindBlockDevice Kind = "block device"
	KindImageFile   Kind = "image file"
)

// Target is where one restored disk goes.
type Target interface {
	Name() string
	Kind() Kind
	Exists() bool
	Layout() (*partition.Disk, error)
	Check(g *Gate) error
	Open(size int64) (Writer, error)
	WriteTable(plan *partition.LayoutPlan, g *Gate) (*partition.ApplyResult, error)
	WithPartition(plan *partition.LayoutPlan, number int, fn func(dev string) error) error
	Attach(layout *partition.Disk) (dev string, detach func(), err error)
	ID() string
	OpenRead() (Reader, error)
	Finalize() error
	JournalBeside() string
}

// Writer is an opened target.
type Writer interface {
	io.ReaderAt
	io.WriterAt
	// Size is the target's size in bytes (at least the size it was opened for).
	Size() int64
	// Fresh reports that the target reads as zeros everywhere (created now): nothing need be
	// zeroed.
	Fresh() bool
	// Zero makes [off, off+n) read as zeros, as cheaply as the kind allows.
	Zero(off, n int64) error
	Sync() error
	Close() error
}

// Reader reads a target back.
type Reader interface {
	io.ReaderAt
	Close() error
}

// New returns the target a path names: an existing block device or regular file, or a new image
// file when nothing exists there yet.
func New(path string) (Target, error) {
	if path == "" {
		return nil, errors.New("target: no path given")
	}
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist) && strings.HasPrefix(Canonical(path), "/dev/"):
		// A disk that is not there (unplugged, renamed, mistyped) is not a new image file in
		// the RAM-backed /dev.
		return nil, fmt.Errorf("target %s: no such device (is the disk attached, and is that its name?)", path)
	case errors.Is(err, os.ErrNotExist):
		return &ImageFile{path: path}, nil
	case err != nil:
		return nil, fmt.Errorf("target %s: %w", path, err)
	case fi.Mode().IsRegular():
		return &ImageFile{path: path, exists: true}, nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		return &BlockDevice{path: path}, nil
	case fi.IsDir():
		return nil, fmt.Errorf("target %s is a directory; give a block device or an image file's path", path)
	}
	return nil, fmt.Errorf("target %s is neither a block device nor an image file", path)
}

// section is a byte range of a target (a partition) as a ReaderAt/WriterAt of its own.
type section struct {
	f interface {
		io.ReaderAt
		io.WriterAt
	}
	off, size int64
}

// Section returns partition [off, off+size) of w, refusing reads and writes outside it.
func Section(w interface {
	io.ReaderAt
	io.WriterAt
}, off, size int64) interface {
	io.ReaderAt
	io.WriterAt
} {
	return section{w, off, size}
}

func (s section) ReadAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > s.size {
		return 0, fmt.Errorf("read of %d bytes at %d outside the %d-byte partition", len(b), off, s.size)
	}
	return s.f.ReadAt(b, s.off+off)
}

func (s section) WriteAt(b []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(b)) > s.size {
		return 0, fmt.Errorf("write of %d bytes at %d outside the %d-byte partition", len(b), off, s.size)
	}
	return s.f.WriteAt(b, s.off+off)
}
