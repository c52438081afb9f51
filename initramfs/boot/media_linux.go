package boot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

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

// ReadFromMedia reads path from the first boot medium of the given kind that has it: "cdrom"
// (optical drives: the CD the machine booted from, usually) or "usb" (removable and USB disks,
// their partitions and the whole disk, as an isohybrid stick has no partition table Linux can
// mount). Each candidate is mounted read-only under /run/cauldron/media and unmounted again. It
// returns the data and the device it came from.
func ReadFromMedia(kind, path string, mods *Modules) ([]byte, string, error) {
	disks, err := ListDisks("/sys")
	if err != nil {
		return nil, "", err
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
		types = []string{"vfat", "exfat", "iso9660", "ext4", "xfs", "btrfs"}
		for _, d := range disks {
			if !d.Optical && (d.Removable || d.Bus == "usb") {
				devs = append(devs, partitionsOf(d.Name)...)
				devs = append(devs, d.Name)
			}
		}
	default:
		return nil, "", fmt.Errorf("unknown medium %q (want cdrom or usb)", kind)
	}
	if len(devs) == 0 {
		return nil, "", fmt.Errorf("no %s device found", kind)
	}
	for _, t := range types {
		for _, m := range fsModules[t] {
			if mods != nil {
				mods.Load(m)
			}
		}
	}
	var tried []string
	for _, dev := range devs {
		data, err := readFromDevice("/dev/"+dev, types, path)
		if err == nil {
			return data, "/dev/" + dev, nil
		}
		tried = append(tried, fmt.Sprintf("%s: %v", dev, err))
	}
	return nil, "", fmt.Errorf("%s not found on any %s device (%s)", path, kind, strings.Join(tried, "; "))
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

func readFromDevice(dev string, types []string, path string) ([]byte, error) {
	dir := filepath.Join("/run/cauldron/media", filepath.Base(dev))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	defer os.Remove(dir)
	var mounted bool
	var errs []string
	for _, t := range types {
		if err := unix.Mount(dev, dir, t, unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err == nil {
			mounted = true
			break
		} else if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, t+": "+err.Error())
		}
	}
	if !mounted {
		if len(errs) == 0 {
			return nil, errors.New("no known filesystem")
		}
		return nil, errors.New(strings.Join(errs, ", "))
	}
	defer unix.Unmount(dir, 0)
	rel := filepath.Clean("/" + path)
	return os.ReadFile(filepath.Join(dir, rel))
}
