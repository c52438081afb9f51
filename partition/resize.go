package partition

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// Growing and shrinking filesystems after their data is restored, with the filesystems' own
// tools (they are in the boot image; the host's are the same Debian packages):
//
//	ext2/3/4  e2fsck -f -p, then resize2fs (it refuses to run on a filesystem not checked since
//	          its last mount)                                               grow and shrink
//	ntfs      ntfsresize --no-action first (it checks every constraint without writing), then
//	          ntfsresize                                                    grow and shrink
//	swap      mkswap over the new size, keeping UUID and label (fstab and resume= name them);
//	          the old contents are paging data of a machine that is not running
//	xfs       xfs_growfs on a temporary mount; xfs cannot shrink            grow only
//	btrfs     btrfs filesystem resize max on a temporary mount (shrinking
//	          a btrfs means relocating chunks on a mounted volume: refused)  grow only
//	vfat      in Go (fatresize.go): no tool is dependable                   grow and shrink
//
// The shrinking of ext and NTFS volumes onto a smaller partition cannot happen in the partition
// (the filesystem is bigger than it): restore writes such a volume into a scratch file first,
// shrinks it there, and copies the result (see tib's plan-aware restore).

// resizeTools are the programs ResizeFilesystem runs, by filesystem.
var resizeTools = map[string][]string{
	"ext2": {"e2fsck", "resize2fs"}, "ext3": {"e2fsck", "resize2fs"}, "ext4": {"e2fsck", "resize2fs"},
	"ntfs":  {"ntfsresize"},
	"swap":  {"mkswap"},
	"xfs":   {"mount", "umount", "xfs_growfs"},
	"btrfs": {"mount", "umount", "btrfs"},
}

// ResizeToolsMissing lists the programs needed to resize fsType that are not installed, so that a
// plan can be refused before anything is written.
func ResizeToolsMissing(fsType string) []string {
	var miss []string
	for _, t := range resizeTools[fsType] {
		if _, err := exec.LookPath(t); err != nil {
			miss = append(miss, t)
		}
	}
	return miss
}

// ResizeFilesystem makes the filesystem fsType on dev (a partition device, a loop device over a
// partition, or an image file holding exactly the volume) newSize bytes long. label and uuid are
// the volume's (swap keeps them). vfat is not handled here (see ResizeFAT).
func ResizeFilesystem(dev, fsType string, newSize int64, label, uuid string) error {
	if miss := ResizeToolsMissing(fsType); len(miss) > 0 {
		return fmt.Errorf("resizing %s on %s needs %s, which is not installed", fsType, dev, strings.Join(miss, ", "))
	}
	switch fsType {
	case "ext2", "ext3", "ext4":
		// Exit status 1 means e2fsck corrected something; 2 that a reboot is needed (a mounted
		// root: not here); 4 and above are failures.
		if out, err := runTool("", "e2fsck", "-f", "-p", dev); exitCode(err) > 1 {
			return fmt.Errorf("e2fsck -f -p %s before resizing: %v: %s", dev, err, out)
		}
		if newSize%1024 != 0 {
			return fmt.Errorf("resize2fs: %d bytes is not whole KiB", newSize)
		}
		if out, err := runTool("", "resize2fs", dev, strconv.FormatInt(newSize/1024, 10)+"K"); err != nil {
			return fmt.Errorf("resize2fs %s to %d bytes: %v: %s", dev, newSize, err, out)
		}
	case "ntfs":
		// Sizes in plain bytes: ntfsresize reads k, M and G as powers of 1000.
		size := strconv.FormatInt(newSize, 10)
		if out, err := runTool("", "ntfsresize", "--no-action", "--force", "--no-progress-bar", "--size", size, dev); err != nil {
			if strings.Contains(out, "Nothing to do") {
				return nil
			}
			return fmt.Errorf("ntfsresize --no-action %s to %d bytes: %v: %s", dev, newSize, err, lastLines(out, 6))
		}
		// --force: the dry run above passed, and ntfsresize would otherwise stop at its
		// interactive question.
		if out, err := runTool("", "ntfsresize", "--force", "--no-progress-bar", "--size", size, dev); err != nil {
			return fmt.Errorf("ntfsresize %s to %d bytes: %v: %s", dev, newSize, err, lastLines(out, 6))
		}
	case "swap":
		args := []string{}
		if uuid != "" {
			args = append(args, "-U", uuid)
		}
		if label != "" {
			args = append(args, "-L", label)
		}
		// The size in KiB, so an image file longer than the volume is not taken whole.
		args = append(args, dev, strconv.FormatInt(newSize/1024, 10))
		if out, err := runTool("", "mkswap", args...); err != nil {
			return fmt.Errorf("mkswap %s: %v: %s", dev, err, out)
		}
	case "xfs", "btrfs":
		return growMounted(dev, fsType)
	default:
		return fmt.Errorf("Cauldron cannot resize %s (on %s)", fsType, dev)
	}
	return nil
}

// growMounted grows an xfs or btrfs volume to the size of dev, which both tools can only do on a
// mounted filesystem: a private temporary mount point, unmounted before returning.
func growMounted(dev, fsType string) error {
	mnt, err := os.MkdirTemp("", "cauldron-grow-")
	if err != nil {
		return err
	}
	defer os.Remove(mnt)
	opts := "nodev,nosuid,noexec"
	if fi, err := os.Stat(dev); err == nil && fi.Mode().IsRegular() {
		opts += ",loop"
	}
	if out, err := runTool("", "mount", "-t", fsType, "-o", opts, dev, mnt); err != nil {
		return fmt.Errorf("mounting %s to grow it: %v: %s", dev, err, out)
	}
	var gerr error
	if fsType == "xfs" {
		if out, err := runTool("", "xfs_growfs", "-d", mnt); err != nil {
			gerr = fmt.Errorf("xfs_growfs %s: %v: %s", dev, err, out)
		}
	} else if out, err := runTool("", "btrfs", "filesystem", "resize", "max", mnt); err != nil {
		gerr = fmt.Errorf("btrfs filesystem resize max %s: %v: %s", dev, err, out)
	}
	if out, err := runTool("", "umount", mnt); err != nil && gerr == nil {
		gerr = fmt.Errorf("unmounting %s after growing it: %v: %s", dev, err, out)
	}
	return gerr
}

func runTool(stdin, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return strings.TrimSpace(out.String()), err
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return 1 << 8
	}
	return 0
}

func lastLines(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
