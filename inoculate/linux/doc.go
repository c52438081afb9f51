// Package linux makes a restored Linux system boot on hardware it was not installed on.
//
// A Linux system restored onto another machine usually fails in one of three places: its
// initramfs lacks the driver of the new disk controller (initramfs-tools with MODULES=dep and
// dracut in host-only mode carry only the drivers of the machine they were built on), its fstab,
// crypttab and kernel command line name filesystems and partitions by identities or device names
// that changed, and its bootloader is not installed where the new firmware looks (another disk's
// MBR, a fresh ESP, no NVRAM boot entry).
//
// Detect reads what is there without changing anything: os-release, the installed kernels and
// their module trees, the initramfs tool (initramfs-tools, dracut, mkinitcpio), the bootloaders
// (GRUB for BIOS or EFI, systemd-boot, shim), fstab, crypttab, the kernel command line of GRUB and
// /etc/default/grub, and which filesystems must be mounted for the work (/boot, /boot/efi, /usr).
//
// Inoculate repairs it: it adds the target's storage drivers persistently in the system's own
// initramfs configuration and rebuilds the initramfs of every installed kernel with the system's
// own tool in a chroot, rewrites changed UUIDs, PARTUUIDs and device names in fstab, crypttab and
// the bootloader configuration, reinstalls the bootloader for BIOS or UEFI, and on UEFI writes a
// boot entry into NVRAM through efivarfs and reads it back. Every file it changes keeps a
// FILE.cauldron-backup copy of how it was found, and everything it does (or, with DryRun, would
// do) is listed in a Report: plain data for JSON, and a text rendering.
//
// All paths inside the restored system are resolved inside its root, symlinks included, so that a
// restored system's absolute symlink (/etc/fstab -> /etc/fstab.real, say) can never lead a write
// onto the recovery environment's own files.
package linux
