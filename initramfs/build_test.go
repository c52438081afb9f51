package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/mkuimage/cpio"
)

var (
	uinitOnce   sync.Once
	uinitErr    error
	uinitBinary string // static stand-in for cauldron

	fixtureOnce sync.Once
	fixtureErr  error
	fixture     struct {
		uinit string
		a, b  *Media // two builds from the same inputs
	}
)

// TestMain removes what the fixtures built (the media builds are large).
func TestMain(m *testing.M) {
	code := m.Run()
	for _, d := range tempDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

var tempDirs []string

// smokeBinary builds the static stand-in for cauldron, internal/smoke (once per test binary).
func smokeBinary(t *testing.T) string {
	t.Helper()
	uinitOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cauldron-smoke-uinit-")
		if err != nil {
			uinitErr = err
			return
		}
		tempDirs = append(tempDirs, dir)
		bin := filepath.Join(dir, "uinit")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", bin, "./internal/smoke")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			uinitErr = fmt.Errorf("building the stand-in uinit: %v: %s", err, out)
			return
		}
		uinitBinary = bin
	})
	if uinitErr != nil {
		t.Fatal(uinitErr)
	}
	return uinitBinary
}

// buildFixture builds the media twice from the same inputs (once per test binary).
func buildFixture(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the boot media (unpacks the kernel package, builds the image twice): not in -short")
	}
	uinit := smokeBinary(t)
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cauldron-media-test-")
		if err != nil {
			fixtureErr = err
			return
		}
		tempDirs = append(tempDirs, dir)
		fixture.uinit = uinit
		for i, m := range []**Media{&fixture.a, &fixture.b} {
			var log bytes.Buffer
			start := time.Now()
			*m, fixtureErr = Build(context.Background(), Options{
				OutDir:   filepath.Join(dir, "out"+strconv.Itoa(i)),
				Cauldron: uinit,
				Log:      &log,
				Offline:  true, // make prefetch filled the cache: the tests reach no mirror
			})
			t.Logf("build %d (%s):\n%s", i, time.Since(start).Round(time.Second), log.String())
			if fixtureErr != nil {
				return
			}
		}
	})
	if fixtureErr != nil {
		t.Fatal(fixtureErr)
	}
}

func TestReproducible(t *testing.T) {
	buildFixture(t)
	a, b := fixture.a, fixture.b
	for _, pair := range [][2]string{{a.ISO, b.ISO}, {a.Kernel, b.Kernel}, {a.Initramfs, b.Initramfs}} {
		if ha, hb := sha256File(t, pair[0]), sha256File(t, pair[1]); ha != hb {
			t.Errorf("%s and %s differ", pair[0], pair[1])
		}
	}
	ents, err := os.ReadDir(a.PXEDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		if sha256File(t, filepath.Join(a.PXEDir, e.Name())) != sha256File(t, filepath.Join(b.PXEDir, e.Name())) {
			t.Errorf("pxe/%s differs between builds", e.Name())
		}
	}
	if a.ISOSize > 64<<20 {
		t.Errorf("ISO is %d bytes, over the 64 MiB goal", a.ISOSize)
	}
	t.Logf("ISO %d, kernel %d, initramfs %d (%d as cpio), %d modules, %d tools; built in %s",
		a.ISOSize, a.KernelSize, a.InitramfsSize, a.InitramfsUncompressed, len(a.Modules), len(a.Tools), a.Duration)
}

// initramfsEntries reads the built initramfs: path → record (contents loaded).
func initramfsEntries(t *testing.T, m *Media) map[string]cpio.Record {
	t.Helper()
	f, err := os.Open(m.Initramfs)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	data, err := io.ReadAll(dec)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := readCPIO(data)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]cpio.Record{}
	var prev string
	for _, r := range recs {
		if r.Name == cpio.Trailer {
			continue
		}
		if r.Name <= prev {
			t.Errorf("cpio not sorted: %q after %q", r.Name, prev)
		}
		prev = r.Name
		if r.UID != 0 || r.GID != 0 || int64(r.MTime) != m.SourceDateEpoch {
			t.Errorf("%s: uid %d gid %d mtime %d, want 0 0 %d", r.Name, r.UID, r.GID, r.MTime, m.SourceDateEpoch)
		}
		out[r.Name] = r
	}
	return out
}

func content(t *testing.T, r cpio.Record) string {
	t.Helper()
	b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestInitramfsContents(t *testing.T) {
	buildFixture(t)
	m := fixture.a
	e := initramfsEntries(t, m)
	link := func(p, want string) {
		r, ok := e[p]
		if !ok || r.Mode&cpio.S_IFMT != cpio.S_IFLNK {
			t.Errorf("%s: not a symlink in the initramfs", p)
			return
		}
		if got := content(t, r); got != want {
			t.Errorf("%s → %s, want → %s", p, got, want)
		}
	}
	file := func(p string) {
		if r, ok := e[p]; !ok || r.Mode&cpio.S_IFMT != cpio.S_IFREG || r.FileSize == 0 {
			t.Errorf("%s: no regular file in the initramfs", p)
		}
	}
	// init, uinit = /bin/cauldron boot, the shell.
	link("init", "bbin/init")
	link("bin/uinit", "cauldron")
	link("bin/sh", "../bbin/gosh")
	file("bbin/bb")
	file("bin/cauldron")
	if got := content(t, e["bin/cauldron"]); sha256String(got) != sha256File(t, fixture.uinit) {
		t.Errorf("bin/cauldron is not the given binary")
	}
	if r, ok := e["etc/uinit.flags"]; !ok || strings.TrimSpace(content(t, r)) != `"boot"` {
		t.Errorf("etc/uinit.flags must hold exactly \"boot\"")
	}
	link("sbin", "usr/sbin")
	link("lib64/ld-linux-x86-64.so.2", "/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
	link("lib/x86_64-linux-gnu", "../usr/lib/x86_64-linux-gnu")
	file("usr.squashfs")
	for p, r := range e {
		if strings.HasPrefix(p, "usr/") && r.Mode&cpio.S_IFMT != cpio.S_IFDIR {
			t.Errorf("%s: in the initramfs under /usr, which the /usr image hides at boot", p)
		}
	}

	// Modules: the asked-for ones, their dependencies, and indexes depmod made for the subset.
	kdir := path.Join("lib/modules", m.KernelVersion)
	for _, f := range []string{"modules.dep", "modules.alias", "modules.builtin", "modules.dep.bin", "modules.alias.bin", "modules.softdep"} {
		if _, ok := e[path.Join(kdir, f)]; !ok {
			t.Errorf("%s/%s missing", kdir, f)
		}
	}
	dep := content(t, e[path.Join(kdir, "modules.dep")])
	deps := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(dep), "\n") {
		mod, ds, _ := strings.Cut(line, ":")
		deps[modName(mod)] = strings.Fields(ds)
		file(path.Join(kdir, mod))
		for _, d := range strings.Fields(ds) {
			file(path.Join(kdir, d))
		}
	}
	for _, want := range []string{"ahci", "ata_piix", "nvme", "virtio_blk", "virtio_scsi", "virtio_pci",
		"sd_mod", "sr_mod", "megaraid_sas", "mpt3sas", "hpsa", "aacraid", "smartpqi", "vmw_pvscsi",
		"hv_storvsc", "xen_blkfront", "usb_storage", "uas", "xhci_pci", "ehci_pci", "ohci_pci", "uhci_hcd",
		"mmc_block", "sdhci_pci", "virtio_net", "e1000", "e1000e", "igb", "ixgbe", "i40e", "r8169", "tg3",
		"vmxnet3", "hv_netvsc", "mlx5_core", "ext4", "xfs", "btrfs", "vfat", "nls_cp437", "nls_iso8859_1",
		"nls_utf8", "isofs", "squashfs", "fuse", "dm_mod", "dm_crypt", "efivarfs", "loop",
		"libahci", "libata", "scsi_mod", "jbd2", "crc32c_generic",
		"nfs", "nfsv3", "nfsv4", "sunrpc", "lockd", "cifs", "cifs_md4", "cifs_arc4", "dns_resolver",
		"cmac", "gcm", "ccm", "ctr", "sha512_generic"} {
		if _, ok := deps[want]; !ok {
			t.Errorf("module %s not in the image's modules.dep", want)
		}
	}
	if !strings.Contains(strings.Join(deps["ahci"], " "), "libahci.ko.zst") {
		t.Errorf("modules.dep: ahci does not depend on libahci: %v", deps["ahci"])
	}
	alias := content(t, e[path.Join(kdir, "modules.alias")])
	for _, re := range []string{`(?m)^alias virtio:d00000002v\* virtio_blk$`, `(?m)^alias fs-vfat vfat$`,
		`(?m)^alias pci:v\*d\*sv\*sd\*bc01sc06i01\* ahci$`, `(?m)^alias virtio:d00000001v\* virtio_net$`,
		`(?m)^alias fs-nfs4 nfs$`, `(?m)^alias fs-cifs cifs$`, `(?m)^alias crypto-cmac cmac$`} {
		if !regexp.MustCompile(re).MatchString(alias) {
			t.Errorf("modules.alias has no line matching %s", re)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(alias), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		if f := strings.Fields(line); len(f) != 3 || f[0] != "alias" || deps[f[2]] == nil {
			t.Errorf("modules.alias line for a module the image lacks: %q", line)
			break
		}
	}
	for _, fw := range m.Firmware {
		p := path.Join("lib/firmware", fw)
		if r, ok := e[p]; ok && r.Mode&cpio.S_IFMT == cpio.S_IFLNK {
			// A symlink in its package (intel/ice/ddp/ice.pkg): the file it leads to must be there.
			p = path.Join(path.Dir(p), content(t, r))
		}
		file(p)
	}

	// Tools and the closure of their libraries, with the interpreter, in the /usr image as
	// unsquashfs (squashfs-tools, not our code) reads it.
	usr := unsquashUsr(t, content(t, e["usr.squashfs"]))
	inUsr := func(p string) (os.FileInfo, string) {
		rel, ok := strings.CutPrefix(p, "/usr/")
		if !ok {
			t.Errorf("%s: not under /usr", p)
			return nil, ""
		}
		fi, err := os.Lstat(filepath.Join(usr, rel))
		if err != nil {
			t.Errorf("%s: not in the /usr image", p)
			return nil, ""
		}
		return fi, filepath.Join(usr, rel)
	}
	usrFile := func(p string) {
		if fi, _ := inUsr(p); fi != nil && (!fi.Mode().IsRegular() || fi.Size() == 0) {
			t.Errorf("%s: not a regular file in the /usr image", p)
		}
	}
	for _, want := range []string{"ntfs-3g", "mount.ntfs-3g", "ntfsresize", "ntfsfix", "mkntfs", "ntfsinfo",
		"resize2fs", "e2fsck", "mke2fs", "mkfs.ext4", "tune2fs", "xfs_growfs", "xfs_repair", "mkfs.xfs", "btrfs",
		"mkfs.vfat", "fsck.vfat", "fatlabel", "mkswap", "sgdisk", "sfdisk", "partx", "blkid", "wipefs",
		"cryptsetup", "lvm", "efibootmgr", "modprobe"} {
		found := false
		for _, p := range m.Tools {
			if path.Base(p) == want {
				found = true
				if fi, host := inUsr(p); fi != nil && fi.Mode()&os.ModeSymlink != 0 {
					target, _ := os.Readlink(host)
					usrFile(path.Join(path.Dir(p), target))
				} else if fi != nil {
					usrFile(p)
				}
			}
		}
		if !found {
			t.Errorf("tool %s not in the image", want)
		}
	}
	var hostBins []string
	for _, p := range m.Tools {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			hostBins = append(hostBins, real)
		}
	}
	libs, interp, err := libClosure(hostBins)
	if err != nil {
		t.Fatal(err)
	}
	realInterp, _ := filepath.EvalSymlinks(interp)
	usrFile(realInterp)
	for soname, p := range libs {
		real, _ := filepath.EvalSymlinks(p)
		usrFile(real)
		if fi, _ := inUsr(path.Join(path.Dir(real), soname)); fi == nil {
			t.Errorf("library %s: no %s beside %s", soname, soname, real)
		}
	}
	// Owned by root, stamped with the build's time, whatever the build host's files say.
	cmd := exec.Command("unsquashfs", "-lln", "-d", "", filepath.Join(filepath.Dir(usr), "usr.squashfs"))
	cmd.Env = append(os.Environ(), "TZ=UTC") // it prints local time
	list, err := cmd.Output()
	if err != nil {
		t.Fatalf("unsquashfs -lln: %v", err)
	}
	checked := 0
	stamp := time.Unix(m.SourceDateEpoch, 0).UTC().Format("2006-01-02 15:04")
	for _, line := range strings.Split(strings.TrimSpace(string(list)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		checked++
		if f[1] != "0/0" || f[3]+" "+f[4] != stamp {
			t.Errorf("/usr image entry not root-owned with the build's time %s: %s", stamp, line)
			break
		}
	}
	if checked < len(m.Tools) {
		t.Errorf("unsquashfs listed %d entries, fewer than the %d tools:\n%s", checked, len(m.Tools), list)
	}
}

// unsquashUsr writes the /usr image to a file and unpacks it with unsquashfs beside it.
func unsquashUsr(t *testing.T, data string) string {
	t.Helper()
	testenv.NeedTools(t, "unsquashfs")
	dir := t.TempDir()
	img := filepath.Join(dir, "usr.squashfs")
	if err := os.WriteFile(img, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "unsquashfs", "-q", "-n", "-d", filepath.Join(dir, "usr"), img)
	return filepath.Join(dir, "usr")
}

func TestISO(t *testing.T) {
	buildFixture(t)
	m := fixture.a
	out := run(t, "xorriso", "-indev", m.ISO, "-report_el_torito", "plain", "-report_system_area", "plain")
	for _, re := range []string{`El Torito boot img :\s+1\s+BIOS\s+y\s+none`, `El Torito boot img :\s+2\s+UEFI\s+y\s+none`,
		`El Torito img path :\s+1\s+/isolinux/isolinux.bin`, `System area summary: MBR isohybrid.*GPT`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("xorriso report lacks %q:\n%s", re, out)
		}
	}
	if pvd := run(t, "xorriso", "-indev", m.ISO, "-pvd_info"); !regexp.MustCompile(`Volume Id\s+:\s+CAULDRON\n`).MatchString(pvd) {
		t.Errorf("volume id is not CAULDRON:\n%s", pvd)
	}
	// The files on the ISO 9660 side.
	files := run(t, "xorriso", "-indev", m.ISO, "-find", "/", "-type", "f")
	for _, f := range []string{"/boot/vmlinuz", "/boot/initrd.img", "/boot/grub/grub.cfg", "/isolinux/isolinux.cfg",
		"/isolinux/ldlinux.c32", "/isolinux/menu.c32", "/.disk/cauldron"} {
		if !strings.Contains(files, "'"+f+"'") {
			t.Errorf("%s not on the ISO", f)
		}
	}
	isoCfg := extractISO(t, m.ISO, "/isolinux/isolinux.cfg")
	grubCfg := extractISO(t, m.ISO, "/boot/grub/grub.cfg")
	for _, cfg := range []string{isoCfg, grubCfg} {
		for _, want := range []string{cmdlineDefault, cmdlineDefault + " cauldron.shell", cmdlineVGA} {
			if !strings.Contains(cfg, want) {
				t.Errorf("boot menu lacks %q:\n%s", want, cfg)
			}
		}
	}
	if !strings.Contains(isoCfg, "TIMEOUT 20") || !strings.Contains(grubCfg, "set timeout=2") {
		t.Errorf("menus must boot the default entry after 2 s")
	}
	if got := sha256String(extractISO(t, m.ISO, "/boot/vmlinuz")); got != sha256File(t, m.Kernel) {
		t.Errorf("the ISO's kernel differs from %s", m.Kernel)
	}

	// isohybrid: isohdpfx.bin's boot code in the MBR, a valid GPT with the EFI system partition.
	iso, err := os.ReadFile(m.ISO)
	if err != nil {
		t.Fatal(err)
	}
	mbr, err := os.ReadFile(isohdpfx.path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(iso[:432], mbr[:432]) || iso[510] != 0x55 || iso[511] != 0xaa {
		t.Errorf("the ISO does not start with isohdpfx.bin's MBR boot code")
	}
	if v := run(t, "sgdisk", "-v", m.ISO); !strings.Contains(v, "No problems found") {
		t.Errorf("sgdisk -v: %s", v)
	}
	dump := run(t, "sfdisk", "-d", m.ISO)
	esp := regexp.MustCompile(`start=\s*(\d+), size=\s*(\d+), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B`).FindStringSubmatch(dump)
	if !strings.Contains(dump, "label: gpt") || esp == nil {
		t.Fatalf("sfdisk -d: no GPT with an EFI system partition:\n%s", dump)
	}
	start, _ := strconv.ParseInt(esp[1], 10, 64)

	// The EFI system partition: shim, signed GRUB, MokManager, the GRUB stub.
	img := m.ISO + "@@" + strconv.FormatInt(start*512, 10)
	dir := run(t, "mdir", "-/", "-b", "-i", img, "::/")
	for _, f := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/EFI/BOOT/grubx64.efi", "::/EFI/BOOT/mmx64.efi",
		"::/boot/grub/grub.cfg", "::/EFI/debian/grub.cfg"} {
		if !strings.Contains(dir, f) {
			t.Errorf("EFI image lacks %s:\n%s", f, dir)
		}
	}
	for name, host := range map[string]string{"::/EFI/BOOT/BOOTX64.EFI": shimEFI.path, "::/EFI/BOOT/grubx64.efi": grubCD.path} {
		if got := sha256String(run(t, "mtype", "-i", img, name)); got != sha256File(t, host) {
			t.Errorf("%s is not %s", name, host)
		}
	}
	if stub := run(t, "mtype", "-i", img, "::/boot/grub/grub.cfg"); !strings.Contains(stub, "--file "+isoMarker) {
		t.Errorf("GRUB stub does not look for %s: %s", isoMarker, stub)
	}
}

func TestPXE(t *testing.T) {
	buildFixture(t)
	m := fixture.a
	for _, f := range []string{"vmlinuz", "initrd.img", "boot.ipxe", "pxelinux.0", "ldlinux.c32", "menu.c32",
		"libutil.c32", "libcom32.c32", "pxelinux.cfg/default", "bootx64.efi", "grubx64.efi", "grub/grub.cfg", "README.txt"} {
		if fi, err := os.Stat(filepath.Join(m.PXEDir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("pxe/%s missing or empty", f)
		}
	}
	if sha256File(t, filepath.Join(m.PXEDir, "initrd.img")) != sha256File(t, m.Initramfs) {
		t.Errorf("pxe/initrd.img differs from the initramfs")
	}
	ipxe := readString(t, filepath.Join(m.PXEDir, "boot.ipxe"))
	if !strings.HasPrefix(ipxe, "#!ipxe\n") || !strings.Contains(ipxe, "\nkernel vmlinuz ") ||
		!strings.Contains(ipxe, "\ninitrd initrd.img\n") || strings.Contains(ipxe, "://") {
		t.Errorf("boot.ipxe must load vmlinuz and initrd.img by relative names:\n%s", ipxe)
	}
	if cfg := readString(t, filepath.Join(m.PXEDir, "pxelinux.cfg/default")); !strings.Contains(cfg, "KERNEL vmlinuz") {
		t.Errorf("pxelinux.cfg/default:\n%s", cfg)
	}
	if cfg := readString(t, filepath.Join(m.PXEDir, "grub/grub.cfg")); !strings.Contains(cfg, "linux vmlinuz "+cmdlineDefault) {
		t.Errorf("grub/grub.cfg:\n%s", cfg)
	}
	if r := readString(t, filepath.Join(m.PXEDir, "README.txt")); !strings.Contains(r, "dhcp-boot=") || !strings.Contains(r, "tftp-root=") {
		t.Errorf("README.txt lacks the dnsmasq lines")
	}
}

// TestBootSmoke boots the kernel and initramfs under TCG and waits for the stand-in uinit's
// report: u-root's init ran it with "boot", the tools ran, kmod loaded modules.
func TestBootSmoke(t *testing.T) {
	buildFixture(t)
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Fatal("qemu-system-x86_64 missing (Debian package qemu-system-x86)")
	}
	m := fixture.a
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "1",
		"-nographic", "-no-reboot", "-monitor", "none", "-kernel", m.Kernel, "-initrd", m.Initramfs,
		"-append", "console=ttyS0,115200n8 quiet")
	start := time.Now()
	out, _ := cmd.CombinedOutput()
	console := string(out)
	t.Logf("QEMU ran %s", time.Since(start).Round(time.Second))
	for _, want := range []string{"Welcome to u-root", `SMOKE uinit args=["boot"]`, "SMOKE DONE"} {
		if !strings.Contains(console, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if strings.Contains(console, "SMOKE FAIL") || t.Failed() {
		t.Errorf("console:\n%s", console)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	static := smokeBinary(t)
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"no out", Options{}, "no output directory"},
		{"unwritable out", Options{OutDir: "/proc/cauldron-media", Cauldron: static}, "output directory"},
		{"no cauldron", Options{OutDir: t.TempDir(), CacheDir: t.TempDir()}, "no cauldron binary"},
		{"dynamic cauldron", Options{OutDir: t.TempDir(), CacheDir: t.TempDir(), Cauldron: "/bin/ls"}, "dynamically linked"},
		{"missing cauldron", Options{OutDir: t.TempDir(), CacheDir: t.TempDir(), Cauldron: "/nonexistent"}, "cauldron binary"},
		{"bad compression", Options{OutDir: t.TempDir(), CacheDir: t.TempDir(), Cauldron: static, Compression: "lz5"}, "compression"},
		{"offline and prefetch", Options{CacheDir: t.TempDir(), Offline: true, Prefetch: true}, "exclude each other"},
	}
	for _, c := range cases {
		_, err := Build(ctx, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want an error about %q", c.name, err, c.want)
		}
	}
	// A refused binary is refused before the output folder is made.
	for _, bin := range []string{"", "/bin/ls"} {
		out := filepath.Join(t.TempDir(), "media")
		if _, err := Build(ctx, Options{OutDir: out, CacheDir: t.TempDir(), Cauldron: bin}); err == nil {
			t.Errorf("cauldron binary %q: accepted", bin)
		}
		if _, err := os.Stat(out); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("cauldron binary %q refused, but %s was made (%v)", bin, out, err)
		}
	}
}

func TestAptFailure(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Fatal("apt-cache missing: Build needs apt")
	}
	_, err := Build(context.Background(), Options{OutDir: t.TempDir(), CacheDir: t.TempDir(), Cauldron: smokeBinary(t),
		KernelPackage: "linux-image-cauldron-does-not-exist"})
	if err == nil || !strings.Contains(err.Error(), "linux-image-cauldron-does-not-exist") || !strings.Contains(err.Error(), "apt") {
		t.Errorf("got %v, want an error naming the package and apt", err)
	}
}

// TestOfflineEmptyCache: an offline build with nothing cached fails at once, naming the package
// and how to fill the cache, and downloads nothing; so do cauldron-media's non-free-firmware lists.
func TestOfflineEmptyCache(t *testing.T) {
	testenv.NeedTools(t, "apt-cache", "apt-get", "apt-config")
	cache := t.TempDir()
	var log bytes.Buffer
	_, err := Build(context.Background(), Options{OutDir: t.TempDir(), CacheDir: cache, Cauldron: smokeBinary(t),
		Offline: true, Log: &log})
	if err == nil || !strings.Contains(err.Error(), "linux-image-") || !strings.Contains(err.Error(), "not in the cache") ||
		!strings.Contains(err.Error(), "make prefetch") {
		t.Errorf("got %v, want an error naming the kernel package, the cache and make prefetch", err)
	}
	if debs, _ := filepath.Glob(filepath.Join(cache, "debs", "*")); len(debs) > 0 || strings.Contains(log.String(), "downloading") {
		t.Errorf("an offline build downloaded: %v\n%s", debs, log.String())
	}

	b := &builder{ctx: context.Background(), o: Options{Offline: true}, cache: cache, log: &log}
	src := filepath.Join(t.TempDir(), "sources.list")
	// Were it fetched, this closed loopback port would fail differently (and nothing leaves the machine).
	os.WriteFile(src, []byte("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://127.0.0.1:9/debian "+hostCodename()+" main\n"), 0o644)
	log.Reset()
	if _, err := b.openFirmwareApt([]string{src}); err == nil || !strings.Contains(err.Error(), "no non-free-firmware lists") {
		t.Errorf("offline without lists: got %v, want an error saying there are none", err)
	}
	if strings.Contains(log.String(), "refreshing") {
		t.Errorf("an offline build refreshed the lists:\n%s", log.String())
	}
}

func TestURootVersionMatchesGoMod(t *testing.T) {
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`github.com/u-root/u-root ` + regexp.QuoteMeta(URootVersion) + `\b`).Match(gomod) {
		t.Errorf("go.mod does not pin u-root %s (URootVersion)", URootVersion)
	}
	for _, v := range builderVersions {
		if !regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(v) + `\b`).Match(gomod) {
			t.Errorf("go.mod does not pin %s (builderVersions)", v)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return stdout.String()
}

func extractISO(t *testing.T, iso, p string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), path.Base(p))
	run(t, "xorriso", "-osirrox", "on", "-indev", iso, "-extract", p, dst)
	return readString(t, dst)
}

func readString(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	return sha256String(readString(t, p))
}

func sha256String(s string) string {
	h := sha256.Sum256([]byte(s))
	return string(h[:])
}
