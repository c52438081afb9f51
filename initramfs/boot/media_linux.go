package boot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/cauldron-dr/cauldron/partition"
	"golang.org/x/sys/unix"
)

// fsModules are the modules each filesystem type needs before mount(2) knows it.
var fsModules = map[string][]string{
	"iso9660": {"isofs"},
	"udf":     {"udf"},
	"vfat":    {"vfat", "nls_cp437", "nls_iso8859_1", "nls_utf8"},
	"exfat":   {"exfat"},
	"ext4":    {"ext4"},
	"xfs":     {"xfs"},
	"btrfs":   {"btrfs"},
}

// usbTypes are the filesystems looked for on USB and removable disks, in the order tried.
var usbTypes = []string{"vfat", "exfat", "iso9660", "ext4", "xfs", "btrfs"}

// PrepareRemovable loads the filesystem driver a newly added USB or removable disk (or
// partition) needs, as it appears: looking for a kickstart on it, and mounting it for the wizard,
// then do not wait for the driver (ext4 with its helpers is half a second under emulation), which
// loads while the boot program still waits for USB devices to settle. Other disks are left alone
// (the same choice as onMedia's): they are mounted only when a recovery names them.
func PrepareRemovable(mods *Modules, name, devpath string) {
	if !removableDisk("/sys", devpath) {
		return
	}
	if t := detectType("/dev/" + name); t != "" {
		loadFSModules(mods, t, usbTypes)
	}
}

// removableDisk reports whether the block device at devpath (a disk or a partition, as its
// uevent names it) is on USB or on a disk the kernel flags removable.
func removableDisk(sysroot, devpath string) bool {
	if strings.Contains(devpath, "/usb") {
		return true
	}
	// A partition's own folder has no removable flag: its disk's, one level up, has.
	removable := func(dir string) bool {
		b, err := os.ReadFile(filepath.Join(dir, "removable"))
		return err == nil && strings.TrimSpace(string(b)) == "1"
	}
	dir := filepath.Join(sysroot, filepath.Clean("/"+devpath))
	return removable(dir) || removable(filepath.Dir(dir))
}

// ReadFromMedia reads path from the first boot medium of the given kind that has it: "cdrom"
// (optical drives: the CD the machine booted from, usually) or "usb" (removable and USB disks,
// their partitions and the whole disk, as an isohybrid stick has no partition table Linux can
// mount). Each candidate is mounted read-only under /run/cauldron/media and unmounted again. It
// returns the data and the device it came from.
func ReadFromMedia(kind, path string, mods *Modules) ([]byte, string, error) {
	var data []byte
	dev, err := onMedia(kind, path, mods, false, func(p string) error {
		var err error
		data, err = os.ReadFile(p)
		return err
	})
	return data, dev, err
}

// MountMedia finds the medium of the given kind that holds path (a file or a folder: a
// repository on a USB disk), mounts it read-write under /run/cauldron/media and leaves it
// mounted. It returns the local path of path and the device.
func MountMedia(kind, path string, mods *Modules) (string, string, error) {
	var local string
	dev, err := onMedia(kind, path, mods, true, func(p string) error {
		if _, err := os.Stat(p); err != nil {
			return err
		}
		local = p
		return nil
	})
	return local, dev, err
}

// onMedia mounts each candidate device of kind in turn and calls fn with path on it, until fn
// succeeds; keep leaves that device mounted (read-write) instead of unmounting it.
func onMedia(kind, path string, mods *Modules, keep bool, fn func(string) error) (string, error) {
	disks, err := ListDisks("/sys")
	if err != nil {
		return "", err
	}
	var devs []string
	var types []string
	switch kind {
	case "cdrom":
		types = []string{"iso9660", "udf"}
		for _, d := range disks {
			if d.Optical {
				devs = append(devs, d.Name)
			}
		}
	case "usb":
		types = usbTypes
		for _, d := range disks {
			if !d.Optical && (d.Removable || d.Bus == "usb") {
				devs = append(devs, partitionsOf(d.Name)...)
				devs = append(devs, d.Name)
			}
		}
	default:
		return "", fmt.Errorf("unknown medium %q (want cdrom or usb)", kind)
	}
	if len(devs) == 0 {
		return "", fmt.Errorf("no %s device found", kind)
	}
	var tried []string
	for _, dev := range devs {
		// Only the filesystem drivers a device needs: loading all of them (btrfs and xfs
		// with their crypto and RAID helpers) costs seconds under emulation.
		loadFSModules(mods, detectType("/dev/"+dev), types)
		err := withDevice("/dev/"+dev, types, keep, func(root string) error {
			return fn(filepath.Join(root, filepath.Clean("/"+path)))
		})
		if err == nil {
			return "/dev/" + dev, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v", dev, err))
	}
	return "", fmt.Errorf("%s not found on any %s device (%s)", path, kind, strings.Join(tried, "; "))
}

// loadFSModules loads the driver of filesystem type t when it is one of types (nil: any), or,
// when t is unknown (no signature recognised), those of every type in types, so that mount can
// still try them.
func loadFSModules(mods *Modules, t string, types []string) {
	if mods == nil || t != "" && types != nil && !slices.Contains(types, t) {
		return
	}
	ts := []string{t}
	if t == "" {
		ts = types
	}
	for _, t := range ts {
		for _, m := range fsModules[t] {
			mods.Load(m)
		}
	}
}

func partitionsOf(disk string) []string {
	ents, _ := os.ReadDir(filepath.Join("/sys/block", disk))
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), disk) {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// withDevice mounts dev (trying each filesystem type) and calls fn with the mount point; keep
// mounts read-write and leaves it mounted when fn succeeds.
func withDevice(dev string, types []string, keep bool, fn func(root string) error) error {
	dir := filepath.Join("/run/cauldron/media", filepath.Base(dev))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if !keep {
		flags |= unix.MS_RDONLY
	}
	// Mount only with the type the volume's signature names: trying each type in turn fills the
	// console with the kernel's complaints about the ones it is not.
	if t := detectType(dev); t != "" {
		ok := false
		for _, want := range types {
			ok = ok || want == t
		}
		if !ok {
			os.Remove(dir)
			return fmt.Errorf("%s is not one of %s", t, strings.Join(types, ", "))
		}
		types = []string{t}
	}
	var mounted bool
	var errs []string
	for _, t := range types {
		if err := unix.Mount(dev, dir, t, flags, ""); err == nil {
			mounted = true
			break
		} else if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, t+": "+err.Error())
		}
	}
	if !mounted {
		os.Remove(dir)
		if len(errs) == 0 {
			return errors.New("no known filesystem")
		}
		return errors.New(strings.Join(errs, ", "))
	}
	err := fn(dir)
	if err != nil || !keep {
		unix.Unmount(dir, 0)
		os.Remove(dir)
	}
	return err
}

// detectType names the mount type of the filesystem on dev, or "" when unknown.
func detectType(dev string) string {
	f, err := os.Open(dev)
	if err != nil {
		return ""
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil || size == 0 {
		return ""
	}
	fs := partition.DetectFilesystem(f, 0, size)
	if fs == nil || fs.Type == "unknown" {
		return ""
	}
	return fs.Type
}

// MountRemovable mounts, read-write under /run/cauldron/media, every filesystem found on USB and
// removable disks (their partitions and the whole disk), so that the wizard finds archives on
// them as it finds them on a host's mounted media. It returns the mount points.
func MountRemovable(mods *Modules) []string {
	disks, err := ListDisks("/sys")
	if err != nil {
		return nil
	}
	var out []string
	for _, d := range disks {
		if d.Optical || !(d.Removable || d.Bus == "usb") {
			continue
		}
		for _, dev := range append(partitionsOf(d.Name), d.Name) {
			t := detectType("/dev/" + dev)
			if t == "" || fsModules[t] == nil {
				continue
			}
			loadFSModules(mods, t, nil)
			dir := ""
			if err := withDevice("/dev/"+dev, []string{t}, true, func(root string) error { dir = root; return nil }); err == nil {
				out = append(out, dir)
			}
		}
	}
	return out
}
