package restore

import (
	"fmt"
	"os/exec"
	"strings"
)

// checkVolume runs the filesystem's own checker, without repairs, on partition number of the
// restored disk, reached as its target kind allows (Target.WithPartition). It is how the verify
// stage judges volumes that cannot be compared with the generation byte for byte.
func checkVolume(d *DiskPlan, number int, fsType string) error {
	var args []string
	switch fsType {
	case "ext2", "ext3", "ext4":
		args = []string{"e2fsck", "-f", "-n"}
	case "ntfs":
		args = []string{"ntfsfix", "-n"}
	case "vfat":
		args = []string{"fsck.vfat", "-n"}
	case "xfs":
		args = []string{"xfs_repair", "-n"}
	case "btrfs":
		args = []string{"btrfs", "check", "--readonly"}
	case "swap":
		return nil // nothing to check: mkswap wrote a fresh header
	default:
		return fmt.Errorf("no checker for %s", fsType)
	}
	if _, err := exec.LookPath(args[0]); err != nil {
		return fmt.Errorf("%s is not installed", args[0])
	}
	t, err := d.target()
	if err != nil {
		return err
	}
	return t.WithPartition(d.Layout, number, func(dev string) error { return runChecker(args, dev) })
}
func runChecker(args []string, dev string) error {
	out, err := exec.Command(args[0], append(args[1:], dev)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v:\n%s", strings.Join(args, " "), dev, err, lastLines(string(out), 8))
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
