package inf

import (
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/cauldron-dr/cauldron/internal/plainfile"
)

// Options control how a file is read.
type Options struct {
	// LCID is the preferred locale of [Strings.LCID] sections, four hex digits; "" means 0409
	// (US English). Keys missing there come from [Strings].
	LCID string
	// Arch replaces $ARCH$ in templates (.inx files and unstamped INFs): amd64, x86 or arm64;
	// "" means amd64.
	Arch string
	// TemplateVars override the replacements of virtio-win template variables
	// (INX_PLATFORM_DRIVERS_DIR, _INX_SUBSYS_VENDOR_ID, INX_COMPANY …).
	TemplateVars map[string]string
}

// Line is one line of a section, with strings substituted and quotes removed.
type Line struct {
	Line   int    // line number in the file (the first, for continued lines)
	Key    string // the part before '=', "" when HasKey is false
	HasKey bool
	Fields []string // the comma-separated values (or the whole line when there is no key)
}

// Field returns field i, or "" when the line has fewer.
func (l Line) Field(i int) string {
	if i < len(l.Fields) {
		return l.Fields[i]
	}
	return ""
}

// Section is a named section; duplicate sections are merged in file order.
type Section struct {
	Name  string // as first written
	Line  int    // line of its first header
	Lines []Line
}

// Value returns the fields of the first line whose key equals key (case-insensitively).
func (s *Section) Value(key string) (Line, bool) {
	for _, l := range s.Lines {
		if l.HasKey && strings.EqualFold(l.Key, key) {
			return l, true
		}
	}
	return Line{}, false
}

// Values returns every line whose key equals key (case-insensitively).
func (s *Section) Values(key string) []Line {
	var out []Line
	for _, l := range s.Lines {
		if l.HasKey && strings.EqualFold(l.Key, key) {
			out = append(out, l)
		}
	}
	return out
}

// File is a parsed INF file.
type File struct {
	Path     string   // as given
	Encoding string   // Windows-1252, UTF-16LE, UTF-16BE or UTF-8
	Template []string // template variables replaced (NAME=value), empty for a stamped INF
	Arch     string   // the architecture $ARCH$ was replaced with, "" for a stamped INF
	Version  Version

	sections map[string]*Section
	order    []string
	strs     map[string]string
	opts     Options
	raw      []byte
	stamped  string // the text after template substitution, for templates only
}

// Contents returns the file as it goes onto a target system: its bytes as read for a stamped
// INF, and for a template (.inx, or an INF never stamped) the text with its variables replaced,
// as UTF-16LE with a byte-order mark, an encoding every Windows reads INFs in, since a template's
// $ARCH$ or INX_ names would make the copy unusable for Windows' own installer.
func (f *File) Contents() []byte {
	if len(f.Template) == 0 {
		return f.raw
	}
	u := utf16.Encode([]rune(f.stamped))
	b := make([]byte, 2+2*len(u))
	b[0], b[1] = 0xFF, 0xFE
	for i, c := range u {
		binary.LittleEndian.PutUint16(b[2+2*i:], c)
	}
	return b
}

// Version is the [Version] section.
type Version struct {
	Signature     string
	Class         string
	ClassGUID     string
	Provider      string
	DriverDate    time.Time // zero when DriverVer is missing
	DriverVersion [4]uint16
	DriverVer     string            // as written, after substitution
	CatalogFiles  map[string]string // "" for CatalogFile, lower-case platform for CatalogFile.NTamd64 …
	PnpLockdown   bool
}

// VersionString formats DriverVersion as a.b.c.d.
func (v Version) VersionString() string {
	d := v.DriverVersion
	return fmt.Sprintf("%d.%d.%d.%d", d[0], d[1], d[2], d[3])
}

// Catalog returns the catalog file for an architecture: CatalogFile.NT<arch>, else
// CatalogFile.NT, else CatalogFile.
func (v Version) Catalog(arch string) string {
	for _, k := range []string{"nt" + strings.ToLower(arch), "nt", ""} {
		if c, ok := v.CatalogFiles[k]; ok && c != "" {
			return c
		}
	}
	return ""
}

// ParseFile reads and parses an INF (or .inx) file.
func ParseFile(path string, opts Options) (*File, error) {
	b, err := plainfile.Read(path, 0)
	if err != nil {
		return nil, err
	}
	return Parse(path, b, opts)
}

// Parse parses an INF file's contents; name is used in messages.
func Parse(name string, b []byte, opts Options) (*File, error) {
	if opts.LCID == "" {
		opts.LCID = "0409"
	}
	if opts.Arch == "" {
		opts.Arch = "amd64"
	}
	arch, err := normArch(opts.Arch)
	if err != nil {
		return nil, errorf(name, 0, "%v", err)
	}
	opts.Arch = arch
	text, enc, err := decode(name, b)
	if err != nil {
		return nil, err
	}
	f := &File{Path: name, Encoding: enc, sections: map[string]*Section{}, opts: opts, raw: b}
	if isTemplate(text) {
		text, f.Template = substituteTemplate(text, infArchName(arch), opts.TemplateVars)
		f.Arch = arch
		f.stamped = text
	}
	toks, err := tokenize(name, text)
	if err != nil {
		return nil, err
	}
	var cur *Section
	type pending struct {
		sec *Section
		l   rawLine
	}
	var lines []pending
	for _, t := range toks {
		if t.section != "" {
			k := strings.ToLower(t.section)
			s, ok := f.sections[k]
			if !ok {
				s = &Section{Name: t.section, Line: t.line}
				f.sections[k] = s
				f.order = append(f.order, k)
			}
			cur = s
			continue
		}
		if cur == nil {
			return nil, errorf(name, t.line, "a line before the first section header")
		}
		lines = append(lines, pending{cur, t.l})
	}
	// Strings first: every other section's %strkey% tokens are replaced from them.
	f.strs = map[string]string{}
	for _, sname := range []string{"strings", "strings." + strings.ToLower(opts.LCID)} {
		for _, p := range lines {
			if strings.ToLower(p.sec.Name) != sname {
				continue
			}
			if !p.l.hasKey {
				return nil, errorf(name, p.l.line, "a line without '=' in [%s]", p.sec.Name)
			}
			f.strs[strings.ToLower(p.l.key)] = strings.Join(p.l.fields, ",")
		}
	}
	for _, p := range lines {
		l := Line{Line: p.l.line, HasKey: p.l.hasKey}
		lname := strings.ToLower(p.sec.Name)
		isStrings := lname == "strings" || strings.HasPrefix(lname, "strings.")
		if isStrings {
			l.Key, l.Fields = p.l.key, p.l.fields
		} else {
			if l.Key, err = f.subst(p.l.key, p.l.line); err != nil {
				return nil, err
			}
			for _, fv := range p.l.fields {
				s, err := f.subst(fv, p.l.line)
				if err != nil {
					return nil, err
				}
				l.Fields = append(l.Fields, s)
			}
		}
		p.sec.Lines = append(p.sec.Lines, l)
	}
	if err := f.readVersion(); err != nil {
		return nil, err
	}
	return f, nil
}

// subst replaces %strkey% tokens. %% is a literal %; a token naming a number (a DIRID such as
// %12%) is kept for the caller to resolve; a lone % with no closing one is kept as text.
func (f *File) subst(s string, line int) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			sb.WriteByte(s[i])
			continue
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			sb.WriteString(s[i:])
			break
		}
		key := s[i+1 : i+1+j]
		switch {
		case key == "":
			sb.WriteByte('%')
		case isNumber(key):
			sb.WriteString("%" + key + "%")
		default:
			v, ok := f.strs[strings.ToLower(key)]
			if !ok {
				return "", errorf(f.Path, line, "string key %%%s%% is not defined in [Strings.%s] or [Strings]", key, f.opts.LCID)
			}
			sb.WriteString(v)
		}
		i += j + 1
	}
	return sb.String(), nil
}

func isNumber(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// Section returns a section by name (case-insensitively).
func (f *File) Section(name string) (*Section, bool) {
	s, ok := f.sections[strings.ToLower(name)]
	return s, ok
}

// Sections returns the section names in the order they first appear.
func (f *File) Sections() []string {
	out := make([]string, len(f.order))
	for i, k := range f.order {
		out[i] = f.sections[k].Name
	}
	return out
}

// String returns a [Strings] value by key, as the file's LCID preference resolves it.
func (f *File) String(key string) (string, bool) {
	v, ok := f.strs[strings.ToLower(key)]
	return v, ok
}

// Dir is the folder holding the file, where its source files are looked up.
func (f *File) Dir() string { return filepath.Dir(f.Path) }

func (f *File) readVersion() error {
	s, ok := f.Section("Version")
	if !ok {
		return errorf(f.Path, 0, "no [Version] section: not an INF file")
	}
	v := &f.Version
	v.CatalogFiles = map[string]string{}
	for _, l := range s.Lines {
		if !l.HasKey {
			continue
		}
		val := strings.Join(l.Fields, ",")
		k := strings.ToLower(l.Key)
		switch {
		case k == "signature":
			v.Signature = val
		case k == "class":
			v.Class = val
		case k == "classguid":
			v.ClassGUID = val
		case k == "provider":
			v.Provider = val
		case k == "pnplockdown":
			v.PnpLockdown = strings.TrimSpace(val) == "1"
		case k == "catalogfile":
			v.CatalogFiles[""] = l.Field(0)
		case strings.HasPrefix(k, "catalogfile."):
			v.CatalogFiles[strings.TrimPrefix(k, "catalogfile.")] = l.Field(0)
		case k == "driverver":
			v.DriverVer = val
			d, err := time.Parse("1/2/2006", strings.TrimSpace(l.Field(0)))
			if err != nil {
				return errorf(f.Path, l.Line, "DriverVer date %q is not mm/dd/yyyy", l.Field(0))
			}
			v.DriverDate = d
			if ver := strings.TrimSpace(l.Field(1)); ver != "" {
				parts := strings.Split(ver, ".")
				if len(parts) > 4 {
					return errorf(f.Path, l.Line, "DriverVer version %q has more than four parts", ver)
				}
				for i, p := range parts {
					n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 16)
					if err != nil {
						return errorf(f.Path, l.Line, "DriverVer version %q: part %q is not a number 0–65535", ver, p)
					}
					v.DriverVersion[i] = uint16(n)
				}
			}
		}
	}
	sig := strings.ToLower(v.Signature)
	if sig != "$windows nt$" && sig != "$chicago$" && sig != "$windows 95$" {
		return errorf(f.Path, s.Line, "[Version] Signature is %q, not \"$Windows NT$\" or \"$Chicago$\"", v.Signature)
	}
	return nil
}

// parseNumber reads a number as INF files write them: decimal, or hex with 0x.
func parseNumber(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	if strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X") {
		return strconv.ParseUint(s[2:], 16, 64)
	}
	return strconv.ParseUint(s, 10, 64)
}

// Architectures, as Cauldron names them, and as INF platform extensions spell them.
func normArch(a string) (string, error) {
	switch strings.ToLower(a) {
	case "amd64", "x64", "x86_64":
		return "amd64", nil
	case "x86", "i386", "386":
		return "x86", nil
	case "arm64", "aarch64":
		return "arm64", nil
	}
	return "", fmt.Errorf("unknown architecture %q (amd64, x86 or arm64)", a)
}

func infArchName(a string) string {
	if a == "arm64" {
		return "ARM64"
	}
	return a
}
