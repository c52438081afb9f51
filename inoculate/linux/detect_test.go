package linux

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestResolveStaysInRoot(t *testing.T) {
	root := t.TempDir()
	writeTree(t, root, map[string]string{
		"/etc/fstab.real": "inside",
		"/etc/fstab":      "->/etc/fstab.real", // absolute: must start again at root, not at the host's /
		"/etc/up":         "->../../../../etc/hostname",
		"/etc/loop":       "->/etc/loop",
		"/lib":            "->usr/lib",
		"/usr/lib/x/":     "",
	})
	got, err := resolve(root, "/etc/fstab")
	if err != nil || got != filepath.Join(root, "etc/fstab.real") {
		t.Fatalf("resolve /etc/fstab = %q, %v", got, err)
	}
	// ".." climbs no higher than root.
	if got, err := resolve(root, "/etc/up"); err != nil || got != filepath.Join(root, "etc/hostname") {
		t.Fatalf("resolve /etc/up = %q, %v", got, err)
	}
	if _, err := resolve(root, "/etc/loop"); !errors.Is(err, errLoop) {
		t.Fatalf("a symlink cycle: %v", err)
	}
	if got, err := resolve(root, "/lib/x/new.conf"); err != nil || got != filepath.Join(root, "usr/lib/x/new.conf") {
		t.Fatalf("resolve through a relative link = %q, %v", got, err)
	}
}

func TestDetectDebian(t *testing.T) {
	root := debianTree(t)
	s, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "debian" || s.VersionID != "12" || s.PrettyName != "Debian GNU/Linux 12 (bookworm)" {
		t.Errorf("os-release: %q %q %q", s.ID, s.VersionID, s.PrettyName)
	}
	if len(s.Kernels) != 1 {
		t.Fatalf("kernels: %+v", s.Kernels)
	}
	k := s.Kernels[0]
	if k.Version != "6.1.0-28-amd64" || k.Image != "/boot/vmlinuz-6.1.0-28-amd64" || k.Initramfs != "/boot/initrd.img-6.1.0-28-amd64" || !k.InitramfsExists || k.Modules != "/lib/modules/6.1.0-28-amd64" {
		t.Errorf("kernel: %+v", k)
	}
	if s.InitramfsTool != InitramfsTools || s.InitramfsCommand != "/usr/sbin/update-initramfs" {
		t.Errorf("initramfs tool %q %q", s.InitramfsTool, s.InitramfsCommand)
	}
	if !s.has("grub-bios") || s.GrubDir != "/boot/grub" || s.GrubInstall != "/usr/sbin/grub-install" || !contains(s.GrubPlatforms, "i386-pc") {
		t.Errorf("bootloader: %+v dir %q install %q platforms %v", s.Bootloaders, s.GrubDir, s.GrubInstall, s.GrubPlatforms)
	}
	if len(s.Fstab) != 4 || s.Fstab[0].Spec != "UUID="+rootUUID || s.Fstab[0].File != "/" || s.Fstab[0].Line != 3 || s.Fstab[1].Type != "swap" {
		t.Errorf("fstab: %+v", s.Fstab)
	}
	if len(s.Crypttab) != 1 || s.Crypttab[0].Name != "vault" || s.Crypttab[0].Device != "PARTUUID="+lukPART || s.Crypttab[0].Options != "luks,discard" {
		t.Errorf("crypttab: %+v", s.Crypttab)
	}
	if len(s.NeedMounts) != 0 {
		t.Errorf("nothing separate to mount, got %+v", s.NeedMounts)
	}
	roots := map[string]string{}
	for _, c := range s.Cmdlines {
		roots[c.Source] = c.Root
	}
	if roots["/boot/grub/grub.cfg"] != "UUID="+rootUUID {
		t.Errorf("grub.cfg root= %q (cmdlines %+v)", roots["/boot/grub/grub.cfg"], s.Cmdlines)
	}
	if c := s.Cmdlines[len(s.Cmdlines)-1]; c.Source != "/etc/default/grub GRUB_CMDLINE_LINUX" || c.Args != "console=ttyS0,115200n8" {
		t.Errorf("default grub: %+v", c)
	}
}

// A Fedora-like system: dracut, GRUB 2 in /boot/grub2 with BLS entries, a separate /boot and an
// ESP with shim, and Fedora's rescue kernel whose file name is no release.
func TestDetectFedora(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"/etc/os-release": "NAME=\"Fedora Linux\"\nVERSION_ID=40\nID=fedora\nPRETTY_NAME=\"Fedora Linux 40 (Server Edition)\"\n",
		"/etc/fstab": "UUID=" + rootUUID + " / xfs defaults 0 0\nUUID=" + bootUUID + " /boot xfs defaults 0 0\nUUID=" + espUUID +
			" /boot/efi vfat umask=0077,shortname=winnt 0 2\n",
		"/usr/bin/dracut":                                     "#!/bin/sh\n",
		"/usr/bin/lsinitrd":                                   "#!/bin/sh\n",
		"/boot/grub2/grub.cfg":                                "blscfg\n",
		"/boot/efi/EFI/fedora/shimx64.efi":                    "shim",
		"/boot/efi/EFI/fedora/grubx64.efi":                    "grub",
		"/boot/efi/EFI/fedora/grub.cfg":                       "search --no-floppy --fs-uuid --set=dev " + bootUUID + "\nset prefix=($dev)/grub2\nconfigfile $prefix/grub.cfg\n",
		"/boot/efi/EFI/BOOT/BOOTX64.EFI":                      "shim",
		"/boot/loader/entries/abc-6.8.5-301.fc40.x86_64.conf": "title Fedora Linux\nlinux /vmlinuz-6.8.5-301.fc40.x86_64\noptions root=UUID=" + rootUUID + " ro rhgb quiet\n",
		"/boot/initramfs-6.8.5-301.fc40.x86_64.img":           "initramfs",
	}
	for k, v := range kernelFiles("6.8.5-301.fc40.x86_64", "6.8.5-301.fc40.x86_64", debianModules, nil) {
		files[k] = v
	}
	files["/boot/vmlinuz-0-rescue-0123456789abcdef"] = bzImage("6.8.5-301.fc40.x86_64")
	writeTree(t, root, files)
	s, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	if s.InitramfsTool != Dracut || s.GrubDir != "/boot/grub2" || s.ESP != "/boot/efi" {
		t.Errorf("tool %q grub %q esp %q", s.InitramfsTool, s.GrubDir, s.ESP)
	}
	if len(s.Kernels) != 2 {
		t.Fatalf("kernels: %+v", s.Kernels)
	}
	rescue, normal := s.Kernels[0], s.Kernels[1]
	if rescue.Version != "6.8.5-301.fc40.x86_64" || rescue.Initramfs != "/boot/initramfs-0-rescue-0123456789abcdef.img" || rescue.InitramfsExists {
		// The rescue kernel's initramfs does not exist here: it is named after the kernel
		// file, not after the release (that is the other kernel's).
		t.Errorf("rescue kernel: %+v", rescue)
	}
	if normal.Initramfs != "/boot/initramfs-6.8.5-301.fc40.x86_64.img" || !normal.InitramfsExists {
		t.Errorf("kernel: %+v", normal)
	}
	if !s.has("shim") || !s.has("grub-efi") || !s.has("efi-fallback") {
		t.Errorf("bootloaders: %+v", s.Bootloaders)
	}
	var need []string
	for _, m := range s.NeedMounts {
		need = append(need, m.File)
	}
	if strings.Join(need, ",") != "/boot,/boot/efi" {
		t.Errorf("need mounts %v", need)
	}
	found := false
	for _, c := range s.Cmdlines {
		if strings.HasPrefix(c.Source, "/boot/loader/entries/") && c.Root == "UUID="+rootUUID {
			found = true
		}
	}
	if !found {
		t.Errorf("BLS entry's root= not found: %+v", s.Cmdlines)
	}
	if got := s.grubCfgs(); strings.Join(got, ",") != "/boot/grub2/grub.cfg,/boot/efi/EFI/fedora/grub.cfg" {
		t.Errorf("grub configs %v", got)
	}
}

// An Arch-like system: mkinitcpio, vmlinuz-linux, /lib → usr/lib.
func TestDetectArch(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"/usr/lib/os-release":       "NAME=\"Arch Linux\"\nID=arch\nPRETTY_NAME=\"Arch Linux\"\n",
		"/lib":                      "->usr/lib",
		"/usr/bin/mkinitcpio":       "#!/bin/sh\n",
		"/etc/mkinitcpio.conf":      "MODULES=()\nHOOKS=(base udev autodetect modconf block filesystems fsck)\n",
		"/boot/initramfs-linux.img": "x",
	}
	for k, v := range kernelFiles("6.9.1-arch1-1", "linux", debianModules, nil) {
		files[k] = v
	}
	writeTree(t, root, files)
	s, err := Detect(root)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "arch" || s.InitramfsTool != Mkinitcpio {
		t.Errorf("id %q tool %q", s.ID, s.InitramfsTool)
	}
	if len(s.Kernels) != 1 || s.Kernels[0].Version != "6.9.1-arch1-1" || s.Kernels[0].Initramfs != "/boot/initramfs-linux.img" {
		t.Errorf("kernels %+v", s.Kernels)
	}
}

func TestDetectBadInput(t *testing.T) {
	empty := t.TempDir()
	if _, err := Detect(empty); !errors.Is(err, ErrNoLinux) || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty folder: %v", err)
	}
	if _, err := Detect(filepath.Join(empty, "nope")); !errors.Is(err, ErrNoLinux) {
		t.Errorf("missing folder: %v", err)
	}

	root := debianTree(t)
	if err := os.RemoveAll(filepath.Join(root, "usr/lib/modules/6.1.0-28-amd64")); err != nil {
		t.Fatal(err)
	}
	_, err := Detect(root)
	if !errors.Is(err, ErrKernelWithoutModules) || !strings.Contains(err.Error(), "/boot/vmlinuz-6.1.0-28-amd64") {
		t.Errorf("kernel without modules: %v", err)
	}
}

func TestShellUnquote(t *testing.T) {
	for in, want := range map[string]string{
		`"quiet splash"`:           "quiet splash",
		`'a "b" c'`:                `a "b" c`,
		`"a \"b\" \$c"`:            `a "b" $c`,
		`plain`:                    "plain",
		`"x" # comment`:            "x # comment",
		`"root=UUID=1 ro"  `:       "root=UUID=1 ro",
		`"a"'b'c`:                  "abc",
		`"console=ttyS0,115200n8"`: "console=ttyS0,115200n8",
	} {
		if got := shellUnquote(in); got != want {
			t.Errorf("shellUnquote(%s) = %q, want %q", in, got, want)
		}
	}
}
