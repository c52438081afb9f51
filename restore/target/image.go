package target

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/partition"
	"golang.org/x/sys/unix"
)

// ImageFile is a raw disk image: an existing file, or a new one the restore creates sparse.
type ImageFile struct {
	path    string
	exists  bool
	checked identity // what the gate judged (an existing image)
}

func (t *ImageFile) Name() string { return t.path }
func (t *ImageFile) Kind() Kind   { return KindImageFile }
func (t *ImageFile) Exists() bool { return t.exists }

// Layout is what the image holds now; a new image is an empty disk of size 0 (the restore gives
// it the source's size).
func (t *ImageFile) Layout() (*partition.Disk, error) {
	if !t.exists {
		return &partition.Disk{Table: partition.TableNone, LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []partition.Partition{}}, nil
	}
	return partition.ReadTarget(t.path)
}

func (t *ImageFile) Check(g *Gate) error {
	if !t.exists {
		if fi, err := os.Stat(filepath.Dir(t.path)); err != nil || !fi.IsDir() {
			return fmt.Errorf("target %s: the folder %s does not exist", t.path, filepath.Dir(t.path))
		}
		return g.inProtectedDir(t.path)
	}
	id, err := g.checkExisting(t.path)
	if err == nil {
		t.checked = id
	}
	return err
}

// Open opens the image, creating it (sparse, size bytes) if it was planned as new; an existing
// one smaller than size bytes is extended. A new image that has appeared since it was planned,
// or an existing one that is no longer the file the gate checked, is refused.
func (t *ImageFile) Open(size int64) (Writer, error) {
	if !t.exists {
		return t.create(size)
	}
	f, err := os.OpenFile(t.path, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.path, err)
	}
	if err := holdChecked(f, t.checked); err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("target %s: %w", t.path, err)
	}
	// An image smaller than the disk grows to take it (the plan said so, and the technician
	// agreed to its contents being replaced); an empty one reads as zeros everywhere.
	fresh := fi.Size() == 0
	if fi.Size() < size {
		if err := f.Truncate(size); err != nil {
			f.Close()
			return nil, fmt.Errorf("target %s: growing it to the disk's %d bytes: %w", t.path, size, err)
		}
	}
	return &imageWriter{f: f, size: max(fi.Size(), size), fresh: fresh}, nil
}

// create makes the new image. O_EXCL fails on anything that appeared at its path since the plan,
// a symlink included.
func (t *ImageFile) create(size int64) (Writer, error) {
	f, err := os.OpenFile(t.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil, &Refusal{Target: t.path, Reason: "it was planned as a new image file, and something has appeared at its path since"}
	}
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", t.path, err)
	}
	if err := lockExclusive(f); err != nil {
		f.Close()
		os.Remove(t.path)
		return nil, err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(t.path)
		return nil, fmt.Errorf("target %s: %w", t.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err == nil {
		t.checked = statIdentity(&st)
	}
	t.exists = true
	return &imageWriter{f: f, size: size, fresh: true}, nil
}

func (t *ImageFile) WriteTable(plan *partition.LayoutPlan, g *Gate) (*partition.ApplyResult, error) {
	return partition.Apply(t.path, plan, partition.ApplyOptions{Protect: g.Protect})
}

// WithPartition attaches the partition's bytes to a loop device with the plan's sector size, runs
// fn with it, and detaches it.
func (t *ImageFile) WithPartition(plan *partition.LayoutPlan, number int, fn func(dev string) error) error {
	p, ok := plannedPartition(plan, number)
	if !ok {
		return fmt.Errorf("the plan has no partition %d", number)
	}
	out, err := exec.Command("losetup", "--find", "--show", "--offset", strconv.FormatInt(p.Start, 10),
		"--sizelimit", strconv.FormatInt(p.Size, 10), "--sector-size", strconv.Itoa(plan.Layout.LogicalSectorSize), t.path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("attaching partition %d of %s to a loop device: %v: %s", number, t.path, err, strings.TrimSpace(string(out)))
	}
	dev := strings.TrimSpace(string(out))
	ferr := fn(dev)
	if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil && ferr == nil {
		ferr = fmt.Errorf("detaching %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
	}
	return ferr
}

func (t *ImageFile) OpenRead() (Reader, error) { return os.Open(t.path) }

// Finalize makes the image durable (fsync).
func (t *ImageFile) Finalize() error { return syncPath(t.path) }

// syncPath flushes what was written to path to stable storage.
func syncPath(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("flushing %s: %w", path, err)
	}
	return nil
}

// JournalBeside keeps a recovery's journal next to the image: it survives the restore and needs
// no repository write access.
func (t *ImageFile) JournalBeside() string { return t.path + ".cauldron-journal" }

type imageWriter struct {
	f     *os.File
	size  int64
	fresh bool
}

func (w *imageWriter) ReadAt(b []byte, off int64) (int, error)  { return w.f.ReadAt(b, off) }
func (w *imageWriter) WriteAt(b []byte, off int64) (int, error) { return w.f.WriteAt(b, off) }
func (w *imageWriter) Size() int64                              { return w.size }
func (w *imageWriter) Fresh() bool                              { return w.fresh }
func (w *imageWriter) Sync() error                              { return w.f.Sync() }
func (w *imageWriter) Close() error                             { return w.f.Close() }

// Zero punches a hole (the file stays sparse), or writes zeros where the filesystem cannot.
func (w *imageWriter) Zero(off, n int64) error {
	if w.fresh || n <= 0 {
		return nil
	}
	if err := unix.Fallocate(int(w.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err == nil {
		return nil
	}
	return writeZeros(w.f, off, n)
}

func writeZeros(f *os.File, off, n int64) error {
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(buf)))
		if _, err := f.WriteAt(buf[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

func plannedPartition(plan *partition.LayoutPlan, number int) (partition.Partition, bool) {
	if plan == nil || plan.Layout == nil {
		return partition.Partition{}, false
	}
	for _, p := range plan.Layout.Partitions {
		if p.Number == number {
			return p, true
		}
	}
	return partition.Partition{}, false
}

// Attach puts the image on a loop device with the layout's sector size and adds its partitions
// through BLKPG (partx: kernels that parse no tables need it); detach undoes both. A disk without
// a table is the loop device itself.
func (t *ImageFile) Attach(layout *partition.Disk) (string, func(), error) {
	lss := 512
	if layout != nil && layout.LogicalSectorSize > 0 {
		lss = layout.LogicalSectorSize
	}
	out, err := exec.Command("losetup", "--find", "--show", "--sector-size", strconv.Itoa(lss), t.path).CombinedOutput()
	if err != nil {
		return "", nil, fmt.Errorf("losetup %s: %v: %s", t.path, err, strings.TrimSpace(string(out)))
	}
	loop := strings.TrimSpace(string(out))
	detach := func() {
		exec.Command("partx", "-d", loop).Run()
		exec.Command("losetup", "--detach", loop).Run()
	}
	// A loop device detached without partx -d keeps its old partitions: clear them first.
	exec.Command("partx", "-d", loop).Run()
	if layout == nil || layout.Table == partition.TableNone {
		return loop, detach, nil
	}
	if out, err := exec.Command("partx", "-a", loop).CombinedOutput(); err != nil && !strings.Contains(string(out), "busy") {
		detach()
		return "", nil, fmt.Errorf("partx -a %s: %v: %s", loop, err, strings.TrimSpace(string(out)))
	}
	return loop, detach, nil
}

// ID is the file's identity (device and inode), or, for an image not made yet, its path.
func (t *ImageFile) ID() string {
	if id, err := identityOf(t.path); err == nil {
		return fmt.Sprintf("file %d:%d", id.dev, id.ino)
	}
	return "new " + Canonical(t.path)
}
