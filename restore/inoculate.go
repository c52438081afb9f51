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

// Inoculate is RunOptions.Inoculate on an ordinary host: for every restored disk, the Linux root
// and the Windows system volume (if any) are inoculated for the target's storage controller,
// identities and firmware, assuming the disks will run on other hardware than this machine's.
func Inoculate(ctx context.Context, p *Plan, emit func(Event)) ([]string, error) {
	return inoculate(ctx, p, emit, false)
}

// InoculateOnTarget is Inoculate in the boot environment on the machine being recovered: its
// device targets run on this very hardware, so host-only initramfs settings stay as they are.
func InoculateOnTarget(ctx context.Context, p *Plan, emit func(Event)) ([]string, error) {
	return inoculate(ctx, p, emit, true)
}

func inoculate(ctx context.Context, p *Plan, emit func(Event), onTarget bool) ([]string, error) {
	var changes []string
	found := 0
	mapping, err := bcdMapping(p)
	if err != nil {
		return nil, err
	}
	for _, d := range p.Disks {
		layout := d.layout(p)
		info := func(format string, a ...any) {
			emit(Event{Stage: StageInoculate, Kind: EventInfo, Disk: d.Source, Message: fmt.Sprintf(format, a...)})
		}
		att, err := attachDisk(d)
		if err != nil {
			return changes, fmt.Errorf("%s: %w", d.Source, err)
		}
		c, ok, err := inoculateLinuxOn(ctx, p, d, layout, att, onTarget && d.onThisMachine(), info)
		changes = append(changes, c...)
		if err == nil {
			var w []string
			var wok bool
			w, wok, err = inoculateWindowsOn(ctx, p, d, layout, att, mapping, info)
			changes = append(changes, w...)
			ok = ok || wok
		}
		att.close()
		if err != nil {
			return changes, fmt.Errorf("%s: %w", d.Source, err)
		}
		if ok {
			found++
		}
	}
	if found == 0 {
		emit(Event{Stage: StageInoculate, Kind: EventInfo, Message: "no Linux or Windows system found on the restored disks: nothing to inoculate"})
	}
	return changes, nil
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

func (a attached) partition(n int) string { return linux.PartitionDevice(a.disk, n) }

// attachDisk makes the target's partitions reachable: a device target has its nodes already
// (partition.Apply had the kernel re-read the table); an image gets a loop device with its
// partitions added through BLKPG (partx), as kernels that parse no tables need.
func attachDisk(d DiskPlan) (attached, error) {
	if d.onThisMachine() {
		dev, err := filepath.EvalSymlinks(d.Target)
		if err != nil {
			return attached{}, err
		}
		return attached{disk: dev, close: func() {}}, nil
	}
	out, err := exec.Command("losetup", "--find", "--show", d.Target).CombinedOutput()
	if err != nil {
		return attached{}, fmt.Errorf("losetup %s: %v: %s", d.Target, err, strings.TrimSpace(string(out)))
	}
	loop := strings.TrimSpace(string(out))
	detach := func() {
		exec.Command("partx", "-d", loop).Run()
		exec.Command("losetup", "-d", loop).Run()
	}
	// A loop device detached without partx -d keeps its old partitions: clear them first.
	exec.Command("partx", "-d", loop).Run()
	if out, err := exec.Command("partx", "-a", loop).CombinedOutput(); err != nil && !strings.Contains(string(out), "busy") {
		detach()
		return attached{}, fmt.Errorf("partx -a %s: %v: %s", loop, err, strings.TrimSpace(string(out)))
	}
	return attached{disk: loop, close: detach}, nil
}

var linuxRootTypes = map[string]bool{"ext2": true, "ext3": true, "ext4": true, "xfs": true, "btrfs": true}

// inoculateLinuxOn looks for a Linux root among the disk's partitions and inoculates it.
func inoculateLinuxOn(ctx context.Context, p *Plan, d DiskPlan, layout *partition.Disk, att attached, onTarget bool, info func(string, ...any)) ([]string, bool, error) {
	if layout == nil {
		return nil, false, nil
	}
	for _, part := range layout.Partitions {
		if part.Filesystem == nil || !linuxRootTypes[part.Filesystem.Type] {
			continue
		}
		dev := att.partition(part.Number)
		if err := waitFor(dev, 5*time.Second); err != nil {
			return nil, false, err
		}
		dir, err := os.MkdirTemp("", "cauldron-root-")
		if err != nil {
			return nil, false, err
		}
		if err := unix.Mount(dev, dir, part.Filesystem.Type, 0, ""); err != nil {
			os.Remove(dir)
			return nil, false, fmt.Errorf("mounting partition %d (%s) at %s: %w", part.Number, dev, dir, err)
		}
		changes, ok, err := inoculateLinuxRoot(ctx, p, d, layout, att, part.Number, dir, onTarget, info)
		if uerr := unix.Unmount(dir, 0); uerr != nil && err == nil {
			err = fmt.Errorf("unmounting %s: %w", dir, uerr)
		}
		os.Remove(dir)
		if ok || err != nil {
			return changes, ok, err
		}
	}
	return nil, false, nil
}

func inoculateLinuxRoot(ctx context.Context, p *Plan, d DiskPlan, layout *partition.Disk, att attached, number int, root string, onTarget bool, info func(string, ...any)) ([]string, bool, error) {
	sys, err := linux.Detect(root)
	if errors.Is(err, linux.ErrNoLinux) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	info("partition %d holds %s", number, sys.PrettyName)
	p.systems = append(p.systems, restoredSystem{disk: d, partition: number, fsType: layoutFS(layout, number), dir: "var/log/cauldron"})
	o := linux.Options{Root: root, OnTarget: onTarget, Log: func(s string) { info("%s", s) }}
	o.Drivers, err = targetDrivers(p.Inoculate.Hardware, d, att)
	if err != nil {
		return nil, true, err
	}
	if d.Layout != nil {
		for _, id := range d.Layout.Identities {
			if id.Old == id.New {
				continue
			}
			r, ok, err := linux.IdentityRename(id.What, id.Old, id.New)
			if err != nil {
				return nil, true, err
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
			return nil, true, err
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
	if efi {
		o.Firmware = linux.UEFI
		if esp := espOf(layout); esp != nil {
			lss := int64(layout.LogicalSectorSize)
			o.ESPPartition = &linux.ESPPartition{Number: uint32(esp.Number), Start: uint64(esp.Start / lss), Size: uint64(esp.Size / lss), GUID: esp.GUID}
		}
	} else {
		o.Firmware = linux.BIOS
		o.BootDisk = att.disk
	}
	o.Mounts, err = fstabMounts(sys, layout, att)
	if err != nil {
		return nil, true, err
	}
	rep, err := linux.Inoculate(ctx, o)
	var changes []string
	if rep != nil {
		for _, line := range strings.Split(strings.TrimSpace(rep.Text()), "\n") {
			if line != "" {
				changes = append(changes, line)
			}
		}
	}
	return changes, true, err
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
		for _, part := range layout.Partitions {
			cand := att.partition(part.Number)
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
