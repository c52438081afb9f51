package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/windows"
	"github.com/spf13/cobra"
)

// newInoculate is `cauldron inoculate`: make a restored Windows boot on the target's storage
// hardware and disks (package inoculate/windows does the work).
func newInoculate() *cobra.Command {
	var o windows.Options
	var plans []string
	var bootSector string
	var jsonOut, detectOnly bool
	c := &cobra.Command{
		Use:   "inoculate --root MOUNTPOINT [--esp MOUNTPOINT] --drivers DIR... --hardware PROFILE|detect [--enable-inbox a,b] [--disable-services vmware,hyperv,xen] [--plan LAYOUT.json]... [--dry-run] [--json]",
		Short: "Make a restored Windows boot on new storage hardware: drivers, registry, MountedDevices, BCD",
		Long: `Edits a restored Windows system volume (mounted read-write through ntfs-3g) offline: installs the
driver of each target storage controller (hardware profiles: ` + strings.Join(windows.Profiles(), ", ") + `,
or detect: this machine's controllers) from the driver folders given or from Windows' own drivers, in
every control set; rewrites MountedDevices and the BCD stores for the new disk identities of
layout plans (cauldron layout plan --json); queues a first-boot pnputil install. Every hive is
checked before and after, written atomically, and kept as FILE.cauldron-backup.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Root == "" {
				return errors.New("--root MOUNTPOINT is required")
			}
			if bootSector != "" {
				b, err := readSector(bootSector)
				if err != nil {
					return err
				}
				o.BootSector = b
			}
			for _, p := range plans {
				dm, err := readPlanIdentities(p)
				if err != nil {
					return err
				}
				o.Mapping.Disks = append(o.Mapping.Disks, dm)
			}
			if detectOnly {
				s, err := windows.Detect(cmd.Context(), o)
				if err != nil {
					return err
				}
				if jsonOut {
					return printJSON(s)
				}
				fmt.Fprint(cmd.OutOrStdout(), s.Text())
				return nil
			}
			if o.Hardware == "" && len(o.Controllers) == 0 {
				return errors.New("--hardware PROFILE|detect is required (profiles: " + strings.Join(windows.Profiles(), ", ") + ")")
			}
			if !jsonOut {
				o.Log = func(s string) { fmt.Fprintln(cmd.ErrOrStderr(), s) }
			}
			r, err := windows.Inoculate(cmd.Context(), o)
			if jsonOut {
				if perr := printJSON(r); perr != nil {
					return perr
				}
			} else if r != nil {
				fmt.Fprint(cmd.OutOrStdout(), r.Text())
			}
			return err
		},
	}
	f := c.Flags()
	f.StringVar(&o.Root, "root", "", "the Windows system volume, mounted read-write")
	f.StringVar(&o.ESP, "esp", "", "the EFI system partition, mounted (UEFI systems)")
	f.StringSliceVar(&o.Drivers, "drivers", nil, "folders of driver packages (virtio-win layout or flat); repeatable")
	f.StringVar(&o.Hardware, "hardware", "", "target hardware profile ("+strings.Join(windows.Profiles(), ", ")+") or detect")
	f.StringVar(&o.Sysfs, "sysfs", "", "sysfs root read by --hardware detect (default /sys)")
	f.StringSliceVar(&o.EnableInbox, "enable-inbox", nil, "further inbox drivers to start at boot (storahci, stornvme, …)")
	f.StringSliceVar(&o.DisableServices, "disable-services", nil, "disable these hypervisors' guest services: "+strings.Join(windows.Hypervisors(), ","))
	f.StringArrayVar(&plans, "plan", nil, "a layout plan (cauldron layout plan --json) whose identities and moves MountedDevices and the BCD must follow; repeatable, one per disk")
	f.StringVar(&o.Firmware, "firmware", "", "the target's firmware (bios or uefi), default: from the BCD stores found")
	f.StringVar(&bootSector, "boot-sector", "", "the system volume's block device or an image of its first sector, to check for BitLocker")
	f.IntVar(&o.RetryLimit, "retry-limit", 3, "first-boot install attempts per driver")
	f.BoolVar(&o.DryRun, "dry-run", false, "report every change without writing anything")
	f.BoolVar(&detectOnly, "detect", false, "only print what is found (version, control sets, firmware, hibernation, BitLocker …)")
	f.BoolVar(&jsonOut, "json", false, "print the report as JSON")
	return c
}

// readSector reads the first 512 bytes of a device or file.
func readSector(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b := make([]byte, 512)
	n, err := io.ReadFull(f, b)
	if err != nil && n < 11 {
		return nil, fmt.Errorf("%s: reading the boot sector: %w", path, err)
	}
	return b[:n], nil
}

// readPlanIdentities reads the identities and moves of a layout plan (cauldron layout plan
// --json): the fields bcd's Identity and Move mirror.
func readPlanIdentities(path string) (bcd.DiskMap, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return bcd.DiskMap{}, err
	}
	var p struct {
		Moves      []bcd.Move     `json:"moves"`
		Identities []bcd.Identity `json:"identities"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return bcd.DiskMap{}, fmt.Errorf("%s is not a layout plan (cauldron layout plan --json): %w", path, err)
	}
	if len(p.Identities) == 0 && len(p.Moves) == 0 {
		return bcd.DiskMap{}, fmt.Errorf("%s holds no identities and no moves: not a layout plan", path)
	}
	dm, err := bcd.NewDiskMap(p.Identities, p.Moves)
	if err != nil {
		return bcd.DiskMap{}, fmt.Errorf("%s: %w", path, err)
	}
	return dm, nil
}
