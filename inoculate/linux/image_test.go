package linux

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/qemu"
)

// The tests below use the demo's source machine, a real Debian 12 built by
// scripts/source-debian.sh and cached in /var/tmp/cauldron-demo by `make prefetch` (about 3 minutes the
// first time, instant after); the tests only take it from the cache, reaching no mirror. They boot it in QEMU under TCG and take several minutes: go test -short skips
// them.

// sourceRootPassword is the root password scripts/source-debian.sh gives the source machine.
const sourceRootPassword = "cauldron"

// sourceImage returns the cached source machine image; without one it fails (make prefetch builds it).
func sourceImage(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("boots Debian in QEMU for minutes: skipped with -short")
	}
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "debootstrap", "sfdisk", "partx", "losetup", "mkfs.ext4", "tune2fs", "chroot")
	script, err := filepath.Abs("../../scripts/source-debian.sh")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, script, "--offline") // tests reach no mirror: make prefetch built it
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s: %v\n%s", script, err, stderr.String())
	}
	img := strings.TrimSpace(stdout.String())
	t.Logf("source image %s (%.1f s): %s", img, time.Since(start).Seconds(), strings.TrimSpace(stderr.String()))
	if fi, err := os.Stat(img); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the script printed %q, which is no image: %v", img, err)
	}
	return img
}

// run runs a host command and fails the test with its output if it fails.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// attachLoop attaches img to a loop device and adds its partitions through BLKPG (partx): the
// project's machines parse no partition tables (../shared/notes/platform.md). It returns the
// loop device and its first partition; both are detached when the test ends.
func attachLoop(t *testing.T, img string) (string, string) {
	t.Helper()
	loop := strings.TrimSpace(run(t, "losetup", "--find", "--show", img))
	t.Cleanup(func() {
		exec.Command("partx", "-d", loop).Run()
		if out, err := exec.Command("losetup", "-d", loop).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", loop, err, out)
		}
	})
	// A loop device detached without partx -d keeps its old partitions: clear them first.
	exec.Command("partx", "-d", loop).Run()
	run(t, "partx", "-a", loop)
	part := loop + "p1"
	for i := 0; i < 50; i++ {
		if fi, err := os.Stat(part); err == nil && fi.Mode()&os.ModeDevice != 0 {
			return loop, part
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s did not appear after partx -a %s", part, loop)
	return "", ""
}

// mountT mounts dev on a new folder and unmounts it when the test ends (if still mounted).
func mountT(t *testing.T, dev string) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "mount", dev, dir)
	t.Cleanup(func() {
		if len(mountsUnder(t, dir)) > 0 {
			for _, m := range mountsUnder(t, dir)[1:] {
				exec.Command("umount", "-l", m).Run()
			}
			if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v %s", dir, err, out)
			}
		}
	})
	return dir
}

// bootDisk boots img alone from a disk on bus and returns the VM.
func bootDisk(t *testing.T, name, img string, bus qemu.Bus, snapshot bool) *qemu.VM {
	t.Helper()
	return qemu.StartT(t, qemu.Config{
		Name:      name,
		Disks:     []qemu.Disk{{Path: img, Bus: bus, Boot: true, Snapshot: snapshot}},
		NoNetwork: true,
		VGA:       "none",
		Timeout:   10 * time.Minute,
	})
}

// The source machine boots to its login prompt on its own controller (virtio) and does not find
// its root on NVMe: the negative the demo shows, and what inoculation must repair.
func TestSourceImageBoots(t *testing.T) {
	if !testing.Short() {
		qemu.Require(t, qemu.BIOS, false)
	}
	img := sourceImage(t)
	t.Run("virtio", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		vm := bootDisk(t, "source-virtio", img, qemu.Virtio, true)
		m, err := vm.ExpectPartial(`(\S+) login:`, 8*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("virtio: %q login prompt after %.1f s", m[1], time.Since(start).Seconds())
	})
	t.Run("nvme", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		vm := bootDisk(t, "source-nvme", img, qemu.NVMe, true)
		if err := vm.Console().FailOn(`login:`); err != nil {
			t.Fatal(err)
		}
		m, err := vm.Expect(`(Gave up waiting for root file system device|ALERT!.*does not exist)`, 8*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := vm.ExpectPartial(`\(initramfs\)`, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
		t.Logf("nvme: %q, initramfs shell after %.1f s", m[1], time.Since(start).Seconds())
	})
}

// The real thing: a copy of the source machine, its root filesystem given a new UUID (as a
// restore with renewed identities does), inoculated for NVMe with the system's own
// update-initramfs and grub-install in a chroot, then booted on NVMe to a root shell that shows
// the marker file.
func TestInoculateSourceImageNVMe(t *testing.T) {
	if !testing.Short() {
		qemu.Require(t, qemu.BIOS, false)
	}
	src := sourceImage(t)
	img := filepath.Join(t.TempDir(), "target.img")
	start := time.Now()
	run(t, "cp", "--sparse=always", src, img)
	t.Logf("copied the source image in %.1f s", time.Since(start).Seconds())

	loop, part := attachLoop(t, img)
	oldUUID := strings.TrimSpace(run(t, "blkid", "-s", "UUID", "-o", "value", part))
	newUUID := "c0ffee00-1234-4abc-8def-00000000c0de"
	run(t, "e2fsck", "-fp", part)
	run(t, "tune2fs", "-U", newUUID, part)
	root := mountT(t, part)
	marker, err := os.ReadFile(filepath.Join(root, "root/cauldron-marker"))
	if err != nil {
		t.Fatal(err)
	}

	var log []string
	start = time.Now()
	rep, err := Inoculate(context.Background(), Options{
		Root:     root,
		Drivers:  []string{"nvme", "nvme_core"},
		Renames:  []Rename{{Kind: FSUUID, Old: oldUUID, New: newUUID}},
		Firmware: BIOS,
		BootDisk: loop,
		Log:      func(s string) { log = append(log, s) },
	})
	if rep != nil {
		t.Logf("inoculation took %.1f s:\n%s", time.Since(start).Seconds(), rep.Text())
	}
	if err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, root); len(m) != 1 {
		t.Errorf("mounts left in the root after inoculation: %v", m)
	}

	// Judged by the system's own lsinitramfs, run here by hand rather than through the package.
	for _, k := range rep.System.Kernels {
		out := run(t, "chroot", root, "/usr/bin/lsinitramfs", k.Initramfs)
		for _, want := range []string{"/nvme.ko", "/nvme-core.ko", "/virtio_blk.ko"} {
			if !strings.Contains(out, want) {
				t.Errorf("%s lacks %s", k.Initramfs, want)
			}
		}
	}
	for _, f := range []string{"/etc/fstab", "/boot/grub/grub.cfg", "/etc/initramfs-tools/modules"} {
		b, err := os.ReadFile(filepath.Join(root, BackupPath(f)))
		if err != nil {
			t.Errorf("backup of %s: %v", f, err)
		} else if !bytes.Contains(b, []byte(oldUUID)) && f != "/etc/initramfs-tools/modules" {
			t.Errorf("backup of %s does not hold the old UUID", f)
		}
	}
	fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	cfg, _ := os.ReadFile(filepath.Join(root, "boot/grub/grub.cfg"))
	if !strings.Contains(string(fstab), "UUID="+newUUID) || strings.Contains(string(cfg), oldUUID) || !strings.Contains(string(cfg), "root=UUID="+newUUID) {
		t.Errorf("fstab or grub.cfg still name the old UUID")
	}
	if z, err := os.ReadFile(filepath.Join(root, "etc/initramfs-tools/conf.d/zz-cauldron")); err != nil || !strings.Contains(string(z), "MODULES=most") {
		t.Errorf("zz-cauldron: %v %s", err, z)
	}
	run(t, "umount", root)
	run(t, "e2fsck", "-fn", part)
	run(t, "partx", "-d", loop)

	start = time.Now()
	vm := bootDisk(t, "inoculated-nvme", img, qemu.NVMe, false)
	if err := vm.Console().FailOn(`Gave up waiting for root|\(initramfs\) $|Kernel panic`); err != nil {
		t.Fatal(err)
	}
	m, err := vm.ExpectPartial(`(\S+) login: $`, 8*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("inoculated image on NVMe: %q login prompt after %.1f s", m[1], time.Since(start).Seconds())
	steps := []struct{ send, expect string }{
		{"root\n", `Password: $`},
		{sourceRootPassword + "\n", `# $`},
		{"cat /root/cauldron-marker; findmnt -no SOURCE /; echo done-$((6*7))\n", `done-42`},
	}
	for _, s := range steps {
		if err := vm.Send(s.send); err != nil {
			t.Fatal(err)
		}
		if _, err := vm.ExpectPartial(s.expect, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	out := vm.Output()
	if !strings.Contains(out, strings.TrimSpace(string(marker))) {
		t.Errorf("the marker %q was not printed", strings.TrimSpace(string(marker)))
	}
	if !regexp.MustCompile(`(?m)^/dev/nvme0n1p1\s*$`).MatchString(out) {
		t.Errorf("the root is not on /dev/nvme0n1p1; console tail:\n%s", vm.Tail(10))
	}
	t.Logf("marker %q read on NVMe, %.1f s after start", strings.TrimSpace(string(marker)), time.Since(start).Seconds())
}
