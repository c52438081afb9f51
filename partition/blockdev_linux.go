package partition

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blockGeometry asks the kernel for a block device's size and sector sizes.
func blockGeometry(f *os.File) (geometry, error) {
	fd := int(f.Fd())
	var size uint64
	// x/sys/unix has no uint64 getter; BLKGETSIZE64 writes a u64 through the pointer.
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return geometry{}, fmt.Errorf("BLKGETSIZE64: %w", errno)
	}
	logical, err := unix.IoctlGetInt(fd, unix.BLKSSZGET)
	if err != nil {
		return geometry{}, fmt.Errorf("BLKSSZGET: %w", err)
	}
	physical, err := unix.IoctlGetInt(fd, unix.BLKPBSZGET)
	if err != nil {
		return geometry{}, fmt.Errorf("BLKPBSZGET: %w", err)
	}
	if size > 1<<62 {
		return geometry{}, fmt.Errorf("BLKGETSIZE64: implausible size %d", size)
	}
	return geometry{size: int64(size), logical: logical, physical: physical}, nil
}

// blockDeviceName returns the kernel's name of a block device (sda, nvme0n1, loop0), found from its
// device number so that any path to it works (/dev/disk/by-id/..., a node made by mknod).
func blockDeviceName(fi os.FileInfo, path string) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		link := filepath.Join(sysfsRoot, "dev", "block", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
		if target, err := os.Readlink(link); err == nil {
			return filepath.Base(target)
		}
	}
	if p, err := filepath.EvalSymlinks(path); err == nil {
		return filepath.Base(p)
	}
	return ""
}

// ControllerDriver names the driver of the controller a disk hangs off (ahci, nvme, virtio_blk,
// megaraid_sas, usb-storage, …), found by walking up the disk's sysfs device path (the resolved
// /sys/block/NAME) to the first ancestor bound to a driver that is not a disk-level one. It is
// what a restored system's initramfs must carry to find its root on this machine.
func ControllerDriver(devicePath string) string {
	for p := filepath.Dir(devicePath); p != "/" && p != "." && strings.Contains(p, "/devices/"); p = filepath.Dir(p) {
		drv, err := os.Readlink(filepath.Join(p, "driver"))
		if err != nil || strings.HasPrefix(filepath.Base(p), "target") {
			continue
		}
		switch name := filepath.Base(drv); name {
		case "sd", "sr", "nvme-core":
			continue
		default:
			return name
		}
	}
	return ""
}
