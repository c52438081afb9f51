package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/linux"
	"github.com/cauldron-dr/cauldron/partition"
	"golang.org/x/sys/unix"
)

// The inoculate stage: find the operating system on each restored disk and make it boot here.
// Linux goes through package inoculate/linux, Windows through inoculate/windows; a disk without
// an operating system Cauldron knows is reported and left as restored.

// hardwareDrivers are the kernel modules a named hardware profile needs in a restored Linux's
// initramfs (the Windows side uses the same profile names).
var hardwareDrivers = map[string][]string{
	"kvm-virtio-blk":  {"virtio_pci", "virtio_blk"},
	"kvm-virtio-scsi": {"virtio_pci", "virtio_scsi", "sd_mod"},
	"vmware-pvscsi":   {"vmw_pvscsi", "sd_mod"},
	"hyperv":          {"hv_vmbus", "hv_storvsc", "sd_mod"},
	"ahci":            {"ahci", "sd_mod"},
	"nvme":            {"nvme", "nvme_core"},
}

// InoculationResult is what the inoculate stage did.
type InoculationResult struct {
	// Systems are the operating systems found ("disk0 partition 2: Debian GNU/Linux 12").
	Systems []string
	// Changes are what inoculation changed in them, one line each.
	Changes []string
	// Warnings are what the technician must see in the report: above all that no system was
	// found, with what was searched, and that nothing was changed.
	Warnings []string
	// searched describes, per disk, what was looked at (for the warning when nothing is found).
	searched []string
}

// Summary is the stage's message: the systems made to boot here, or why nothing was changed.
func (r *InoculationResult) Summary() string {
	if len(r.Systems) == 0 {
		return "nothing changed: no Linux or Windows system found (" + strings.Join(r.searched, "; ") + ")"
	}
	// The changes themselves are the report's lines (Changes), not counted here: a count of
	// report lines would read as a count of changes.
	return "inoculated " + strings.Join(r.Systems, ", ")
}

// Inoculate is RunOptions.Inoculate on an ordinary host: for every restored disk, the Linux root
// and the Windows system volume (if any) are inoculated for the target's storage controller,
// identities and firmware, assuming the disks will run on other hardware than this machine's.
func Inoculate(ctx context.Context, p *Plan, emit func(Event)) (*InoculationResult, error) {
	return inoculate(ctx, p, emit, false)
}

// InoculateOnTarget is Inoculate in the boot environment on the machine being recovered: its
// device targets run on this very hardware, so host-only initramfs settings stay as they are.
func InoculateOnTarget(ctx context.Context, p *Plan, emit func(Event)) (*InoculationResult, error) {
	return inoculate(ctx, p, emit, true)
}

func inoculate(ctx context.Context, p *Plan, emit func(Event), onTarget bool) (*InoculationResult, error) {
	res := &InoculationResult{}
	mapping, err := bcdMapping(p)
	if err != nil {
		return res, err
	}
	for _, d := range p.Disks {
		layout := d.layout(p)
		info := func(format string, a ...any) {
			emit(Event{Stage: StageInoculate, Kind: EventInfo, Disk: d.Source, Message: fmt.Sprintf(format, a...)})
		}
		found, err := inoculateDisk(ctx, p, d, layout, mapping, onTarget, info, res)
		if err != nil {
			return res, fmt.Errorf("%s: %w", d.Source, err)
		}
		if !found.any() {
			res.searched = append(res.searched, found.String())
		}
	}
	if len(res.Systems) == 0 {
		w := "inoculation changed nothing: no Linux or Windows system was found on the restored disks, so the restored " +
			"systems are as captured and may not boot on other hardware than the source's. Searched: " + strings.Join(res.searched, "; ") +
			". A Linux root is an ext2/3/4, XFS or Btrfs volume with /etc/os-release or /usr/lib/os-release; Windows is an NTFS volume with " +
			`\Windows\System32\config\SYSTEM. Inoculation does not open LVM or encrypted volumes.`
		res.Warnings = append(res.Warnings, w)
		emit(Event{Stage: StageInoculate, Kind: EventInfo, Message: "warning: " + w})
	}
	return res, nil
}

// inoculateDisk looks for a Linux root and a Windows system on one restored disk and inoculates
// them, recording in res what it found and changed; the search says what was looked at.
func inoculateDisk(ctx context.Context, p *Plan, d DiskPlan, layout *partition.Disk, mapping bcd.Mapping, onTarget bool, info func(string, ...any), res *InoculationResult) (*search, error) {
	sr := &search{disk: d.Source, target: d.Target}
	if layout == nil {
		sr.unknown = true
		return sr, nil
	}
	sr.volumes = volumesOf(layout)
	att, err := attachDisk(p, d)
	if err != nil {
		return sr, err
	}
	defer att.close()
	defer func() {
		for _, s := range sr.systems {
			res.Systems = append(res.Systems, d.Source+" "+s)
		}
	}()
	c, err := inoculateLinuxOn(ctx, p, d, layout, att, onTarget && d.onThisMachine(), info, sr)
	res.Changes = append(res.Changes, c...)
	if err != nil {
		return sr, err
	}
	w, err := inoculateWindowsOn(ctx, p, d, layout, att, mapping, info, sr)
	res.Changes = append(res.Changes, w...)
	return sr, err
}

// volume is a filesystem inoculation may look into: a partition, or (number 0) the whole disk
// when it has no partition table.
type volume struct {
	number int
	fs     string // "" when none was recognised
}

func (v volume) String() string {
	if v.number == 0 {
		if v.fs == "" {
			return "the whole disk (no partition table)"
		}
		return "the whole disk (" + v.fs + ", no partition table)"
	}
	if v.fs == "" {
		return fmt.Sprintf("partition %d", v.number)
	}
	return fmt.Sprintf("partition %d (%s)", v.number, v.fs)
}

// volumesOf lists the disk's volumes as restored: its partitions that hold data, or the disk
// itself when it has no table (one filesystem on the whole disk).
func volumesOf(layout *partition.Disk) []volume {
	fsType := func(f *partition.Filesystem) string {
		if f == nil {
			return ""
		}
		return f.Type
	}
	if layout.Table == partition.TableNone {
		return []volume{{0, fsType(layout.Filesystem)}}
	}
	var out []volume
	for _, part := range layout.Partitions {
		if part.HoldsData() {
			out = append(out, volume{part.Number, fsType(part.Filesystem)})
		}
	}
	return out
}

// search is what inoculation looked at on one disk and what it saw on each volume.
type search struct {
	disk, target string
	unknown      bool // the disk's layout is not known
	volumes      []volume
	seen         map[int]string // volume number → why no system is there
	systems      []string       // "partition 2: Debian GNU/Linux 12"
}

func (s *search) saw(v volume, why string) {
	if s.seen == nil {
		s.seen = map[int]string{}
	}
	s.seen[v.number] = why
}

func (s *search) found(v volume, system string) {
	s.systems = append(s.systems, v.String()+": "+system)
}

func (s *search) any() bool { return len(s.systems) > 0 }

// String says, for the warning, what was searched on the disk and what each volume holds.
func (s *search) String() string {
	head := s.disk + " (" + s.target + ")"
	switch {
	case s.unknown:
		return head + ": its layout is not in the generation, so nothing was searched"
	case len(s.volumes) == 0:
		return head + ": a partition table without partitions"
	}
	var parts []string
	for _, v := range s.volumes {
		why, ok := s.seen[v.number]
		if !ok {
			why = notASystemVolume(v.fs)
		}
		parts = append(parts, v.String()+": "+why)
	}
	return head + ": " + strings.Join(parts, ", ")
}

// notASystemVolume says why a volume that was not opened holds no system inoculation knows.
func notASystemVolume(fs string) string {
	switch fs {
	case "":
		return "no filesystem recognised"
	case "swap":
		return "swap"
	case "vfat", "exfat":
		return "FAT, a boot or data volume (no Linux root or Windows lives on FAT)"
	case "lvm2":
		return "an LVM physical volume, whose logical volumes inoculation does not open"
	case "luks", "crypto_LUKS", "bitlocker":
		return "encrypted, not opened"
	}
	return fs + ", not a filesystem a Linux root or Windows lives on"
}

// layout is the disk's layout as restored: the plan's, or the source's for a byte-for-byte restore.
func (d DiskPlan) layout(p *Plan) *partition.Disk {
	if d.Layout != nil {
		return d.Layout.Layout
	}
	for i := range p.gen.Disks {
		if p.gen.Disks[i].Name == d.Source {
			return &p.gen.Disks[i].Layout
		}
	}
	return nil
}

// attached is a restored disk reachable as a device with partition nodes.
type attached struct {
	disk  string // the whole disk: the target device, or a loop device over the image
	close func()
}

// partition is the device of partition n; n 0 is the whole disk (a disk without a table).
func (a attached) partition(n int) string {
	if n == 0 {
		return a.disk
	}
	return linux.PartitionDevice(a.disk, n)
}

// attachDisk makes the target's volumes reachable as its kind allows (Target.Attach: a device has
// its nodes already; an image gets a loop device with the restored layout's sector size and its
// partitions added through BLKPG; a disk without a table is its one volume).
func attachDisk(p *Plan, d DiskPlan) (attached, error) {
	t, err := d.target()
	if err != nil {
		return attached{}, err
	}
	dev, detach, err := t.Attach(d.layout(p))
	if err != nil {
		return attached{}, err
	}
	return attached{disk: dev, close: detach}, nil
}

var linuxRootTypes = map[string]bool{"ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true}

// inoculateLinuxOn looks for a Linux root among the disk's volumes and inoculates the first.
func inoculateLinuxOn(ctx context.Context, p *Plan, d DiskPlan, layout *partition.Disk, att attached, onTarget bool, info func(string, ...any), sr *search) ([]string, error) {
	for _, v := range sr.volumes {
		if !linuxRootTypes[v.fs] {
			continue
		}
		dev := att.partition(v.number)
		if err := waitFor(dev, 5*time.Second); err != nil {
			return nil, err
		}
		dir, err := os.MkdirTemp("", "cauldron-root-")
		if err != nil {
			return nil, err
		}
		if err := unix.Mount(dev, dir, v.fs, 0, ""); err != nil {
			os.Remove(dir)
			return nil, fmt.Errorf("mounting %s (%s) at %s: %w", v, dev, dir, err)
		}
		changes, sys, err := inoculateLinuxRoot(ctx, p, d, layout, att, v, dir, onTarget, info)
		if uerr := unix.Unmount(dir, 0); uerr != nil && err == nil {
			err = fmt.Errorf("unmounting %s: %w", dir, uerr)
		}
		os.Remove(dir)
		if sys == nil && err == nil {
			sr.saw(v, "no /etc/os-release or /usr/lib/os-release")
			continue
		}
		if sys != nil {
			sr.found(v, sys.PrettyName)
		}
		return changes, err
	}
	return nil, nil
}

// inoculateLinuxRoot inoculates the Linux system mounted at root, if there is one (sys nil:
// there is none).
func inoculateLinuxRoot(ctx context.Context, p *Plan, d DiskPlan, layout *partition.Disk, att attached, v volume, root string, onTarget bool, info func(string, ...any)) (changes []string, sys *linux.System, err error) {
	sys, err = linux.Detect(root)
	if errors.Is(err, linux.ErrNoLinux) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	info("%s holds %s", v, sys.PrettyName)
	p.systems = append(p.systems, restoredSystem{disk: d, partition: v.number, fsType: v.fs, dir: "var/log/cauldron"})
	o := linux.Options{Root: root, OnTarget: onTarget, Log: func(s string) { info("%s", s) }}
	o.Drivers, err = targetDrivers(p.Inoculate.Hardware, d, att)
	if err != nil {
		return nil, sys, err
	}
	if d.Layout != nil {
		for _, id := range d.Layout.Identities {
			if id.Old == id.New {
				continue
			}
			r, ok, err := linux.IdentityRename(id.What, id.Old, id.New)
			if err != nil {
				return nil, sys, err
			}
			if ok {
				o.Renames = append(o.Renames, r)
			}
		}
	}
	// Device names: the disk the source was captured from, if it was a device, is now this one.
	if src := p.sourceOf(d.Source); strings.HasPrefix(src, "/dev/") && d.onThisMachine() {
		var nums []int
		for _, part := range layout.Partitions {
			nums = append(nums, part.Number)
		}
		rn, err := linux.DeviceRenames(src, att.disk, nums)
		if err != nil {
			return nil, sys, err
		}
		o.Renames = append(o.Renames, rn...)
	}
	// Firmware: the boot environment's own for a device; an image keeps the loader kind its
	// layout implies (a GPT disk with an ESP is UEFI) and gets no NVRAM entry, as a disk that
	// will run elsewhere.
	efi := false
	if _, err := os.Stat("/sys/firmware/efi"); err == nil && d.onThisMachine() {
		efi = true
	}
	if !d.onThisMachine() {
		efi = layout.Table == partition.TableGPT && hasESP(layout)
		o.NoNVRAM = true
	}
	switch {
	case layout.Table == partition.TableNone:
		// One filesystem on the whole disk: there is no MBR gap or ESP to put a bootloader in
		// (GRUB's core image would overwrite the filesystem's first blocks). Such a disk is
		// started by another disk's bootloader or by the hypervisor's kernel: leave that as it is.
		o.Firmware = linux.KeepBootloader
		info("%s: no partition table, so no bootloader is installed on it", d.Source)
	case efi:
		o.Firmware = linux.UEFI
		if esp := espOf(layout); esp != nil {
			lss := int64(layout.LogicalSectorSize)
			o.ESPPartition = &linux.ESPPartition{Number: uint32(esp.Number), Start: uint64(esp.Start / lss), Size: uint64(esp.Size / lss), GUID: esp.GUID}
		}
	default:
		o.Firmware = linux.BIOS
		o.BootDisk = att.disk
	}
	o.Mounts, err = fstabMounts(sys, layout, att)
	if err != nil {
		return nil, sys, err
	}
	rep, err := linux.Inoculate(ctx, o)
	if rep != nil {
		changes = reportLines(rep.Text())
	}
	return changes, sys, err
}

// reportLines are an inoculation report's non-empty lines, the report's changes.
func reportLines(text string) []string {
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if line != "" {
			out = append(out, line)
		}
	}
	return out
}

// targetDrivers are the modules the restored Linux needs for the target's controller: a named
// profile's, or (detect) the driver the target disk hangs off on this machine.
func targetDrivers(hardware string, d DiskPlan, att attached) ([]string, error) {
	if hardware != "" && hardware != "detect" {
		mods, ok := hardwareDrivers[hardware]
		if !ok {
			return nil, fmt.Errorf("hardware profile %q has no Linux drivers listed", hardware)
		}
		return mods, nil
	}
	if !d.onThisMachine() {
		return nil, nil // an image has no controller here: the restored system keeps its own
	}
	real, err := filepath.EvalSymlinks(filepath.Join("/sys/block", filepath.Base(att.disk)))
	if err != nil {
		return nil, fmt.Errorf("finding %s's controller: %w", att.disk, err)
	}
	drv := partition.ControllerDriver(real)
	if drv == "" {
		return nil, fmt.Errorf("%s: no controller driver found in sysfs", att.disk)
	}
	mods := []string{strings.ReplaceAll(drv, "-", "_")}
	switch drv {
	case "virtio_blk":
		mods = append(mods, "virtio_pci")
	case "nvme":
		mods = append(mods, "nvme_core")
	case "virtio_scsi", "ahci", "ata_piix", "megaraid_sas", "mpt3sas", "hpsa", "smartpqi", "vmw_pvscsi", "hv_storvsc", "usb-storage", "uas", "aacraid":
		mods = append(mods, "sd_mod")
	}
	return mods, nil
}

func hasESP(d *partition.Disk) bool { return espOf(d) != nil }

func espOf(d *partition.Disk) *partition.Partition {
	for i := range d.Partitions {
		if strings.EqualFold(d.Partitions[i].Type, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B") || d.Partitions[i].Type == "0xef" {
			return &d.Partitions[i]
		}
	}
	return nil
}

// fstabMounts finds, for each fstab entry the work needs (/boot, the ESP), the restored
// partition it names (by UUID, PARTUUID, LABEL or device name), through blkid.
func fstabMounts(sys *linux.System, layout *partition.Disk, att attached) ([]linux.Mount, error) {
	var out []linux.Mount
	for _, e := range sys.NeedMounts {
		dev := ""
		for _, v := range volumesOf(layout) {
			cand := att.partition(v.number)
			if specMatches(e.Spec, cand) {
				dev = cand
				break
			}
		}
		if dev == "" {
			return nil, fmt.Errorf("fstab names %s for %s, which is none of the restored partitions", e.Spec, e.File)
		}
		out = append(out, linux.Mount{Device: dev, Dir: e.File, Type: e.Type})
	}
	return out, nil
}

func specMatches(spec, dev string) bool {
	out, err := exec.Command("blkid", "-o", "export", dev).Output()
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		switch {
		case k == "UUID" && strings.EqualFold(spec, "UUID="+v),
			k == "PARTUUID" && strings.EqualFold(spec, "PARTUUID="+v),
			k == "LABEL" && spec == "LABEL="+v:
			return true
		}
	}
	return false
}

func waitFor(dev string, max time.Duration) error {
	deadline := time.Now().Add(max)
	for {
		if _, err := os.Stat(dev); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear: %w", dev, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sourceOf is the path a source disk was captured from.
func (p *Plan) sourceOf(disk string) string {
	for i := range p.gen.Disks {
		if p.gen.Disks[i].Name == disk {
			return p.gen.Disks[i].Source
		}
	}
	return ""
}
