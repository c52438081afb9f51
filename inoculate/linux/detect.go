package linux

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cauldron-dr/cauldron/internal/mountinfo"
)

// InitramfsTool is the program a system builds its initramfs with.
type InitramfsTool string

// The initramfs tools Inoculate knows.
const (
	InitramfsTools InitramfsTool = "initramfs-tools" // Debian, Ubuntu: update-initramfs
	Dracut         InitramfsTool = "dracut"          // Fedora, RHEL, SUSE, newer Ubuntu
	Mkinitcpio     InitramfsTool = "mkinitcpio"      // Arch
)

// Kernel is an installed kernel.
type Kernel struct {
	// Version is the kernel's release (uname -r), the name of its module folder.
	Version string `json:"version"`
	// Image is the kernel file, e.g. /boot/vmlinuz-6.1.0-28-amd64.
	Image string `json:"image"`
	// Initramfs is the kernel's initramfs as found, or where the system's tool will write it.
	Initramfs string `json:"initramfs"`
	// InitramfsExists is whether Initramfs exists now.
	InitramfsExists bool `json:"initramfsExists"`
	// Modules is the kernel's module folder, e.g. /lib/modules/6.1.0-28-amd64.
	Modules string `json:"modules"`
}

// Bootloader is one bootloader found installed, and the file that shows it.
type Bootloader struct {
	// Kind is grub-bios, grub-efi, shim, systemd-boot or efi-fallback (\EFI\BOOT\BOOTX64.EFI).
	Kind string `json:"kind"`
	// Path is the evidence, e.g. /boot/grub/i386-pc/core.img or /boot/efi/EFI/debian/grubx64.efi.
	Path string `json:"path"`
	// ID is the folder under \EFI for EFI loaders (debian, fedora, ubuntu).
	ID string `json:"id,omitempty"`
}

// FstabEntry is one line of fstab (or, with Name set, of crypttab).
type FstabEntry struct {
	Line    int    `json:"line"`
	Spec    string `json:"spec"`    // UUID=…, PARTUUID=…, LABEL=…, /dev/…
	File    string `json:"file"`    // the mount point
	Type    string `json:"type"`    // ext4, vfat, swap, …
	Options string `json:"options"` // as written
}

// CrypttabEntry is one line of crypttab.
type CrypttabEntry struct {
	Line    int    `json:"line"`
	Name    string `json:"name"`   // the mapper name
	Device  string `json:"device"` // UUID=…, PARTUUID=…, /dev/…
	Key     string `json:"key"`    // key file or none
	Options string `json:"options,omitempty"`
}

// Cmdline is a kernel command line a bootloader uses or generates from.
type Cmdline struct {
	// Source is the file, with the variable name for /etc/default/grub
	// ("/etc/default/grub GRUB_CMDLINE_LINUX").
	Source string `json:"source"`
	Line   int    `json:"line"`
	Args   string `json:"args"`
	// Root is the value of root= in Args, if any.
	Root string `json:"root,omitempty"`
}

// System is what Detect found in a restored Linux system.
type System struct {
	// Root is the folder the system is mounted at.
	Root string `json:"root"`
	// ID, VersionID and PrettyName come from os-release.
	ID         string   `json:"id"`
	IDLike     []string `json:"idLike,omitempty"`
	VersionID  string   `json:"versionId,omitempty"`
	PrettyName string   `json:"prettyName,omitempty"`
	Kernels    []Kernel `json:"kernels"`
	// InitramfsTool is "" when none of the known tools is installed.
	InitramfsTool InitramfsTool `json:"initramfsTool"`
	// InitramfsCommand is the tool's program inside the system, e.g. /usr/sbin/update-initramfs.
	InitramfsCommand string       `json:"initramfsCommand,omitempty"`
	Bootloaders      []Bootloader `json:"bootloaders"`
	// GrubDir is /boot/grub or /boot/grub2 ("" without GRUB); GrubInstall the grub-install
	// program; GrubPlatforms the GRUB platforms whose modules are installed (i386-pc,
	// x86_64-efi), which are the targets grub-install can install.
	GrubDir       string   `json:"grubDir,omitempty"`
	GrubInstall   string   `json:"grubInstall,omitempty"`
	GrubPlatforms []string `json:"grubPlatforms,omitempty"`
	// ESP is where the EFI system partition is mounted inside the system ("" if none is known).
	ESP      string          `json:"esp,omitempty"`
	Fstab    []FstabEntry    `json:"fstab"`
	Crypttab []CrypttabEntry `json:"crypttab,omitempty"`
	Cmdlines []Cmdline       `json:"cmdlines,omitempty"`
	// NeedMounts are the fstab entries that must be mounted inside Root for the work: /boot and
	// the ESP hold the kernels, initramfs and loaders; /usr holds the tools.
	NeedMounts []FstabEntry `json:"needMounts,omitempty"`
	// Notes are things found odd but not fatal.
	Notes []string `json:"notes,omitempty"`
}

// ErrNoLinux is wrapped when the root holds no Linux system.
var ErrNoLinux = errors.New("no Linux system found")

// Detect reads the Linux system at root without changing anything.
func Detect(root string) (*System, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w at %s: not a folder", ErrNoLinux, root)
	}
	s := &System{Root: abs}
	var osr []byte
	var found bool
	for _, p := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		if osr, found, err = readSys(abs, p); err != nil {
			return nil, err
		} else if found {
			break
		}
	}
	if !found {
		return nil, fmt.Errorf("%w at %s: neither /etc/os-release nor /usr/lib/os-release exists", ErrNoLinux, root)
	}
	kv := parseOSRelease(osr)
	s.ID, s.VersionID, s.PrettyName = kv["ID"], kv["VERSION_ID"], kv["PRETTY_NAME"]
	s.IDLike = strings.Fields(kv["ID_LIKE"])
	if s.ID == "" {
		s.ID = "linux" // os-release(5): the default when ID is not set
	}

	if err := s.detectFstab(); err != nil {
		return nil, err
	}
	if err := s.detectCrypttab(); err != nil {
		return nil, err
	}
	if err := s.detectKernels(); err != nil {
		return nil, err
	}
	s.detectInitramfsTool()
	s.detectBootloaders()
	if err := s.detectCmdlines(); err != nil {
		return nil, err
	}
	return s, nil
}

// parseOSRelease reads os-release(5): KEY=value lines, values optionally quoted shell-style.
func parseOSRelease(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[k] = shellUnquote(v)
	}
	return out
}

// shellUnquote undoes the quoting os-release and /etc/default/grub use: '…', "…" with backslash
// escapes, and backslashes outside quotes. It is not a shell: no expansion is done.
func shellUnquote(v string) string {
	var b strings.Builder
	var q byte
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case q == '\'':
			if c == '\'' {
				q = 0
			} else {
				b.WriteByte(c)
			}
		case c == '\\' && i+1 < len(v) && (q == 0 || strings.IndexByte("\"\\$`", v[i+1]) >= 0):
			i++
			b.WriteByte(v[i])
		case q == '"':
			if c == '"' {
				q = 0
			} else {
				b.WriteByte(c)
			}
		case c == '\'' || c == '"':
			q = c
		case c == '#' && b.Len() == 0:
			return ""
		default:
			b.WriteByte(c)
		}
	}
	return strings.TrimSpace(b.String())
}

func (s *System) detectFstab() error {
	b, found, err := readSys(s.Root, "/etc/fstab")
	if err != nil {
		return err
	}
	if !found {
		s.Notes = append(s.Notes, "/etc/fstab does not exist")
		return nil
	}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 3 {
			s.Notes = append(s.Notes, fmt.Sprintf("/etc/fstab:%d: fewer than 3 fields, ignored", i+1))
			continue
		}
		e := FstabEntry{Line: i + 1, Spec: mountinfo.Unescape(f[0]), File: mountinfo.Unescape(f[1]), Type: f[2]}
		if len(f) > 3 {
			e.Options = f[3]
		}
		s.Fstab = append(s.Fstab, e)
	}
	for _, e := range s.Fstab {
		switch path.Clean(e.File) {
		case "/boot", "/boot/efi", "/efi", "/usr":
			s.NeedMounts = append(s.NeedMounts, e)
		}
		if (e.File == "/boot/efi" || e.File == "/efi" || e.File == "/boot") && (e.Type == "vfat" || e.Type == "msdos") {
			s.ESP = path.Clean(e.File)
		}
	}
	return nil
}

func (s *System) detectCrypttab() error {
	b, found, err := readSys(s.Root, "/etc/crypttab")
	if err != nil || !found {
		return err
	}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 2 {
			s.Notes = append(s.Notes, fmt.Sprintf("/etc/crypttab:%d: fewer than 2 fields, ignored", i+1))
			continue
		}
		e := CrypttabEntry{Line: i + 1, Name: f[0], Device: f[1]}
		if len(f) > 2 {
			e.Key = f[2]
		}
		if len(f) > 3 {
			e.Options = f[3]
		}
		s.Crypttab = append(s.Crypttab, e)
	}
	return nil
}

// kernelVersionFromImage reads the release string an x86 bzImage carries in its setup header
// (Documentation/arch/x86/boot.rst: "HdrS" at 0x202, protocol version at 0x206, kernel_version at
// 0x20E, a pointer to a NUL-terminated string 0x200 bytes before where it points). The file name
// is not enough: Arch names its kernel vmlinuz-linux and Fedora's rescue kernel is
// vmlinuz-0-rescue-<machine-id>.
func kernelVersionFromImage(file string) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return ""
	}
	if string(hdr[0x202:0x206]) != "HdrS" || binary.LittleEndian.Uint16(hdr[0x206:]) < 0x200 {
		return ""
	}
	off := binary.LittleEndian.Uint16(hdr[0x20E:])
	if off == 0 {
		return ""
	}
	buf := make([]byte, 256)
	n, _ := f.ReadAt(buf, int64(off)+0x200)
	buf = buf[:n]
	if i := bytes.IndexByte(buf, 0); i >= 0 {
		buf = buf[:i]
	}
	fields := strings.Fields(string(buf))
	if len(fields) == 0 {
		return ""
	}
	return fields[0]
}

// ErrKernelWithoutModules is wrapped when an installed kernel has no module folder.
var ErrKernelWithoutModules = errors.New("kernel without modules")

func (s *System) detectKernels() error {
	images := globSys(s.Root, "/boot", "vmlinuz-*")
	withImage := map[string]bool{}
	for _, img := range images {
		h, err := resolve(s.Root, img)
		if err != nil {
			return err
		}
		if fi, err := os.Stat(h); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		name := strings.TrimPrefix(path.Base(img), "vmlinuz-")
		// The header's release first; the file name's suffix when the header has none or names
		// a release without modules.
		var version, modules string
		for _, v := range []string{kernelVersionFromImage(h), name} {
			if v == "" {
				continue
			}
			for _, m := range []string{"/lib/modules/" + v, "/usr/lib/modules/" + v} {
				if isDirSys(s.Root, m) {
					version, modules = v, m
					break
				}
			}
			if version != "" {
				break
			}
		}
		if version == "" {
			v := kernelVersionFromImage(h)
			if v == "" {
				v = name
			}
			return fmt.Errorf("%w: %s in %s (release %s) has no /lib/modules/%s: its drivers cannot be put into an initramfs", ErrKernelWithoutModules, img, s.Root, v, v)
		}
		k := Kernel{Version: version, Image: img, Modules: modules}
		for _, c := range []string{"/boot/initrd.img-" + name, "/boot/initramfs-" + name + ".img", "/boot/initrd-" + name} {
			if existsSys(s.Root, c) {
				k.Initramfs, k.InitramfsExists = c, true
				break
			}
		}
		withImage[version] = true
		s.Kernels = append(s.Kernels, k)
	}
	sort.Slice(s.Kernels, func(i, j int) bool { return s.Kernels[i].Image < s.Kernels[j].Image })
	for _, m := range append(globSys(s.Root, "/lib/modules", "*"), globSys(s.Root, "/usr/lib/modules", "*")...) {
		if v := path.Base(m); !withImage[v] && isDirSys(s.Root, m) {
			withImage[v] = true // note it once
			s.Notes = append(s.Notes, fmt.Sprintf("%s has no kernel image in /boot (a removed kernel's leftovers?): ignored", m))
		}
	}
	return nil
}

func (s *System) detectInitramfsTool() {
	type cand struct {
		tool  InitramfsTool
		cmd   string
		fam   []string
		extra string // a file that must exist as well
	}
	cands := []cand{
		{InitramfsTools, findTool(s.Root, "update-initramfs"), []string{"debian", "ubuntu"}, "/etc/initramfs-tools"},
		{Dracut, findTool(s.Root, "dracut"), []string{"fedora", "rhel", "centos", "suse", "opensuse", "sles"}, ""},
		{Mkinitcpio, findTool(s.Root, "mkinitcpio"), []string{"arch"}, ""},
	}
	var found []cand
	for _, c := range cands {
		if c.cmd != "" && (c.extra == "" || existsSys(s.Root, c.extra)) {
			found = append(found, c)
		}
	}
	if len(found) == 0 {
		return
	}
	pick := found[0]
	if len(found) > 1 {
		// Two tools installed: the one of the distribution's family is the one its kernel
		// packages call.
		ids := append([]string{s.ID}, s.IDLike...)
	outer:
		for _, c := range found {
			for _, f := range c.fam {
				for _, id := range ids {
					if id == f {
						pick = c
						break outer
					}
				}
			}
		}
		var names []string
		for _, c := range found {
			names = append(names, string(c.tool))
		}
		s.Notes = append(s.Notes, fmt.Sprintf("several initramfs tools installed (%s): using %s", strings.Join(names, ", "), pick.tool))
	}
	s.InitramfsTool, s.InitramfsCommand = pick.tool, pick.cmd
	for i := range s.Kernels {
		k := &s.Kernels[i]
		if k.Initramfs != "" {
			continue
		}
		name := strings.TrimPrefix(path.Base(k.Image), "vmlinuz-")
		// Named after the kernel file's suffix, as the distributions' kernel hooks name it
		// (the release for most kernels; "linux" on Arch; "0-rescue-<machine-id>" for Fedora's
		// rescue kernel, whose initramfs must stay its own file).
		switch {
		case pick.tool == InitramfsTools, s.isFamily("debian", "ubuntu"):
			k.Initramfs = "/boot/initrd.img-" + name
		case s.isFamily("suse", "opensuse", "sles"):
			k.Initramfs = "/boot/initrd-" + name
		default:
			k.Initramfs = "/boot/initramfs-" + name + ".img"
		}
	}
}

func (s *System) isFamily(ids ...string) bool {
	for _, id := range append([]string{s.ID}, s.IDLike...) {
		for _, x := range ids {
			if id == x || strings.HasPrefix(id, x+"-") {
				return true
			}
		}
	}
	return false
}

func (s *System) detectBootloaders() {
	for _, d := range []string{"/boot/grub", "/boot/grub2"} {
		if existsSys(s.Root, d+"/grub.cfg") || (s.GrubDir == "" && isDirSys(s.Root, d)) {
			s.GrubDir = d
		}
	}
	s.GrubInstall = findTool(s.Root, "grub-install", "grub2-install")
	for _, plat := range []string{"i386-pc", "x86_64-efi"} {
		for _, lib := range []string{"/usr/lib/grub/", "/usr/lib/grub2/"} {
			if existsSys(s.Root, lib+plat+"/modinfo.sh") || existsSys(s.Root, lib+plat+"/normal.mod") {
				s.GrubPlatforms = append(s.GrubPlatforms, plat)
				break
			}
		}
	}
	if s.GrubDir != "" {
		for _, f := range []string{"core.img", "normal.mod"} {
			if p := s.GrubDir + "/i386-pc/" + f; existsSys(s.Root, p) {
				s.Bootloaders = append(s.Bootloaders, Bootloader{Kind: "grub-bios", Path: p})
				break
			}
		}
	}
	esp := s.ESP
	if esp == "" {
		for _, d := range []string{"/boot/efi", "/efi"} {
			if isDirSys(s.Root, d+"/EFI") {
				esp = d
				break
			}
		}
		s.ESP = esp
	}
	if esp == "" {
		return
	}
	for _, dir := range globSys(s.Root, esp+"/EFI", "*") {
		id := path.Base(dir)
		for _, e := range globSys(s.Root, dir, "*") {
			switch strings.ToLower(path.Base(e)) {
			case "grubx64.efi":
				s.Bootloaders = append(s.Bootloaders, Bootloader{Kind: "grub-efi", Path: e, ID: id})
			case "shimx64.efi":
				s.Bootloaders = append(s.Bootloaders, Bootloader{Kind: "shim", Path: e, ID: id})
			case "systemd-bootx64.efi":
				s.Bootloaders = append(s.Bootloaders, Bootloader{Kind: "systemd-boot", Path: e, ID: id})
			case "bootx64.efi":
				if strings.EqualFold(id, "BOOT") {
					s.Bootloaders = append(s.Bootloaders, Bootloader{Kind: "efi-fallback", Path: e, ID: id})
				}
			}
		}
	}
}

// has reports whether a bootloader of kind was found.
func (s *System) has(kind string) bool {
	for _, b := range s.Bootloaders {
		if b.Kind == kind {
			return true
		}
	}
	return false
}

// grubCfgs lists the GRUB configuration files: the main one and the small ones on the ESP that
// Fedora and Ubuntu's signed GRUB read first (they search for /boot by UUID).
func (s *System) grubCfgs() []string {
	var out []string
	if s.GrubDir != "" && existsSys(s.Root, s.GrubDir+"/grub.cfg") {
		out = append(out, s.GrubDir+"/grub.cfg")
	}
	if s.ESP != "" {
		for _, dir := range globSys(s.Root, s.ESP+"/EFI", "*") {
			if p := dir + "/grub.cfg"; existsSys(s.Root, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// blsEntries lists systemd-boot / Boot Loader Specification entries.
func (s *System) blsEntries() []string {
	var out []string
	dirs := []string{"/boot/loader/entries"}
	if s.ESP != "" && s.ESP != "/boot" {
		dirs = append(dirs, s.ESP+"/loader/entries")
	}
	for _, d := range dirs {
		out = append(out, globSys(s.Root, d, "*.conf")...)
	}
	return out
}

func cmdlineRoot(args string) string {
	for _, a := range strings.Fields(args) {
		if v, ok := strings.CutPrefix(a, "root="); ok {
			return v
		}
	}
	return ""
}

func (s *System) detectCmdlines() error {
	for _, cfg := range s.grubCfgs() {
		b, _, err := readSys(s.Root, cfg)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) >= 2 && (f[0] == "linux" || f[0] == "linuxefi" || f[0] == "linux16") {
				args := strings.Join(f[2:], " ")
				s.Cmdlines = append(s.Cmdlines, Cmdline{Source: cfg, Line: i + 1, Args: args, Root: cmdlineRoot(args)})
			}
		}
	}
	b, found, err := readSys(s.Root, "/etc/default/grub")
	if err != nil {
		return err
	}
	if found {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			for _, v := range []string{"GRUB_CMDLINE_LINUX", "GRUB_CMDLINE_LINUX_DEFAULT"} {
				if val, ok := strings.CutPrefix(line, v+"="); ok {
					args := shellUnquote(val)
					s.Cmdlines = append(s.Cmdlines, Cmdline{Source: "/etc/default/grub " + v, Line: n, Args: args, Root: cmdlineRoot(args)})
				}
			}
		}
	}
	if b, found, err := readSys(s.Root, "/etc/kernel/cmdline"); err != nil {
		return err
	} else if found {
		args := strings.TrimSpace(string(b))
		s.Cmdlines = append(s.Cmdlines, Cmdline{Source: "/etc/kernel/cmdline", Line: 1, Args: args, Root: cmdlineRoot(args)})
	}
	for _, e := range s.blsEntries() {
		b, _, err := readSys(s.Root, e)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if args, ok := strings.CutPrefix(strings.TrimSpace(line), "options "); ok {
				s.Cmdlines = append(s.Cmdlines, Cmdline{Source: e, Line: i + 1, Args: strings.TrimSpace(args), Root: cmdlineRoot(args)})
			}
		}
	}
	return nil
}
