package restore

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/tib"
)

const kernelRelease = "6.1.0-28-amd64"

// debianRoot writes a small Debian 12 root under dir, enough for Linux inoculation to run in it
// for real: os-release, fstab, a kernel whose bzImage header names its release, its module
// folder, and initramfs-tools. The initramfs tools are shell scripts run by the host's dash
// (copied in with its libraries, as a chroot needs): update-initramfs writes an "initramfs" that
// lists the modules /etc/initramfs-tools/modules names, lsinitramfs prints it, so that the
// engine's check of the rebuilt initramfs judges what the configuration really says.
func debianRoot(t *testing.T, dir, rootUUID string) {
	t.Helper()
	put := func(rel, content string, mode os.FileMode) {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
	copyIn := func(host, rel string) {
		b, err := os.ReadFile(host) // follows the host's symlinks: the file itself goes in
		if err != nil {
			t.Fatal(err)
		}
		put(rel, string(b), 0o755)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for link, to := range map[string]string{"bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib", "lib64": "usr/lib64"} {
		if err := os.Symlink(to, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	copyIn("/bin/dash", "usr/bin/sh")
	copyIn("/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so.6")
	copyIn("/lib64/ld-linux-x86-64.so.2", "usr/lib64/ld-linux-x86-64.so.2")

	put("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nID=debian\n", 0o644)
	put("etc/fstab", "UUID="+rootUUID+" / ext4 errors=remount-ro 0 1\n", 0o644)
	put("etc/initramfs-tools/initramfs.conf", "MODULES=dep\nCOMPRESS=zstd\n", 0o644)
	put("etc/initramfs-tools/modules", "# modules for the initramfs\n", 0o644)
	put("usr/sbin/update-initramfs", `#!/bin/sh
# update-initramfs -u|-c -k RELEASE: the "initramfs" lists the modules the configuration names.
out=/boot/initrd.img-$3
: > "$out"
while read -r m rest; do
	case "$m" in ''|'#'*) continue;; esac
	echo "usr/lib/modules/$3/kernel/drivers/$m.ko" >> "$out"
done < /etc/initramfs-tools/modules
`, 0o755)
	put("usr/sbin/lsinitramfs", "#!/bin/sh\nwhile read -r l; do echo \"$l\"; done < \"$1\"\n", 0o755)

	// The kernel: a bzImage setup header whose version string names the release.
	img := make([]byte, 0x400)
	copy(img[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(img[0x206:], 0x020f)
	binary.LittleEndian.PutUint16(img[0x20e:], 0x300-0x200)
	copy(img[0x300:], kernelRelease+" (debian-kernel@lists.debian.org) #1 SMP\x00")
	put("boot/vmlinuz-"+kernelRelease, string(img), 0o644)
	put("boot/initrd.img-"+kernelRelease, "the initramfs built on the source\n", 0o644)
	mods := "usr/lib/modules/" + kernelRelease + "/"
	for _, m := range []string{"nvme/host/nvme.ko", "nvme/host/nvme-core.ko", "ata/ahci.ko"} {
		put(mods+"kernel/drivers/"+m, "module", 0o644)
	}
	put(mods+"modules.dep", "kernel/drivers/nvme/host/nvme.ko: kernel/drivers/nvme/host/nvme-core.ko\nkernel/drivers/nvme/host/nvme-core.ko:\nkernel/drivers/ata/ahci.ko:\n", 0o644)
	put(mods+"modules.builtin", "", 0o644)
}

// debugfsCat reads a file from an ext4 image without mounting it.
func debugfsCat(t *testing.T, img, path string) string {
	t.Helper()
	return sh(t, "debugfs", "-R", "cat "+path, img)
}

// loopsOf lists the loop devices attached to img.
func loopsOf(t *testing.T, img string) string {
	t.Helper()
	return strings.TrimSpace(sh(t, "losetup", "-j", img))
}

// A Linux root on a disk without a partition table (ext4 on the whole disk) is found and
// inoculated on the whole loop device; partx, which cannot read a table that is not there,
// no longer fails the recovery.
func TestRecoverInoculatesLinuxWithoutPartitionTable(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "mkfs.ext4", "debugfs", "e2fsck", "losetup", "partx", "dash")
	dir := t.TempDir()
	const rootUUID = "3a0c8f5e-6d1b-4c2a-9e7f-0b1c2d3e4f50"
	tree := filepath.Join(dir, "tree")
	debianRoot(t, tree, rootUUID)
	src := filepath.Join(dir, "deb12.img")
	sh(t, "mkfs.ext4", "-q", "-F", "-U", rootUUID, "-d", tree, src, "48M")

	r, repoPath := newRepo(t, dir)
	if _, err := r.Capture(ctx, captureOf("deb12", src)); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "recovered.img")
	p, err := Prepare(ctx, Request{Name: "deb12", Repo: r, RepoPath: repoPath, Machine: "deb12", Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: target}}, Inoculate: Inoculation{Hardware: "nvme"}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, p, RunOptions{Inoculate: Inoculate})
	if err != nil {
		t.Fatalf("%v\n%+v", err, rep)
	}
	var inoc StageResult
	for _, s := range rep.Stages {
		if s.Name == StageInoculate {
			inoc = s
		}
	}
	if inoc.Status != "done" || !strings.Contains(inoc.Message, "inoculated disk0 the whole disk (ext4, no partition table): Debian GNU/Linux 12 (bookworm)") {
		t.Fatalf("inoculate stage: %+v", inoc)
	}
	if len(rep.Warnings) != 0 {
		t.Errorf("warnings: %q", rep.Warnings)
	}
	// What inoculation wrote, read from the recovered image by e2fsprogs: nvme is in the
	// initramfs configuration and in the rebuilt initramfs, generic images replace MODULES=dep,
	// and the report is on the recovered system.
	if m := debugfsCat(t, target, "/etc/initramfs-tools/modules"); !strings.Contains(m, "\nnvme\n") || !strings.Contains(m, "nvme_core") {
		t.Errorf("/etc/initramfs-tools/modules:\n%s", m)
	}
	if i := debugfsCat(t, target, "/boot/initrd.img-"+kernelRelease); !strings.Contains(i, "/nvme.ko") {
		t.Errorf("the rebuilt initramfs:\n%s", i)
	}
	if c := debugfsCat(t, target, "/etc/initramfs-tools/conf.d/zz-cauldron"); !strings.Contains(c, "MODULES=most") {
		t.Errorf("conf.d/zz-cauldron:\n%s", c)
	}
	if ls := sh(t, "debugfs", "-R", "ls /var/log/cauldron", target); !strings.Contains(ls, "recovery-") {
		t.Errorf("no report on the recovered system:\n%s", ls)
	}
	sh(t, "e2fsck", "-fn", target)
	if l := loopsOf(t, target); l != "" {
		t.Errorf("loop devices left attached: %s", l)
	}
}

// A recovery whose disks hold no system inoculation knows succeeds, and says so: a warning in
// the report and the stage's message, naming each disk, each volume searched with what it
// holds, what marks a system, and that nothing was changed.
func TestInoculationFindsNoSystem(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "sfdisk", "mke2fs", "mkfs.vfat", "mkswap", "losetup", "partx")
	dir := t.TempDir()
	// disk0: GPT with an ext4 volume of plain files, a FAT volume and swap.
	gpt := filepath.Join(dir, "gpt.img")
	os.WriteFile(gpt, nil, 0o644)
	os.Truncate(gpt, 48<<20)
	cmd := exec.Command("sfdisk", "--quiet", gpt)
	cmd.Stdin = strings.NewReader("label: gpt\nstart=2048, size=40960, type=L\nstart=43008, size=24576, type=U\nstart=67584, size=20480, type=S\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v %s", err, out)
	}
	files := filepath.Join(dir, "files")
	os.MkdirAll(filepath.Join(files, "etc"), 0o755)
	os.WriteFile(filepath.Join(files, "etc", "hostname"), []byte("not a system\n"), 0o644)
	sh(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", files, "-E", "offset="+strconv.Itoa(2048*512), gpt, "20M")
	sh(t, "mkfs.vfat", loopAt(t, gpt, 43008*512, 24576*512))
	sh(t, "mkswap", loopAt(t, gpt, 67584*512, 20480*512))
	// disk1: ext4 on the whole disk, without a partition table, holding no system either.
	whole := filepath.Join(dir, "whole.img")
	sh(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", files, whole, "16M")

	r, repoPath := newRepo(t, dir)
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "data01", Sources: []string{gpt, whole}}); err != nil {
		t.Fatal(err)
	}
	t0, t1 := filepath.Join(dir, "t0.img"), filepath.Join(dir, "t1.img")
	p, err := Prepare(ctx, Request{Name: "data01", Repo: r, RepoPath: repoPath, Machine: "data01", Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: t0}, {Source: "disk1", Target: t1}}, Inoculate: Inoculation{Hardware: "ahci"}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, p, RunOptions{Inoculate: Inoculate})
	if err != nil {
		t.Fatalf("%v\n%+v", err, rep)
	}
	searched := "disk0 (" + t0 + "): partition 1 (ext4): no /etc/os-release or /usr/lib/os-release, partition 2 (vfat): FAT, a boot or data volume " +
		"(no Linux root or Windows lives on FAT), partition 3 (swap): swap; disk1 (" + t1 + "): the whole disk (ext4, no partition table): " +
		"no /etc/os-release or /usr/lib/os-release"
	if len(rep.Warnings) != 1 {
		t.Fatalf("warnings: %q", rep.Warnings)
	}
	for _, want := range []string{"inoculation changed nothing: no Linux or Windows system was found", "as captured", "Searched: " + searched,
		"A Linux root is an ext2/3/4, XFS or Btrfs volume with /etc/os-release or /usr/lib/os-release", `Windows is an NTFS volume with \Windows\System32\config\SYSTEM`} {
		if !strings.Contains(rep.Warnings[0], want) {
			t.Errorf("the warning lacks %q:\n%s", want, rep.Warnings[0])
		}
	}
	var inoc StageResult
	for _, s := range rep.Stages {
		if s.Name == StageInoculate {
			inoc = s
		}
	}
	if inoc.Message != "nothing changed: no Linux or Windows system found ("+searched+")" {
		t.Errorf("inoculate stage: %+v", inoc)
	}
	var text strings.Builder
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "warning: inoculation changed nothing") || strings.Contains(text.String(), "0 change(s)") {
		t.Errorf("summary:\n%s", text.String())
	}
	if len(rep.Inoculation) != 0 {
		t.Errorf("changes without a system: %q", rep.Inoculation)
	}
	for _, img := range []string{t0, t1} {
		if l := loopsOf(t, img); l != "" {
			t.Errorf("loop devices left attached: %s", l)
		}
	}
}
