package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Firmware is how the target machine boots.
type Firmware string

// The target firmwares.
const (
	// KeepBootloader leaves the bootloader as it is (the target boots the way the source did,
	// from the same disk position).
	KeepBootloader Firmware = ""
	BIOS           Firmware = "bios"
	UEFI           Firmware = "uefi"
)

// Mount is a filesystem Inoculate mounts inside the root before the work and unmounts after it:
// a separate /boot, the ESP at /boot/efi, a separate /usr.
type Mount struct {
	Device  string `json:"device"`  // /dev/nvme0n1p2
	Dir     string `json:"dir"`     // inside the system: /boot
	Type    string `json:"type"`    // ext4, vfat, xfs, …
	Options string `json:"options"` // mount data, e.g. "" or "umask=0077"
}

// Options say what Inoculate does.
type Options struct {
	// Root is the restored system's root filesystem, mounted.
	Root string
	// Drivers are the kernel modules the target's storage needs (nvme, ahci, virtio_scsi, …).
	Drivers []string
	// OnTarget says that this machine is the target (the boot environment on the machine being
	// recovered): host-only initramfs settings (initramfs-tools MODULES=dep, dracut hostonly)
	// then pick the right drivers and are kept; otherwise they are switched to generic images.
	OnTarget bool
	// Renames are identities and device names that changed, old → new.
	Renames []Rename
	// Firmware is the target's: BIOS reinstalls GRUB into BootDisk's MBR (and its embedding area),
	// UEFI installs the EFI loader onto the ESP at its own path and the fallback path and writes an
	// NVRAM boot entry; KeepBootloader touches no bootloader.
	Firmware Firmware
	// BootDisk is the target disk as a device of this machine (/dev/nvme0n1), for BIOS.
	BootDisk string
	// ESPPartition identifies the ESP for the NVRAM boot entry (UEFI). Required for UEFI unless
	// NoNVRAM.
	ESPPartition *ESPPartition
	// NoNVRAM makes no NVRAM entry on UEFI (a virtual machine's disk that is handed to a
	// hypervisor: its firmware finds the fallback loader \EFI\BOOT\BOOTX64.EFI).
	NoNVRAM bool
	// EFIVars is the efivarfs folder; "" means /sys/firmware/efi/efivars, which must then be an
	// efivarfs mount. A plain folder given here is written in efivarfs' file layout (tests).
	EFIVars string
	// Mounts are mounted inside Root (in order) before the work and unmounted after it.
	Mounts []Mount
	// DryRun reports every change and command without writing or running anything (Mounts are
	// still mounted, read-only, to read what is on them).
	DryRun bool
	// Runner runs the system's programs; nil means ChrootRunner.
	Runner Runner
	// Log, if set, is told about each step as it starts.
	Log func(string)
}

// FileChange is a file Inoculate changed (or, in a dry run, would change).
type FileChange struct {
	Path   string `json:"path"`
	Action string `json:"action"` // create or modify
	Why    string `json:"why"`
	// Backup is the copy of the file as it was found (FILE.cauldron-backup); BackupKept says it
	// existed already, from an earlier run, and was left alone so that it still holds the
	// original.
	Backup     string       `json:"backup,omitempty"`
	BackupKept bool         `json:"backupKept,omitempty"`
	Lines      []LineChange `json:"lines"`
	Done       bool         `json:"done"`
}

// CommandRun is a program run (or, in a dry run, to run) inside the system.
type CommandRun struct {
	Argv    []string `json:"argv"`
	Why     string   `json:"why"`
	Done    bool     `json:"done"`
	Seconds float64  `json:"seconds,omitempty"`
	// Output is the end of what the program printed.
	Output string `json:"output,omitempty"`
	Error  string `json:"error,omitempty"`
}

// InitramfsCheck is what an initramfs was found to hold after the rebuild.
type InitramfsCheck struct {
	Kernel    string   `json:"kernel"`
	Initramfs string   `json:"initramfs"`
	Drivers   []string `json:"drivers"` // the asked-for drivers found inside
	Missing   []string `json:"missing,omitempty"`
	Lister    string   `json:"lister,omitempty"` // the program that listed it
}

// Report is what Inoculate did, or would do.
type Report struct {
	Root      string           `json:"root"`
	DryRun    bool             `json:"dryRun"`
	Started   time.Time        `json:"started"`
	Seconds   float64          `json:"seconds"`
	System    *System          `json:"system,omitempty"`
	Drivers   []string         `json:"drivers"` // those that go into the configuration
	Renames   []Rename         `json:"renames,omitempty"`
	Firmware  Firmware         `json:"firmware,omitempty"`
	Mounted   []Mount          `json:"mounted,omitempty"`
	Files     []FileChange     `json:"files"`
	Commands  []CommandRun     `json:"commands"`
	Initramfs []InitramfsCheck `json:"initramfs,omitempty"`
	BootEntry *BootEntry       `json:"bootEntry,omitempty"`
	Notes     []string         `json:"notes,omitempty"`
	Error     string           `json:"error,omitempty"`
}

// BackupSuffix is appended to a changed file's name for the copy of it as it was found.
const BackupSuffix = ".cauldron-backup"

// BackupPath is where the copy of a changed file goes: FILE.cauldron-backup, except in folders
// whose every file is read as configuration. mkinitramfs sources every file of
// /etc/initramfs-tools/conf.d whose name starts with a letter or digit, so resume.cauldron-backup
// there would be read after resume and bring the old RESUME= back; a name starting with a dot is
// skipped, so the backup there is .FILE.cauldron-backup.
func BackupPath(p string) string {
	if path.Dir(p) == "/etc/initramfs-tools/conf.d" {
		return path.Join(path.Dir(p), "."+path.Base(p)+BackupSuffix)
	}
	return p + BackupSuffix
}

// Inoculate makes the Linux system at o.Root boot on the target hardware. The report is returned
// even with an error: it lists what was done before the error (nothing that was done goes
// unreported) and the failing step with its output.
func Inoculate(ctx context.Context, o Options) (rep *Report, err error) {
	rep = &Report{Root: o.Root, DryRun: o.DryRun, Started: time.Now(), Firmware: o.Firmware, Renames: o.Renames, Files: []FileChange{}, Commands: []CommandRun{}}
	defer func() {
		rep.Seconds = time.Since(rep.Started).Seconds()
		if err != nil {
			rep.Error = err.Error()
		}
	}()
	logf := func(format string, a ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, a...))
		}
	}
	if err := validate(&o); err != nil {
		return rep, err
	}
	rn, err := newRenamer(o.Renames)
	if err != nil {
		return rep, err
	}
	runner := o.Runner
	if runner == nil {
		runner = ChrootRunner{}
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return rep, err
	}
	if root == "/" {
		// The host's own /dev, /proc, … would be bound onto themselves and its boot setup
		// rewritten under it.
		return rep, errors.New("inoculate: the root is / — give the folder the restored system is mounted at, not the running system")
	}

	// Mount what the caller asked for; unmount it whatever happens (also what was mounted
	// before a later mount failed).
	defer func() {
		for i := len(rep.Mounted) - 1; i >= 0; i-- {
			h, _ := resolve(root, rep.Mounted[i].Dir)
			if uerr := unmount(h); uerr != nil {
				err = errors.Join(err, uerr)
				rep.Error = err.Error()
			}
		}
	}()
	for _, m := range o.Mounts {
		logf("mounting %s at %s", m.Device, m.Dir)
		if err := mountInRoot(root, m, o.DryRun); err != nil {
			return rep, err
		}
		rep.Mounted = append(rep.Mounted, m)
	}

	logf("detecting the system at %s", root)
	s, err := Detect(root)
	if err != nil {
		return rep, err
	}
	rep.System = s
	rep.Notes = append(rep.Notes, s.Notes...)
	if len(s.Kernels) == 0 {
		return rep, fmt.Errorf("%s (%s): no kernel in /boot (no /boot/vmlinuz-*): nothing would boot", root, s.PrettyName)
	}
	if s.InitramfsTool == "" {
		return rep, fmt.Errorf("%s (%s): %w", root, s.PrettyName, ErrUnknownInitramfsTool)
	}
	if err := checkMounts(s, o.Firmware); err != nil {
		return rep, err
	}
	drivers, notes, err := checkDrivers(s, o.Drivers)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", root, err)
	}
	rep.Drivers = drivers
	rep.Notes = append(rep.Notes, notes...)

	// Plan every file change and command before doing any, so that bad input stops the run
	// before the first write.
	edits, notes, err := planDriverConfig(s, drivers, o.OnTarget)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", root, err)
	}
	rep.Notes = append(rep.Notes, notes...)
	edits, err = planRenames(s, rn, edits)
	if err != nil {
		return rep, err
	}
	sort.SliceStable(edits, func(i, j int) bool { return edits[i].Path < edits[j].Path })
	var cmds []CommandRun
	for _, argv := range rebuildCommands(s) {
		cmds = append(cmds, CommandRun{Argv: argv, Why: "rebuild the initramfs with the target's drivers"})
	}
	blCmds, blNotes, err := planBootloader(s, &o)
	if err != nil {
		return rep, err
	}
	cmds = append(cmds, blCmds...)
	rep.Notes = append(rep.Notes, blNotes...)
	for _, e := range edits {
		fc := FileChange{Path: e.Path, Action: "modify", Why: e.Why, Lines: e.Changes}
		if !e.Exists {
			fc.Action = "create"
		} else {
			fc.Backup = BackupPath(e.Path)
			fc.BackupKept = existsSys(root, fc.Backup)
		}
		rep.Files = append(rep.Files, fc)
	}
	rep.Commands = cmds
	var dp *DevicePath
	var desc string
	if o.Firmware == UEFI && !o.NoNVRAM {
		hd, err := o.ESPPartition.hardDrive()
		if err != nil {
			return rep, err
		}
		loader, id := efiLoader(s)
		dp, desc = &DevicePath{HardDrive: hd, File: loader}, id
		rep.BootEntry = &BootEntry{Description: desc, Path: dp.String()}
	}
	if o.DryRun {
		return rep, nil
	}

	// The files, each with its backup first.
	for i, e := range edits {
		logf("writing %s", e.Path)
		if err := applyEdit(root, e, rep.Files[i].BackupKept); err != nil {
			return rep, err
		}
		rep.Files[i].Done = true
	}

	// The programs, in the system's root.
	logf("preparing the chroot %s", root)
	undo, err := runner.Prepare(root)
	if err != nil {
		return rep, err
	}
	defer func() {
		if uerr := undo(); uerr != nil {
			err = errors.Join(err, uerr)
		}
	}()
	rebuildStart := time.Now()
	nRebuild := len(rebuildCommands(s))
	for i := range rep.Commands {
		c := &rep.Commands[i]
		logf("running %s", strings.Join(c.Argv, " "))
		t := time.Now()
		out, rerr := runner.Run(ctx, root, c.Argv)
		c.Seconds = time.Since(t).Seconds()
		c.Output = tailLines(out, 40)
		if rerr != nil {
			c.Error = rerr.Error()
			return rep, fmt.Errorf("%s in %s failed (%v); its output:\n%s", strings.Join(c.Argv, " "), root, rerr, tailLines(out, 40))
		}
		c.Done = true
		if i == nRebuild-1 {
			if err := checkInitramfs(ctx, runner, s, drivers, rebuildStart, rep); err != nil {
				return rep, err
			}
		}
	}
	if dp != nil {
		// The loader grub-install or bootctl just wrote decides the path.
		loader, id := efiLoader(s)
		dp.File, desc = loader, id
		vars, isFS, err := openVars(o.EFIVars)
		if err != nil {
			return rep, err
		}
		logf("writing the NVRAM boot entry %s %s", desc, dp)
		be, err := writeBootEntry(vars, isFS, desc, *dp)
		if be != nil {
			rep.BootEntry = be
		}
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func validate(o *Options) error {
	if o.Root == "" {
		return errors.New("inoculate: no root given")
	}
	if len(o.Drivers) == 0 {
		return errors.New("inoculate: no target storage drivers given (e.g. nvme, ahci, virtio_blk)")
	}
	switch o.Firmware {
	case KeepBootloader:
	case BIOS:
		if o.BootDisk == "" {
			return errors.New("inoculate: BIOS needs the target disk (BootDisk) to install GRUB onto")
		}
		if !strings.HasPrefix(o.BootDisk, "/dev/") {
			return fmt.Errorf("inoculate: boot disk %s: give a device under /dev (the chroot sees the host's /dev)", o.BootDisk)
		}
		fi, err := os.Stat(o.BootDisk)
		if err != nil || fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
			return fmt.Errorf("inoculate: boot disk %s is not a block device", o.BootDisk)
		}
	case UEFI:
		if o.ESPPartition == nil && !o.NoNVRAM {
			return errors.New("inoculate: UEFI needs the ESP's partition (ESPPartition) for the NVRAM boot entry, or NoNVRAM")
		}
	default:
		return fmt.Errorf("inoculate: unknown firmware %q (bios, uefi, or empty to keep the bootloader)", o.Firmware)
	}
	for _, m := range o.Mounts {
		if !path.IsAbs(m.Dir) || m.Device == "" || m.Type == "" {
			return fmt.Errorf("inoculate: mount %+v: give a device, a type and an absolute folder inside the system", m)
		}
	}
	return nil
}

func mountInRoot(root string, m Mount, readOnly bool) error {
	h, err := resolve(root, m.Dir)
	if err != nil {
		return fmt.Errorf("mounting %s: %w", m.Dir, err)
	}
	if fi, err := os.Stat(h); err != nil || !fi.IsDir() {
		return fmt.Errorf("mounting %s on %s: %s is not a folder in %s", m.Device, m.Dir, m.Dir, root)
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount(m.Device, h, m.Type, flags, m.Options); err != nil {
		return fmt.Errorf("mounting %s (%s) on %s: %w", m.Device, m.Type, h, err)
	}
	return nil
}

// checkMounts makes sure that what fstab mounts separately and the work needs is mounted: a
// /boot left unmounted would have the initramfs written into the root filesystem's empty /boot
// folder, where no bootloader looks.
func checkMounts(s *System, fw Firmware) error {
	var rootSt unix.Stat_t
	if err := unix.Stat(s.Root, &rootSt); err != nil {
		return err
	}
	for _, e := range s.NeedMounts {
		isESP := path.Clean(e.File) == s.ESP && e.File != "/boot"
		if isESP && fw != UEFI {
			continue // only the UEFI work touches the ESP
		}
		h, err := resolve(s.Root, e.File)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Stat(h, &st); err != nil || st.Dev == rootSt.Dev {
			return fmt.Errorf("%s: fstab (line %d) mounts %s on %s, but it is not mounted there: mount it first (Options.Mounts)", s.Root, e.Line, e.Spec, e.File)
		}
	}
	return nil
}

// renameFiles are the files that name filesystems, partitions or devices.
func renameFiles(s *System) []string {
	files := []string{"/etc/fstab", "/etc/crypttab", "/etc/default/grub", "/etc/kernel/cmdline", "/etc/initramfs-tools/conf.d/resume"}
	files = append(files, globSys(s.Root, "/etc/default/grub.d", "*.cfg")...)
	files = append(files, s.grubCfgs()...)
	files = append(files, s.blsEntries()...)
	for _, f := range globSys(s.Root, "/etc/dracut.conf.d", "*.conf") {
		if f != "/etc/dracut.conf.d/cauldron.conf" {
			files = append(files, f)
		}
	}
	return files
}

// planRenames adds the identity rewrites to the planned edits (on top of an edit already planned
// for the same file).
func planRenames(s *System, rn *renamer, edits []*fileEdit) ([]*fileEdit, error) {
	if len(rn.rs) == 0 {
		return edits, nil
	}
	byPath := map[string]*fileEdit{}
	for _, e := range edits {
		byPath[e.Path] = e
	}
	for _, f := range renameFiles(s) {
		var text string
		if e, ok := byPath[f]; ok {
			text = string(e.New)
		} else {
			b, found, err := readSys(s.Root, f)
			if err != nil {
				return nil, err
			}
			if !found {
				continue
			}
			text = string(b)
		}
		nt, ch := rn.rewriteLines(text)
		if len(ch) == 0 {
			continue
		}
		if e, ok := byPath[f]; ok {
			e.New = []byte(nt)
			e.Changes = lineDiff(string(e.Old), nt)
			continue
		}
		old, _, _ := readSys(s.Root, f)
		e := &fileEdit{Path: f, Exists: true, Old: old, New: []byte(nt), Why: "changed identities and device names", Changes: ch}
		edits = append(edits, e)
		byPath[f] = e
	}
	return edits, nil
}

// applyEdit writes one planned edit, after copying the file as it was to FILE.cauldron-backup
// (unless that copy exists: it then holds the original from an earlier run and is kept).
func applyEdit(root string, e *fileEdit, backupKept bool) error {
	f, err := lookup(root, e.Path)
	if err != nil {
		return err
	}
	var like os.FileInfo
	if e.Exists {
		if like, err = os.Stat(f.Host); err != nil {
			return fmt.Errorf("%s: %w", e.Path, err)
		}
		if !backupKept {
			b, err := lookup(root, BackupPath(e.Path))
			if err != nil {
				return err
			}
			if err := copyFile(b.Host, f.Host, like); err != nil {
				return fmt.Errorf("backing up %s: %w", e.Path, err)
			}
		}
	}
	if err := writeFileAs(f.Host, e.New, like); err != nil {
		return fmt.Errorf("writing %s: %w", e.Path, err)
	}
	return nil
}

// copyFile copies src to dst (which must not exist), keeping mode, owner and times.
func copyFile(dst, src string, fi os.FileInfo) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if uid, gid, ok := owner(fi); ok {
		_ = out.Chown(uid, gid) // FAT (the ESP) has no owners
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chtimes(dst, fi.ModTime(), fi.ModTime())
}

func owner(fi os.FileInfo) (int, int, bool) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid), true
	}
	return 0, 0, false
}

// efiLoader returns the loader the NVRAM entry should start (shim first: with Secure Boot only
// the signed shim is trusted by the firmware) and the entry's description (the ESP folder's
// name, as grub-install's --bootloader-id).
func efiLoader(s *System) (string, string) {
	// Re-read: the bootloader was possibly just installed.
	s.Bootloaders = nil
	s.detectBootloaders()
	var grub, sdboot, fallback *Bootloader
	for i := range s.Bootloaders {
		b := &s.Bootloaders[i]
		switch b.Kind {
		case "shim":
			if !strings.EqualFold(b.ID, "BOOT") {
				return efiPath(s.ESP, b.Path), b.ID
			}
		case "grub-efi":
			if grub == nil && !strings.EqualFold(b.ID, "BOOT") {
				grub = b
			}
		case "systemd-boot":
			sdboot = b
		case "efi-fallback":
			fallback = b
		}
	}
	for _, b := range []*Bootloader{grub, sdboot, fallback} {
		if b != nil {
			id := b.ID
			if strings.EqualFold(id, "BOOT") || id == "systemd" {
				id = s.ID
			}
			return efiPath(s.ESP, b.Path), id
		}
	}
	return `\EFI\BOOT\BOOTX64.EFI`, s.ID
}

// efiPath turns a path inside the system under the ESP into the firmware's \EFI\… form.
func efiPath(esp, p string) string {
	rel := strings.TrimPrefix(p, strings.TrimSuffix(esp, "/"))
	return strings.ReplaceAll(rel, "/", `\`)
}

// planBootloader plans the commands that install the bootloader the target's firmware needs.
func planBootloader(s *System, o *Options) ([]CommandRun, []string, error) {
	var notes []string
	switch o.Firmware {
	case KeepBootloader:
		return nil, []string{"bootloader left as it is (no target firmware given)"}, nil
	case BIOS:
		if s.GrubInstall == "" || !contains(s.GrubPlatforms, "i386-pc") {
			return nil, nil, fmt.Errorf("%s: the target boots with BIOS, but the system has no GRUB for BIOS (grub-install and /usr/lib/grub/i386-pc): install grub-pc, or restore onto a UEFI target", s.Root)
		}
		// grub.cfg is rewritten in place rather than regenerated with grub-mkconfig: in the
		// recovery environment there is no udev, hence no /dev/disk/by-uuid, and grub-mkconfig
		// would then write root=/dev/… device names instead of the UUIDs the system uses.
		if v := debconfValue(s.Root, "grub-pc/install_devices"); v != "" {
			// Debian's grub-pc reinstalls GRUB on every upgrade onto the disks named here; the
			// names are the source machine's (by-id), which the target does not have.
			notes = append(notes, fmt.Sprintf("debconf grub-pc/install_devices is %q (the source's disks): on the restored system run dpkg-reconfigure grub-pc once, or the next grub-pc upgrade asks where to install", v))
		}
		return []CommandRun{{Argv: []string{s.GrubInstall, "--target=i386-pc", o.BootDisk}, Why: "install GRUB into the target disk's MBR and embedding area"}}, notes, nil
	case UEFI:
		if s.ESP == "" || !isDirSys(s.Root, s.ESP) {
			return nil, nil, fmt.Errorf("%s: the target boots with UEFI, but the system has no EFI system partition (no vfat /boot/efi or /efi in fstab, no /boot/efi/EFI)", s.Root)
		}
		esp := s.ESP
		if s.has("systemd-boot") && !s.has("grub-efi") {
			bootctl := findTool(s.Root, "bootctl")
			if bootctl == "" {
				return nil, nil, fmt.Errorf("%s: systemd-boot is installed on the ESP, but bootctl is missing", s.Root)
			}
			// bootctl install copies the loader to \EFI\systemd and \EFI\BOOT\BOOTX64.EFI; the
			// NVRAM entry is written here, through efivarfs, so bootctl must not try.
			return []CommandRun{{Argv: []string{bootctl, "install", "--esp-path=" + esp, "--no-variables"}, Why: "install systemd-boot at its own and the fallback path"}}, notes, nil
		}
		id := s.ID
		for _, b := range s.Bootloaders {
			if (b.Kind == "grub-efi" || b.Kind == "shim") && !strings.EqualFold(b.ID, "BOOT") {
				id = b.ID
				break
			}
		}
		if s.GrubInstall == "" || !contains(s.GrubPlatforms, "x86_64-efi") {
			if s.has("grub-efi") || s.has("shim") {
				// Distributions that ship a signed, prebuilt GRUB (Fedora, RHEL) have no
				// x86_64-efi modules to install from: their loader files are already on the ESP.
				notes = append(notes, "no GRUB EFI modules to install from (/usr/lib/grub/x86_64-efi): the EFI loader on the ESP is used as it is")
				return nil, notes, nil
			}
			return nil, nil, fmt.Errorf("%s: the target boots with UEFI, but the system has no EFI bootloader to install (no /usr/lib/grub/x86_64-efi, no loader on the ESP): install grub-efi-amd64", s.Root)
		}
		base := []string{s.GrubInstall, "--target=x86_64-efi", "--efi-directory=" + esp, "--no-nvram"}
		return []CommandRun{
			{Argv: append(append([]string(nil), base...), "--bootloader-id="+id), Why: `install GRUB (and shim, where the system uses it) into \EFI\` + id},
			{Argv: append(append([]string(nil), base...), "--removable"), Why: `install the fallback loader \EFI\BOOT\BOOTX64.EFI, which firmware starts without an NVRAM entry`},
		}, notes, nil
	}
	return nil, nil, fmt.Errorf("unknown firmware %q", o.Firmware)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// checkInitramfs lists every kernel's new initramfs with the system's own lister and checks that
// each driver that is a module of that kernel is inside.
func checkInitramfs(ctx context.Context, r Runner, s *System, drivers []string, since time.Time, rep *Report) error {
	var lister []string
	switch s.InitramfsTool {
	case InitramfsTools:
		lister = []string{findTool(s.Root, "lsinitramfs")}
	case Dracut:
		lister = []string{findTool(s.Root, "lsinitrd")}
	case Mkinitcpio:
		lister = []string{findTool(s.Root, "lsinitcpio")}
	}
	for _, k := range s.Kernels {
		img := k.Initramfs
		h, err := resolve(s.Root, img)
		if err != nil {
			return err
		}
		fi, err := os.Stat(h)
		if err != nil {
			return fmt.Errorf("after the rebuild, kernel %s has no initramfs at %s", k.Version, img)
		}
		if fi.ModTime().Before(since.Add(-2 * time.Second)) {
			return fmt.Errorf("after the rebuild, %s (kernel %s) is older than the rebuild: the tool did not write it", img, k.Version)
		}
		mods, _, err := kernelDrivers(s.Root, k)
		if err != nil {
			return err
		}
		chk := InitramfsCheck{Kernel: k.Version, Initramfs: img}
		if lister[0] == "" {
			rep.Notes = append(rep.Notes, fmt.Sprintf("no initramfs lister for %s in the system: %s not checked", s.InitramfsTool, img))
			rep.Initramfs = append(rep.Initramfs, chk)
			continue
		}
		chk.Lister = lister[0]
		out, err := r.Run(ctx, s.Root, append(lister, img))
		if err != nil {
			return fmt.Errorf("listing %s with %s failed (%v):\n%s", img, lister[0], err, tailLines(out, 20))
		}
		inside := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			if p := f[len(f)-1]; strings.Contains(p, ".ko") {
				inside[moduleName(p)] = true
			}
		}
		for _, d := range drivers {
			switch {
			case inside[d]:
				chk.Drivers = append(chk.Drivers, d)
			case mods[d]:
				chk.Missing = append(chk.Missing, d)
			}
		}
		rep.Initramfs = append(rep.Initramfs, chk)
		if len(chk.Missing) > 0 {
			return fmt.Errorf("%s (kernel %s) was rebuilt but lacks %s", img, k.Version, strings.Join(chk.Missing, ", "))
		}
	}
	return nil
}

// debconfValue returns a question's value from Debian's debconf database, or "".
func debconfValue(root, name string) string {
	b, found, err := readSys(root, "/var/cache/debconf/config.dat")
	if err != nil || !found {
		return ""
	}
	for _, stanza := range strings.Split(string(b), "\n\n") {
		lines := strings.Split(stanza, "\n")
		if len(lines) == 0 || strings.TrimSpace(lines[0]) != "Name: "+name {
			continue
		}
		for _, l := range lines[1:] {
			if v, ok := strings.CutPrefix(l, "Value: "); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}
