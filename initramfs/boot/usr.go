package boot

// UsrImage is the squashfs image of the boot environment's /usr in the initramfs: the host tools
// the recovery runs (ntfs-3g, e2fsprogs, lvm, …), their libraries and the ELF interpreter.
// MountUsr mounts it on /usr at boot. It is kept out of the initramfs's own files because the
// kernel unpacks those at every boot, which for the tools cost 0.6-0.8 s under emulation, while
// squashfs reads a tool only when it runs.
const UsrImage = "/usr.squashfs"
