package target

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"github.com/cauldron-dr/cauldron/partition"
	"golang.org/x/sys/unix"
)

// BlockDevice is a whole disk (or a loop device standing in for one).
type BlockDevice struct {
	path    string
	checked identity       // what the gate judged
	nodes   map[int]string // partition number → node, as WriteTable left them
}

func (t *BlockDevice) Name() string                     { return t.path }
func (t *BlockDevice) Kind() Kind                       { return KindBlockDevice }
func (t *BlockDevice) Exists() bool                     { return true }
func (t *BlockDevice) Layout() (*partition.Disk, error) { return partition.ReadTarget(t.path) }
func (t *BlockDevice) JournalBeside() string            { return "" }

func (t *BlockDevice) Check(g *Gate) error {
	id, err := g.checkExisting(t.path)
	if err == nil {
		t.checked = id
	}
	return err
}

// Open opens the device exclusively (O_EXCL fails while a filesystem on it is mounted or anything
// else claims it) and checks that it can hold size bytes.
func (t *BlockDevice) Open(size int64) (Writer, error) {
	f, err := os.OpenFile(t.path, os.O_RDWR|unix.O_EXCL, 0)
	if err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, &Refusal{Target: t.path, Reason: "it is in use (mounted, or held by LVM, MD or another program)"}
		}
		return nil, fmt.Errorf("target %s: %w", t.path, err)
	}
	if err := holdChecked(f, t.checked); err != nil {
		return nil, err
	}
	n, err := deviceSize(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("target %s: size: %w", t.path, err)
	}
	if n < size {
		f.Close()
		return nil, fmt.Errorf("target %s: %d bytes is smaller than the disk (%d bytes); nothing written", t.path, n, size)
	}
	return &deviceWriter{f: f, size: n}, nil
}

func (t *BlockDevice) WriteTable(plan *partition.LayoutPlan, g *Gate) (*partition.ApplyResult, error) {
	res, err := partition.Apply(t.path, plan, partition.ApplyOptions{Protect: g.Protect})
	if err != nil {
		return nil, err
	}
	t.nodes = map[int]string{}
	for i, p := range plan.Layout.Partitions {
		if i < len(res.Nodes) {
			t.nodes[p.Number] = res.Nodes[i]
		}
	}
	return res, nil
}

// WithPartition runs fn with the partition's node, with the caches of disk and partition flushed
// on both sides (they are separate, and the restore writes through the disk).
func (t *BlockDevice) WithPartition(plan *partition.LayoutPlan, number int, fn func(dev string) error) error {
	dev := t.nodes[number]
	if dev == "" {
		dev = partitionNode(t.path, number)
	}
	if dev == "" {
		return fmt.Errorf("the kernel has no node for partition %d of %s", number, t.path)
	}
	if err := flushBuffers(t.path); err != nil {
		return fmt.Errorf("%s: %w", t.path, err)
	}
	if err := flushBuffers(dev); err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	if err := fn(dev); err != nil {
		return err
	}
	return flushBuffers(t.path)
}

func (t *BlockDevice) OpenRead() (Reader, error) {
	// What the partition nodes wrote must be what the disk's reads see.
	if err := flushBuffers(t.path); err != nil {
		return nil, fmt.Errorf("%s: %w", t.path, err)
	}
	return os.Open(t.path)
}

// Finalize flushes the device to stable storage and drops its cached pages, so that the next
// reader (the kernel re-reading tables, the restored system) sees the disk's real contents.
func (t *BlockDevice) Finalize() error {
	if err := syncPath(t.path); err != nil {
		return err
	}
	return flushBuffers(t.path)
}

// partitionNode finds partition number's node of a disk through sysfs.
func partitionNode(disk string, number int) string {
	real, err := filepath.EvalSymlinks(disk)
	if err != nil {
		return ""
	}
	name := filepath.Base(real)
	ents, _ := os.ReadDir(filepath.Join("/sys/block", name))
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/sys/block", name, e.Name(), "partition"))
		if err == nil && strings.TrimSpace(string(b)) == fmt.Sprint(number) {
			return "/dev/" + e.Name()
		}
	}
	return ""
}

type deviceWriter struct {
	f    *os.File
	size int64
}

func (w *deviceWriter) ReadAt(b []byte, off int64) (int, error)  { return w.f.ReadAt(b, off) }
func (w *deviceWriter) WriteAt(b []byte, off int64) (int, error) { return w.f.WriteAt(b, off) }
func (w *deviceWriter) Size() int64                              { return w.size }
func (w *deviceWriter) Fresh() bool                              { return false }
func (w *deviceWriter) Sync() error                              { return w.f.Sync() }
func (w *deviceWriter) Close() error                             { return w.f.Close() }

// Zero asks the device to zero the range (BLKZEROOUT: write-zeroes or discard where it can), or
// writes zeros.
func (w *deviceWriter) Zero(off, n int64) error {
	if n <= 0 {
		return nil
	}
	r := [2]uint64{uint64(off), uint64(n)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, w.f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r))); errno == 0 {
		return nil
	}
	return writeZeros(w.f, off, n)
}

// deviceSize is a block device's size in bytes (BLKGETSIZE64).
func deviceSize(f *os.File) (int64, error) {
	var n uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return 0, errno
	}
	return int64(n), nil
}

// flushBuffers writes out and drops a block device's cached pages (BLKFLSBUF): the whole disk and
// its partition nodes have separate caches, and a restore writes through one and runs tools
// through the other.
func flushBuffers(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKFLSBUF, 0); errno != 0 {
		return fmt.Errorf("BLKFLSBUF: %w", errno)
	}
	return nil
}

// Attach is the device itself: the kernel made its partitions' nodes when the table was written.
func (t *BlockDevice) Attach(*partition.Disk) (string, func(), error) {
	dev, err := filepath.EvalSymlinks(t.path)
	if err != nil {
		return "", nil, err
	}
	return dev, func() {}, nil
}

// ID is the device's number.
func (t *BlockDevice) ID() string {
	if id, err := identityOf(t.path); err == nil {
		return fmt.Sprintf("device %d:%d", unix.Major(id.rdev), unix.Minor(id.rdev))
	}
	return "device " + Canonical(t.path)
}
