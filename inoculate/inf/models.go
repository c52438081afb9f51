package inf

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// WinVersion is a Windows version: 6.1.7601 is Windows 7 SP1, 10.0.17763 Windows 10 1809 and
// Server 2019.
type WinVersion struct{ Major, Minor, Build int }

func (v WinVersion) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Build) }

// Less orders versions.
func (v WinVersion) Less(o WinVersion) bool {
	if v.Major != o.Major {
		return v.Major < o.Major
	}
	if v.Minor != o.Minor {
		return v.Minor < o.Minor
	}
	return v.Build < o.Build
}

// ParseWinVersion reads major.minor[.build].
func ParseWinVersion(s string) (WinVersion, error) {
	p := strings.Split(s, ".")
	if len(p) < 2 || len(p) > 3 {
		return WinVersion{}, fmt.Errorf("Windows version %q is not major.minor[.build]", s)
	}
	var n [3]int
	for i, x := range p {
		v, err := strconv.Atoi(x)
		if err != nil || v < 0 {
			return WinVersion{}, fmt.Errorf("Windows version %q: %q is not a number", s, x)
		}
		n[i] = v
	}
	return WinVersion{n[0], n[1], n[2]}, nil
}

// Product types, as TargetOSVersion decorations and the OS write them.
const (
	ProductAny         = 0
	ProductWorkstation = 1
	ProductDC          = 2
	ProductServer      = 3
)

// Target is the Windows a driver is chosen for.
type Target struct {
	Arch        string // amd64, x86 or arm64
	Version     WinVersion
	ProductType int // ProductWorkstation, ProductServer …; ProductAny when unknown
}

// Decoration is a parsed TargetOSVersion: NT[arch][.major[.minor[.productType[.suiteMask[.build]]]]].
type Decoration struct {
	Text        string // as written, "" for an undecorated models section
	NT          bool   // starts with NT (every decoration Windows NT honours does)
	Arch        string // amd64, x86, arm64, ia64, arm; "" when none is named
	Version     WinVersion
	HasVersion  bool
	HasBuild    bool
	ProductType int
	SuiteMask   uint32
}

// ParseDecoration reads a TargetOSVersion decoration.
func ParseDecoration(s string) (Decoration, error) {
	d := Decoration{Text: s}
	if s == "" {
		return d, nil
	}
	parts := strings.Split(s, ".")
	head := strings.ToLower(parts[0])
	if !strings.HasPrefix(head, "nt") {
		return d, fmt.Errorf("TargetOSVersion %q does not start with NT", s)
	}
	d.NT = true
	switch a := head[2:]; a {
	case "":
	case "x86", "amd64", "arm64", "ia64", "arm":
		d.Arch = a
	default:
		return d, fmt.Errorf("TargetOSVersion %q names an unknown architecture %q", s, a)
	}
	num := func(i int, base int) (int64, bool, error) {
		if i >= len(parts) || parts[i] == "" {
			return 0, false, nil
		}
		t := parts[i]
		if base == 16 {
			t = strings.TrimPrefix(strings.TrimPrefix(t, "0x"), "0X")
		}
		v, err := strconv.ParseInt(t, base, 64)
		if err != nil || v < 0 {
			return 0, false, fmt.Errorf("TargetOSVersion %q: field %d (%q) is not a number", s, i, parts[i])
		}
		return v, true, nil
	}
	if len(parts) > 6 {
		return d, fmt.Errorf("TargetOSVersion %q has more than six fields", s)
	}
	var err error
	var v int64
	var ok bool
	if v, ok, err = num(1, 10); err != nil {
		return d, err
	}
	d.Version.Major, d.HasVersion = int(v), ok
	if v, _, err = num(2, 10); err != nil {
		return d, err
	}
	d.Version.Minor = int(v)
	if v, _, err = num(3, 16); err != nil {
		return d, err
	}
	d.ProductType = int(v)
	if v, _, err = num(4, 16); err != nil {
		return d, err
	}
	d.SuiteMask = uint32(v)
	if v, ok, err = num(5, 10); err != nil {
		return d, err
	}
	d.Version.Build, d.HasBuild = int(v), ok
	return d, nil
}

// Applies reports whether Windows on t would use a models section with this decoration.
// Platform rules (Learn, "INF Manufacturer section"): an x64 or Arm64 system uses only sections
// decorated with its own architecture; an x86 system also uses undecorated and plain NT ones.
// The OS part applies when it is not newer than the target.
func (d Decoration) Applies(t Target) bool {
	switch {
	case d.Arch == t.Arch:
	case d.Arch == "" && t.Arch == "x86":
	default:
		return false
	}
	if t.Version.Less(d.Version) {
		return false
	}
	if d.ProductType != ProductAny && t.ProductType != ProductAny && d.ProductType != t.ProductType {
		return false
	}
	return true
}

// Specificity orders applicable decorations as Windows chooses among them: the highest OS
// version wins, then a named product type, a suite mask, an architecture.
func (d Decoration) moreSpecific(o Decoration) bool {
	if d.Version != o.Version {
		return o.Version.Less(d.Version)
	}
	if (d.ProductType != 0) != (o.ProductType != 0) {
		return d.ProductType != 0
	}
	if (d.SuiteMask != 0) != (o.SuiteMask != 0) {
		return d.SuiteMask != 0
	}
	if (d.Arch != "") != (o.Arch != "") {
		return d.Arch != ""
	}
	return d.NT && !o.NT
}

// Manufacturer is one line of [Manufacturer].
type Manufacturer struct {
	Name        string // manufacturer name (strings substituted)
	Models      string // models section base name
	Decorations []Decoration
	Line        int
}

// Manufacturers reads [Manufacturer].
func (f *File) Manufacturers() ([]Manufacturer, error) {
	s, ok := f.Section("Manufacturer")
	if !ok {
		return nil, nil
	}
	var out []Manufacturer
	for _, l := range s.Lines {
		m := Manufacturer{Line: l.Line}
		rest := l.Fields
		if l.HasKey {
			m.Name = l.Key
		} else {
			// "%strkey%" alone names the models section after itself.
			m.Name = l.Field(0)
		}
		if len(rest) == 0 || rest[0] == "" {
			return nil, errorf(f.Path, l.Line, "[Manufacturer] entry %q names no models section", m.Name)
		}
		m.Models = rest[0]
		if !l.HasKey {
			rest = rest[:1]
		}
		for _, t := range rest[1:] {
			if t == "" {
				continue
			}
			d, err := ParseDecoration(t)
			if err != nil {
				return nil, errorf(f.Path, l.Line, "%v", err)
			}
			m.Decorations = append(m.Decorations, d)
		}
		out = append(out, m)
	}
	return out, nil
}

// Pick returns the decoration Windows uses for t among those listed (the undecorated models
// section counts as the decoration ""), and false when none applies.
func (m Manufacturer) Pick(t Target) (Decoration, bool) {
	cands := append([]Decoration{{}}, m.Decorations...)
	var best Decoration
	found := false
	for _, d := range cands {
		if !d.Applies(t) {
			continue
		}
		if !found || d.moreSpecific(best) {
			best, found = d, true
		}
	}
	return best, found
}

// SectionName is the models section for a decoration.
func (m Manufacturer) SectionName(d Decoration) string {
	if d.Text == "" {
		return m.Models
	}
	return m.Models + "." + d.Text
}

// Model is one device line of a models section.
type Model struct {
	Description   string
	Install       string // install section base name
	HardwareID    string
	CompatibleIDs []string
	Section       string // the models section it is in
	Decoration    Decoration
	Manufacturer  string
	Line          int
}

// Models returns the device lines Windows would consider on t: for each manufacturer, the
// models section of the most specific applicable decoration. It fails when the file has
// models but none applies to t's architecture and version.
func (f *File) Models(t Target) ([]Model, error) {
	arch, err := normArch(t.Arch)
	if err != nil {
		return nil, err
	}
	t.Arch = arch
	if f.Arch != "" && f.Arch != arch {
		return nil, errorf(f.Path, 0, "template was read for %s ($ARCH$ replaced): read it again with Options.Arch %q for %s", f.Arch, arch, arch)
	}
	mfgs, err := f.Manufacturers()
	if err != nil {
		return nil, err
	}
	var out []Model
	var seen []string
	for _, m := range mfgs {
		d, ok := m.Pick(t)
		var decs []string
		for _, x := range m.Decorations {
			decs = append(decs, x.Text)
		}
		seen = append(seen, fmt.Sprintf("%s (%s)", m.Models, strings.Join(append([]string{"undecorated"}, decs...), ", ")))
		if !ok {
			continue
		}
		name := m.SectionName(d)
		s, ok := f.Section(name)
		if !ok {
			if d.Text == "" && len(m.Decorations) > 0 {
				// An undecorated section that is not there means the INF lists only decorated ones.
				continue
			}
			return nil, errorf(f.Path, m.Line, "models section [%s] named in [Manufacturer] does not exist", name)
		}
		for _, l := range s.Lines {
			md := Model{Section: s.Name, Decoration: d, Manufacturer: m.Name, Line: l.Line}
			if l.HasKey {
				md.Description = l.Key
			}
			md.Install = l.Field(0)
			md.HardwareID = l.Field(1)
			for _, c := range l.Fields[min(2, len(l.Fields)):] {
				if c != "" {
					md.CompatibleIDs = append(md.CompatibleIDs, c)
				}
			}
			if md.Install == "" || md.HardwareID == "" {
				return nil, errorf(f.Path, l.Line, "device line in [%s] needs an install section and a hardware ID", s.Name)
			}
			out = append(out, md)
		}
	}
	if len(out) == 0 && len(mfgs) > 0 {
		return nil, errorf(f.Path, mfgs[0].Line, "no models section applies to %s Windows %s: [Manufacturer] offers %s", t.Arch, t.Version, strings.Join(seen, "; "))
	}
	return out, nil
}

// Candidate is a driver line that matches a device.
type Candidate struct {
	File  *File
	Model Model
	// Matched is the device ID that matched, Position its index in the device's list, and
	// INFCompatible says it matched one of the INF line's compatible IDs rather than its
	// hardware ID.
	Matched       string
	Position      int
	INFCompatible bool
	// Rank is Windows' identifier score: lower is better (position, plus 0x1000 when the INF
	// side is a compatible ID; plus 0x2000 when the device side is a compatible ID, see
	// MatchDevice).
	Rank int
	// OS is the Windows version the driver is built for: its decoration's, or its virtio-win
	// folder's when that says more (see Scan).
	OS WinVersion
	// Folder is the virtio-win OS folder name (w10, 2k19 …) the file came from, if any, and
	// ProductMatch says that folder is built for the target's product type (workstation or
	// server).
	Folder       string
	ProductMatch bool
}

// Match ranks this file's drivers for a device on t. ids are the device's IDs, most specific
// first (hardware IDs, then compatible IDs, as Windows lists them); every ID counts as a hardware
// ID here (use MatchDevice to keep the two lists apart as Windows does).
func (f *File) Match(t Target, ids []string) ([]Candidate, error) {
	return f.MatchDevice(t, ids, nil)
}

// MatchDevice ranks this file's drivers for a device with hardware and compatible IDs on t,
// best first, by Windows' identifier score, then decoration specificity, then DriverVer date
// and version.
func (f *File) MatchDevice(t Target, hardwareIDs, compatibleIDs []string) ([]Candidate, error) {
	models, err := f.Models(t)
	if err != nil {
		return nil, err
	}
	all := append(append([]string(nil), hardwareIDs...), compatibleIDs...)
	var out []Candidate
	for _, m := range models {
		best := -1
		var c Candidate
		for pos, id := range all {
			infIDs := append([]string{m.HardwareID}, m.CompatibleIDs...)
			for k, iid := range infIDs {
				if !strings.EqualFold(id, iid) {
					continue
				}
				rank := pos
				if pos >= len(hardwareIDs) {
					rank = 0x2000 + pos - len(hardwareIDs)
				}
				if k > 0 {
					rank += 0x1000
				}
				if best < 0 || rank < best {
					best = rank
					c = Candidate{File: f, Model: m, Matched: id, Position: pos, INFCompatible: k > 0, Rank: rank, OS: m.Decoration.Version}
				}
			}
		}
		if best >= 0 {
			out = append(out, c)
		}
	}
	SortCandidates(out)
	return out, nil
}

// SortCandidates orders candidates best first: identifier score, a virtio-win folder built for
// the target's product type, the OS version the driver is built for (the more specific
// decoration or folder), DriverVer date, DriverVer version, then path for a stable order.
func SortCandidates(c []Candidate) {
	sort.SliceStable(c, func(i, j int) bool {
		a, b := c[i], c[j]
		if a.Rank != b.Rank {
			return a.Rank < b.Rank
		}
		if a.ProductMatch != b.ProductMatch {
			return a.ProductMatch
		}
		if a.OS != b.OS {
			return b.OS.Less(a.OS)
		}
		if a.Model.Decoration.moreSpecific(b.Model.Decoration) != b.Model.Decoration.moreSpecific(a.Model.Decoration) {
			return a.Model.Decoration.moreSpecific(b.Model.Decoration)
		}
		av, bv := a.File.Version, b.File.Version
		if !av.DriverDate.Equal(bv.DriverDate) {
			return av.DriverDate.After(bv.DriverDate)
		}
		if av.DriverVersion != bv.DriverVersion {
			for k := range av.DriverVersion {
				if av.DriverVersion[k] != bv.DriverVersion[k] {
					return av.DriverVersion[k] > bv.DriverVersion[k]
				}
			}
		}
		return a.File.Path < b.File.Path
	})
}
