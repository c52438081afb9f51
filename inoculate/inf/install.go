package inf

import (
	"encoding/binary"
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// Plan is what installing one device's driver writes, as plain data.
type Plan struct {
	INF       string // the INF file's path
	Arch      string
	Model     Model
	Install   string // the install section used, decorated (e.g. scsi_inst or disk.NT)
	Catalog   string // catalog file name, "" when the INF names none
	Files     []FileCopy
	Services  []Service
	HWAddReg  []RegValue // the install section's .HW AddReg: values under the device's hardware key
	Needs     []string   // Include=/Needs= references that name other INFs' sections (not followed)
	Notes     []string   // what was rewritten or left out, in words
	InfSource string     // the INF file itself, to be copied beside the driver
}

// FileCopy is one file to copy: Source is relative to the INF's folder (slash-separated), Dest
// is relative to %SystemRoot% with backslashes.
type FileCopy struct {
	Source  string
	Dest    string
	DirID   int    // the DIRID the INF gives (13 stays recorded even when rewritten)
	Section string // the CopyFiles section, or "@" for CopyFiles=@file
}

// Service is an AddService directive with its service-install section.
type Service struct {
	Name           string
	Flags          uint32 // AddService flags (0x2 = SPSVCINST_ASSOCSERVICE: the device's function driver)
	DisplayName    string
	Description    string
	ServiceType    uint32
	StartType      uint32
	ErrorControl   uint32
	LoadOrderGroup string
	Dependencies   []string
	// ServiceBinary is the value as the INF writes it (%12%\viostor.sys); ImagePath is what
	// Windows stores in the service key: the binary's path relative to %SystemRoot%
	// (System32\drivers\viostor.sys), REG_EXPAND_SZ.
	ServiceBinary string
	ImagePath     string
	AddReg        []RegValue // HKR is the service key (Services\<Name>)
	DelReg        []RegValue
	EventLog      *EventLog
}

// EventLog is the AddService event-log install section: HKR is
// Services\EventLog\<Log>\<Source>.
type EventLog struct {
	Log    string // System, Application …
	Source string
	AddReg []RegValue
}

// RegValue is one AddReg (or DelReg) line decoded: Root is HKR, HKLM …; Key is below it; Type is
// a registry type (regf.RegSz …); Data is the value as Windows stores it (UTF-16LE with NUL for
// strings). KeyOnly lines create a key and set nothing; Delete lines (DelReg, or
// FLG_ADDREG_DELVAL) remove the value.
type RegValue struct {
	Root      string
	Key       string
	Name      string
	Flags     uint32
	Type      uint32
	Data      []byte
	KeyOnly   bool
	Delete    bool
	NoClobber bool
	Section   string
	Line      int
}

// TypeName names a registry type for reports.
func TypeName(t uint32) string {
	switch t {
	case regf.RegNone:
		return "REG_NONE"
	case regf.RegSz:
		return "REG_SZ"
	case regf.RegExpandSz:
		return "REG_EXPAND_SZ"
	case regf.RegBinary:
		return "REG_BINARY"
	case regf.RegDword:
		return "REG_DWORD"
	case regf.RegDwordBigEndian:
		return "REG_DWORD_BIG_ENDIAN"
	case regf.RegLink:
		return "REG_LINK"
	case regf.RegMultiSz:
		return "REG_MULTI_SZ"
	case regf.RegQword:
		return "REG_QWORD"
	}
	return fmt.Sprintf("REG_TYPE_%d", t)
}

// Dword returns the data of a REG_DWORD value.
func (v RegValue) Dword() (uint32, bool) {
	if v.Type != regf.RegDword || len(v.Data) != 4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(v.Data), true
}

// Text returns the strings of a REG_SZ, REG_EXPAND_SZ or REG_MULTI_SZ value.
func (v RegValue) Text() []string {
	if v.Type != regf.RegSz && v.Type != regf.RegExpandSz && v.Type != regf.RegMultiSz {
		return nil
	}
	u := make([]uint16, len(v.Data)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(v.Data[2*i:])
	}
	var out []string
	start := 0
	for i, c := range u {
		if c == 0 {
			if i > start || v.Type != regf.RegMultiSz {
				out = append(out, string(utf16.Decode(u[start:i])))
			}
			start = i + 1
			if v.Type != regf.RegMultiSz {
				break
			}
		}
	}
	return out
}

// platformSuffixes are the install-section decorations Windows tries, most specific first.
func platformSuffixes(arch string) []string {
	return []string{".NT" + infArchName(arch), ".NT", ""}
}

// InstallSection finds the decorated install section Windows uses for base on arch.
func (f *File) InstallSection(base, arch string) (*Section, error) {
	arch, err := normArch(arch)
	if err != nil {
		return nil, err
	}
	var tried []string
	for _, suf := range platformSuffixes(arch) {
		if s, ok := f.Section(base + suf); ok {
			return s, nil
		}
		tried = append(tried, "["+base+suf+"]")
	}
	return nil, errorf(f.Path, 0, "install section %s for %s: none of %s exists", base, arch, strings.Join(tried, ", "))
}

// Plan resolves the installation of a model on arch.
func (f *File) Plan(m Model, arch string) (*Plan, error) {
	arch, err := normArch(arch)
	if err != nil {
		return nil, err
	}
	inst, err := f.InstallSection(m.Install, arch)
	if err != nil {
		return nil, err
	}
	p := &Plan{INF: f.Path, Arch: arch, Model: m, Install: inst.Name, Catalog: f.Version.Catalog(infArchName(arch)), InfSource: path.Base(strings.ReplaceAll(f.Path, `\`, "/"))}
	if f.Arch != "" && f.Arch != arch {
		return nil, errorf(f.Path, 0, "template was read for %s, not %s", f.Arch, arch)
	}
	if len(f.Template) > 0 {
		p.Notes = append(p.Notes, "template variables replaced: "+strings.Join(f.Template, ", "))
	}
	secs, err := f.withNeeds(inst, p)
	if err != nil {
		return nil, err
	}
	for _, s := range secs {
		for _, l := range s.Values("CopyFiles") {
			if err := f.copyFiles(l, arch, p); err != nil {
				return nil, err
			}
		}
	}
	// .HW and .Services go with the decorated install section's name.
	if hw, ok := f.Section(inst.Name + ".HW"); ok {
		for _, l := range hw.Values("AddReg") {
			v, err := f.addRegs(l, false)
			if err != nil {
				return nil, err
			}
			p.HWAddReg = append(p.HWAddReg, v...)
		}
	}
	if svc, ok := f.Section(inst.Name + ".Services"); ok {
		for _, l := range svc.Values("AddService") {
			s, err := f.service(l, p)
			if err != nil {
				return nil, err
			}
			p.Services = append(p.Services, s)
		}
	}
	return p, nil
}

// withNeeds returns the install section and the sections its Include/Needs pull in from this
// same file; references into other INFs are recorded, since those are system INFs of the
// target Windows that are not at hand here.
func (f *File) withNeeds(inst *Section, p *Plan) ([]*Section, error) {
	out := []*Section{inst}
	var includes []string
	for _, l := range inst.Values("Include") {
		includes = append(includes, l.Fields...)
	}
	for _, l := range inst.Values("Needs") {
		for _, n := range l.Fields {
			if n == "" {
				continue
			}
			if s, ok := f.Section(n); ok && len(includes) == 0 {
				out = append(out, s)
				continue
			}
			p.Needs = append(p.Needs, fmt.Sprintf("%s (from %s)", n, strings.Join(includes, ", ")))
		}
	}
	if len(p.Needs) > 0 {
		p.Notes = append(p.Notes, "Include/Needs name sections of other INFs that were not followed: "+strings.Join(p.Needs, "; "))
	}
	return out, nil
}

// dirIDPath maps the DIRIDs a driver package uses to paths relative to %SystemRoot%. Others
// (the boot partition's root, user profile folders …) have no place in an offline boot-driver
// copy and are refused.
func dirIDPath(id int) (string, bool) {
	switch id {
	case 10:
		return "", true
	case 11:
		return `System32`, true
	case 12:
		return `System32\drivers`, true
	case 17:
		return `INF`, true
	case 18:
		return `Help`, true
	case 20:
		return `Fonts`, true
	case 50:
		return `System`, true
	}
	return "", false
}

// destDir resolves [DestinationDirs] for a copy-files section name.
func (f *File) destDir(section string) (int, string, string, error) {
	dd, ok := f.Section("DestinationDirs")
	if !ok {
		return 0, "", "", errorf(f.Path, 0, "CopyFiles section %s: the file has no [DestinationDirs]", section)
	}
	l, ok := dd.Value(section)
	if !ok {
		if l, ok = dd.Value("DefaultDestDir"); !ok {
			return 0, "", "", errorf(f.Path, dd.Line, "CopyFiles section %s: no [DestinationDirs] entry for it and no DefaultDestDir", section)
		}
	}
	n, err := parseNumber(strings.Trim(l.Field(0), "%"))
	if err != nil {
		return 0, "", "", errorf(f.Path, l.Line, "DestinationDirs %s: DIRID %q is not a number", l.Key, l.Field(0))
	}
	id := int(n)
	note := ""
	if id == 13 {
		// The driver store exists only once Windows has staged the package; offline, boot
		// drivers go to System32\drivers, where ImagePath finds them.
		note = fmt.Sprintf("DestinationDirs %s = 13 (driver store) rewritten to 12 (System32\\drivers) for an offline copy", l.Key)
		id = 12
	}
	base, ok := dirIDPath(id)
	if !ok {
		return 0, "", "", errorf(f.Path, l.Line, "DestinationDirs %s: DIRID %d is not one an offline boot-driver copy supports (10, 11, 12, 13, 17, 18, 20, 50)", l.Key, id)
	}
	if sub := strings.Trim(l.Field(1), `\`); sub != "" {
		if base != "" {
			base += `\`
		}
		base += sub
	}
	// The INF's own DIRID is reported, so a report can say where the file would have gone.
	return int(n), base, note, nil
}

func (f *File) copyFiles(l Line, arch string, p *Plan) error {
	for _, item := range l.Fields {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if strings.HasPrefix(item, "@") {
			name := strings.TrimSpace(item[1:])
			fc, err := f.fileCopy("DefaultDestDir", "@", name, name, arch, l.Line, p)
			if err != nil {
				return err
			}
			p.Files = append(p.Files, fc)
			continue
		}
		s, ok := f.Section(item)
		if !ok {
			return errorf(f.Path, l.Line, "CopyFiles names section [%s], which does not exist", item)
		}
		for _, fl := range s.Lines {
			if fl.HasKey {
				return errorf(f.Path, fl.Line, "copy-files section [%s] has a key=value line", s.Name)
			}
			dst := strings.TrimSpace(fl.Field(0))
			src := strings.TrimSpace(fl.Field(1))
			if src == "" {
				src = dst
			}
			if dst == "" {
				return errorf(f.Path, fl.Line, "copy-files section [%s]: empty destination file name", s.Name)
			}
			fc, err := f.fileCopy(s.Name, s.Name, dst, src, arch, fl.Line, p)
			if err != nil {
				return err
			}
			p.Files = append(p.Files, fc)
		}
	}
	return nil
}

func (f *File) fileCopy(ddKey, section, dst, src, arch string, line int, p *Plan) (FileCopy, error) {
	id, dir, note, err := f.destDir(ddKey)
	if err != nil {
		return FileCopy{}, err
	}
	if note != "" {
		p.Notes = appendOnce(p.Notes, note)
	}
	srcPath, err := f.sourcePath(src, arch, line)
	if err != nil {
		return FileCopy{}, err
	}
	d := dst
	if dir != "" {
		d = dir + `\` + dst
	}
	return FileCopy{Source: srcPath, Dest: d, DirID: id, Section: section}, nil
}

// sourcePath finds a file in [SourceDisksFiles(.arch)] and its disk in [SourceDisksNames(.arch)]:
// the file lies in the disk's path, then the file's subdirectory, below the INF's folder.
func (f *File) sourcePath(name, arch string, line int) (string, error) {
	var fl Line
	found := false
	for _, sec := range []string{"SourceDisksFiles." + infArchName(arch), "SourceDisksFiles"} {
		if s, ok := f.Section(sec); ok {
			if fl, found = s.Value(name); found {
				break
			}
		}
	}
	if !found {
		return "", errorf(f.Path, line, "file %s is not listed in [SourceDisksFiles.%s] or [SourceDisksFiles]", name, infArchName(arch))
	}
	disk := strings.TrimSpace(fl.Field(0))
	var dl Line
	found = false
	for _, sec := range []string{"SourceDisksNames." + infArchName(arch), "SourceDisksNames"} {
		if s, ok := f.Section(sec); ok {
			if dl, found = s.Value(disk); found {
				break
			}
		}
	}
	if !found {
		return "", errorf(f.Path, fl.Line, "file %s is on disk %q, which [SourceDisksNames.%s] and [SourceDisksNames] do not list", name, disk, infArchName(arch))
	}
	parts := []string{}
	for _, p := range []string{dl.Field(3), fl.Field(1), name} {
		p = strings.Trim(strings.ReplaceAll(p, `\`, "/"), "/")
		if p != "" {
			parts = append(parts, p)
		}
	}
	return path.Clean(strings.Join(parts, "/")), nil
}

func (f *File) service(l Line, p *Plan) (Service, error) {
	s := Service{Name: l.Field(0)}
	if s.Name == "" {
		return s, errorf(f.Path, l.Line, "AddService without a service name")
	}
	if fl := l.Field(1); fl != "" {
		n, err := parseNumber(fl)
		if err != nil {
			return s, errorf(f.Path, l.Line, "AddService %s: flags %q are not a number", s.Name, fl)
		}
		s.Flags = uint32(n)
	}
	secName := l.Field(2)
	sec, ok := f.Section(secName)
	if !ok {
		return s, errorf(f.Path, l.Line, "AddService %s: service-install section [%s] does not exist", s.Name, secName)
	}
	seen := map[string]bool{}
	for _, sl := range sec.Lines {
		if !sl.HasKey {
			continue
		}
		key := strings.ToLower(sl.Key)
		num := func() (uint32, error) {
			n, err := parseNumber(sl.Field(0))
			if err != nil || n > 0xFFFFFFFF {
				return 0, errorf(f.Path, sl.Line, "[%s] %s = %q is not a number", sec.Name, sl.Key, sl.Field(0))
			}
			return uint32(n), nil
		}
		var err error
		switch key {
		case "displayname":
			s.DisplayName = strings.Join(sl.Fields, ",")
		case "description":
			s.Description = strings.Join(sl.Fields, ",")
		case "servicetype":
			s.ServiceType, err = num()
		case "starttype":
			s.StartType, err = num()
		case "errorcontrol":
			s.ErrorControl, err = num()
		case "loadordergroup":
			s.LoadOrderGroup = sl.Field(0)
		case "dependencies":
			for _, d := range sl.Fields {
				if d != "" {
					s.Dependencies = append(s.Dependencies, d)
				}
			}
		case "servicebinary":
			s.ServiceBinary = sl.Field(0)
			s.ImagePath, err = f.imagePath(s.ServiceBinary, sl.Line, p)
		case "addreg":
			v, e := f.addRegs(sl, false)
			s.AddReg, err = append(s.AddReg, v...), e
		case "delreg":
			v, e := f.addRegs(sl, true)
			s.DelReg, err = append(s.DelReg, v...), e
		}
		if err != nil {
			return s, err
		}
		seen[key] = true
	}
	for _, need := range []string{"servicetype", "starttype", "errorcontrol", "servicebinary"} {
		if !seen[need] {
			return s, errorf(f.Path, sec.Line, "service-install section [%s] for %s has no %s", sec.Name, s.Name, need)
		}
	}
	if ev := l.Field(3); ev != "" {
		es, ok := f.Section(ev)
		if !ok {
			return s, errorf(f.Path, l.Line, "AddService %s: event-log section [%s] does not exist", s.Name, ev)
		}
		e := &EventLog{Log: l.Field(4), Source: l.Field(5)}
		if e.Log == "" {
			e.Log = "System"
		}
		if e.Source == "" {
			e.Source = s.Name
		}
		for _, al := range es.Values("AddReg") {
			v, err := f.addRegs(al, false)
			if err != nil {
				return s, err
			}
			e.AddReg = append(e.AddReg, v...)
		}
		s.EventLog = e
	}
	return s, nil
}

// imagePath turns ServiceBinary (%12%\x.sys) into the path Windows stores, relative to
// %SystemRoot%; %13% (the driver store) becomes System32\drivers because that is where the
// offline copy puts the file.
func (f *File) imagePath(bin string, line int, p *Plan) (string, error) {
	if !strings.HasPrefix(bin, "%") {
		return "", errorf(f.Path, line, "ServiceBinary %q does not start with a %%DIRID%%", bin)
	}
	end := strings.IndexByte(bin[1:], '%')
	if end < 0 {
		return "", errorf(f.Path, line, "ServiceBinary %q: unterminated %%DIRID%%", bin)
	}
	n, err := strconv.Atoi(bin[1 : 1+end])
	if err != nil {
		return "", errorf(f.Path, line, "ServiceBinary %q: %q is not a DIRID", bin, bin[1:1+end])
	}
	rest := strings.TrimLeft(bin[end+2:], `\`)
	if n == 13 {
		p.Notes = appendOnce(p.Notes, fmt.Sprintf("ServiceBinary %s: %%13%% (driver store) rewritten to System32\\drivers for an offline install", bin))
		n = 12
	}
	base, ok := dirIDPath(n)
	if !ok {
		return "", errorf(f.Path, line, "ServiceBinary %q: DIRID %d is not supported offline", bin, n)
	}
	if base == "" {
		return rest, nil
	}
	return base + `\` + rest, nil
}

// AddReg flag bits (Learn, "INF AddReg directive").
const (
	flgBinValueType = 0x00000001
	flgNoClobber    = 0x00000002
	flgDelVal       = 0x00000004
	flgAppend       = 0x00000008
	flgKeyOnly      = 0x00000010
	flgTypeMask     = 0xFFFF0000 | flgBinValueType
)

// addRegs reads the AddReg (or DelReg) sections a directive line names.
func (f *File) addRegs(l Line, del bool) ([]RegValue, error) {
	var out []RegValue
	for _, name := range l.Fields {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		s, ok := f.Section(name)
		if !ok {
			return nil, errorf(f.Path, l.Line, "%s names section [%s], which does not exist", l.Key, name)
		}
		for _, rl := range s.Lines {
			v, err := f.regLine(s.Name, rl, del)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
	}
	return out, nil
}

func (f *File) regLine(sec string, rl Line, del bool) (RegValue, error) {
	fields := rl.Fields
	if rl.HasKey {
		// "HKR = ..." is not an AddReg line; Windows reads the line as a whole.
		return RegValue{}, errorf(f.Path, rl.Line, "registry section [%s]: a key=value line, not root,subkey,name,flags,data", sec)
	}
	v := RegValue{Root: strings.ToUpper(strings.TrimSpace(l0(fields, 0))), Key: l0(fields, 1), Name: l0(fields, 2), Section: sec, Line: rl.Line}
	switch v.Root {
	case "HKR", "HKLM", "HKCU", "HKCR", "HKU", "HKEY_LOCAL_MACHINE", "HKEY_CURRENT_USER", "HKEY_CLASSES_ROOT", "HKEY_USERS":
	default:
		return v, errorf(f.Path, rl.Line, "registry section [%s]: root %q is not HKR, HKLM, HKCU, HKCR or HKU", sec, l0(fields, 0))
	}
	if del {
		v.Delete = true
		if fl := l0(fields, 3); fl != "" {
			n, err := parseNumber(fl)
			if err != nil {
				return v, errorf(f.Path, rl.Line, "registry section [%s]: flags %q are not a number", sec, fl)
			}
			v.Flags = uint32(n)
		}
		return v, nil
	}
	if fl := l0(fields, 3); fl != "" {
		n, err := parseNumber(fl)
		if err != nil || n > 0xFFFFFFFF {
			return v, errorf(f.Path, rl.Line, "registry section [%s]: flags %q are not a 32-bit number", sec, fl)
		}
		v.Flags = uint32(n)
	}
	v.NoClobber = v.Flags&flgNoClobber != 0
	if v.Flags&flgKeyOnly != 0 {
		v.KeyOnly = true
		return v, nil
	}
	if v.Flags&flgDelVal != 0 {
		v.Delete = true
		return v, nil
	}
	if v.Flags&flgAppend != 0 && v.Flags&flgTypeMask != 0x00010000 {
		return v, errorf(f.Path, rl.Line, "registry section [%s]: FLG_ADDREG_APPEND applies only to REG_MULTI_SZ", sec)
	}
	data := fields[min(4, len(fields)):]
	var err error
	switch t := v.Flags & flgTypeMask; t {
	case 0x00000000:
		v.Type, v.Data = regf.RegSz, utf16z(l0(data, 0))
	case 0x00020000:
		v.Type, v.Data = regf.RegExpandSz, utf16z(l0(data, 0))
	case 0x00010000:
		v.Type = regf.RegMultiSz
		for _, s := range data {
			if s != "" {
				v.Data = append(v.Data, utf16z(s)...)
			}
		}
		v.Data = append(v.Data, 0, 0)
	case 0x00010001:
		v.Type = regf.RegDword
		v.Data, err = dwordData(data)
	case 0x00020001:
		v.Type = regf.RegNone
		v.Data, err = hexBytes(data)
	default:
		// FLG_ADDREG_BINVALUETYPE with the type in the high word: hex bytes of any type.
		v.Type = t >> 16
		if t == flgBinValueType {
			v.Type = regf.RegBinary
		}
		if t&flgBinValueType == 0 {
			return v, errorf(f.Path, rl.Line, "registry section [%s]: value type flags %#x are not a known registry type", sec, v.Flags)
		}
		v.Data, err = hexBytes(data)
	}
	if err != nil {
		return v, errorf(f.Path, rl.Line, "registry section [%s] value %q: %v", sec, v.Name, err)
	}
	return v, nil
}

func l0(s []string, i int) string {
	if i < len(s) {
		return s[i]
	}
	return ""
}

func utf16z(s string) []byte {
	u := utf16.Encode([]rune(s))
	b := make([]byte, 2*len(u)+2)
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2*i:], c)
	}
	return b
}

// dwordData reads a REG_DWORD's data: one number (decimal or 0x hex), or four hex bytes.
func dwordData(d []string) ([]byte, error) {
	if len(d) == 0 || (len(d) == 1 && strings.TrimSpace(d[0]) == "") {
		return []byte{0, 0, 0, 0}, nil
	}
	if len(d) == 1 {
		n, err := parseNumber(d[0])
		if err != nil || n > 0xFFFFFFFF {
			return nil, fmt.Errorf("DWORD %q is not a 32-bit number", d[0])
		}
		return binary.LittleEndian.AppendUint32(nil, uint32(n)), nil
	}
	b, err := hexBytes(d)
	if err != nil {
		return nil, err
	}
	if len(b) != 4 {
		return nil, fmt.Errorf("DWORD given as %d bytes, not 4", len(b))
	}
	return b, nil
}

func hexBytes(d []string) ([]byte, error) {
	var out []byte
	for _, s := range d {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"), 16, 8)
		if err != nil {
			return nil, fmt.Errorf("binary byte %q is not two hex digits", s)
		}
		out = append(out, byte(n))
	}
	return out, nil
}
