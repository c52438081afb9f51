package linux

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
)

// fakeUpdateInitramfs is a program that reports what it sees of the chroot's bind mounts and
// fails like a broken update-initramfs does.
const fakeUpdateInitramfs = `package main

import (
	"fmt"
	"os"
)

func main() {
	seen := ""
	for _, p := range []string{"/dev/null", "/proc/self/mountinfo", "/sys/class", "/run"} {
		if _, err := os.Stat(p); err == nil {
			seen += " " + p
		}
	}
	fmt.Println("update-initramfs: Generating /boot/initrd.img-" + os.Args[len(os.Args)-1])
	fmt.Println("sees:" + seen)
	fmt.Fprintln(os.Stderr, "E: mkinitramfs failure zstd -q -9 -T0 28")
	os.Exit(1)
}
`

// mountsUnder lists the mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// The real chroot: the tool runs inside the root with /dev, /proc, /sys and /run bound, its
// failure comes back with its output, and nothing stays mounted.
func TestChrootToolFails(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "go") // builds a static stand-in for update-initramfs
	gobin, _ := exec.LookPath("go")
	root := debianTree(t)
	src := filepath.Join(t.TempDir(), "main.go")
	if err := os.WriteFile(src, []byte(fakeUpdateInitramfs), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "usr/sbin/update-initramfs")
	if err := os.Remove(bin); err != nil { // the tree's placeholder script
		t.Fatal(err)
	}
	cmd := exec.Command(gobin, "build", "-o", bin, src)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the stand-in: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// Should the test fail half-way, leave no bind mount behind in the temporary folder.
		for _, m := range mountsUnder(t, root) {
			_ = unmount(m)
		}
	})
	rep, err := Inoculate(context.Background(), Options{Root: root, Drivers: []string{"nvme"}})
	if err == nil {
		t.Fatal("a failing update-initramfs gave no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"/usr/sbin/update-initramfs -u -k 6.1.0-28-amd64 in " + root + " failed",
		"E: mkinitramfs failure zstd",
		"sees: /dev/null /proc/self/mountinfo /sys/class /run",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}
	if m := mountsUnder(t, root); len(m) > 0 {
		t.Errorf("still mounted after the failure: %v", m)
	}
	// The files written before the failure are in the report, done, with their backups.
	var done []string
	for _, f := range rep.Files {
		if f.Done {
			done = append(done, f.Path)
		}
	}
	if strings.Join(done, ",") != "/etc/initramfs-tools/conf.d/zz-cauldron,/etc/initramfs-tools/modules" {
		t.Errorf("files done: %v", done)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/initramfs-tools/modules"+BackupSuffix)); err != nil {
		t.Error(err)
	}
	if len(rep.Commands) != 1 || rep.Commands[0].Done || !strings.Contains(rep.Commands[0].Output, "E: mkinitramfs failure") {
		t.Errorf("command report %+v", rep.Commands)
	}
}

// Options.Mounts: a separate /boot (here an ext4 image on a loop device) is mounted for the work,
// the new initramfs lands on it, and it is unmounted afterwards; without it the run is refused.
func TestInoculateMountsSeparateBoot(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "mkfs.ext4", "losetup", "debugfs")
	root := debianTree(t)
	// Move /boot's content into a filesystem of its own, as an installer with a separate /boot
	// partition leaves it (the files at its top, not under boot/).
	boot := filepath.Join(root, "boot")
	img := filepath.Join(t.TempDir(), "boot.img")
	run(t, "mkfs.ext4", "-q", "-d", boot, img, "16M")
	if err := os.RemoveAll(boot); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(boot, 0o755); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(filepath.Join(root, "etc/fstab"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("UUID=" + bootUUID + " /boot ext4 defaults 0 2\n")
	f.Close()
	loop := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		for _, m := range mountsUnder(t, root) {
			_ = unmount(m)
		}
		exec.Command("losetup", "-d", loop).Run()
	})
	o := Options{Root: root, Drivers: []string{"nvme"}, Runner: &fakeTools{}}
	if _, err := Inoculate(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no kernel in /boot") {
		t.Fatalf("an empty /boot: %v", err)
	}
	// A second mount that fails must not leave the first one mounted.
	o.Mounts = []Mount{{Device: loop, Dir: "/boot", Type: "ext4"}, {Device: loop, Dir: "/nonexistent", Type: "ext4"}}
	if _, err := Inoculate(context.Background(), o); err == nil || !strings.Contains(err.Error(), "/nonexistent is not a folder") {
		t.Fatalf("mount onto a missing folder: %v", err)
	}
	if m := mountsUnder(t, boot); len(m) != 0 {
		t.Fatalf("/boot left mounted after the second mount failed: %v", m)
	}
	o.Mounts = o.Mounts[:1]
	o.DryRun = true
	rep, err := Inoculate(context.Background(), o)
	if err != nil || len(rep.System.Kernels) != 1 || len(mountsUnder(t, boot)) != 0 {
		t.Fatalf("dry run with /boot mounted: %v %+v, mounts left %v", err, rep, mountsUnder(t, boot))
	}
	o.DryRun = false
	rep, err = Inoculate(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.Text())
	}
	if m := mountsUnder(t, boot); len(m) != 0 {
		t.Fatalf("/boot still mounted: %v", m)
	}
	if !strings.Contains(rep.Text(), "mounted "+loop+" (ext4) at /boot") {
		t.Errorf("report:\n%s", rep.Text())
	}
	// The fake update-initramfs wrote the module list into the initramfs on the boot filesystem.
	out := run(t, "debugfs", "-R", "cat /initrd.img-6.1.0-28-amd64", img)
	if !strings.Contains(out, "/nvme.ko") {
		t.Errorf("the initramfs on the /boot filesystem:\n%s", out)
	}
}
