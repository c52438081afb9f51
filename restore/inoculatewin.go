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

// inoculateWindowsOn looks for a Windows system volume among the disk's NTFS volumes and
// inoculates it, with the ESP when the disk has one.
func inoculateWindowsOn(ctx context.Context, p *Plan, d DiskPlan, layout *partition.Disk, att attached, mapping bcd.Mapping, info func(string, ...any), sr *search) ([]string, error) {
	for _, v := range sr.volumes {
		if v.fs != "ntfs" {
			continue
		}
		dev := att.partition(v.number)
		if err := waitFor(dev, 5*time.Second); err != nil {
			return nil, err
		}
		root, unmount, err := mountNTFS(dev)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v, err)
		}
		if why := notWindows(root); why != "" {
			unmount()
			sr.saw(v, why)
			continue
		}
		info("%s holds Windows", v)
		sr.found(v, "Windows")
		p.systems = append(p.systems, restoredSystem{disk: d, partition: v.number, fsType: "ntfs", dir: "Windows/Cauldron"})
		o := windows.Options{Root: root, Drivers: p.Inoculate.Drivers, Hardware: orDefault(p.Inoculate.Hardware, "detect"),
			EnableInbox: p.Inoculate.EnableInbox, DisableServices: p.Inoculate.DisableServices, Mapping: mapping,
			Log: func(s string) { info("%s", s) }}
		if !d.onThisMachine() && o.Hardware == "detect" {
			unmount()
			return nil, errors.New("Windows on an image file: name the hardware it will run on (inoculate --hardware), there is no controller to detect")
		}
		if bs, err := readSector(dev); err == nil {
			o.BootSector = bs
		}
		if esp := espOf(layout); esp != nil {
			o.Firmware = "uefi"
			espDir, espUnmount, err := mountESP(att.partition(esp.Number))
			if err != nil {
				unmount()
				return nil, fmt.Errorf("mounting the ESP (partition %d) to rewrite its BCD: %w", esp.Number, err)
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
			changes = reportLines(rep.Text())
		}
		return changes, err
	}
	return nil, nil
}

// windowsSystemHive is the file that marks a Windows system volume: the SYSTEM hive, which
// inoculation rewrites (drivers, services, MountedDevices).
var windowsSystemHive = []string{"Windows", "System32", "config", "SYSTEM"}

// notWindows says why the volume mounted at root is no Windows system volume ("" when it is
// one): NTFS names are matched without regard to case, as Windows does.
func notWindows(root string) string {
	dir := root
	for i, name := range windowsSystemHive {
		next, ok := entryFold(dir, name)
		if !ok {
			if i == 0 {
				return `no \Windows folder`
			}
			return `a \Windows folder without System32\config\SYSTEM`
		}
		dir = next
	}
	if fi, err := os.Stat(dir); err != nil || !fi.Mode().IsRegular() {
		return `\Windows\System32\config\SYSTEM is not a file`
	}
	return ""
}

// entryFold finds name in dir, whatever its case.
func entryFold(dir, name string) (string, bool) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", false
	}
	for _, e := range ents {
		if strings.EqualFold(e.Name(), name) {
			return filepath.Join(dir, e.Name()), true
		}
	}
	return "", false
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
