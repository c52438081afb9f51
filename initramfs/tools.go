package initramfs

import (
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/initramfs/boot"
)

// Tool is a host program copied into the image with its shared libraries.
type Tool struct {
	Name     string // command name, looked up in /usr/sbin, /usr/bin, /sbin, /bin
	Package  string // Debian package that has it (for the error when it is missing)
	Optional bool   // skip with a note when the host lacks it
}

// Tools are the programs the recovery needs that no Go library replaces. A name that is a symlink
// on the host (mkfs.ext4 → mke2fs) becomes the same symlink in the image.
var Tools = []Tool{
	{"ntfs-3g", "ntfs-3g", false}, {"mount.ntfs-3g", "ntfs-3g", false}, {"mount.ntfs", "ntfs-3g", true},
	{"ntfsresize", "ntfs-3g", false}, {"ntfsfix", "ntfs-3g", false}, {"mkntfs", "ntfs-3g", false},
	{"ntfsinfo", "ntfs-3g", false}, {"ntfslabel", "ntfs-3g", false},
	{"resize2fs", "e2fsprogs", false}, {"e2fsck", "e2fsprogs", false}, {"fsck.ext4", "e2fsprogs", true},
	{"mke2fs", "e2fsprogs", false}, {"mkfs.ext4", "e2fsprogs", false}, {"mkfs.ext3", "e2fsprogs", true},
	{"mkfs.ext2", "e2fsprogs", true}, {"tune2fs", "e2fsprogs", false}, {"e2label", "e2fsprogs", true},
	{"dumpe2fs", "e2fsprogs", false},
	{"xfs_growfs", "xfsprogs", false}, {"xfs_repair", "xfsprogs", false}, {"mkfs.xfs", "xfsprogs", false},
	{"xfs_db", "xfsprogs", true},
	{"btrfs", "btrfs-progs", false}, {"mkfs.btrfs", "btrfs-progs", false},
	{"mkfs.fat", "dosfstools", false}, {"mkfs.vfat", "dosfstools", false}, {"fsck.fat", "dosfstools", false},
	{"fsck.vfat", "dosfstools", false}, {"fatlabel", "dosfstools", false},
	{"mkfs.exfat", "exfatprogs", true}, {"fsck.exfat", "exfatprogs", true},
	{"mkswap", "util-linux", false}, {"sfdisk", "fdisk", false}, {"partx", "util-linux", false},
	{"blkid", "util-linux", false}, {"wipefs", "util-linux", false}, {"sgdisk", "gdisk", false},
	{"losetup", "util-linux", false}, {"mount", "mount", false}, {"umount", "mount", false},
	{"cryptsetup", "cryptsetup-bin", false},
	{"lvm", "lvm2", false}, {"dmsetup", "dmsetup", false}, {"pvs", "lvm2", true}, {"vgs", "lvm2", true},
	{"lvs", "lvm2", true}, {"pvcreate", "lvm2", true}, {"vgcreate", "lvm2", true}, {"lvcreate", "lvm2", true},
	{"vgchange", "lvm2", true}, {"lvchange", "lvm2", true}, {"vgscan", "lvm2", true}, {"pvscan", "lvm2", true},
	{"lvextend", "lvm2", true}, {"lvresize", "lvm2", true}, {"pvresize", "lvm2", true}, {"lvremove", "lvm2", true},
	{"vgremove", "lvm2", true}, {"pvremove", "lvm2", true}, {"vgdisplay", "lvm2", true}, {"lvdisplay", "lvm2", true},
	{"pvdisplay", "lvm2", true},
	{"kmod", "kmod", false}, {"modprobe", "kmod", false}, {"insmod", "kmod", false}, {"rmmod", "kmod", false},
	{"lsmod", "kmod", false}, {"modinfo", "kmod", false},
	{"efibootmgr", "efibootmgr", false}, {"kexec", "kexec-tools", true},
}

// extraLibs are libraries programs open at run time (dlopen), which DT_NEEDED does not show.
var extraLibs = []string{
	"libgcc_s.so.1", // glibc opens it for pthread_cancel and unwinding
}

// configFiles are host configuration files the tools read, copied when present.
var configFiles = []string{"/etc/mke2fs.conf"}

// lvmConf makes LVM and device-mapper work without udev, which the image does not run.
const lvmConf = `# Cauldron boot image: no udev, no lvmetad, no dmeventd.
devices {
	obtain_device_list_from_udev = 0
	external_device_info_source = "none"
}
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
global {
	use_lvmpolld = 0
}
`

var binDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

var libDirs = []string{
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib",
}

// addTools puts the host tools, the closure of their shared libraries and the ELF interpreter into
// the image. What the host keeps under /usr (all of it on Debian 12, whose /usr is merged) goes
// into a squashfs image of the image's /usr (boot.UsrImage), which the boot program mounts on
// /usr; the initramfs keeps only symlinks to it (sbin, the interpreter, lib/x86_64-linux-gnu).
// Why: unpacking the ~30 MB of tools at every boot was 0.6-0.8 s of each boot under TCG, while a
// technician's recovery runs few of them, and squashfs reads only those, when they run.
func (b *builder) addTools(t *tree, m *Media) error {
	usr := newTree()
	// place adds a host file at its own path: into the /usr image when it is under /usr, else
	// (a host without merged /usr) into the initramfs itself.
	place := func(p, src string, perm uint64) error {
		if strings.HasPrefix(p, "/usr/") {
			return usr.addFile(p, src, perm)
		}
		return t.addFile(p, src, perm)
	}
	link := func(p, target string) {
		if strings.HasPrefix(p, "/usr/") {
			usr.addSymlink(p, target)
		} else {
			t.addSymlink(p, target)
		}
	}
	var elfs []string
	var skipped []string
	for _, tool := range Tools {
		host := ""
		for _, d := range binDirs {
			p := filepath.Join(d, tool.Name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				host = p
				break
			}
		}
		if host == "" {
			if tool.Optional {
				skipped = append(skipped, tool.Name)
				continue
			}
			return fmt.Errorf("the boot image needs %s from the host, which lacks it: install the Debian package %s", tool.Name, tool.Package)
		}
		real, err := filepath.EvalSymlinks(host)
		if err != nil {
			return err
		}
		real = usrPath(real)
		if err := place(real, real, 0o755); err != nil {
			return err
		}
		elfs = append(elfs, real)
		img := usrPath(filepath.Join(filepath.Dir(host), tool.Name))
		if img != real {
			rel, _ := filepath.Rel(filepath.Dir(img), real)
			link(img, rel)
		}
		m.Tools = append(m.Tools, "/"+clean(img))
	}
	if len(skipped) > 0 {
		b.logf("host tools not installed (optional, skipped): %s", strings.Join(skipped, " "))
	}

	libs, interp, err := libClosure(elfs)
	if err != nil {
		return err
	}
	for _, name := range extraLibs {
		if p := findLib(name, nil); p != "" {
			more, _, err := libClosure([]string{p})
			if err != nil {
				return err
			}
			libs[name] = p
			for k, v := range more {
				libs[k] = v
			}
		}
	}
	if interp == "" {
		return fmt.Errorf("no ELF interpreter found for the host tools")
	}
	// The interpreter's path is written into every program: it stays where the programs look
	// (/lib64/ld-linux-x86-64.so.2), as a symlink when the file itself is in the /usr image.
	realInterp, err := filepath.EvalSymlinks(interp)
	if err != nil {
		return err
	}
	if err := place(realInterp, realInterp, 0o755); err != nil {
		return err
	}
	if realInterp != interp {
		t.addSymlink(interp, realInterp)
	}
	// Libraries go in at their real path; the dynamic linker searches /usr/lib/x86_64-linux-gnu
	// as well as /lib/x86_64-linux-gnu (the symlink below covers paths written into programs).
	for _, name := range sortedKeys(libs) {
		p, err := filepath.EvalSymlinks(libs[name])
		if err != nil {
			return err
		}
		if err := place(p, p, 0o755); err != nil {
			return fmt.Errorf("library %s: %w", p, err)
		}
		if lp := path.Join(path.Dir(p), name); lp != p {
			link(lp, path.Base(p)) // the soname, when the file has a longer name
		}
	}
	for _, f := range configFiles {
		if _, err := os.Stat(f); err == nil {
			if err := t.addFile(f, f, 0o644); err != nil {
				return err
			}
		}
	}
	t.addData("etc/lvm/lvm.conf", []byte(lvmConf), 0o644)
	t.mkdirAll("run/cryptsetup")
	t.mkdirAll("run/lock")
	usr.mkdirAll("usr/sbin")
	t.addSymlink("sbin", "usr/sbin") // the kernel runs /sbin/modprobe; mount looks for /sbin/mount.*
	if usr.has("usr/lib/x86_64-linux-gnu") && !t.has("lib/x86_64-linux-gnu") {
		t.addSymlink("lib/x86_64-linux-gnu", "../usr/lib/x86_64-linux-gnu")
	}
	size, err := b.writeUsrImage(usr, t)
	if err != nil {
		return err
	}
	b.logf("%d host tools, %d libraries; their /usr image is %s", len(m.Tools), len(libs), mib(size))
	return nil
}

// writeUsrImage writes the /usr tree as a squashfs image (zstd: the fastest to read under
// emulation of what Debian's kernel takes) and adds it to the initramfs at boot.UsrImage. The
// image is reproducible: sorted entries, owner root, every time stamp the build's.
func (b *builder) writeUsrImage(usr, t *tree) (int64, error) {
	stage := filepath.Join(b.work, "usr-image")
	if err := usr.writeDir(stage, b.epoch); err != nil {
		return 0, err
	}
	img := filepath.Join(b.work, "usr.squashfs")
	epoch := strconv.FormatInt(b.epoch, 10)
	if _, err := b.command("", nil, "mksquashfs", filepath.Join(stage, "usr"), img, "-noappend", "-comp", "zstd",
		"-all-root", "-no-xattrs", "-mkfs-time", epoch, "-all-time", epoch, "-quiet", "-no-progress"); err != nil {
		return 0, fmt.Errorf("making the /usr image: %w", err)
	}
	fi, err := os.Stat(img)
	if err != nil {
		return 0, err
	}
	t.mkdirAll("usr")
	return fi.Size(), t.addFile(boot.UsrImage, img, 0o644)
}

// usrPath maps /bin, /sbin and /lib paths to their /usr twins (Debian 12 has merged /usr).
func usrPath(p string) string {
	for _, d := range []string{"/bin/", "/sbin/"} {
		if strings.HasPrefix(p, d) {
			if _, err := os.Stat("/usr" + p); err == nil {
				return "/usr" + p
			}
		}
	}
	return p
}

// libClosure returns every shared library the given ELF files need, directly or not (by soname →
// host path), and their interpreter.
func libClosure(files []string) (map[string]string, string, error) {
	libs := map[string]string{}
	interp := ""
	queue := append([]string(nil), files...)
	seen := map[string]bool{}
	for len(queue) > 0 {
		f := queue[0]
		queue = queue[1:]
		if seen[f] {
			continue
		}
		seen[f] = true
		e, err := elf.Open(f)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", f, err)
		}
		for _, p := range e.Progs {
			if p.Type == elf.PT_INTERP {
				buf := make([]byte, p.Filesz)
				if _, err := p.ReadAt(buf, 0); err == nil {
					interp = strings.TrimRight(string(buf), "\x00")
				}
			}
		}
		needed, _ := e.DynString(elf.DT_NEEDED)
		var rpath []string
		for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
			if v, _ := e.DynString(tag); len(v) > 0 {
				for _, r := range strings.Split(v[0], ":") {
					rpath = append(rpath, strings.ReplaceAll(r, "$ORIGIN", filepath.Dir(f)))
				}
			}
		}
		e.Close()
		for _, n := range needed {
			if _, ok := libs[n]; ok {
				continue
			}
			p := findLib(n, rpath)
			if p == "" {
				return nil, "", fmt.Errorf("%s needs %s, which is not on this host", f, n)
			}
			libs[n] = p
			queue = append(queue, p)
		}
	}
	return libs, interp, nil
}

func findLib(name string, rpath []string) string {
	if strings.Contains(name, "/") {
		return name
	}
	for _, d := range append(append([]string(nil), rpath...), libDirs...) {
		p := path.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p
		}
	}
	return ""
}
