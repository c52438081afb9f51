package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
)

// The safety gate, tried as a hostile or careless technician would, through every command that
// writes disks (restore-disk, layout apply): each refusal names the target and why, exits
// non-zero and leaves the target as it was; a decoy device stays unchanged byte for byte.

// gateLab is a repository on an ext4 filesystem of its own (an image on a loop device, mounted),
// with one generation of a small disk, and a decoy device.
type gateLab struct {
	dir, repo, mnt string
	repoImg        string // the image file behind the loop device the repository lives on
	repoDev        string
	decoy          string // a loop device no command may touch
	decoyImg       string
	env            []string
}

func newGateLab(t *testing.T) *gateLab {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "losetup", "partx", "mkfs.ext4", "mount", "umount", "sgdisk", "mkswap", "swapon", "swapoff", "script")
	l := &gateLab{dir: t.TempDir(), env: []string{"CAULDRON_PASSWORD="}}
	l.repoImg = filepath.Join(l.dir, "repofs.img")
	mustRun(t, "truncate", "-s", "96M", l.repoImg)
	mustRun(t, "mkfs.ext4", "-q", "-F", l.repoImg)
	l.repoDev = attach(t, l.repoImg)
	l.mnt = filepath.Join(l.dir, "mnt")
	os.Mkdir(l.mnt, 0o755)
	mustRun(t, "mount", l.repoDev, l.mnt)
	t.Cleanup(func() { exec.Command("umount", l.mnt).Run() })
	l.repo = filepath.Join(l.mnt, "repo")
	ok(t, l.env, "init", "--repo", l.repo, "--no-password")
	src := makeDisk(t, filepath.Join(l.dir, "src"), 8, 9)
	ok(t, l.env, "capture", "--repo", l.repo, "--machine", "m", src)
	l.decoyImg = filepath.Join(l.dir, "decoy.img")
	os.WriteFile(l.decoyImg, bytes.Repeat([]byte("decoy "), 3<<20), 0o644)
	l.decoy = attach(t, l.decoyImg)
	t.Cleanup(func() {
		if b, _ := os.ReadFile(l.decoyImg); !bytes.Equal(b, bytes.Repeat([]byte("decoy "), 3<<20)) {
			t.Error("the decoy device was written")
		}
	})
	return l
}

// attach puts an image on a loop device, with its partitions added through BLKPG (this host's
// kernel parses no tables), and detaches both when the test ends.
func attach(t *testing.T, img string) string {
	t.Helper()
	dev := testenv.AttachLoop(t, img)
	exec.Command("partx", "-a", dev).Run() // no table: nothing to add
	return dev
}

func fileHash(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for {
		n, err := f.Read(buf)
		h.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// refused runs a command that must be refused: non-zero exit, every want in its output, and
// the file behind the target unchanged (backing "" for the repository's own filesystem, which
// its mount changes by itself: checkRepository judges that one).
func (l *gateLab) refused(t *testing.T, backing string, want []string, args ...string) {
	t.Helper()
	before := ""
	if backing != "" {
		before = fileHash(t, backing)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), l.env...)
	cmd.Stdin = nil // /dev/null: no terminal to ask on
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("cauldron %s succeeded; want a refusal\n%s", strings.Join(args, " "), out)
	}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("cauldron %s: output does not say %q:\n%s", strings.Join(args, " "), w, out)
		}
	}
	if backing != "" && fileHash(t, backing) != before {
		t.Fatalf("cauldron %s wrote %s", strings.Join(args, " "), backing)
	}
}

// checkRepository proves the repository and its filesystem survived: every byte of the archive
// verifies, and e2fsck finds the filesystem clean once it is unmounted.
func (l *gateLab) checkRepository(t *testing.T) {
	t.Helper()
	if out := ok(t, l.env, "verify", "--repo", l.repo, "--read-data"); !strings.Contains(out, "no damage found") {
		t.Fatal(out)
	}
	mustRun(t, "umount", l.mnt)
	mustRun(t, "e2fsck", "-fn", l.repoDev)
}

func (l *gateLab) restoreArgs(to string, more ...string) []string {
	return append([]string{"restore-disk", "--repo", l.repo, "--machine", "m", "--to", to, "--yes"}, more...)
}

func TestGateRefusesTheRepositorysDisks(t *testing.T) {
	l := newGateLab(t)
	// The image file behind the loop device the repository's filesystem is mounted from: it used
	// to be overwritten, destroying the repository, with exit status 0.
	l.refused(t, "", []string{l.repoImg, "image behind the loop device that holds the protected path"}, l.restoreArgs(l.repoImg)...)
	l.refused(t, "", []string{l.repoImg, "image behind the loop device"},
		"layout", "apply", "--repo", l.repo, "--machine", "m", "--to", l.repoImg, "--yes")
	// The device itself, and the same device through a by-id style symlink.
	l.refused(t, "", []string{l.repoDev, "protected path"}, l.restoreArgs(l.repoDev)...)
	link := filepath.Join(l.dir, "by-id", "usb-Backup_Disk-0:0")
	os.MkdirAll(filepath.Dir(link), 0o755)
	os.Symlink(l.repoDev, link)
	l.refused(t, "", []string{link, "protected path"}, l.restoreArgs(link)...)
	// The repository reached through a bind mount.
	bind := filepath.Join(l.dir, "bind")
	os.Mkdir(bind, 0o755)
	mustRun(t, "mount", "--bind", l.repo, bind)
	t.Cleanup(func() { exec.Command("umount", bind).Run() })
	l.refused(t, "", []string{"protected path"},
		"restore-disk", "--repo", bind, "--machine", "m", "--to", l.repoDev, "--yes")
	// New and existing files in the repository reached through the bind mount.
	l.refused(t, "", []string{"never be written"}, l.restoreArgs(filepath.Join(bind, "x.img"))...)
	l.refused(t, "", []string{"protected path"}, l.restoreArgs(filepath.Join(bind, "config"))...)
	// A hard link to the repository's image; a second loop device over that image; a loop device
	// over the repository's loop device. Each used to destroy the repository with exit status 0.
	hard := filepath.Join(l.dir, "hard.img")
	if err := os.Link(l.repoImg, hard); err != nil {
		t.Fatal(err)
	}
	l.refused(t, "", []string{hard, "image behind the loop device"}, l.restoreArgs(hard)...)
	os.Remove(hard)
	second := attach(t, l.repoImg)
	l.refused(t, "", []string{second, "protected path"}, l.restoreArgs(second)...)
	l.refused(t, "", []string{second, "protected path"}, "layout", "apply", "--repo", l.repo, "--machine", "m", "--to", second, "--yes")
	over := attach(t, l.repoDev)
	l.refused(t, "", []string{over, "protected path"}, l.restoreArgs(over)...)

	// A new image file, or an existing file, inside the repository directory.
	l.refused(t, "", []string{"never be written"}, l.restoreArgs(filepath.Join(l.repo, "x.img"))...)
	if _, err := os.Stat(filepath.Join(l.repo, "x.img")); err == nil {
		t.Fatal("an image was created inside the repository")
	}
	l.refused(t, "", []string{"protected path"}, l.restoreArgs(filepath.Join(l.repo, "config"))...)
	exec.Command("umount", bind).Run()
	l.checkRepository(t)
}

func TestGateRefusesPartitionsMountsSwapAndBootMedia(t *testing.T) {
	l := newGateLab(t)
	// A partition the size of the captured disk and more: a GPT used to be written into it.
	diskImg := filepath.Join(l.dir, "disk.img")
	mustRun(t, "truncate", "-s", "40M", diskImg)
	mustRun(t, "sgdisk", "-n1:1M:0", diskImg)
	disk := attach(t, diskImg)
	part := disk + "p1"
	if _, err := os.Stat(part); err != nil {
		t.Fatalf("partx gave %s no partition node: %v", disk, err)
	}
	l.refused(t, diskImg, []string{part, "not a whole disk", "name " + disk}, l.restoreArgs(part)...)
	l.refused(t, diskImg, []string{part, "not a whole disk"},
		"layout", "apply", "--repo", l.repo, "--machine", "m", "--to", part, "--yes")

	// A disk with a filesystem mounted from a loop device stacked over it (no sysfs holder, and
	// O_EXCL does not see it).
	stackedImg := filepath.Join(l.dir, "stacked.img")
	mustRun(t, "truncate", "-s", "40M", stackedImg)
	under := attach(t, stackedImg)
	top := attach(t, under)
	mustRun(t, "mkfs.ext4", "-q", "-F", top)
	mnt := filepath.Join(l.dir, "stacked-mnt")
	os.Mkdir(mnt, 0o755)
	mustRun(t, "mount", top, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	l.refused(t, "", []string{under, "mounted"}, l.restoreArgs(under)...)
	l.refused(t, "", []string{under, "mounted"}, "layout", "apply", "--repo", l.repo, "--machine", "m", "--to", under, "--yes")
	exec.Command("umount", mnt).Run()

	// An image attached to a loop device (whose users would see it change).
	l.refused(t, l.decoyImg, []string{l.decoyImg, "attached to " + l.decoy}, l.restoreArgs(l.decoyImg)...)

	// A disk that is not there (unplugged, mistyped) is not a new image file in /dev.
	l.refused(t, "", []string{"/dev/cauldron-missing0", "no such device"}, l.restoreArgs("/dev/cauldron-missing0")...)
	if _, err := os.Stat("/dev/cauldron-missing0"); err == nil {
		os.Remove("/dev/cauldron-missing0")
		t.Fatal("a file was created in /dev")
	}

	// A device in use as swap.
	swapImg := filepath.Join(l.dir, "swap.img")
	mustRun(t, "truncate", "-s", "40M", swapImg)
	swap := attach(t, swapImg)
	mustRun(t, "mkswap", "-q", swap)
	mustRun(t, "swapon", swap)
	t.Cleanup(func() { exec.Command("swapoff", swap).Run() })
	l.refused(t, swapImg, []string{swap, "swap"}, l.restoreArgs(swap)...)

	// A Cauldron boot medium (the ISO's primary volume descriptor), as a device and as a file.
	iso := filepath.Join(l.dir, "stick.img")
	pvd := make([]byte, 2048)
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:], "CAULDRON"+strings.Repeat(" ", 24))
	b := make([]byte, 40<<20)
	copy(b[16*2048:], pvd)
	os.WriteFile(iso, b, 0o644)
	l.refused(t, iso, []string{iso, "boot medium"}, l.restoreArgs(iso)...)
	stick := attach(t, iso)
	l.refused(t, iso, []string{stick, "boot medium"}, l.restoreArgs(stick)...)
}

func TestGateConsentAndBusyTargets(t *testing.T) {
	l := newGateLab(t)
	img := filepath.Join(l.dir, "target.img")
	os.WriteFile(img, bytes.Repeat([]byte("old disk "), 5<<20), 0o644)
	dev := attach(t, img)
	// Without --yes and without a terminal to ask on: refused, naming the device and --yes.
	l.refused(t, img, []string{dev, "--yes"}, "restore-disk", "--repo", l.repo, "--machine", "m", "--to", dev)
	l.refused(t, img, []string{dev, "--yes"}, "layout", "apply", "--repo", l.repo, "--machine", "m", "--to", dev)

	// A target another process is capturing (tib holds a shared lock on its sources).
	f, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		t.Fatal(err)
	}
	l.refused(t, img, []string{dev, "capturing"}, l.restoreArgs(dev)...)
	f.Close()

	// On a terminal it asks for the wizard's word: anything else writes nothing.
	onTerminal := func(answer string) string {
		cmd := exec.Command("script", "-qec", strings.Join(append([]string{bin}, "restore-disk", "--repo", l.repo, "--machine", "m", "--to", dev), " "), "/dev/null")
		cmd.Env = append(os.Environ(), l.env...)
		cmd.Stdin = strings.NewReader(answer + "\n")
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	before := fileHash(t, img)
	if out := onTerminal("m"); !strings.Contains(out, "Type ERASE") || !strings.Contains(out, "not confirmed") || fileHash(t, img) != before {
		t.Fatalf("restore-disk on a terminal answered with the machine's name:\n%s", out)
	}
	if out := onTerminal("ERASE"); !strings.Contains(out, "compared with the generation") {
		t.Fatalf("restore-disk on a terminal answered ERASE:\n%s", out)
	}
	exec.Command("partx", "-d", dev).Run()
	mustRun(t, "sgdisk", "-v", img)

	// With --yes, the same device is written again, verified and left clean.
	out := ok(t, l.env, l.restoreArgs(dev)...)
	if !strings.Contains(out, "compared with the generation") {
		t.Fatalf("restore-disk onto a device:\n%s", out)
	}
	exec.Command("partx", "-d", dev).Run()
	mustRun(t, "sgdisk", "-v", img)
	mustRun(t, "e2fsck", "-fn", fmt.Sprintf("%s?offset=1048576", img))
}

// TestGateRefusesTheRunningSystem: the disk the running system's root filesystem lives on is
// refused while planning (--dry-run: even a broken gate writes nothing here).
func TestGateRefusesTheRunningSystem(t *testing.T) {
	l := newGateLab(t)
	root := rootDisk(t)
	out, errs, code := cauldron(t, l.env, "restore-disk", "--repo", l.repo, "--machine", "m", "--to", root, "--dry-run")
	if code == 0 || !strings.Contains(errs, "running system") {
		t.Fatalf("restore-disk --dry-run onto the running system's disk %s: exit %d\n%s%s", root, code, out, errs)
	}
}

// rootDisk is the whole disk under /, or skips when / is not on a block device (a container's
// overlay): there is then no such disk to refuse.
func rootDisk(t *testing.T) string {
	var st syscall.Stat_t
	if err := syscall.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	sys, err := filepath.EvalSymlinks(fmt.Sprintf("/sys/dev/block/%d:%d", st.Dev>>8&0xfff, st.Dev&0xff|(st.Dev>>12)&0xfff00))
	if err != nil {
		t.Skipf("/ is not on a block device here (%v): no running system's disk to refuse", err)
	}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		sys = filepath.Dir(sys)
	}
	dev := "/dev/" + filepath.Base(sys)
	if _, err := os.Stat(dev); err != nil {
		t.Skipf("the root disk %s has no node here", dev)
	}
	return dev
}
