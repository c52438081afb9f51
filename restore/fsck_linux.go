package restore

import (
	"path/filepath"

	"fmt"
	"os/exec"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/inoculate/linux"
)

// checkVolume runs the filesystem's own checker, read-only, on partition number of the restored
// disk: its partition device on a device target, a loop device limited to [start, start+size)
// on an image. It is how the verify stage judges volumes that cannot be compared with the
// generation byte for byte.
func checkVolume(d DiskPlan, number int, start, size int64, fsType string) error {
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
	if !d.Image {
		disk, err := filepath.EvalSymlinks(d.Target)
		if err != nil {
			return err
		}
		return runChecker(args, linux.PartitionDevice(disk, number))
	}
	target := d.Target
	out, err := exec.Command("losetup", "--find", "--show", "--read-only", "--offset", strconv.FormatInt(start, 10),
		"--sizelimit", strconv.FormatInt(size, 10), target).CombinedOutput()
	if err != nil {
		return fmt.Errorf("losetup: %v: %s", err, strings.TrimSpace(string(out)))
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command("losetup", "--detach", dev).Run()
	return runChecker(args, dev)
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
