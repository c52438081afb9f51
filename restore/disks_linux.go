package restore

import (
	"bytes"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The machine's disks, as candidates for automatic mapping and for the boot-medium check.

// notDisks are block devices that are never recovery targets.
var notDisks = []string{"loop", "ram", "zram", "dm-", "md", "nbd", "fd", "sr"}

// SystemDisks lists the whole disks of this machine (/dev/NAME for every /sys/block entry that is
// not virtual or optical), sorted by name.
func SystemDisks() ([]string, error) {
	ents, err := os.ReadDir("/sys/block")
	if err != nil {
		return nil, err
	}
	var out []string
next:
	for _, e := range ents {
		for _, p := range notDisks {
			if strings.HasPrefix(e.Name(), p) {
				continue next
			}
		}
		out = append(out, "/dev/"+e.Name())
	}
	sort.Strings(out)
	return out, nil
}

// BootMediaVolumeID is the ISO 9660 volume ID of Cauldron's boot media (initramfs.VolumeID; kept
// here as a constant so that the engine does not depend on the image builder).
const BootMediaVolumeID = "CAULDRON"

// BootMedia returns the disks that hold a Cauldron boot medium: an ISO 9660 volume whose ID is
// BootMediaVolumeID at the start of the disk (a USB stick written from the ISO) or of one of its
// partitions. Optical drives are never targets anyway.
func BootMedia(disks []string) []string {
	var out []string
	for _, d := range disks {
		devs := []string{d}
		name := filepath.Base(d)
		if ents, err := os.ReadDir(filepath.Join("/sys/block", name)); err == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), name) {
					devs = append(devs, "/dev/"+e.Name())
				}
			}
		}
		for _, dev := range devs {
			if isBootMedium(dev) {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// isBootMedium reads the primary volume descriptor (sector 16 of 2048 bytes): type 1, "CD001",
// volume identifier at byte 40.
func isBootMedium(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	b := make([]byte, 80)
	if _, err := f.ReadAt(b, 16*2048); err != nil {
		return false
	}
	return b[0] == 1 && string(b[1:6]) == "CD001" && string(bytes.TrimRight(b[40:72], " ")) == BootMediaVolumeID
}
