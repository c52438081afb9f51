package partition

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// devNumber returns "major:minor" of a block device path, or of the filesystem holding any other
// path, as sysfs and mountinfo write it.
func devNumber(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	d := st.Dev
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		d = st.Rdev
	}
	return fmt.Sprintf("%d:%d", unix.Major(d), unix.Minor(d)), nil
}

// BLKPG and its structures (linux/blkpg.h); x/sys/unix does not define them.
const (
	blkpgIoctl         = 0x1269
	blkpgAddPartition  = 1
	blkpgDelPartition  = 2
	blkpgDevNameLength = 64
)

type blkpgIoctlArg struct {
	op      int32
	flags   int32
	datalen int32
	data    unsafe.Pointer
}

type blkpgPartition struct {
	start   int64 // bytes
	length  int64 // bytes
	pno     int32
	devname [blkpgDevNameLength]byte
	volname [blkpgDevNameLength]byte
}

func blkpg(f *os.File, op int32, pno int, start, length int64) error {
	p := blkpgPartition{start: start, length: length, pno: int32(pno)}
	arg := blkpgIoctlArg{op: op, datalen: int32(unsafe.Sizeof(p)), data: unsafe.Pointer(&p)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), blkpgIoctl, uintptr(unsafe.Pointer(&arg))); errno != 0 {
		return errno
	}
	return nil
}

// kernelExtent is the byte range the kernel gives a partition's node: the partition itself, or
// for an extended partition only its first 1 KiB (one sector if larger), as the kernel's msdos
// parser does so that the EBR can be read through it.
func kernelExtent(p Partition, lss int64) (int64, int64) {
	if p.Kind == KindExtended {
		return p.Start, min(p.Size, max(lss, 1024))
	}
	return p.Start, p.Size
}

// partName is the kernel's name of partition n of disk: a "p" separates it from a disk name
// that ends in a digit (loop0p1, nvme0n1p1; sda1).
func partName(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// kernelPartitions lists the partitions the kernel has for the disk at sysfs dir sys: number →
// (start, size) in bytes.
func kernelPartitions(sys string) map[int][2]int64 {
	out := map[int][2]int64{}
	entries, _ := os.ReadDir(sys)
	for _, e := range entries {
		dir := filepath.Join(sys, e.Name())
		n, err := strconv.Atoi(readTrim(filepath.Join(dir, "partition")))
		if err != nil {
			continue
		}
		// sysfs counts in 512-byte units whatever the sector size.
		start, err1 := strconv.ParseInt(readTrim(filepath.Join(dir, "start")), 10, 64)
		size, err2 := strconv.ParseInt(readTrim(filepath.Join(dir, "size")), 10, 64)
		if err1 == nil && err2 == nil {
			out[n] = [2]int64{start * 512, size * 512}
		}
	}
	return out
}

// matches reports whether the kernel's partitions are exactly the layout's.
func matches(have map[int][2]int64, d *Disk) bool {
	if len(have) != len(d.Partitions) {
		return false
	}
	lss := int64(d.LogicalSectorSize)
	for _, p := range d.Partitions {
		s, n := kernelExtent(p, lss)
		if h, ok := have[p.Number]; !ok || h != [2]int64{s, n} {
			return false
		}
	}
	return true
}

// rereadPartitions makes the kernel's partitions of the disk match d: BLKRRPART first (the
// kernel parses the table itself), then, when that fails or creates nothing — a kernel without
// MSDOS/EFI partition support, a loop device without partition scanning — BLKPG, partition by
// partition. It waits for the device nodes and returns the method and the nodes.
func rereadPartitions(f *os.File, fi os.FileInfo, target string, d *Disk, timeout time.Duration) (string, []string, error) {
	dev, err := devNumber(target)
	if err != nil {
		return "", nil, err
	}
	sys, err := filepath.EvalSymlinks(filepath.Join(sysfsRoot, "dev", "block", dev))
	if err != nil {
		return "", nil, fmt.Errorf("apply: %s is not in sysfs: %w", target, err)
	}
	disk := filepath.Base(sys)
	method := "BLKRRPART"
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKRRPART, 0)
	if errno != 0 || !matches(kernelPartitions(sys), d) {
		method = "BLKPG"
		lss := int64(d.LogicalSectorSize)
		for n := range kernelPartitions(sys) {
			if err := blkpg(f, blkpgDelPartition, n, 0, 0); err != nil {
				return method, nil, fmt.Errorf("apply: removing the kernel's stale partition %d of %s: %w", n, target, err)
			}
		}
		for _, p := range d.Partitions {
			s, n := kernelExtent(p, lss)
			if err := blkpg(f, blkpgAddPartition, p.Number, s, n); err != nil {
				return method, nil, fmt.Errorf("apply: adding partition %d of %s to the kernel: %w", p.Number, target, err)
			}
		}
	}
	if !matches(kernelPartitions(sys), d) {
		return method, nil, fmt.Errorf("apply: after %s the kernel's partitions of %s are %v, not the plan's", method, target, kernelPartitions(sys))
	}
	// The nodes appear in devtmpfs (and are renamed by udev, where there is one) shortly after.
	var nodes []string
	for _, p := range d.Partitions {
		nodes = append(nodes, filepath.Join("/dev", partName(disk, p.Number)))
	}
	deadline := time.Now().Add(timeout)
	for {
		var missing []string
		for _, n := range nodes {
			if fi, err := os.Stat(n); err != nil || fi.Mode()&os.ModeDevice == 0 {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 {
			return method, nodes, nil
		}
		if time.Now().After(deadline) {
			return method, nodes, fmt.Errorf("apply: the kernel knows the partitions but %s did not appear within %v", strings.Join(missing, ", "), timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
