package windows

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/inf"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// Options say what Inoculate (and Detect) do.
type Options struct {
	// Root is the Windows system volume (the one holding Windows\), mounted read-write.
	Root string
	// ESP is the EFI system partition, mounted, on UEFI systems ("" when there is none).
	ESP string
	// Drivers are folders of driver packages (a virtio-win ISO's layout, or flat folders).
	Drivers []string
	// Hardware is a profile name (see Profiles) or "detect": the controllers of the machine this
	// runs on, read from Sysfs.
	Hardware string
	// Controllers, when set, are used instead of Hardware.
	Controllers []Controller
	// Sysfs is the sysfs root read by "detect"; "" means /sys.
	Sysfs string
	// EnableInbox are further inbox drivers to set to boot start (storahci, stornvme …).
	EnableInbox []string
	// DisableServices are hypervisors whose guest services are disabled: vmware, hyperv, xen.
	DisableServices []string
	// Mapping is the disks' identities old → new (from the layout plan, see bcd.NewDiskMap);
	// empty means the identities are kept and MountedDevices and the BCD are left alone.
	Mapping bcd.Mapping
	// Firmware is how the target boots, from its disk layout: "bios", "uefi", or "" to decide
	// from the BCD stores found.
	Firmware string
	// BootSector is the system volume's first sector (at least 11 bytes), read from the block
	// device: only there does BitLocker show. Nil leaves BitLocker unchecked (and reported so).
	BootSector []byte
	// RetryLimit bounds the first-boot install attempts per driver; 0 means 3.
	RetryLimit int
	// DryRun computes every change and writes nothing.
	DryRun bool
	// Log, if set, is told about each step.
	Log func(string)
}

// FileChange is a file written into the volume (or, in a dry run, to be written).
type FileChange struct {
	Path   string `json:"path"`   // inside the volume (or the ESP for its BCD)
	Action string `json:"action"` // create, replace, unchanged, modify
	Why    string `json:"why"`
	Bytes  int    `json:"bytes"`
	Backup string `json:"backup,omitempty"`
	// BackupKept says a backup from an earlier run was left as it was: it holds the original.
	BackupKept bool `json:"backupKept,omitempty"`
	Done       bool `json:"done"`
}

// Report is what Inoculate did, or would do.
type Report struct {
	Root      string          `json:"root"`
	ESP       string          `json:"esp,omitempty"`
	DryRun    bool            `json:"dryRun"`
	Started   time.Time       `json:"started"`
	Seconds   float64         `json:"seconds"`
	System    *System         `json:"system,omitempty"`
	Hardware  string          `json:"hardware"`
	Choices   []Choice        `json:"drivers"`
	Services  []ServiceChange `json:"services"`
	Registry  []RegChange     `json:"registry"`
	Files     []FileChange    `json:"files"`
	BCD       []*BCDResult    `json:"bcd,omitempty"`
	FirstBoot *FirstBoot      `json:"firstBoot,omitempty"`
	Notes     []string        `json:"notes,omitempty"`
	Warnings  []string        `json:"warnings,omitempty"`
	Error     string          `json:"error,omitempty"`
}

// Inoculate makes the Windows at o.Root ready to boot on the target hardware. Everything is
// computed and checked first — hives parse, are clean or replayed, pass the checker before and
// after the edits; every controller has a driver for this Windows' version and architecture,
// with its files; the BCD stores decode — and only then is anything written: backups first,
// then the driver files, then the hives (SYSTEM last) and the BCD stores. An error before the
// writes leaves the volume untouched.
func Inoculate(ctx context.Context, o Options) (*Report, error) {
	r := &Report{Root: o.Root, ESP: o.ESP, DryRun: o.DryRun, Started: time.Now(), Hardware: o.Hardware}
	err := inoculate(ctx, o, r)
	r.Seconds = time.Since(r.Started).Seconds()
	if r.System != nil {
		r.Warnings = append(r.Warnings, r.System.Warnings...)
	}
	if err != nil {
		r.Error = err.Error()
	}
	return r, err
}

func (o Options) log(format string, a ...any) {
	if o.Log != nil {
		o.Log(fmt.Sprintf(format, a...))
	}
}

func inoculate(ctx context.Context, o Options, r *Report) error {
	limit := o.RetryLimit
	if limit <= 0 {
		limit = 3
	}
	o.log("reading %s", o.Root)
	s, hv, err := detect(ctx, o, true)
	if err != nil {
		return err
	}
	r.System = s
	if why := s.refusal(); why != "" {
		return fmt.Errorf("refusing to change %s: %s", o.Root, why)
	}
	if s.SetupInProgress {
		s.Warnings = append(s.Warnings, "Windows setup is in progress (SYSTEM\\Setup): the image was generalized or is mid-install")
	}
	for _, p := range s.PendingReboot {
		s.Warnings = append(s.Warnings, "pending reboot: "+p)
	}

	ctrls := o.Controllers
	if len(ctrls) == 0 {
		switch strings.ToLower(o.Hardware) {
		case "":
			return errors.New("no target hardware given: a profile (" + strings.Join(Profiles(), ", ") + ") or detect")
		case "detect":
			if ctrls, err = DetectControllers(o.Sysfs); err != nil {
				return err
			}
		default:
			if ctrls, err = Profile(o.Hardware); err != nil {
				return err
			}
		}
	}
	var scan *inf.Scan
	if len(o.Drivers) > 0 {
		o.log("scanning driver folders %s", strings.Join(o.Drivers, ", "))
		if scan, err = inf.ScanDirs(inf.Options{Arch: s.Arch}, o.Drivers...); err != nil {
			return err
		}
		for _, p := range scan.Problems() {
			r.Notes = append(r.Notes, fmt.Sprintf("driver file %s could not be read and was skipped: %v", p.Path, p.Err))
		}
	}
	choices, err := choose(s, hv, scan, ctrls)
	if err != nil {
		return err
	}
	r.Choices = choices
	for _, c := range choices {
		checkRestrictions(s, c)
	}
	pkgs, err := packages(s, choices)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Every edit below happens in memory.
	winDir := "Windows"
	var writes []fileWrite
	var dbs []*hiveFile
	win8 := !s.Version.Less(windows8)
	if win8 {
		if hv.drivers != nil && hv.drivers.hasKey("DriverDatabase") {
			dbs = append(dbs, hv.drivers)
		}
		if hv.system.hasKey("DriverDatabase") {
			dbs = append(dbs, hv.system)
		}
		if len(dbs) == 0 {
			s.Warnings = append(s.Warnings, "Windows 8 or later without a DriverDatabase in SYSTEM or DRIVERS: one is created in SYSTEM")
			dbs = append(dbs, hv.system)
		}
	}
	enabled := map[string]bool{}
	for _, p := range pkgs {
		if win8 {
			p.oem = p.publishedName(o.Root, dbs)
		}
		for _, sv := range p.services() {
			enabled[strings.ToLower(sv.Name)] = true
			sc := ServiceChange{Name: sv.Name, Action: "installed", Why: fmt.Sprintf("driver of %s from %s", controllerNames(p.choices), p.file.Path)}
			for _, cs := range s.ControlSets {
				if err := installService(hv.system, cs, sv, p, s, &r.Notes); err != nil {
					return err
				}
				sc.ControlSets = append(sc.ControlSets, cs)
			}
			r.Services = append(r.Services, sc)
		}
		if win8 {
			for _, db := range dbs {
				if err := registerDriverDatabase(db, p); err != nil {
					return err
				}
			}
		} else {
			for _, c := range p.choices {
				for _, cs := range s.ControlSets {
					if err := registerCDDB(hv.system, cs, c, p.file.Version.ClassGUID); err != nil {
						return err
					}
				}
			}
		}
		for _, pl := range p.plans {
			r.Notes = append(r.Notes, pl.Notes...)
			if len(pl.HWAddReg) > 0 {
				r.Notes = appendOnce(r.Notes, fmt.Sprintf("%s: the device's hardware-key settings (%s.HW AddReg) need the device instance, which exists only once Windows has seen the device: the first-boot install writes them", p.infName, pl.Install))
			}
		}
		writes = append(writes, p.stageFiles(s, winDir)...)
	}

	// Inbox drivers: the chosen ones, those the controllers also need, and those asked for.
	var inbox []string
	inboxWhy := map[string]string{}
	for _, c := range choices {
		if c.Source == "inbox" {
			inbox = appendOnce(inbox, c.Service)
			inboxWhy[c.Service] = "inbox driver of " + c.Controller.Name + ": " + c.Why
			if !win8 {
				// Windows up to 7 binds boot devices only through the CriticalDeviceDatabase;
				// make sure it has the controller's IDs (a VMware-born Windows 7 has no Hyper-V
				// entries, say).
				for _, cs := range s.ControlSets {
					if err := registerCDDB(hv.system, cs, c, ""); err != nil {
						return err
					}
				}
			}
		}
		for _, a := range c.Controller.Also {
			inbox = appendOnce(inbox, a)
			inboxWhy[a] = "needed under " + c.Service + " for " + c.Controller.Name
		}
	}
	for _, e := range o.EnableInbox {
		if e = strings.TrimSpace(e); e != "" {
			inbox = appendOnce(inbox, e)
			if inboxWhy[e] == "" {
				inboxWhy[e] = "asked for (--enable-inbox)"
			}
		}
	}
	for _, svc := range inbox {
		sc, err := enableInbox(hv.system, s, svc, inboxWhy[svc])
		if err != nil {
			return err
		}
		enabled[strings.ToLower(svc)] = true
		r.Services = append(r.Services, *sc)
	}
	if len(o.DisableServices) > 0 {
		dis, err := disableServices(hv.system, s, o.DisableServices, enabled)
		if err != nil {
			return err
		}
		r.Services = append(r.Services, dis...)
	}

	if len(pkgs) > 0 {
		fb, script, err := queueFirstBoot(s, hv, pkgs, limit)
		if err != nil {
			return err
		}
		r.FirstBoot = fb
		writes = append(writes, script)
	}

	if len(o.Mapping.Disks) > 0 {
		if err := rewriteMountedDevices(hv.system, o.Mapping, func(w string) { s.Warnings = append(s.Warnings, w) }); err != nil {
			return err
		}
		for _, st := range s.BCDStores {
			o.log("rewriting BCD store %s", st)
			br, err := rewriteBCD(st, o.Mapping)
			if err != nil {
				return err
			}
			r.BCD = append(r.BCD, br)
		}
		if s.Firmware == FirmwareUEFI && o.ESP == "" {
			s.Warnings = append(s.Warnings, "the target boots UEFI but no ESP was given (--esp): the BCD store on it (EFI\\Microsoft\\Boot\\BCD) was not rewritten, and Windows will not find its boot partition until it is")
		}
		if len(s.BCDStores) == 0 {
			s.Warnings = append(s.Warnings, "no BCD store found (Boot\\BCD on the volume, EFI\\Microsoft\\Boot\\BCD on the ESP): boot entries were not rewritten")
		}
	}

	// Check every edited hive before anything is written.
	for _, hf := range hv.all() {
		if probs := hf.h.Check(); len(probs) > 0 {
			return fmt.Errorf("%s fails the hive checker after the edits, nothing written: %v", hf.rel, probs[0])
		}
		r.Registry = append(r.Registry, hf.changes...)
	}
	// Resolve where each file goes, and which exist already.
	type planned struct {
		fileWrite
		host string
		old  []byte
		had  bool
	}
	var plan []planned
	for _, w := range writes {
		host, ok, err := resolve(o.Root, w.rel)
		if err != nil {
			return err
		}
		p := planned{fileWrite: w, host: host, had: ok}
		fc := FileChange{Path: w.rel, Action: "create", Why: w.why, Bytes: len(w.data)}
		if ok {
			if p.old, err = os.ReadFile(host); err != nil {
				return err
			}
			fc.Action = "replace"
			if bytes.Equal(p.old, w.data) {
				fc.Action = "unchanged"
			} else {
				fc.Backup = host + BackupSuffix
			}
		}
		plan = append(plan, p)
		r.Files = append(r.Files, fc)
	}
	hiveFiles := hv.all()
	for _, hf := range hiveFiles {
		if len(hf.changes) == 0 && hf.replayed == 0 {
			continue
		}
		r.Files = append(r.Files, FileChange{Path: hf.rel, Action: "modify", Why: fmt.Sprintf("%s hive: %d registry change(s)", hf.name, len(hf.changes)), Bytes: len(hf.h.Bytes()), Backup: hf.path + BackupSuffix})
	}
	for _, b := range r.BCD {
		if b.Elements > 0 {
			r.Files = append(r.Files, FileChange{Path: b.Store, Action: "modify", Why: fmt.Sprintf("BCD store: %d device element(s) rewritten", b.Elements), Bytes: len(b.store.Hive().Bytes()), Backup: b.Store + BackupSuffix})
		}
	}
	sort.SliceStable(r.Services, func(i, j int) bool { return r.Services[i].Action < r.Services[j].Action })
	if o.DryRun {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Writing. Backups first, so that whatever happens next, the originals are kept.
	fileIdx := 0
	for i := range plan {
		p := plan[i]
		fc := &r.Files[fileIdx+i]
		if fc.Action == "unchanged" {
			fc.Done = true
			continue
		}
		if p.had {
			b, kept, err := backup(p.host, p.old)
			if err != nil {
				return err
			}
			fc.Backup, fc.BackupKept = b, kept
		}
		if err := writeAtomic(p.host, p.data); err != nil {
			return err
		}
		fc.Done = true
	}
	next := len(plan)
	// The hives: backups (with non-empty logs, which Save empties), then DRIVERS and SOFTWARE,
	// and SYSTEM last, the one whose changes make Windows load the new driver.
	sort.SliceStable(hiveFiles, func(i, j int) bool { return hiveFiles[j].name == "SYSTEM" })
	for _, hf := range hiveFiles {
		if len(hf.changes) == 0 && hf.replayed == 0 {
			continue
		}
		var fc *FileChange
		for i := next; i < len(r.Files); i++ {
			if r.Files[i].Path == hf.rel {
				fc = &r.Files[i]
			}
		}
		b, kept, err := backup(hf.path, hf.orig)
		if err != nil {
			return err
		}
		fc.Backup, fc.BackupKept = b, kept
		for lp, lb := range hf.logs {
			if _, _, err := backup(lp, lb); err != nil {
				return err
			}
		}
		o.log("writing %s", hf.path)
		if err := hf.h.Save(hf.path); err != nil {
			return fmt.Errorf("writing %s: %w", hf.path, err)
		}
		// Logs whose names differ in case from what regf.Save empties would still be replayed
		// by nobody (the hive is clean now), but are emptied too so no tool is misled.
		for lp := range hf.logs {
			if err := os.Truncate(lp, 0); err != nil {
				return fmt.Errorf("emptying %s: %w", lp, err)
			}
		}
		back, err := regf.Open(hf.path)
		if err != nil {
			return fmt.Errorf("reading back %s: %w", hf.path, err)
		}
		if probs := back.Check(); len(probs) > 0 || back.Dirty() {
			return fmt.Errorf("%s fails the hive checker after writing (the backup is %s): %v", hf.path, b, probs)
		}
		fc.Done = true
	}
	for _, br := range r.BCD {
		if br.Elements == 0 {
			continue
		}
		var fc *FileChange
		for i := next; i < len(r.Files); i++ {
			if r.Files[i].Path == br.Store {
				fc = &r.Files[i]
			}
		}
		b, kept, err := backup(br.Store, br.orig)
		if err != nil {
			return err
		}
		br.Backup, br.Kept = b, kept
		fc.Backup, fc.BackupKept = b, kept
		if err := br.store.Save(br.Store); err != nil {
			return err
		}
		fc.Done = true
	}
	return nil
}

func controllerNames(cs []Choice) string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Controller.Name)
	}
	return strings.Join(n, ", ")
}

// checkRestrictions warns when Group Policy would stop Windows installing the controller's driver
// at first boot (the offline binding still loads it at boot).
func checkRestrictions(s *System, c Choice) {
	if c.Source == "inbox" {
		return
	}
	if s.denyAll {
		s.Warnings = append(s.Warnings, fmt.Sprintf("Group Policy DenyUnspecified is set: the first-boot install of %s may be refused unless an Allow policy names %s", filepath.Base(c.INF), c.Matched))
	}
	for _, id := range s.denyIDs {
		for _, cid := range c.Controller.IDs() {
			if strings.EqualFold(id, cid) {
				s.Warnings = append(s.Warnings, fmt.Sprintf("Group Policy DenyDeviceIDs names %s: Windows will refuse to install a driver for %s at first boot", id, c.Controller.Name))
			}
		}
	}
	for _, cl := range s.denyClasses {
		if strings.EqualFold(strings.Trim(cl, "{}"), strings.Trim(scsiAdapterClass, "{}")) {
			s.Warnings = append(s.Warnings, "Group Policy DenyDeviceClasses names the SCSIAdapter class: Windows will refuse to install storage controller drivers at first boot")
		}
	}
}
