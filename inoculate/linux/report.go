package linux

import (
	"fmt"
	"strings"
)

// Text renders the report for a person: the system found, every file change as old → new lines,
// every command with its outcome, the initramfs checks and the boot entry.
func (r *Report) Text() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	verb := "Linux inoculation"
	if r.DryRun {
		verb += " (dry run: nothing written, nothing run)"
	}
	w("%s of %s\n", verb, r.Root)
	if s := r.System; s != nil {
		name := s.PrettyName
		if name == "" {
			name = s.ID + " " + s.VersionID
		}
		w("  system: %s; initramfs tool %s (%s)\n", name, orNone(string(s.InitramfsTool)), orNone(s.InitramfsCommand))
		for _, k := range s.Kernels {
			w("  kernel: %s  %s  initramfs %s  modules %s\n", k.Version, k.Image, k.Initramfs, k.Modules)
		}
		for _, bl := range s.Bootloaders {
			w("  bootloader: %s (%s)\n", bl.Kind, bl.Path)
		}
		for _, c := range s.Cmdlines {
			if c.Root != "" {
				w("  root=%s in %s:%d\n", c.Root, c.Source, c.Line)
			}
		}
	}
	if len(r.Drivers) > 0 {
		w("  target drivers: %s\n", strings.Join(r.Drivers, " "))
	}
	for _, rn := range r.Renames {
		w("  rename: %s\n", rn)
	}
	if r.Firmware != "" {
		w("  target firmware: %s\n", r.Firmware)
	}
	for _, m := range r.Mounted {
		w("  mounted %s (%s) at %s\n", m.Device, m.Type, m.Dir)
	}
	w("Files:\n")
	if len(r.Files) == 0 {
		w("  (none)\n")
	}
	for _, f := range r.Files {
		state := "done"
		if !f.Done {
			state = "to do"
			if !r.DryRun {
				state = "NOT DONE"
			}
		}
		w("  %s %s [%s] — %s\n", f.Action, f.Path, state, f.Why)
		if f.Backup != "" {
			if f.BackupKept {
				w("    backup %s kept from an earlier run (it holds the original)\n", f.Backup)
			} else {
				w("    backup %s\n", f.Backup)
			}
		}
		for _, l := range f.Lines {
			switch {
			case l.Old == "" && l.New != "":
				w("    %4d + %s\n", l.Line, l.New)
			case l.New == "" && l.Old != "":
				w("    %4d - %s\n", l.Line, l.Old)
			default:
				w("    %4d - %s\n", l.Line, l.Old)
				w("         + %s\n", l.New)
			}
		}
	}
	w("Commands (in the system's root):\n")
	if len(r.Commands) == 0 {
		w("  (none)\n")
	}
	for _, c := range r.Commands {
		state := "to run"
		switch {
		case c.Done:
			state = fmt.Sprintf("ok, %.1f s", c.Seconds)
		case c.Error != "":
			state = "FAILED: " + c.Error
		case !r.DryRun:
			state = "not run"
		}
		w("  %s [%s] — %s\n", strings.Join(c.Argv, " "), state, c.Why)
		if c.Error != "" && c.Output != "" {
			for _, l := range strings.Split(c.Output, "\n") {
				w("    | %s\n", l)
			}
		}
	}
	for _, c := range r.Initramfs {
		if c.Lister == "" {
			w("  initramfs %s (kernel %s): not listed\n", c.Initramfs, c.Kernel)
			continue
		}
		w("  initramfs %s (kernel %s) holds: %s", c.Initramfs, c.Kernel, strings.Join(c.Drivers, " "))
		if len(c.Missing) > 0 {
			w("; MISSING: %s", strings.Join(c.Missing, " "))
		}
		w("\n")
	}
	if be := r.BootEntry; be != nil {
		name := be.Variable
		if name == "" {
			name = "Boot####"
		}
		w("NVRAM: %s %q %s", name, be.Description, be.Path)
		switch {
		case be.Verified:
			w(" — read back and verified; BootOrder %s\n", strings.Join(be.BootOrder, ","))
		case r.DryRun:
			w(" — to write\n")
		default:
			w(" — NOT verified\n")
		}
	}
	for _, n := range r.Notes {
		w("Note: %s\n", n)
	}
	if r.Error != "" {
		w("ERROR: %s\n", r.Error)
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
