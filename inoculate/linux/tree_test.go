package linux

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Synthetic systems for the unit tests: just the files Detect and Inoculate read, written by the
// tests themselves.

// writeTree writes files (path inside the tree → content) under root. A content starting with
// "->" makes a symlink to the rest.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		h := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(h), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(c, "->"); ok {
			if err := os.Symlink(target, h); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(h, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		mode := os.FileMode(0o644)
		if strings.Contains(p, "/sbin/") || strings.Contains(p, "/bin/") {
			mode = 0o755
		}
		if err := os.WriteFile(h, []byte(c), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// bzImage returns the start of an x86 bzImage whose setup header names release.
func bzImage(release string) string {
	b := make([]byte, 0x400)
	copy(b[0x202:], "HdrS")
	binary.LittleEndian.PutUint16(b[0x206:], 0x020f)
	const strAt = 0x300 // the string's file offset; the header stores it minus 0x200
	binary.LittleEndian.PutUint16(b[0x20E:], strAt-0x200)
	copy(b[strAt:], release+" (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC\x00")
	return string(b)
}

// kernelFiles are a kernel's image and module folder with the given loadable modules (by path
// under kernel/) and built-in ones.
func kernelFiles(release, imageName string, modules, builtin []string) map[string]string {
	f := map[string]string{"/boot/vmlinuz-" + imageName: bzImage(release)}
	var dep, bi []string
	for _, m := range modules {
		dep = append(dep, "kernel/"+m+":")
		f["/usr/lib/modules/"+release+"/kernel/"+m] = "module"
	}
	for _, m := range builtin {
		bi = append(bi, "kernel/"+m)
	}
	f["/usr/lib/modules/"+release+"/modules.dep"] = strings.Join(dep, "\n") + "\n"
	f["/usr/lib/modules/"+release+"/modules.builtin"] = strings.Join(bi, "\n") + "\n"
	return f
}

var debianModules = []string{
	"drivers/nvme/host/nvme.ko", "drivers/nvme/host/nvme-core.ko", "drivers/block/virtio_blk.ko",
	"drivers/ata/ahci.ko", "drivers/ata/libahci.ko", "fs/ext4/ext4.ko",
}

const (
	rootUUID = "0b7c3c1e-5a86-4c1d-9d55-3b7f6b8d2e11"
	bootUUID = "6f1d2a00-1111-4a4a-8b8b-222233334444"
	swapUUID = "aa11bb22-cc33-4d44-8e55-ff6677889900"
	espUUID  = "ABCD-1234"
	lukPART  = "5d4c3b2a-0000-4111-8222-333344445555"
)

// debianTree is a Debian 12 as debootstrap and the installer leave it: merged /usr,
// initramfs-tools with MODULES=dep, GRUB for BIOS.
func debianTree(t *testing.T) string {
	root := t.TempDir()
	files := map[string]string{
		"/bin":  "->usr/bin",
		"/sbin": "->usr/sbin",
		"/lib":  "->usr/lib",
		"/etc/os-release": `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
ID=debian
`,
		"/etc/fstab": `# /etc/fstab: static file system information.
# / was on /dev/vda1 during installation
UUID=` + rootUUID + ` /               ext4    errors=remount-ro 0       1
/dev/vda2       none            swap    sw              0       0
PARTUUID=1234abcd-03 /srv ext4 defaults,nofail 0 2
/dev/vda10 /data ext4 defaults,nofail 0 2
`,
		"/etc/crypttab": "# <target name> <source device> <key file> <options>\nvault PARTUUID=" + lukPART + " none luks,discard\n",
		"/etc/default/grub": `GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=` + "`lsb_release -i -s 2> /dev/null || echo Debian`" + `
GRUB_CMDLINE_LINUX_DEFAULT="quiet resume=UUID=` + swapUUID + `"
GRUB_CMDLINE_LINUX="console=ttyS0,115200n8"
`,
		"/boot/grub/grub.cfg": `### BEGIN /etc/grub.d/10_linux ###
menuentry 'Debian GNU/Linux' --class debian --class gnu-linux {
	insmod part_msdos
	insmod ext2
	set root='hd0,msdos1'
	if [ x$feature_platform_search_hint = xy ]; then
	  search --no-floppy --fs-uuid --set=root --hint-bios=hd0,msdos1 ` + rootUUID + `
	else
	  search --no-floppy --fs-uuid --set=root ` + rootUUID + `
	fi
	linux	/boot/vmlinuz-6.1.0-28-amd64 root=UUID=` + rootUUID + ` ro console=ttyS0,115200n8 quiet resume=UUID=` + swapUUID + `
	initrd	/boot/initrd.img-6.1.0-28-amd64
}
`,
		"/boot/grub/i386-pc/core.img":         "core",
		"/usr/lib/grub/i386-pc/modinfo.sh":    "#",
		"/usr/sbin/grub-install":              "#!/bin/sh\n",
		"/usr/sbin/update-initramfs":          "#!/bin/sh\n",
		"/usr/sbin/lsinitramfs":               "#!/bin/sh\n",
		"/etc/initramfs-tools/initramfs.conf": "#\n# initramfs.conf\n#\nMODULES=dep\nBUSYBOX=auto\nCOMPRESS=zstd\n",
		"/etc/initramfs-tools/modules":        "# List of modules that you want to include in your initramfs.\n# Syntax:  module_name [args ...]\nloop\n",
		"/etc/initramfs-tools/conf.d/resume":  "RESUME=UUID=" + swapUUID + "\n",
		"/boot/initrd.img-6.1.0-28-amd64":     "old initramfs",
		"/var/cache/debconf/config.dat": "Name: grub-pc/hidden_timeout\nTemplate: grub-pc/hidden_timeout\nValue: false\nOwners: grub-pc\n\n" +
			"Name: grub-pc/install_devices\nTemplate: grub-pc/install_devices\nValue: /dev/disk/by-id/virtio-SRC-1\nOwners: grub-pc\nFlags: seen\n\n",
		"/usr/lib/modules/6.1.0-28-amd64/modules.order": "",
	}
	for k, v := range kernelFiles("6.1.0-28-amd64", "6.1.0-28-amd64", debianModules, []string{"drivers/scsi/sd_mod.ko"}) {
		files[k] = v
	}
	writeTree(t, root, files)
	return root
}

// fakeTools stands in for the system's initramfs tools, lister and grub-install when the unit
// tests have no real system to chroot into. It behaves like the real ones as far as Inoculate can
// see: update-initramfs, dracut and mkinitcpio write an initramfs listing the modules the
// system's configuration names (so a driver missing from the configuration is missing from the
// "initramfs"), the listers print it, grub-install writes the EFI loader files.
type fakeTools struct {
	ran      [][]string
	prepared int
	undone   int
	fail     string // a program name that fails, with output
}

func (f *fakeTools) Prepare(root string) (func() error, error) {
	f.prepared++
	return func() error { f.undone++; return nil }, nil
}

func (f *fakeTools) Run(ctx context.Context, root string, argv []string) ([]byte, error) {
	f.ran = append(f.ran, argv)
	prog := path.Base(argv[0])
	if prog == f.fail {
		return []byte("E: something went wrong in " + prog + "\n"), fmt.Errorf("exit status 1")
	}
	s, err := Detect(root)
	if err != nil {
		return nil, err
	}
	write := func(img, release string, mods []string) error {
		var lines []string
		for _, m := range mods {
			lines = append(lines, "usr/lib/modules/"+release+"/kernel/drivers/x/"+m+".ko")
		}
		h, err := resolve(root, img)
		if err != nil {
			return err
		}
		return os.WriteFile(h, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	}
	switch prog {
	case "update-initramfs":
		b, _, _ := readSys(root, "/etc/initramfs-tools/modules")
		var mods []string
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
				mods = append(mods, f[0])
			}
		}
		return nil, write("/boot/initrd.img-"+argv[3], argv[3], mods)
	case "dracut":
		b, _, _ := readSys(root, "/etc/dracut.conf.d/cauldron.conf")
		var mods []string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "add_drivers+="); ok {
				mods = append(mods, strings.Fields(strings.Trim(v, `"`))...)
			}
		}
		return nil, write(argv[4], argv[3], mods)
	case "mkinitcpio":
		b, _, _ := readSys(root, "/etc/mkinitcpio.conf")
		var mods []string
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MODULES=("); ok {
				mods = strings.Fields(strings.TrimSuffix(v, ")"))
			}
		}
		for _, k := range s.Kernels {
			if err := write(k.Initramfs, k.Version, mods); err != nil {
				return nil, err
			}
		}
		return nil, nil
	case "lsinitramfs", "lsinitrd", "lsinitcpio":
		b, _, err := readSys(root, argv[1])
		return b, err
	case "grub-install", "grub2-install":
		for _, a := range argv {
			if dir, ok := strings.CutPrefix(a, "--efi-directory="); ok {
				sub := "EFI/" + s.ID + "/grubx64.efi"
				for _, b := range argv {
					if b == "--removable" {
						sub = "EFI/BOOT/BOOTX64.EFI"
					}
				}
				h, _ := resolve(root, dir)
				if err := os.MkdirAll(filepath.Join(h, path.Dir(sub)), 0o755); err != nil {
					return nil, err
				}
				return nil, os.WriteFile(filepath.Join(h, sub), []byte("loader"), 0o644)
			}
		}
		return []byte("Installation finished. No error reported.\n"), nil
	}
	return nil, fmt.Errorf("fakeTools: unknown program %s", argv[0])
}

// snapshot returns every file under root with its content (symlinks as "->target").
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			out[rel] = "->" + l
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if v != w {
			d = append(d, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "added "+k)
		}
	}
	sort.Strings(d)
	return d
}
