package restore

import (
	"os"
	"sort"
	"strings"

	"github.com/cauldron-dr/cauldron/restore/target"
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

// BootMedia returns the disks that hold a Cauldron boot medium (target.HoldsBootMedium). Optical
// drives are never targets anyway.
func BootMedia(disks []string) []string {
	var out []string
	for _, d := range disks {
		if target.HoldsBootMedium(d) {
			out = append(out, d)
		}
	}
	return out
}
