package restore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/windows"
	"github.com/cauldron-dr/cauldron/partition"
	"golang.org/x/sys/unix"
)

// bcdMapping collects every disk's identity changes: a Windows system's BCD and MountedDevices
// may name any disk of the machine, not only their own.
func bcdMapping(p *Plan) (bcd.Mapping, error) {
	var m bcd.Mapping
	for _, d := range p.Disks {
		if d.Layout == nil {
			continue
		}
		var ids []bcd.Identity
		changed := false
		for _, id := range d.Layout.Identities {
			ids = append(ids, bcd.Identity(id))
			changed = changed || id.Old != id.New
		}
		var moves []bcd.Move
		for _, mv := range d.Layout.Moves {
			moves = append(moves, bcd.Move{OldStart: mv.OldStart, NewStart: mv.NewStart})
			changed = changed || mv.OldStart != mv.NewStart
		}
		if !changed {
			continue
		}
		dm, err := bcd.NewDiskMap(ids, moves)
		if err != nil {
			return m, fmt.Errorf("%s: %w", d.Source, err)
		}
		m.Disks = append(m.Disks, dm)
	}
	return m, nil
}

// inoculateWindowsOn looks for a Windows system volume among the disk's NTFS partitions and
// inoculates it, with the ESP when the disk has one.
func inoculateWindowsOn(ctx context.Context, p *Plan, d DiskPlan, layout *partition.Disk, att attached, mapping bcd.Mapping, info func(string, ...any)) ([]string, bool, error) {
	if layout == nil {
		return nil, false, nil
	}
	for _, part := range layout.Partitions {
		if part.Filesystem == nil || part.Filesystem.Type != "ntfs" {
			continue
		}
		dev := att.partition(part.Number)
		if err := waitFor(dev, 5*time.Second); err != nil {
			return nil, false, err
		}
		root, unmount, err := mountNTFS(dev)
		if err != nil {
			return nil, false, fmt.Errorf("partition %d: %w", part.Number, err)
		}
		if !hasWindows(root) {
			unmount()
			continue
		}
		info("partition %d holds Windows", part.Number)
		p.systems = append(p.systems, restoredSystem{disk: d, partition: part.Number, fsType: "ntfs", dir: "Windows/Cauldron"})
		o := windows.Options{Root: root, Drivers: p.Inoculate.Drivers, Hardware: orDefault(p.Inoculate.Hardware, "detect"),
			EnableInbox: p.Inoculate.EnableInbox, DisableServices: p.Inoculate.DisableServices, Mapping: mapping,
			Log: func(s string) { info("%s", s) }}
		if !d.onThisMachine() && o.Hardware == "detect" {
			unmount()
			return nil, true, errors.New("Windows on an image file: name the hardware it will run on (inoculate --hardware), there is no controller to detect")
		}
		if bs, err := readSector(dev); err == nil {
			o.BootSector = bs
		}
		if esp := espOf(layout); esp != nil {
			o.Firmware = "uefi"
			espDir, espUnmount, err := mountESP(att.partition(esp.Number))
			if err != nil {
				unmount()
				return nil, true, fmt.Errorf("mounting the ESP (partition %d) to rewrite its BCD: %w", esp.Number, err)
			}
			defer espUnmount()
			o.ESP = espDir
		} else if layout.Table == partition.TableMBR {
			o.Firmware = "bios"
		}
		rep, err := windows.Inoculate(ctx, o)
		if uerr := unmount(); uerr != nil && err == nil {
			err = uerr
		}
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
	return nil, false, nil
}

func hasWindows(root string) bool {
	ents, err := os.ReadDir(root)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name(), "windows") && e.IsDir() {
			return true
		}
	}
	return false
}

// mountNTFS mounts an NTFS volume read-write through ntfs-3g (Debian's kernel has no ntfs3).
// A volume ntfsresize left marked for a check needs -o force; Windows checks it at its next boot.
func mountNTFS(dev string) (string, func() error, error) {
	dir, err := os.MkdirTemp("", "cauldron-ntfs-")
	if err != nil {
		return "", nil, err
	}
	out, err := exec.Command("ntfs-3g", dev, dir).CombinedOutput()
	if err != nil && strings.Contains(string(out), "check") {
		out, err = exec.Command("ntfs-3g", "-o", "force", dev, dir).CombinedOutput()
	}
	if err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("ntfs-3g %s: %v: %s", dev, err, strings.TrimSpace(string(out)))
	}
	return dir, func() error {
		defer os.Remove(dir)
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			return fmt.Errorf("umount %s: %v: %s", dir, err, strings.TrimSpace(string(out)))
		}
		return nil
	}, nil
}

func mountESP(dev string) (string, func(), error) {
	dir, err := os.MkdirTemp("", "cauldron-esp-")
	if err != nil {
		return "", nil, err
	}
	if err := unix.Mount(dev, dir, "vfat", 0, ""); err != nil {
		os.Remove(dir)
		return "", nil, fmt.Errorf("mount %s (vfat): %w", dev, err)
	}
	return dir, func() { unix.Unmount(dir, 0); os.Remove(dir) }, nil
}

func readSector(dev string) ([]byte, error) {
	f, err := os.Open(dev)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 512)
	_, err = f.ReadAt(b, 0)
	return b, err
}
