package partition

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cauldron-dr/cauldron/internal/mountinfo"
	"golang.org/x/sys/unix"
)

// Safety: the disks a write must never touch. The anchors' users lost their rescue media and
// backup disks this way (rear #1271, #2889), so a target is refused when it is, or holds:
//   - a mounted filesystem or active swap (the running system, the boot medium, the repository
//     when it is mounted), including through device-mapper, MD or loop devices stacked on it;
//   - the disk under any protected path (the repository, the boot medium, the running program);
//   - a partition rather than a whole disk (a table written there is nonsense);
//   - an image file attached to a loop device, or lying inside a protected directory.
// Apply adds the last rule: the target must be the very disk the plan was made for.

// UnsafeError says why a target is refused.
type UnsafeError struct {
	Target string
	Reason string
}

func (e *UnsafeError) Error() string {
	return fmt.Sprintf("refusing to write %s: %s", e.Target, e.Reason)
}

func refuse(target, format string, args ...any) error {
	return &UnsafeError{Target: target, Reason: fmt.Sprintf(format, args...)}
}

// CheckTarget returns an *UnsafeError when writing a partition table to target could destroy
// something that must survive; protect lists paths whose disks must never be written.
func CheckTarget(target string, protect []string) error {
	fi, err := os.Stat(target)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	switch {
	case fi.Mode().IsRegular():
		return checkImageTarget(target, protect)
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		return checkBlockTarget(target, protect)
	}
	return refuse(target, "it is neither a block device nor a regular file")
}

// checkImageTarget refuses an image file inside a protected directory (or a protected file
// itself) — by path and by identity, so that a bind mount or a hard link is no way around it —
// one with other names (hard links), and one attached to a loop device: the loop device's users
// (perhaps the repository's own filesystem) would see the table change under them.
func checkImageTarget(target string, protect []string) error {
	abs, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real
	}
	if p, ok := InProtected(abs, protect); ok {
		return refuse(target, "it lies in the protected path %s", p)
	}
	id, links, err := fileIdentity(abs)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	if p, ok := protectedUnder(protect).files[id]; ok {
		return refuse(target, "it is the image behind the loop device that holds the protected path %s", p)
	}
	if loop, ok := loopOver(id); ok {
		return refuse(target, "it is attached to /dev/%s (detach it, or write to the loop device)", loop)
	}
	if links > 1 {
		return refuse(target, "it has %d names (hard links), and another may be a protected file or an image in use; give a file of its own", links)
	}
	return nil
}

// devIno is a file's identity: its filesystem's device and its inode.
type devIno struct{ dev, ino uint64 }

// fileIdentity is a file's identity and its number of names.
func fileIdentity(path string) (devIno, uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return devIno{}, 0, err
	}
	return devIno{uint64(st.Dev), st.Ino}, uint64(st.Nlink), nil
}

// loopOver reports a loop device whose backing file is the file id.
func loopOver(id devIno) (string, bool) {
	loops, _ := filepath.Glob(filepath.Join(sysfsRoot, "block", "loop*", "loop", "backing_file"))
	for _, bf := range loops {
		b := readTrim(bf)
		if b == "" {
			continue
		}
		if got, _, err := fileIdentity(strings.TrimSuffix(b, " (deleted)")); err == nil && got == id {
			return filepath.Base(filepath.Dir(filepath.Dir(bf))), true
		}
	}
	return "", false
}

// InProtected reports the protected path that file (absolute, symlinks resolved) is or lies in:
// by its path, or by the identity of the file or one of its folders, which a bind mount or a
// symlinked folder shares with the protected one.
func InProtected(file string, protect []string) (string, bool) {
	if p, ok := inProtected(file, protect); ok {
		return p, true
	}
	ids := map[devIno]string{}
	for _, p := range protect {
		if id, _, err := fileIdentity(p); err == nil {
			ids[id] = p
		}
	}
	for dir := file; ; dir = filepath.Dir(dir) {
		if id, _, err := fileIdentity(dir); err == nil {
			if p, ok := ids[id]; ok {
				return p, true
			}
		}
		if dir == filepath.Dir(dir) {
			return "", false
		}
	}
}

// checkBlockTarget applies the rules for a block device.
func checkBlockTarget(target string, protect []string) error {
	dev, err := devNumber(target)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	sys, err := filepath.EvalSymlinks(filepath.Join(sysfsRoot, "dev", "block", dev))
	if err != nil {
		return refuse(target, "the kernel does not list device %s in sysfs, so what it holds cannot be checked", dev)
	}
	if exists(filepath.Join(sys, "partition")) {
		disk := filepath.Base(filepath.Dir(sys))
		return refuse(target, "it is partition %s of the disk /dev/%s, not a whole disk: a disk's table and volumes go onto the whole disk (name /dev/%s, or its /dev/disk/by-id name); to write one volume, restore the disk to an image file and copy the partition", filepath.Base(sys), disk, disk)
	}
	// The devices whose use would be destroyed: the disk, its partitions and whatever is stacked
	// on them (LVM, dm-crypt, MD), recursively.
	family := map[string]string{} // dev number → name
	stackedOn(sys, family)
	own := map[string]bool{filepath.Base(sys): true}
	entries, _ := os.ReadDir(sys)
	for _, e := range entries {
		if exists(filepath.Join(sys, e.Name(), "partition")) {
			own[e.Name()] = true
		}
	}

	// The running system first: its disk usually holds the protected paths too, and this is
	// the better reason to give.
	if disks, err := disksUnder("/"); err == nil && disks[dev] {
		return refuse(target, "it holds the running system's root filesystem")
	}
	under := protectedUnder(protect)
	if p, ok := under.disks[dev]; ok {
		return refuse(target, "it holds the protected path %s", p)
	}
	// A loop device writes through to its backing file, which must not be a protected file or lie
	// in a protected directory (an image inside the repository, the source image itself), nor be
	// what a protected path lives on: the image or device behind the repository's own loop
	// device, reached through a second loop device.
	if bf := readTrim(filepath.Join(sys, "loop", "backing_file")); bf != "" {
		bf = strings.TrimSuffix(bf, " (deleted)")
		if p, ok := InProtected(bf, protect); ok {
			return refuse(target, "it is backed by %s, in the protected path %s", bf, p)
		}
		if id, _, err := fileIdentity(bf); err == nil {
			if p, ok := under.files[id]; ok {
				return refuse(target, "it is a loop device over %s, the image behind the protected path %s", bf, p)
			}
		}
		if d, err := devNumber(bf); err == nil && isBlockDevice(bf) {
			if p, ok := under.disks[wholeDisk(d)]; ok {
				return refuse(target, "it is a loop device over %s, which holds the protected path %s", bf, p)
			}
		}
	}
	if m, ok := mountedIn(family); ok {
		return refuse(target, "%s", m)
	}
	// Something stacked on the disk (an active LVM volume group, dm-crypt mapping or MD array)
	// is in use even when nothing on it is mounted: writing under it corrupts it.
	for _, name := range family {
		if !own[name] {
			return refuse(target, "%s is stacked on it (LVM, dm-crypt or MD); deactivate it first", name)
		}
	}
	return nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func readTrim(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// stackedOn adds the device at sysfs directory sys, its partitions and their holders to family.
func stackedOn(sys string, family map[string]string) {
	dev := readTrim(filepath.Join(sys, "dev"))
	if dev == "" {
		return
	}
	if _, seen := family[dev]; seen {
		return
	}
	family[dev] = filepath.Base(sys)
	entries, _ := os.ReadDir(sys)
	for _, e := range entries {
		sub := filepath.Join(sys, e.Name())
		if exists(filepath.Join(sub, "partition")) {
			stackedOn(sub, family)
		}
	}
	holders, _ := os.ReadDir(filepath.Join(sys, "holders"))
	for _, h := range holders {
		if real, err := filepath.EvalSymlinks(filepath.Join(sys, "holders", h.Name())); err == nil {
			stackedOn(real, family)
		}
	}
	// Loop devices over this device are not holders in sysfs, and O_EXCL does not see them.
	for _, loop := range loopsOverDevice(dev) {
		stackedOn(loop, family)
	}
}

// loopsOverDevice lists the sysfs directories of the loop devices whose backing file is the
// block device dev.
func loopsOverDevice(dev string) []string {
	var out []string
	loops, _ := filepath.Glob(filepath.Join(sysfsRoot, "block", "loop*", "loop", "backing_file"))
	for _, bf := range loops {
		b := strings.TrimSuffix(readTrim(bf), " (deleted)")
		if b == "" || !isBlockDevice(b) {
			continue
		}
		if d, err := devNumber(b); err == nil && d == dev {
			out = append(out, filepath.Dir(filepath.Dir(bf)))
		}
	}
	return out
}

func isBlockDevice(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// wholeDisk is the dev number of the whole disk that dev is or is a partition of.
func wholeDisk(dev string) string {
	sys, err := filepath.EvalSymlinks(filepath.Join(sysfsRoot, "dev", "block", dev))
	if err != nil {
		return dev
	}
	if exists(filepath.Join(sys, "partition")) {
		if d := readTrim(filepath.Join(filepath.Dir(sys), "dev")); d != "" {
			return d
		}
	}
	return dev
}

// protected is what protected paths live on: the whole disks (dev numbers), following
// device-mapper, MD and loop devices down to their members and backing files, and the backing
// files of those loop devices (by identity); each with the protected path it serves.
type protected struct {
	disks map[string]string
	files map[devIno]string
}

func protectedUnder(protect []string) protected {
	out := protected{disks: map[string]string{}, files: map[devIno]string{}}
	for _, p := range protect {
		dev, err := devNumber(p)
		if err != nil {
			continue // a protected path that does not exist protects nothing
		}
		disks := map[string]bool{}
		files := map[devIno]bool{}
		collectUnder(dev, disks, files, 0)
		for d := range disks {
			out.disks[d] = p
		}
		for f := range files {
			out.files[f] = p
		}
		if id, _, err := fileIdentity(p); err == nil && !isBlockDevice(p) {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				out.files[id] = p
			}
		}
	}
	return out
}

// mountedIn reports a mount or active swap on any device of family.
func mountedIn(family map[string]string) (string, bool) {
	if f, err := os.Open("/proc/self/mountinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 5 {
				continue
			}
			// Field 3 is the device number; btrfs reports an anonymous one, so the mount source
			// (after the " - " separator) is checked too.
			if name, ok := family[fields[2]]; ok {
				return fmt.Sprintf("%s is mounted on %s", name, mountinfo.Unescape(fields[4])), true
			}
			for i, fld := range fields {
				if fld == "-" && i+2 < len(fields) && strings.HasPrefix(fields[i+2], "/dev/") {
					if d, err := devNumber(fields[i+2]); err == nil {
						if name, ok := family[d]; ok {
							return fmt.Sprintf("%s is mounted on %s", name, mountinfo.Unescape(fields[4])), true
						}
					}
					break
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/swaps"); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			if d, err := devNumber(fields[0]); err == nil {
				if name, ok := family[d]; ok {
					return fmt.Sprintf("%s is in use as swap", name), true
				}
			}
		}
	}
	return "", false
}

// disksUnder returns the dev numbers of the whole disks that path's data lives on: for a block
// device the disk it is or is part of; for a file or directory the disk(s) under its filesystem,
// following device-mapper and MD to their members and loop devices to their backing files.
func disksUnder(path string) (map[string]bool, error) {
	dev, err := devNumber(path)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	collectUnder(dev, out, map[devIno]bool{}, 0)
	return out, nil
}

// collectUnder adds the whole disks under dev to disks and the backing files of the loop
// devices on the way to files.
func collectUnder(dev string, disks map[string]bool, files map[devIno]bool, depth int) {
	if depth > 16 {
		return // a loop of loop devices; enough
	}
	sys, err := filepath.EvalSymlinks(filepath.Join(sysfsRoot, "dev", "block", dev))
	if err != nil {
		return // not a block device (tmpfs, overlay, the initramfs): no disk to protect
	}
	if exists(filepath.Join(sys, "partition")) {
		sys = filepath.Dir(sys)
		dev = readTrim(filepath.Join(sys, "dev"))
	}
	if disks[dev] {
		return
	}
	disks[dev] = true
	slaves, _ := os.ReadDir(filepath.Join(sys, "slaves"))
	for _, s := range slaves {
		if d := readTrim(filepath.Join(sys, "slaves", s.Name(), "dev")); d != "" {
			collectUnder(d, disks, files, depth+1)
		}
	}
	if bf := readTrim(filepath.Join(sys, "loop", "backing_file")); bf != "" {
		bf = strings.TrimSuffix(bf, " (deleted)")
		if id, _, err := fileIdentity(bf); err == nil && !isBlockDevice(bf) {
			files[id] = true
		}
		if d, err := devNumber(bf); err == nil {
			collectUnder(d, disks, files, depth+1)
		}
	}
}

// inProtected reports the protected path that file (absolute, symlinks resolved) is or lies in,
// by path.
func inProtected(file string, protect []string) (string, bool) {
	for _, p := range protect {
		pa, err := filepath.Abs(p)
		if err != nil {
			continue
		}
		if real, err := filepath.EvalSymlinks(pa); err == nil {
			pa = real
		}
		if file == pa || strings.HasPrefix(file, pa+string(filepath.Separator)) {
			return p, true
		}
	}
	return "", false
}
