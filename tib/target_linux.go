package tib

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// zeroOut asks the block device to zero a range (BLKZEROOUT: the kernel uses the device's
// write-zeroes or discard where it can).
func zeroOut(f *os.File, off, n int64) error {
	r := [2]uint64{uint64(off), uint64(n)}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r)))
	if errno != 0 {
		return errno
	}
	return nil
}

// blockSize is a block device's size in bytes (BLKGETSIZE64).
func blockSize(f *os.File) (uint64, error) {
	var n uint64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&n)))
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

// checkBlockTarget refuses a block device that is, or holds, a mounted filesystem: the disk the
// running system, the boot medium or the repository lives on.
func checkBlockTarget(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("target %s: %w", path, err)
	}
	major, minor := unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev))
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return nil // no sysfs (unusual): O_EXCL still guards mounted filesystems
	}
	// The device itself and every partition under it.
	devs := map[string]bool{fmt.Sprintf("%d:%d", major, minor): true}
	entries, _ := os.ReadDir(sys)
	for _, e := range entries {
		if b, err := os.ReadFile(filepath.Join(sys, e.Name(), "dev")); err == nil {
			devs[strings.TrimSpace(string(b))] = true
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && devs[fields[2]] {
			return fmt.Errorf("target %s: refusing: %s is mounted on %s", path, fields[2], fields[4])
		}
	}
	return nil
}

// flushBuffers writes out and drops a block device's cached pages (BLKFLSBUF): the whole disk
// and its partition nodes have separate caches, and a restore writes through one and runs tools
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
