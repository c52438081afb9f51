package windows

import (
	"fmt"
	"strings"
)

// Text renders the system found, for a person.
func (s *System) Text() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	w("Windows: %s", s.Name())
	if s.EditionID != "" || s.DisplayVersion != "" {
		w("  edition %s %s, %s", s.EditionID, s.DisplayVersion, s.ProductType)
	}
	w("  architecture %s (from %s)", s.Arch, s.ArchSource)
	w("  control sets %s (current %d, default %d, last known good %d, failed %d)", strings.Join(s.ControlSets, " "), s.Current, s.Default, s.LastKnownGood, s.Failed)
	w("  firmware %s (%s)", s.Firmware, s.FirmwareSource)
	for _, st := range s.BCDStores {
		w("  BCD store %s", st)
	}
	if s.DriversHive != "" {
		w("  DRIVERS hive %s", s.DriversHive)
	}
	w("  hiberfil.sys %s; Fast Startup %s", s.HiberfilState, onOff(s.FastStartup))
	w("  BitLocker: %s", s.BitLockerState)
	for _, p := range s.PendingReboot {
		w("  pending reboot: %s", p)
	}
	for _, d := range s.DeviceInstallRestrictions {
		w("  device installation restricted by Group Policy: %s", d)
	}
	for _, l := range s.HiveLogs {
		w("  %s", l)
	}
	for _, x := range s.Warnings {
		w("  warning: %s", x)
	}
	return b.String()
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// Text renders the report for a person: the system, the driver chosen for each controller, the
// services, every registry change as before → after, the files, the BCD rewrites and the
// first-boot install.
func (r *Report) Text() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	head := "Windows inoculation of " + r.Root
	if r.DryRun {
		head += " (dry run: nothing written)"
	}
	w("%s", head)
	if r.System != nil {
		b.WriteString(r.System.Text())
	}
	if len(r.Choices) > 0 {
		w("Target controllers (%s):", r.Hardware)
	}
	for _, c := range r.Choices {
		src := c.Source
		if c.INF != "" {
			src += " " + c.INF
		}
		w("  %s → %s (%s): %s", c.Controller.Name, c.Service, src, c.Why)
	}
	if len(r.Services) > 0 {
		w("Services:")
	}
	for _, s := range r.Services {
		w("  %s %s in %s — %s", s.Action, s.Name, strings.Join(s.ControlSets, " "), s.Why)
	}
	w("Registry (%d change(s)):", len(r.Registry))
	for _, c := range r.Registry {
		name := c.Key
		if c.Action == "set" || c.Action == "delete-value" {
			name += `\` + valueName(c.Value)
		}
		typ := ""
		if c.Type != "" {
			typ = " " + c.Type
		}
		w("  %s %s %s%s: %s → %s", c.Hive, c.Action, name, typ, c.Before, c.After)
	}
	w("Files:")
	if len(r.Files) == 0 {
		w("  (none)")
	}
	for _, f := range r.Files {
		state := "done"
		if !f.Done {
			state = "to do"
			if !r.DryRun {
				state = "NOT DONE"
			}
		}
		w("  %s %s (%d bytes) [%s] — %s", f.Action, f.Path, f.Bytes, state, f.Why)
		if f.Backup != "" {
			if f.BackupKept {
				w("    backup %s kept from an earlier run (it holds the original)", f.Backup)
			} else {
				w("    backup %s", f.Backup)
			}
		}
	}
	for _, bc := range r.BCD {
		w("BCD %s: %d element(s) rewritten", bc.Store, bc.Elements)
		for _, c := range bc.Changes {
			n := c.ObjectName
			if n == "" {
				n = c.Object
			}
			w("  %s %s (%s) %s: %s → %s", n, c.Element, c.Where, c.Field, c.Old, c.New)
		}
		for _, u := range bc.Untouched {
			n := u.ObjectName
			if n == "" {
				n = u.Object
			}
			w("  left %s %s (%s): %s", n, u.Element, u.Device, u.Reason)
		}
	}
	if fb := r.FirstBoot; fb != nil {
		w("First boot: %s installs %s (at most %d attempts each, never reboots), run by %s", fb.Script, strings.Join(fb.Drivers, ", "), fb.RetryLimit, strings.Join(fb.Mechanism, "; "))
	}
	for _, n := range r.Notes {
		w("Note: %s", n)
	}
	for _, x := range r.Warnings {
		w("Warning: %s", x)
	}
	if r.Error != "" {
		w("ERROR: %s", r.Error)
	}
	return b.String()
}
