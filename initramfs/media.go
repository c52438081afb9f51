package initramfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kernel command lines of the boot menus. The last console= is /dev/console, where the boot
// program writes: the serial port by default (QEMU tests and headless servers), the screen with
// the "VGA console" entry. Both show the kernel's messages.
//
// cryptomgr.notests skips the kernel's crypto self-tests, which check each algorithm
// implementation against known answers as it registers (at boot, and again as modules load).
// They take milliseconds on hardware, but 0.2–0.3 s of boot under emulation (QEMU TCG), where a
// recovery into a new VM may well run. Every implementation is the Debian kernel's, the same on
// every machine; the "verbose" entry keeps the tests for anyone who wants them run.
const (
	cmdlineDefault = "console=tty0 console=ttyS0,115200n8 quiet cryptomgr.notests"
	cmdlineVGA     = "console=ttyS0,115200n8 console=tty0 quiet cryptomgr.notests"
	// MenuTimeout is how long the boot menus wait before booting the default entry, in seconds.
	MenuTimeout = 2
	// VolumeID is the ISO's volume label.
	VolumeID = "CAULDRON"
	// efiVolumeID is the serial number of the EFI system partition image (fixed: reproducible).
	efiVolumeID = "CA01D20E"
)

type menuEntry struct {
	label, title, cmdline string
}

var menuEntries = []menuEntry{
	{"cauldron", "Cauldron recovery", cmdlineDefault},
	{"shell", "Cauldron recovery: shell", cmdlineDefault + " cauldron.shell"},
	{"vga", "Cauldron recovery: VGA console primary", cmdlineVGA},
	{"verbose", "Cauldron recovery: verbose kernel messages", "console=tty0 console=ttyS0,115200n8"},
}

// Boot loader files from the host's Debian packages.
type hostFile struct{ path, pkg string }

var (
	isolinuxBin = hostFile{"/usr/lib/ISOLINUX/isolinux.bin", "isolinux"}
	isohdpfx    = hostFile{"/usr/lib/ISOLINUX/isohdpfx.bin", "isolinux"}
	pxelinux0   = hostFile{"/usr/lib/PXELINUX/pxelinux.0", "pxelinux"}
	syslinuxC32 = []string{"ldlinux.c32", "libcom32.c32", "libutil.c32", "menu.c32"}
	shimEFI     = hostFile{"/usr/lib/shim/shimx64.efi.signed", "shim-signed"}
	mmEFI       = hostFile{"/usr/lib/shim/mmx64.efi.signed", "shim-helpers-amd64-signed (with shim-signed)"}
	grubCD      = hostFile{"/usr/lib/grub/x86_64-efi-signed/gcdx64.efi.signed", "grub-efi-amd64-signed"}
	grubNet     = hostFile{"/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed", "grub-efi-amd64-signed"}
)

const syslinuxModules = "/usr/lib/syslinux/modules/bios"

func (f hostFile) check() error {
	if _, err := os.Stat(f.path); err != nil {
		return fmt.Errorf("%s is missing: install the Debian package %s", f.path, f.pkg)
	}
	return nil
}

// syslinuxConfig is the ISOLINUX/PXELINUX menu; kernel and initrd are paths as the loader sees them.
func syslinuxConfig(kernel, initrd string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "SERIAL 0 115200\nUI menu.c32\nDEFAULT %s\nPROMPT 0\nTIMEOUT %d\n", menuEntries[0].label, MenuTimeout*10)
	b.WriteString("MENU TITLE Cauldron recovery\n")
	for _, e := range menuEntries {
		fmt.Fprintf(&b, "\nLABEL %s\n  MENU LABEL %s\n  KERNEL %s\n  INITRD %s\n  APPEND %s\n", e.label, e.title, kernel, initrd, e.cmdline)
	}
	return b.String()
}

// grubConfig is the GRUB menu; kernel and initrd are paths on GRUB's $root.
func grubConfig(kernel, initrd string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "set default=0\nset timeout=%d\n", MenuTimeout)
	b.WriteString("serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n")
	for _, e := range menuEntries {
		fmt.Fprintf(&b, "\nmenuentry %q --id %s {\n\tlinux %s %s\n\tinitrd %s\n}\n", e.title, e.label, kernel, e.cmdline, initrd)
	}
	return b.String()
}

// isoMarker is a file only Cauldron's ISO has: GRUB, started from the EFI image, finds the ISO's
// file system by it.
const isoMarker = "/.disk/cauldron"

// grubStub is the config GRUB reads from the EFI image: Debian's signed GRUB looks for
// $prefix/grub.cfg, with $prefix /boot/grub (gcdx64, the CD build we use) or /EFI/debian
// (grubx64), on the device it was started from.
var grubStub = fmt.Sprintf(`search --no-floppy --set=root --file %s
set prefix=($root)/boot/grub
configfile $prefix/grub.cfg
`, isoMarker)

// writeISO builds OUTDIR/cauldron.iso: ISOLINUX for BIOS, shim → GRUB (Debian-signed, so Secure
// Boot works) for UEFI from an EFI system partition image appended to the ISO, isohybrid MBR and
// GPT so the same file boots written raw to a USB stick.
func (b *builder) writeISO(m *Media) (string, error) {
	for _, f := range []hostFile{isolinuxBin, isohdpfx, shimEFI, mmEFI, grubCD} {
		if err := f.check(); err != nil {
			return "", err
		}
	}
	stage := filepath.Join(b.work, "iso")
	w := func(rel, content string) error {
		return writeFile(filepath.Join(stage, rel), []byte(content), 0o644, b.epoch)
	}
	c := func(rel, src string) error { return copyFile(src, filepath.Join(stage, rel), 0o644, b.epoch) }
	steps := []error{
		c("boot/vmlinuz", m.Kernel),
		c("boot/initrd.img", m.Initramfs),
		w("boot/grub/grub.cfg", grubConfig("/boot/vmlinuz", "/boot/initrd.img")),
		w(".disk/info", "Cauldron recovery "+m.KernelVersion+"\n"),
		w(strings.TrimPrefix(isoMarker, "/"), "Cauldron recovery boot media\n"),
		c("isolinux/isolinux.bin", isolinuxBin.path),
		w("isolinux/isolinux.cfg", syslinuxConfig("/boot/vmlinuz", "/boot/initrd.img")),
	}
	for _, mod := range syslinuxC32 {
		steps = append(steps, c("isolinux/"+mod, filepath.Join(syslinuxModules, mod)))
	}
	for _, err := range steps {
		if err != nil {
			return "", fmt.Errorf("staging the ISO: %w", err)
		}
	}

	efiImg := filepath.Join(b.work, "efi.img")
	if err := b.makeEFIImage(efiImg); err != nil {
		return "", err
	}
	if err := setTreeTimes(stage, b.epoch); err != nil {
		return "", err
	}

	iso := filepath.Join(b.out, "cauldron.iso")
	tmp := iso + ".tmp"
	os.Remove(tmp)
	args := []string{"-as", "mkisofs",
		"-iso-level", "3", "-full-iso9660-filenames", "-joliet", "-joliet-long", "-rational-rock",
		"-volid", VolumeID, "-appid", "Cauldron recovery", "-publisher", "Cauldron", "-preparer", "cauldron-media",
		// BIOS: isohybrid MBR boot code (USB) and El Torito ISOLINUX (CD).
		"-isohybrid-mbr", isohdpfx.path, "--mbr-force-bootable", "-partition_offset", "16",
		"-eltorito-boot", "isolinux/isolinux.bin", "-eltorito-catalog", "isolinux/boot.cat",
		"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		// UEFI: the EFI image as GPT partition 2 (USB) and as the El Torito EFI entry (CD).
		"-append_partition", "2", "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", efiImg, "-appended_part_as_gpt",
		"-eltorito-alt-boot", "-e", "--interval:appended_partition_2:all::", "-no-emul-boot",
		"-output", tmp, stage,
	}
	env := []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(b.epoch, 10)}
	if _, err := b.command("", env, "xorriso", args...); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("building the ISO: %w", err)
	}
	if err := setTime(tmp, b.epoch); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, iso); err != nil {
		return "", err
	}
	return iso, nil
}

// makeEFIImage builds the FAT EFI system partition image: shim as the removable-media loader
// (EFI/BOOT/BOOTX64.EFI), Debian's signed CD GRUB next to it as grubx64.efi (shim starts that
// name), MokManager, and the GRUB stub config where signed GRUB looks for it.
func (b *builder) makeEFIImage(img string) error {
	src := filepath.Join(b.work, "efi")
	steps := []error{
		copyFile(shimEFI.path, filepath.Join(src, "EFI/BOOT/BOOTX64.EFI"), 0o644, b.epoch),
		copyFile(grubCD.path, filepath.Join(src, "EFI/BOOT/grubx64.efi"), 0o644, b.epoch),
		copyFile(mmEFI.path, filepath.Join(src, "EFI/BOOT/mmx64.efi"), 0o644, b.epoch),
		writeFile(filepath.Join(src, "boot/grub/grub.cfg"), []byte(grubStub), 0o644, b.epoch),
		writeFile(filepath.Join(src, "EFI/debian/grub.cfg"), []byte(grubStub), 0o644, b.epoch),
	}
	for _, err := range steps {
		if err != nil {
			return fmt.Errorf("staging the EFI image: %w", err)
		}
	}
	if err := setTreeTimes(src, b.epoch); err != nil {
		return err
	}
	var total int64
	_ = filepath.Walk(src, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return nil
	})
	kib := (total/1024 + 1024 + 1023) / 1024 * 1024 // contents + 1 MiB, in whole MiB
	os.Remove(img)
	if _, err := b.command("", nil, "mkfs.vfat", "--invariant", "-i", efiVolumeID, "-n", "CAULDRONEFI",
		"-C", img, strconv.FormatInt(kib, 10)); err != nil {
		return fmt.Errorf("making the EFI image: %w", err)
	}
	env := []string{"SOURCE_DATE_EPOCH=" + strconv.FormatInt(b.epoch, 10), "MTOOLS_SKIP_CHECK=1"}
	if _, err := b.command("", env, "mcopy", "-s", "-m", "-i", img,
		filepath.Join(src, "EFI"), filepath.Join(src, "boot"), "::/"); err != nil {
		return fmt.Errorf("filling the EFI image: %w", err)
	}
	return setTime(img, b.epoch)
}

// writePXE fills OUTDIR/pxe: kernel, initramfs, an iPXE script, PXELINUX for BIOS and shim +
// Debian's signed network GRUB for UEFI, all with relative paths, so the folder can be served as
// the TFTP root (or over HTTP) as it is.
func (b *builder) writePXE(m *Media) (string, error) {
	for _, f := range []hostFile{pxelinux0, shimEFI, mmEFI, grubNet} {
		if err := f.check(); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(b.out, "pxe")
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	w := func(rel, content string) error {
		return writeFile(filepath.Join(dir, rel), []byte(content), 0o644, b.epoch)
	}
	c := func(rel, src string) error { return copyFile(src, filepath.Join(dir, rel), 0o644, b.epoch) }
	steps := []error{
		c("vmlinuz", m.Kernel),
		c("initrd.img", m.Initramfs),
		w("boot.ipxe", ipxeScript()),
		c("pxelinux.0", pxelinux0.path),
		w("pxelinux.cfg/default", syslinuxConfig("vmlinuz", "initrd.img")),
		c("bootx64.efi", shimEFI.path),
		c("grubx64.efi", grubNet.path),
		c("mmx64.efi", mmEFI.path),
		w("grub/grub.cfg", grubConfig("vmlinuz", "initrd.img")),
		w("README.txt", pxeReadme),
	}
	for _, mod := range syslinuxC32 {
		steps = append(steps, c(mod, filepath.Join(syslinuxModules, mod)))
	}
	for _, err := range steps {
		if err != nil {
			return "", fmt.Errorf("writing %s: %w", dir, err)
		}
	}
	return dir, setTreeTimes(dir, b.epoch)
}

// ipxeScript boots the default entry; iPXE resolves the names against the script's own URL, so
// it works over TFTP and HTTP alike. initrd= lets the kernel's EFI stub find the initramfs when
// iPXE runs as a UEFI program.
func ipxeScript() string {
	var b strings.Builder
	b.WriteString("#!ipxe\n# Cauldron recovery. Add options (cauldron.ks=URL, ip=..., cauldron.shell) to the kernel line.\n")
	fmt.Fprintf(&b, "kernel vmlinuz initrd=initrd.img %s\ninitrd initrd.img\nboot\n", cmdlineDefault)
	return b.String()
}

const pxeReadme = `Cauldron recovery: network boot
================================

Serve this folder as it is, as the TFTP root (and/or over HTTP):

  boot.ipxe             iPXE script (relative names: works over TFTP and HTTP)
  pxelinux.0            BIOS PXE (PXELINUX), menu in pxelinux.cfg/default
  bootx64.efi           UEFI PXE, Secure Boot included: Debian's signed shim, which starts
  grubx64.efi           Debian's signed network GRUB; it reads grub/grub.cfg from the TFTP root
  vmlinuz, initrd.img   the kernel (Debian-signed) and the initramfs

dnsmasq (DHCP proxy next to an existing DHCP server on 192.168.1.0/24, TFTP from this folder):

  port=0
  dhcp-range=192.168.1.0,proxy
  enable-tftp
  tftp-root=/srv/cauldron/pxe
  dhcp-match=set:efi64,option:client-arch,7
  dhcp-match=set:efi64,option:client-arch,9
  dhcp-userclass=set:ipxe,iPXE
  pxe-service=tag:!ipxe,x86PC,"Cauldron recovery (BIOS)",pxelinux
  pxe-service=tag:!ipxe,X86-64_EFI,"Cauldron recovery (UEFI)",bootx64.efi
  pxe-service=tag:ipxe,x86PC,"Cauldron recovery (iPXE)",boot.ipxe

dnsmasq as the only DHCP server (no proxy):

  dhcp-range=192.168.1.100,192.168.1.200,12h
  enable-tftp
  tftp-root=/srv/cauldron/pxe
  dhcp-match=set:efi64,option:client-arch,7
  dhcp-match=set:efi64,option:client-arch,9
  dhcp-userclass=set:ipxe,iPXE
  dhcp-boot=tag:ipxe,boot.ipxe
  dhcp-boot=tag:!ipxe,tag:efi64,bootx64.efi
  dhcp-boot=tag:!ipxe,tag:!efi64,pxelinux.0

Over HTTP with iPXE: chain http://SERVER/cauldron/pxe/boot.ipxe

UEFI with Secure Boot needs the firmware's own PXE (shim fetches grubx64.efi through it). shim
cannot fetch through iPXE's EFI PXE emulation (e.g. QEMU's default NIC option ROM: "Malformed
binary after Attribute Certificate Table"); with iPXE, boot boot.ipxe instead (Secure Boot off).

Kernel options: cauldron.ks=URL|cdrom:/PATH|usb:/PATH (kickstart), ip=dhcp|ADDR::GW:MASK::IFACE,
cauldron.shell (a shell instead of the recovery). Add them to the kernel/linux/APPEND lines.
`
