package target

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// BootMediaVolumeID is the ISO 9660 volume ID of Cauldron's boot media (initramfs.VolumeID; a
// constant here so that the recovery does not depend on the image builder).
const BootMediaVolumeID = "CAULDRON"

// HoldsBootMedium reports whether a disk or image holds a Cauldron boot medium: an ISO 9660
// volume whose ID is BootMediaVolumeID at its start (a USB stick written from the ISO, the ISO
// file itself) or at the start of one of its partitions.
func HoldsBootMedium(path string) bool {
	devs := []string{path}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		name := filepath.Base(real)
		if ents, err := os.ReadDir(filepath.Join("/sys/block", name)); err == nil {
			for _, e := range ents {
				if strings.HasPrefix(e.Name(), name) {
					devs = append(devs, "/dev/"+e.Name())
				}
			}
		}
	}
	for _, dev := range devs {
		if isBootMedium(dev) {
			return true
		}
	}
	return false
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

// notBootMedium refuses a Cauldron boot medium, wherever it is attached: the technician's
// rescue stick must survive a mistyped target.
func notBootMedium(path string) error {
	if HoldsBootMedium(path) {
		return &Refusal{Target: path, Reason: "it holds a Cauldron boot medium (the ISO's volume " + BootMediaVolumeID + ")"}
	}
	return nil
}
