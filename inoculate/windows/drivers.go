package windows

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/inf"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// scsiAdapterClass is the SCSIAdapter setup class, that of every storage controller driver.
const scsiAdapterClass = "{4D36E97B-E325-11CE-BFC1-08002BE10318}"

// hdcClass is the hdc setup class ("IDE ATA/ATAPI controllers"): AHCI and IDE controllers.
const hdcClass = "{4D36E96A-E325-11CE-BFC1-08002BE10318}"

// Choice is the driver chosen for one controller.
type Choice struct {
	Controller Controller `json:"controller"`
	Service    string     `json:"service"`
	Source     string     `json:"source"` // "inbox" or "driver folder"
	INF        string     `json:"inf,omitempty"`
	Model      string     `json:"model,omitempty"`
	Matched    string     `json:"matched"` // the device ID the driver was found by
	Why        string     `json:"why"`

	cand *inf.Candidate
	pos  int
}

// inboxFor finds the driver Windows itself would bind to the controller: its own device database
// (DriverDatabase from Windows 8, CriticalDeviceDatabase before) searched by the controller's IDs
// in Windows' order, then the class's known inbox drivers, if their service is on the volume.
func inboxFor(s *System, hv hives, c Controller) (Choice, bool) {
	ids := c.IDs()
	cur := s.currentSet()
	svcExists := func(name string) bool { return name != "" && hv.system.hasKey(cur+`\Services\`+name) }
	if !s.Version.Less(windows8) {
		for _, db := range []*hiveFile{hv.drivers, hv.system} {
			if db == nil || !db.hasKey("DriverDatabase") {
				continue
			}
			for i, id := range ids {
				k, err := db.h.Lookup(`DriverDatabase\DeviceIds\` + id)
				if err != nil {
					continue
				}
				vals, _ := k.Values()
				for _, v := range vals {
					infName := v.Name()
					pkg, _ := str(db, `DriverDatabase\DriverInfFiles\`+infName, "Active")
					if pkg == "" {
						continue
					}
					cfg, _ := str(db, `DriverDatabase\DriverPackages\`+pkg+`\Descriptors\`+id, "Configuration")
					if cfg == "" {
						continue
					}
					svc, _ := str(db, `DriverDatabase\DriverPackages\`+pkg+`\Configurations\`+cfg, "Service")
					if svcExists(svc) {
						return Choice{Controller: c, Service: svc, Source: "inbox", INF: infName, Matched: id, pos: i,
							Why: fmt.Sprintf("%s's DriverDatabase binds %s to %s (package %s)", db.name, id, infName, pkg)}, true
					}
				}
			}
		}
	} else {
		for i, id := range ids {
			key := cur + `\Control\CriticalDeviceDatabase\` + cddbName(id)
			if svc, ok := str(hv.system, key, "Service"); ok && svcExists(svc) {
				return Choice{Controller: c, Service: svc, Source: "inbox", Matched: id, pos: i,
					Why: "the CriticalDeviceDatabase binds " + id + " to " + svc}, true
			}
		}
	}
	for _, d := range c.Inbox {
		if d.applies(s.Version) && svcExists(d.Service) {
			return Choice{Controller: c, Service: d.Service, Source: "inbox", Matched: "(controller class)", pos: len(ids),
				Why: fmt.Sprintf("Windows ships %s for this kind of controller and its service is on the volume", d.Service)}, true
		}
	}
	return Choice{}, false
}

// cddbName is a device ID as a CriticalDeviceDatabase key: lower case, '\' as '#'.
func cddbName(id string) string {
	return strings.ToLower(strings.ReplaceAll(id, `\`, "#"))
}

// choose picks each controller's driver: a driver from the folders given when it matches the
// controller at least as specifically as Windows' own, else the inbox one.
func choose(s *System, hv hives, scan *inf.Scan, ctrls []Controller) ([]Choice, error) {
	var out []Choice
	var errs []string
	for _, c := range ctrls {
		in, hasIn := inboxFor(s, hv, c)
		var third *Choice
		var bestErr error
		if scan != nil {
			cands, err := scan.Best(s.target(), c.IDs())
			if err != nil {
				bestErr = err
			} else {
				cd := cands[0]
				third = &Choice{Controller: c, Source: "driver folder", INF: cd.File.Path, Model: cd.Model.Description, Matched: cd.Matched, pos: cd.Position, cand: &cd,
					Why: fmt.Sprintf("%s matches %s (model line %d, built for Windows %s)", filepath.Base(cd.File.Path), cd.Matched, cd.Model.Line, cd.OS)}
			}
		}
		switch {
		case third != nil && (!hasIn || third.pos <= in.pos):
			out = append(out, *third)
		case hasIn:
			if third != nil {
				in.Why += fmt.Sprintf("; preferred over %s, which matches only %s", filepath.Base(third.INF), third.Matched)
			}
			out = append(out, in)
		default:
			msg := fmt.Sprintf("no driver for %s (%s) on %s", c.Name, strings.Join(c.HardwareIDs[:1], ""), s.Name())
			switch {
			case scan == nil:
				msg += ": no driver folder was given (--drivers)"
			case bestErr != nil:
				msg += ": " + bestErr.Error()
				if other := otherArchDrivers(scan, s, c); other != "" {
					msg += "; " + other
				}
			}
			var names []string
			for _, d := range c.Inbox {
				names = append(names, d.Service)
			}
			if len(names) > 0 {
				msg += fmt.Sprintf("; and none of Windows' own drivers for it (%s) is installed on this Windows", strings.Join(names, ", "))
			} else {
				msg += "; and Windows has no driver of its own for it"
			}
			errs = append(errs, msg)
		}
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "\n"))
	}
	return out, nil
}

// otherArchDrivers says which other architectures the driver folders do have a driver for the
// controller for: the usual mistake is a folder for the wrong architecture.
func otherArchDrivers(scan *inf.Scan, s *System, c Controller) string {
	var found []string
	for _, a := range []string{"amd64", "x86", "arm64"} {
		if a == s.Arch {
			continue
		}
		t := s.target()
		t.Arch = a
		if cands, err := scan.Best(t, c.IDs()); err == nil {
			found = append(found, fmt.Sprintf("%s (%s)", a, cands[0].File.Path))
		}
	}
	if len(found) == 0 {
		return ""
	}
	return fmt.Sprintf("the driver folders have it only for another architecture: %s, while this Windows is %s", strings.Join(found, ", "), s.Arch)
}

// pkg is one third-party driver package to install: an INF and the models of it the
// controllers need.
type pkg struct {
	file    *inf.File
	plans   []*inf.Plan
	choices []Choice
	name    string // DriverStore folder name: <inf>_<arch>_<hash>
	oem     string // published name oemN.inf (Windows 8+)
	infName string // the INF's file name
	content map[string][]byte
	infData []byte
}

// packages groups the third-party choices by INF and resolves their installation plans.
func packages(s *System, choices []Choice) ([]*pkg, error) {
	byINF := map[string]*pkg{}
	var order []string
	for i := range choices {
		c := &choices[i]
		if c.cand == nil {
			continue
		}
		p := byINF[c.INF]
		if p == nil {
			p = &pkg{file: c.cand.File, infName: filepath.Base(c.INF), content: map[string][]byte{}}
			byINF[c.INF] = p
			order = append(order, c.INF)
		}
		plan, err := c.cand.File.Plan(c.cand.Model, s.Arch)
		if err != nil {
			return nil, fmt.Errorf("driver %s for %s: %w", c.INF, c.Controller.Name, err)
		}
		if miss := plan.Missing(); len(miss) > 0 {
			return nil, fmt.Errorf("driver %s for %s: files missing beside the INF: %s", c.INF, c.Controller.Name, strings.Join(miss, ", "))
		}
		if len(plan.Services) == 0 {
			return nil, fmt.Errorf("driver %s for %s: install section %s adds no service, so nothing would run the controller at boot", c.INF, c.Controller.Name, plan.Install)
		}
		// The device's function driver: the service AddService flags 0x2 (SPSVCINST_ASSOCSERVICE)
		// mark, else the first.
		c.Service = plan.Services[0].Name
		for _, sv := range plan.Services {
			if sv.Flags&0x2 != 0 {
				c.Service = sv.Name
				break
			}
		}
		p.plans = append(p.plans, plan)
		p.choices = append(p.choices, *c)
	}
	var out []*pkg
	for _, k := range order {
		p := byINF[k]
		p.infData = p.file.Contents()
		if strings.EqualFold(filepath.Ext(p.infName), ".inx") {
			p.infName = strings.TrimSuffix(p.infName, filepath.Ext(p.infName)) + ".inf"
		}
		h := sha256.New()
		h.Write(p.infData)
		var srcs []string
		for _, pl := range p.plans {
			for _, f := range pl.Files {
				srcs = append(srcs, f.Source)
			}
			if pl.Catalog != "" {
				srcs = append(srcs, pl.Catalog)
			}
		}
		sort.Strings(srcs)
		for _, src := range srcs {
			if _, done := p.content[src]; done {
				continue
			}
			// The INF names its files; it must not name files outside its own folder.
			if c := path.Clean(src); path.IsAbs(c) || c == ".." || strings.HasPrefix(c, "../") {
				return nil, fmt.Errorf("driver %s names the file %s, outside its folder: refusing it", p.file.Path, src)
			}
			b, err := os.ReadFile(filepath.Join(p.file.Dir(), filepath.FromSlash(src)))
			if err != nil {
				return nil, fmt.Errorf("driver %s: %w", p.file.Path, err)
			}
			p.content[src] = b
			h.Write([]byte(src))
			h.Write(b)
		}
		// Windows names a DriverStore folder <inf>_<arch>_<16 hex digits>; its digits come from a
		// hash of the package that is not documented, so ours are a hash of the package's files:
		// the same package gets the same folder on every run.
		p.name = strings.ToLower(p.infName) + "_" + s.Arch + "_" + hex.EncodeToString(h.Sum(nil))[:16]
		out = append(out, p)
	}
	return out, nil
}

// services are the distinct services of a package's plans.
func (p *pkg) services() []inf.Service {
	seen := map[string]bool{}
	var out []inf.Service
	for _, pl := range p.plans {
		for _, sv := range pl.Services {
			if !seen[strings.ToLower(sv.Name)] {
				seen[strings.ToLower(sv.Name)] = true
				out = append(out, sv)
			}
		}
	}
	return out
}

// fileWrite is a file the inoculation writes into the volume.
type fileWrite struct {
	rel  string // inside the volume, backslash-separated
	data []byte
	why  string
}

// stageFiles lists where a package's files go: the driver binaries where its INF copies them
// (System32\drivers for a boot driver: ImagePath names them there), the whole package in the
// DriverStore folder its DriverDatabase entry names (Windows 8+) with the INF published as
// INF\oemN.inf, and the whole package in Windows\Cauldron\Drivers\<name>, where the first-boot
// pnputil install reads it.
func (p *pkg) stageFiles(s *System, winDir string) []fileWrite {
	var out []fileWrite
	seen := map[string]bool{}
	add := func(rel string, data []byte, why string) {
		if seen[strings.ToLower(rel)] {
			return
		}
		seen[strings.ToLower(rel)] = true
		out = append(out, fileWrite{rel: rel, data: data, why: why})
	}
	for _, pl := range p.plans {
		for _, f := range pl.Files {
			add(winDir+`\`+f.Dest, p.content[f.Source], fmt.Sprintf("%s copies %s there (CopyFiles %s)", p.infName, path.Base(f.Source), f.Section))
		}
	}
	var srcs []string
	for src := range p.content {
		srcs = append(srcs, src)
	}
	sort.Strings(srcs)
	folders := []struct{ dir, why string }{{winDir + `\Cauldron\Drivers\` + p.name, "the package for the first-boot pnputil install"}}
	if !s.Version.Less(windows8) {
		folders = append(folders, struct{ dir, why string }{winDir + `\System32\DriverStore\FileRepository\` + p.name, "the package in the DriverStore folder its DriverDatabase entry names"})
		add(winDir+`\INF\`+p.oem, p.infData, "the INF published as "+p.oem+", the name DriverDatabase\\DriverInfFiles uses")
	}
	for _, f := range folders {
		add(f.dir+`\`+p.infName, p.infData, f.why)
		for _, src := range srcs {
			add(f.dir+`\`+strings.ReplaceAll(src, "/", `\`), p.content[src], f.why)
		}
	}
	return out
}

var oemName = regexp.MustCompile(`(?i)^oem(\d+)\.inf$`)

// publishedName gives the package its oemN.inf name: the one it already has when an earlier run
// (or Windows) registered the same package, else the next number no DriverDatabase and no INF
// folder uses.
func (p *pkg) publishedName(root string, dbs []*hiveFile) string {
	maxN := -1
	for _, db := range dbs {
		if v, ok := str(db, `DriverDatabase\DriverPackages\`+p.name, ""); ok && v != "" {
			return v
		}
		if k, err := db.h.Lookup(`DriverDatabase\DriverInfFiles`); err == nil {
			subs, _ := k.Subkeys()
			for _, sk := range subs {
				if m := oemName.FindStringSubmatch(sk.Name()); m != nil {
					n, _ := strconv.Atoi(m[1])
					maxN = max(maxN, n)
				}
			}
		}
	}
	if dir, ok := exists(root, `Windows\INF`); ok {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if m := oemName.FindStringSubmatch(e.Name()); m != nil {
				n, _ := strconv.Atoi(m[1])
				maxN = max(maxN, n)
			}
		}
	}
	return fmt.Sprintf("oem%d.inf", maxN+1)
}

// installService writes a package's service into one control set, as the INF's AddService
// directive describes it, with the boot start a storage controller's driver needs.
func installService(hf *hiveFile, cs string, sv inf.Service, p *pkg, s *System, notes *[]string) error {
	key := cs + `\Services\` + sv.Name
	why := fmt.Sprintf("service of %s (AddService %s)", p.infName, sv.Name)
	start := sv.StartType
	if start != 0 {
		*notes = appendOnce(*notes, fmt.Sprintf("%s: the INF gives service %s StartType %d; set to 0 (boot start) because it runs the boot disk's controller", p.infName, sv.Name, start))
		start = 0
	}
	if err := hf.setDword(key, "Type", sv.ServiceType, why); err != nil {
		return err
	}
	if err := hf.setDword(key, "Start", start, why+": boot start"); err != nil {
		return err
	}
	if err := hf.setDword(key, "ErrorControl", sv.ErrorControl, why); err != nil {
		return err
	}
	if sv.LoadOrderGroup != "" {
		if err := hf.setString(key, "Group", regf.RegSz, sv.LoadOrderGroup, why); err != nil {
			return err
		}
	}
	if err := hf.setString(key, "ImagePath", regf.RegExpandSz, sv.ImagePath, why+": the driver file, relative to %SystemRoot%"); err != nil {
		return err
	}
	if sv.DisplayName != "" {
		if err := hf.setString(key, "DisplayName", regf.RegSz, sv.DisplayName, why); err != nil {
			return err
		}
	}
	var svcDeps, grpDeps []string
	for _, d := range sv.Dependencies {
		if strings.HasPrefix(d, "+") {
			grpDeps = append(grpDeps, d[1:])
		} else {
			svcDeps = append(svcDeps, d)
		}
	}
	if len(svcDeps) > 0 {
		if err := hf.setMulti(key, "DependOnService", svcDeps, why); err != nil {
			return err
		}
	}
	if len(grpDeps) > 0 {
		if err := hf.setMulti(key, "DependOnGroup", grpDeps, why); err != nil {
			return err
		}
	}
	if !s.Version.Less(windows8) && p.oem != "" {
		if err := hf.setMulti(key, "Owners", []string{p.oem}, why+": the published INF that owns it"); err != nil {
			return err
		}
	}
	for _, v := range sv.AddReg {
		if v.Root != "HKR" {
			*notes = appendOnce(*notes, fmt.Sprintf("%s: AddReg line %d writes %s\\%s, outside the service key; left to the first-boot install", p.infName, v.Line, v.Root, v.Key))
			continue
		}
		k := key
		if v.Key != "" {
			k += `\` + v.Key
		}
		w := fmt.Sprintf("%s AddReg [%s] line %d", p.infName, v.Section, v.Line)
		switch {
		case v.KeyOnly:
			if err := hf.createKey(k, w); err != nil {
				return err
			}
		case v.Delete:
			if _, _, ok := hf.get(k, v.Name); ok {
				ot, od, _ := hf.get(k, v.Name)
				if err := hf.h.DeleteValue(k, v.Name); err != nil {
					return err
				}
				hf.record(RegChange{Key: k, Value: v.Name, Action: "delete-value", Type: inf.TypeName(ot), Before: formatValue(ot, od), After: "(absent)", Why: w})
			}
		default:
			if _, _, ok := hf.get(k, v.Name); ok && v.NoClobber {
				continue
			}
			if err := hf.set(k, v.Name, v.Type, v.Data, w); err != nil {
				return err
			}
		}
	}
	return hf.deleteKey(key+`\StartOverride`, "StartOverride would override the boot start (Windows 8+)")
}

// registerCDDB binds the controller's IDs to the service in one control set's
// CriticalDeviceDatabase, from the most specific ID down to the one the driver matched, so the
// boot-time lookup (which takes the first ID it finds) lands on this driver.
func registerCDDB(hf *hiveFile, cs string, c Choice, classGUID string) error {
	ids := c.Controller.IDs()
	// A driver found by class (no ID matched) is bound by the device's own hardware IDs only:
	// the generic compatible IDs (PCI\CC_0100 …) would capture other controllers too.
	last := len(c.Controller.HardwareIDs) - 1
	for i, id := range ids {
		if strings.EqualFold(id, c.Matched) {
			last = i
			break
		}
	}
	if classGUID == "" && last < len(ids) && strings.EqualFold(ids[last], c.Matched) {
		// An inbox driver found in the CriticalDeviceDatabase: its entry gives the class.
		classGUID, _ = str(hf, cs+`\Control\CriticalDeviceDatabase\`+cddbName(c.Matched), "ClassGUID")
	}
	if classGUID == "" {
		classGUID = scsiAdapterClass
		// AHCI and IDE controllers are in the hdc class ("IDE ATA/ATAPI controllers").
		if p := c.Controller.PCI; p != nil && (p.Class == 0x010601 || p.Class>>8 == 0x0101) {
			classGUID = hdcClass
		}
	}
	for i, id := range ids[:last+1] {
		// Only IDs naming this device: a vendor-only or class ID (PCI\VEN_8086, PCI\VEN_8086&CC_0106)
		// would send every other such device to this driver at boot. The ID a third-party INF
		// itself lists is the exception: that INF claims it.
		u := strings.ToUpper(id)
		deviceID := !strings.HasPrefix(u, `PCI\`) || strings.Contains(u, "&DEV_")
		if !deviceID && (c.Source == "inbox" || i != last) {
			continue
		}
		key := cs + `\Control\CriticalDeviceDatabase\` + cddbName(id)
		why := fmt.Sprintf("binds %s to %s at boot (Windows up to 7 look boot devices up here)", id, c.Service)
		if err := hf.setString(key, "Service", regf.RegSz, c.Service, why); err != nil {
			return err
		}
		if err := hf.setString(key, "ClassGUID", regf.RegSz, classGUID, why); err != nil {
			return err
		}
	}
	return nil
}

// registerDriverDatabase records a package in a DriverDatabase (SYSTEM's, or the DRIVERS hive's)
// the way Windows 8+ records the packages it has staged, so that at first boot the PnP manager
// finds the controller's driver by its device ID: DeviceIds\<id> names the published INF,
// DriverInfFiles\<oemN.inf> the package, the package's Descriptors\<id> its configuration and
// Configurations\<cfg> the service. The layout, and the values below whose meaning is not
// published, are as Windows writes them for third-party packages in the corpus Windows 10 hive.
func registerDriverDatabase(hf *hiveFile, p *pkg) error {
	const db = `DriverDatabase`
	why := "registers " + p.infName + " as " + p.oem + " so the PnP manager binds the controller at boot (Windows 8+)"
	var cfgs []string
	for _, pl := range p.plans {
		cfgs = appendOnce(cfgs, pl.Install)
	}
	fi := db + `\DriverInfFiles\` + p.oem
	if err := hf.setMulti(fi, "", []string{p.name}, why); err != nil {
		return err
	}
	if err := hf.setString(fi, "Active", regf.RegSz, p.name, why); err != nil {
		return err
	}
	if err := hf.setMulti(fi, "Configurations", cfgs, why); err != nil {
		return err
	}
	pk := db + `\DriverPackages\` + p.name
	if err := hf.setString(pk, "", regf.RegSz, p.oem, why); err != nil {
		return err
	}
	if err := hf.setString(pk, "InfName", regf.RegSz, p.infName, why); err != nil {
		return err
	}
	if p.file.Version.Provider != "" {
		if err := hf.setString(pk, "Provider", regf.RegSz, p.file.Version.Provider, why); err != nil {
			return err
		}
	}
	if len(p.plans) > 0 && p.plans[0].Catalog != "" {
		if err := hf.setString(pk, "Catalog", regf.RegSz, p.plans[0].Catalog, why); err != nil {
			return err
		}
	}
	if err := hf.set(pk, "Version", regf.RegBinary, packageVersion(p.file.Version), why+": class, date and version, for ranking"); err != nil {
		return err
	}
	// StatusFlags 0x12 is what every package that binds at boot has in the corpus hive.
	if err := hf.setDword(pk, "StatusFlags", 0x12, why); err != nil {
		return err
	}
	for _, pl := range p.plans {
		cfg := pk + `\Configurations\` + pl.Install
		var fn string
		for _, sv := range pl.Services {
			if sv.Flags&0x2 != 0 || fn == "" {
				fn = sv.Name
			}
		}
		if err := hf.setDword(cfg, "ConfigFlags", 0, why); err != nil {
			return err
		}
		if err := hf.setDword(cfg, "ConfigScope", 7, why); err != nil {
			return err
		}
		if err := hf.setString(cfg, "Service", regf.RegSz, fn, why+": the device's function driver"); err != nil {
			return err
		}
		ids := append([]string{pl.Model.HardwareID}, pl.Model.CompatibleIDs...)
		for i, id := range ids {
			if id == "" {
				continue
			}
			desc := pk + `\Descriptors\` + id
			if err := hf.setString(desc, "Configuration", regf.RegSz, pl.Install, why); err != nil {
				return err
			}
			if err := hf.setString(desc, "Description", regf.RegSz, pl.Model.Description, why); err != nil {
				return err
			}
			if err := hf.setString(desc, "Manufacturer", regf.RegSz, pl.Model.Manufacturer, why); err != nil {
				return err
			}
			// The first byte is 1 for the INF line's hardware ID and 2 for its compatible IDs,
			// 0xFF the (unspecified) feature score, as in the corpus hive.
			rank := byte(1)
			if i > 0 {
				rank = 2
			}
			if err := hf.set(db+`\DeviceIds\`+id, p.oem, regf.RegBinary, []byte{rank, 0xff, 0, 0}, why); err != nil {
				return err
			}
		}
	}
	return nil
}

// packageVersion is a DriverPackages\<pkg>\Version value: 48 bytes holding the setup class
// GUID at 8, the DriverVer date as a FILETIME at 24 and the DriverVer version at 32 (four 16-bit
// parts, least significant first), laid out as the corpus hive's packages are.
func packageVersion(v inf.Version) []byte {
	b := make([]byte, 48)
	copy(b[0:4], []byte{0x00, 0xff, 0x09, 0x00})
	class := v.ClassGUID
	if class == "" {
		class = scsiAdapterClass
	}
	if g, err := bcd.ParseGUID(class); err == nil {
		copy(b[8:24], g[:])
	}
	if !v.DriverDate.IsZero() {
		binary.LittleEndian.PutUint64(b[24:], filetime(v.DriverDate))
	}
	for i := 0; i < 4; i++ {
		binary.LittleEndian.PutUint16(b[32+2*i:], v.DriverVersion[3-i])
	}
	return b
}

func filetime(t time.Time) uint64 {
	return uint64(t.UnixNano()/100) + 116444736000000000
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}
