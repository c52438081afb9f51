package inf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/cauldron-dr/cauldron/internal/corpus"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

func utf16le(s string, bom bool) []byte {
	var b []byte
	if bom {
		b = append(b, 0xFF, 0xFE)
	}
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return b
}

const header = "[Version]\r\nSignature=\"$Windows NT$\"\r\nClass=SCSIAdapter\r\nDriverVer=03/04/2021,1.2.3.4\r\n"

func mustParse(t *testing.T, name, text string, opts Options) *File {
	t.Helper()
	f, err := Parse(name, []byte(text), opts)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func section(t *testing.T, f *File, name string) *Section {
	t.Helper()
	s, ok := f.Section(name)
	if !ok {
		t.Fatalf("no section [%s]; have %v", name, f.Sections())
	}
	return s
}

func TestEncodings(t *testing.T) {
	text := header + "[Strings]\r\nDesc = \"Gerät – 5 €\"\r\n[Misc]\r\nName = %Desc%\r\n"
	f, err := Parse("u16.inf", utf16le(text, true), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if f.Encoding != "UTF-16LE" {
		t.Errorf("encoding %s", f.Encoding)
	}
	if l, _ := section(t, f, "misc").Value("name"); l.Field(0) != "Gerät – 5 €" {
		t.Errorf("UTF-16 value %q", l.Field(0))
	}
	// UTF-8 with a BOM.
	f, err = Parse("u8.inf", append([]byte{0xEF, 0xBB, 0xBF}, text...), Options{})
	if err != nil || f.Encoding != "UTF-8" {
		t.Fatalf("UTF-8: %v %v", f, err)
	}
	if l, _ := section(t, f, "MISC").Value("NAME"); l.Field(0) != "Gerät – 5 €" {
		t.Errorf("UTF-8 value %q", l.Field(0))
	}
	// ANSI: 0xE4 is ä and 0x80 is € in Windows-1252.
	ansi := []byte(header + "[Strings]\r\nDesc = \"Ger\xe4t \x80\"\r\n[Misc]\r\nName = %Desc%\r\n")
	f, err = Parse("ansi.inf", ansi, Options{})
	if err != nil || f.Encoding != "Windows-1252" {
		t.Fatalf("ANSI: %v %v", f, err)
	}
	if l, _ := section(t, f, "Misc").Value("Name"); l.Field(0) != "Gerät €" {
		t.Errorf("ANSI value %q", l.Field(0))
	}
}

func TestBadInput(t *testing.T) {
	cases := []struct {
		name, text string
		raw        []byte
		want       []string // substrings of the error
	}{
		{name: "odd.inf", raw: append(utf16le(header, true), 'x'), want: []string{"odd.inf", "truncated UTF-16LE"}},
		{name: "quote.inf", text: header + "[Strings]\r\nA = \"never closed\r\n", want: []string{"quote.inf:6:", "unterminated quoted string"}},
		{name: "sec.inf", text: header + "[Manufacturer\r\n", want: []string{"sec.inf:5:", "no closing ]"}},
		{name: "key.inf", text: header + "[Manufacturer]\r\n%Nobody% = Models,NTamd64\r\n", want: []string{"key.inf:6:", "%Nobody%", "not defined"}},
		{name: "early.inf", text: "Signature=x\r\n" + header, want: []string{"early.inf:1:", "before the first section"}},
		{name: "nover.inf", text: "[Strings]\r\nA=b\r\n", want: []string{"nover.inf", "no [Version]"}},
		{name: "sig.inf", text: "[Version]\r\nSignature=\"$Linux$\"\r\n", want: []string{"sig.inf:1:", "Signature"}},
		{name: "date.inf", text: "[Version]\r\nSignature=\"$Windows NT$\"\r\nDriverVer=2021-03-04,1.0\r\n", want: []string{"date.inf:3:", "mm/dd/yyyy"}},
		{name: "ver.inf", text: "[Version]\r\nSignature=\"$Windows NT$\"\r\nDriverVer=03/04/2021,1.x\r\n", want: []string{"ver.inf:3:", "not a number"}},
		{name: "bom8.inf", raw: append([]byte{0xEF, 0xBB, 0xBF}, "[Version]\n\xff\n"...), want: []string{"bom8.inf:2:", "not valid UTF-8"}},
		{name: "nobom.inf", raw: utf16le(header, false), want: []string{"nobom.inf", "UTF-16LE text without a byte-order mark"}},
		{name: "after.inf", text: header + "[Models] junk\r\n", want: []string{"after.inf:5:", "after section header"}},
	}
	for _, c := range cases {
		b := c.raw
		if b == nil {
			b = []byte(c.text)
		}
		_, err := Parse(c.name, b, Options{})
		if err == nil {
			t.Errorf("%s: parsed without error", c.name)
			continue
		}
		var ie *Error
		if !errors.As(err, &ie) {
			t.Errorf("%s: error %T is not *inf.Error", c.name, err)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s: error %q lacks %q", c.name, err, w)
			}
		}
	}
}

func TestContinuationCommentsQuotes(t *testing.T) {
	text := header + `
[Install]
CopyFiles = a.files, \   ; continued: only blanks and a comment follow the backslash
            b.files, \
            c.files
Path = C:\dir\file      ; a backslash inside a value is text
Tail = value\ junk      ; a backslash followed by text does not continue
Quoted = "a ""b"" ; c", "  padded  " , plain text , x "y" z
Empty = ,,"",
[Install]               ; a second header merges into the first
Later = 1
[install2]
"key with = sign" = v
HKR,,Name,,a=b
`
	f := mustParse(t, "cont.inf", text, Options{})
	s := section(t, f, "INSTALL")
	l, _ := s.Value("CopyFiles")
	if !reflect.DeepEqual(l.Fields, []string{"a.files", "b.files", "c.files"}) || l.Line != 7 {
		t.Errorf("continued CopyFiles %q at line %d", l.Fields, l.Line)
	}
	if l, _ := s.Value("Path"); l.Field(0) != `C:\dir\file` {
		t.Errorf("Path %q", l.Field(0))
	}
	if l, _ := s.Value("Tail"); l.Field(0) != `value\ junk` {
		t.Errorf("Tail %q", l.Field(0))
	}
	l, _ = s.Value("Quoted")
	if want := []string{`a "b" ; c`, "  padded  ", "plain text", "x y z"}; !reflect.DeepEqual(l.Fields, want) {
		t.Errorf("quoted fields %q, want %q", l.Fields, want)
	}
	if l, _ := s.Value("Empty"); !reflect.DeepEqual(l.Fields, []string{"", "", "", ""}) {
		t.Errorf("empty fields %q", l.Fields)
	}
	if _, ok := s.Value("Later"); !ok || len(f.Sections()) != 3 {
		t.Errorf("duplicate sections should merge: %v", f.Sections())
	}
	s2 := section(t, f, "Install2")
	if l, ok := s2.Value("key with = sign"); !ok || l.Field(0) != "v" {
		t.Errorf("quoted key: %+v", s2.Lines)
	}
	if l := s2.Lines[1]; l.HasKey || !reflect.DeepEqual(l.Fields, []string{"HKR", "", "Name", "", "a=b"}) {
		t.Errorf("an '=' after a comma is text: %+v", l)
	}
}

func TestStringsLCID(t *testing.T) {
	text := header + `
[Strings]
Desc = "English"
Only = "base only"
Pct  = "100%% sure"
[Strings.0407]
Desc = "Deutsch"
[Strings.0409]
Desc = "US English"
[Use]
D = %desc%
O = %ONLY%
P = "%%SystemRoot%%\x", %Pct%, 50%
R = %12%\x.sys
`
	f := mustParse(t, "lcid.inf", text, Options{LCID: "0407"})
	s := section(t, f, "Use")
	if l, _ := s.Value("D"); l.Field(0) != "Deutsch" {
		t.Errorf("LCID 0407: %q", l.Field(0))
	}
	if l, _ := s.Value("O"); l.Field(0) != "base only" {
		t.Errorf("fallback to [Strings]: %q", l.Field(0))
	}
	f = mustParse(t, "lcid.inf", text, Options{})
	if l, _ := section(t, f, "Use").Value("D"); l.Field(0) != "US English" {
		t.Errorf("default LCID 0409: %q", l.Field(0))
	}
	f = mustParse(t, "lcid.inf", text, Options{LCID: "040C"})
	s = section(t, f, "Use")
	if l, _ := s.Value("D"); l.Field(0) != "English" {
		t.Errorf("LCID without a section falls back to [Strings]: %q", l.Field(0))
	}
	// %% is a literal %, a DIRID stays for the caller, a lone % stays text; string values are
	// not substituted again.
	if l, _ := s.Value("P"); !reflect.DeepEqual(l.Fields, []string{`%SystemRoot%\x`, "100%% sure", "50%"}) {
		t.Errorf("percent handling %q", l.Fields)
	}
	if l, _ := s.Value("R"); l.Field(0) != `%12%\x.sys` {
		t.Errorf("DIRID %q", l.Field(0))
	}
}

// A driver with models for several Windows versions and platforms.
const decorated = header + `
CatalogFile = all.cat
CatalogFile.NTamd64 = all64.cat
[Manufacturer]
%Mfg% = Models, NTamd64, NTamd64.6.1, NTamd64.10.0, NTamd64.10.0...17763, NTamd64.10.0.3, NTx86, NTarm64
[Models]
%D% = inst_undecorated, PCI\VEN_1234&DEV_0001
[Models.NTamd64]
%D% = inst_amd64, PCI\VEN_1234&DEV_0001
[Models.NTamd64.6.1]
%D% = inst_win7, PCI\VEN_1234&DEV_0001
[Models.NTamd64.10.0]
%D% = inst_win10, PCI\VEN_1234&DEV_0001
[Models.NTamd64.10.0...17763]
%D% = inst_1809, PCI\VEN_1234&DEV_0001
[Models.NTamd64.10.0.3]
%D% = inst_server, PCI\VEN_1234&DEV_0001
[Models.NTx86]
%D% = inst_x86, PCI\VEN_1234&DEV_0001
[Models.NTarm64]
%D% = inst_arm, PCI\VEN_1234&DEV_0001
[Strings]
Mfg = "Maker"
D = "Device"
`

func TestDecorations(t *testing.T) {
	f := mustParse(t, "dec.inf", decorated, Options{})
	cases := []struct {
		t    Target
		want string
	}{
		{Target{Arch: "amd64", Version: WinVersion{6, 0, 6002}}, "inst_amd64"},
		{Target{Arch: "amd64", Version: WinVersion{6, 1, 7601}}, "inst_win7"},
		{Target{Arch: "amd64", Version: WinVersion{6, 3, 9600}}, "inst_win7"},
		{Target{Arch: "amd64", Version: WinVersion{10, 0, 14393}, ProductType: ProductWorkstation}, "inst_win10"},
		{Target{Arch: "amd64", Version: WinVersion{10, 0, 14393}, ProductType: ProductServer}, "inst_server"},
		{Target{Arch: "amd64", Version: WinVersion{10, 0, 17763}, ProductType: ProductWorkstation}, "inst_1809"},
		{Target{Arch: "amd64", Version: WinVersion{10, 0, 26100}, ProductType: ProductServer}, "inst_1809"},
		{Target{Arch: "x86", Version: WinVersion{10, 0, 19045}}, "inst_x86"},
		{Target{Arch: "arm64", Version: WinVersion{10, 0, 22631}}, "inst_arm"},
	}
	for _, c := range cases {
		m, err := f.Models(c.t)
		if err != nil {
			t.Errorf("%+v: %v", c.t, err)
			continue
		}
		if len(m) != 1 || m[0].Install != c.want {
			t.Errorf("%s %s type %d: %+v, want %s", c.t.Arch, c.t.Version, c.t.ProductType, m, c.want)
		}
	}
	// Only x86 uses the undecorated section.
	f2 := mustParse(t, "undec.inf", header+"[Manufacturer]\r\n%M%=Models\r\n[Models]\r\n%M%=i,ID\r\n[Strings]\r\nM=m\r\n", Options{})
	if m, err := f2.Models(Target{Arch: "x86", Version: WinVersion{6, 1, 0}}); err != nil || len(m) != 1 {
		t.Errorf("x86 undecorated: %+v %v", m, err)
	}
	_, err := f2.Models(Target{Arch: "amd64", Version: WinVersion{6, 1, 0}})
	if err == nil || !strings.Contains(err.Error(), "undec.inf:6:") || !strings.Contains(err.Error(), "amd64") {
		t.Errorf("amd64 on an undecorated INF: %v", err)
	}
	if f.Version.Catalog("amd64") != "all64.cat" || f.Version.Catalog("x86") != "all.cat" {
		t.Errorf("catalogs %v", f.Version.CatalogFiles)
	}
	for _, bad := range []string{"XP", "NTsparc", "NTamd64.x", "NTamd64.1.2.3.4.5.6.7"} {
		if _, err := ParseDecoration(bad); err == nil {
			t.Errorf("decoration %q accepted", bad)
		}
	}
}

// driverINF writes a one-driver INF with a given DriverVer and decoration.
func driverINF(date, version, decoration, hwids string) string {
	return `[Version]
Signature = "$WINDOWS NT$"
Class = SCSIAdapter
Provider = %M%
DriverVer = ` + date + `,` + version + `
CatalogFile = drv.cat
[SourceDisksNames]
1 = %M%,,,
[SourceDisksFiles]
drv.sys = 1
[DestinationDirs]
DefaultDestDir = 12
[Manufacturer]
%M% = Models,` + decoration + `
[Models.` + decoration + `]
%M% = inst, ` + hwids + `
[inst]
CopyFiles = @drv.sys
[inst.Services]
AddService = drv, 2, svc
[svc]
ServiceType = 1
StartType = 0
ErrorControl = 1
ServiceBinary = %12%\drv.sys
LoadOrderGroup = SCSI miniport
[Strings]
M = "Maker"
`
}

func TestRanking(t *testing.T) {
	ids := []string{`PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`, `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4`, `PCI\VEN_1AF4&DEV_1001&REV_00`, `PCI\VEN_1AF4&DEV_1001`, `PCI\VEN_1AF4&CC_010000`, `PCI\CC_0100`}
	parse := func(name, text string) *File { return mustParse(t, name, text, Options{}) }
	generic := parse("generic.inf", driverINF("01/01/2024", "9.0.0.0", "NTamd64", `PCI\VEN_1AF4&DEV_1001`))
	exact := parse("exact.inf", driverINF("01/01/2020", "1.0.0.0", "NTamd64", `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`))
	newer := parse("newer.inf", driverINF("06/01/2020", "1.0.0.0", "NTamd64", `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`))
	higher := parse("higher.inf", driverINF("06/01/2020", "1.0.0.7", "NTamd64", `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`))
	win10 := parse("win10.inf", driverINF("01/01/2019", "1.0.0.0", "NTamd64.10.0", `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`))
	class := parse("class.inf", driverINF("01/01/2025", "1.0.0.0", "NTamd64", `PCI\CC_0100`))
	var all []Candidate
	for _, f := range []*File{generic, exact, newer, higher, win10, class} {
		c, err := f.Match(Target{Arch: "amd64", Version: WinVersion{10, 0, 19045}}, ids)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, c...)
	}
	SortCandidates(all)
	var order []string
	for _, c := range all {
		order = append(order, c.File.Path)
	}
	// Exact hardware ID first; among those the Windows 10 decoration, then the newer date, then
	// the higher version at the same date; the generic ID at position 3, the class code last.
	want := []string{"win10.inf", "higher.inf", "newer.inf", "exact.inf", "generic.inf", "class.inf"}
	if !reflect.DeepEqual(order, want) {
		t.Errorf("ranking %v, want %v", order, want)
	}
	if all[4].Rank != 3 || all[5].Rank != 5 {
		t.Errorf("ranks %d %d, want 3 and 5", all[4].Rank, all[5].Rank)
	}
	// On Windows 7 the Windows 10 decoration does not apply.
	if _, err := win10.Match(Target{Arch: "amd64", Version: WinVersion{6, 1, 7601}}, ids); err == nil {
		t.Error("a 10.0 decoration applied to Windows 7")
	}
}

func TestInstallPlan(t *testing.T) {
	text := `[Version]
Signature = "$Windows NT$"
Class = SCSIAdapter
DriverVer = 07/01/2023,2.0.0.0
CatalogFile.NTx86 = plan32.cat
CatalogFile.NTamd64 = plan64.cat
[SourceDisksNames]
1 = "Disk",,,\common
[SourceDisksNames.amd64]
1 = "Disk",,,\amd64
2 = "Extra",,,
[SourceDisksFiles]
plan.sys = 1
[SourceDisksFiles.amd64]
plan.sys = 1,drivers
extra.dll = 2
coinst.dll = 2,,1234
[DestinationDirs]
DefaultDestDir = 12
extra_copy = 11,plan
[Manufacturer]
%M% = Models, NTamd64, NTx86
[Models.NTamd64]
%D% = inst, PCI\VEN_5555&DEV_0001
[Models.NTx86]
%D% = inst, PCI\VEN_5555&DEV_0001
[inst]
CopyFiles = wrong ; the bare section is not used when .NTamd64 exists
[inst.NT]
CopyFiles = @plan.sys
[inst.NTamd64]
Include = machine.inf
Needs = PCI_DRV.Services
CopyFiles = @plan.sys, extra_copy
[inst.NTamd64.HW]
AddReg = hw_reg
[inst.NTamd64.Services]
AddService = plan, 0x2, svc, evt, Application, PlanSource
AddService = helper, 0, helper_svc
[extra_copy]
extra.dll
renamed.dll, coinst.dll,,0x4
[svc]
DisplayName = %D%
ServiceType = 0x1
StartType = 0
ErrorControl = 1
LoadOrderGroup = SCSI miniport
Dependencies = +Base, other
ServiceBinary = %12%\plan.sys
AddReg = svc_reg
DelReg = svc_del
[helper_svc]
ServiceType = 1
StartType = 3
ErrorControl = 0
ServiceBinary = %11%\helper.exe
[evt]
AddReg = evt_reg
[evt_reg]
HKR,,TypesSupported,0x00010001,7
[svc_reg]
HKR, Parameters, Multi, 0x00010000, "one", "two"
HKR, Parameters, Expand, 0x00020000, "%%SystemRoot%%\plan"
HKR, Parameters, Bin, 0x00000001, de, ad, be, ef
HKR, Parameters, DwordBytes, 0x00010001, 01, 02, 03, 04
HKR, Parameters, Qword, 0x000B0001, 01, 00, 00, 00, 00, 00, 00, 80
HKR, Parameters, None, 0x00020001
HKR, Parameters, Sz,, "text"
HKR, "Parameters\Device",, 0x00000010
HKR, Parameters, Gone, 0x00000004
HKLM, "System\CurrentControlSet\Control\X", Y, 0x00010001, 0x10
[svc_del]
HKR, Parameters, Old
[hw_reg]
HKR, "Interrupt Management\MessageSignaledInterruptProperties", MSISupported, 0x00010001, 1
[Strings]
M = "Maker"
D = "Plan Device"
`
	f := mustParse(t, `C:\drivers\plan.inf`, text, Options{})
	m, err := f.Models(Target{Arch: "amd64", Version: WinVersion{10, 0, 19045}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := f.Plan(m[0], "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if p.Install != "inst.NTamd64" || p.Catalog != "plan64.cat" || p.InfSource != "plan.inf" {
		t.Errorf("install %q catalog %q inf %q", p.Install, p.Catalog, p.InfSource)
	}
	wantFiles := []FileCopy{
		{Source: "amd64/drivers/plan.sys", Dest: `System32\drivers\plan.sys`, DirID: 12, Section: "@"},
		{Source: "extra.dll", Dest: `System32\plan\extra.dll`, DirID: 11, Section: "extra_copy"},
		{Source: "coinst.dll", Dest: `System32\plan\renamed.dll`, DirID: 11, Section: "extra_copy"},
	}
	if !reflect.DeepEqual(p.Files, wantFiles) {
		t.Errorf("files\n%+v\nwant\n%+v", p.Files, wantFiles)
	}
	if len(p.Needs) != 1 || !strings.Contains(p.Needs[0], "PCI_DRV.Services") || !strings.Contains(p.Needs[0], "machine.inf") {
		t.Errorf("needs %q", p.Needs)
	}
	if len(p.Services) != 2 {
		t.Fatalf("services %+v", p.Services)
	}
	s := p.Services[0]
	if s.Name != "plan" || s.Flags != 2 || s.DisplayName != "Plan Device" || !reflect.DeepEqual(s.Dependencies, []string{"+Base", "other"}) {
		t.Errorf("service %+v", s)
	}
	if s.EventLog == nil || s.EventLog.Log != "Application" || s.EventLog.Source != "PlanSource" {
		t.Errorf("event log %+v", s.EventLog)
	}
	if h := p.Services[1]; h.ImagePath != `System32\helper.exe` || h.StartType != 3 || h.EventLog != nil {
		t.Errorf("helper %+v", h)
	}
	reg := s.AddReg
	if v := regValue(t, reg, "Parameters", "Multi"); v.Type != regf.RegMultiSz || !reflect.DeepEqual(v.Text(), []string{"one", "two"}) ||
		!bytes.Equal(v.Data[len(v.Data)-4:], []byte{0, 0, 0, 0}) {
		t.Errorf("Multi %s %q %x", TypeName(v.Type), v.Text(), v.Data)
	}
	wantString(t, reg, "Parameters", "Expand", regf.RegExpandSz, `%SystemRoot%\plan`)
	wantString(t, reg, "Parameters", "Sz", regf.RegSz, "text")
	if v := regValue(t, reg, "Parameters", "Bin"); v.Type != regf.RegBinary || !bytes.Equal(v.Data, []byte{0xde, 0xad, 0xbe, 0xef}) {
		t.Errorf("Bin %+v", v)
	}
	wantDword(t, reg, "Parameters", "DwordBytes", 0x04030201)
	if v := regValue(t, reg, "Parameters", "Qword"); v.Type != regf.RegQword || len(v.Data) != 8 || v.Data[7] != 0x80 {
		t.Errorf("Qword %+v", v)
	}
	if v := regValue(t, reg, "Parameters", "None"); v.Type != regf.RegNone || len(v.Data) != 0 {
		t.Errorf("None %+v", v)
	}
	if v := regValue(t, reg, "Parameters", "Gone"); !v.Delete {
		t.Errorf("FLG_ADDREG_DELVAL: %+v", v)
	}
	if v := regValue(t, reg, `System\CurrentControlSet\Control\X`, "Y"); v.Root != "HKLM" {
		t.Errorf("HKLM line %+v", v)
	}
	keyOnly := false
	for _, v := range reg {
		keyOnly = keyOnly || (v.KeyOnly && v.Key == `Parameters\Device`)
	}
	if !keyOnly {
		t.Error("FLG_ADDREG_KEYONLY line missing")
	}
	if len(s.DelReg) != 1 || !s.DelReg[0].Delete || s.DelReg[0].Name != "Old" {
		t.Errorf("DelReg %+v", s.DelReg)
	}
	wantDword(t, p.HWAddReg, `Interrupt Management\MessageSignaledInterruptProperties`, "MSISupported", 1)

	// x86 uses inst.NT and the undecorated source disks.
	p, err = f.Plan(m[0], "x86")
	if err != nil {
		t.Fatal(err)
	}
	if p.Install != "inst.NT" || p.Catalog != "plan32.cat" || len(p.Files) != 1 || p.Files[0].Source != "common/plan.sys" {
		t.Errorf("x86 plan: %s %s %+v", p.Install, p.Catalog, p.Files)
	}
}

func TestPlanErrors(t *testing.T) {
	base := func(extra string) string {
		return strings.Replace(driverINF("01/01/2024", "1.0.0.0", "NTamd64", `PCI\VEN_1&DEV_2`), "[Strings]", extra+"\n[Strings]", 1)
	}
	cases := []struct {
		name, text, want string
	}{
		{"nosvc.inf", strings.Replace(base(""), "ServiceBinary = %12%\\drv.sys\n", "", 1), "has no servicebinary"},
		{"nofile.inf", strings.Replace(base(""), "drv.sys = 1\n", "", 1), "not listed in [SourceDisksFiles.amd64] or [SourceDisksFiles]"},
		{"nodisk.inf", strings.Replace(base(""), "drv.sys = 1\n", "drv.sys = 7\n", 1), `disk "7"`},
		{"dirid.inf", strings.Replace(base(""), "DefaultDestDir = 12", "DefaultDestDir = 16422", 1), "DIRID 16422"},
		{"noinst.inf", strings.Replace(base(""), "[inst]", "[other]", 1), "install section inst for amd64"},
		{"badreg.inf", strings.Replace(base("[r]\nHKXX,a,b,0,1"), "LoadOrderGroup = SCSI miniport", "AddReg = r", 1), `root "HKXX"`},
		{"badhex.inf", strings.Replace(base("[r]\nHKR,a,b,1,zz"), "LoadOrderGroup = SCSI miniport", "AddReg = r", 1), `"zz" is not two hex digits`},
		{"badstart.inf", strings.Replace(base(""), "StartType = 0", "StartType = boot", 1), `StartType = "boot" is not a number`},
	}
	for _, c := range cases {
		f, err := Parse(c.name, []byte(c.text), Options{})
		if err != nil {
			t.Errorf("%s: parse: %v", c.name, err)
			continue
		}
		m, err := f.Models(Target{Arch: "amd64", Version: WinVersion{10, 0, 0}})
		if err != nil {
			t.Errorf("%s: models: %v", c.name, err)
			continue
		}
		_, err = f.Plan(m[0], "amd64")
		if err == nil || !strings.Contains(err.Error(), c.name) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming the file and %q", c.name, err, c.want)
		}
	}
}

// TestScanVirtioTree builds a virtio-win-like tree and chooses drivers across it.
func TestScanVirtioTree(t *testing.T) {
	root := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	id := `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`
	// Stamped INFs as the ISO has them: the OS is in the folder, not in the decoration.
	write("viostor/w7/amd64/viostor.inf", driverINF("01/01/2020", "61.1.0.0", "NTamd64", id))
	write("viostor/w10/amd64/viostor.inf", driverINF("01/01/2020", "100.1.0.0", "NTamd64", id))
	write("viostor/2k19/amd64/viostor.inf", driverINF("01/01/2020", "100.2.0.0", "NTamd64", id))
	write("viostor/w11/amd64/viostor.inf", driverINF("01/01/2020", "100.3.0.0", "NTamd64.10.0...22000", id))
	write("viostor/w10/x86/viostor.inf", driverINF("01/01/2020", "100.4.0.0", "NTx86", id))
	write("viostor/w10/ARM64/viostor.inf", driverINF("01/01/2020", "100.5.0.0", "NTARM64", id))
	write("NetKVM/w10/amd64/netkvm.inf", driverINF("01/01/2020", "100.1.0.0", "NTamd64", `PCI\VEN_1AF4&DEV_1000`))
	write("broken/w10/amd64/broken.inf", "[Version]\nSignature=\"$Windows NT$\"\n[Manufacturer\n")
	write("flat/readme.txt", "not an INF")
	// A flat folder with a template: read for the target's architecture.
	inx, err := os.ReadFile(corpus.Path(t, "inf/virtio-vioscsi.inx"))
	if err != nil {
		t.Fatal(err)
	}
	write("flat/vioscsi.inx", string(inx))

	s, err := ScanDirs(Options{}, root)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Found) != 9 {
		t.Errorf("found %d files, want 9", len(s.Found))
	}
	probs := s.Problems()
	if len(probs) != 1 || !strings.Contains(probs[0].Err.Error(), "broken.inf:3:") {
		t.Errorf("problems %+v", probs)
	}
	for _, fd := range s.Found {
		if strings.HasSuffix(fd.Path, "w10/x86/viostor.inf") && (fd.Folder == nil || fd.Folder.Name != "w10" || fd.Arch != "x86") {
			t.Errorf("layout of %s: %+v %s", fd.Path, fd.Folder, fd.Arch)
		}
	}
	ids := []string{id, `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4`, `PCI\VEN_1AF4&DEV_1001`}
	best := func(tg Target) string {
		t.Helper()
		c, err := s.Best(tg, ids)
		if err != nil {
			t.Fatalf("%+v: %v", tg, err)
		}
		rel, _ := filepath.Rel(root, c[0].File.Path)
		return filepath.ToSlash(rel)
	}
	cases := []struct {
		t    Target
		want string
	}{
		{win7, "viostor/w7/amd64/viostor.inf"},
		{win10, "viostor/w10/amd64/viostor.inf"},
		{server19, "viostor/2k19/amd64/viostor.inf"},
		{Target{Arch: "amd64", Version: WinVersion{10, 0, 22631}, ProductType: ProductWorkstation}, "viostor/w11/amd64/viostor.inf"},
		{win10_x86, "viostor/w10/x86/viostor.inf"},
		{Target{Arch: "arm64", Version: WinVersion{10, 0, 22631}}, "viostor/w10/ARM64/viostor.inf"},
	}
	for _, c := range cases {
		if got := best(c.t); got != c.want {
			t.Errorf("%s %s type %d: %s, want %s", c.t.Arch, c.t.Version, c.t.ProductType, got, c.want)
		}
	}
	// Vista has no folder: nothing fits.
	if _, err := s.Best(Target{Arch: "amd64", Version: WinVersion{6, 0, 6002}}, ids); !errors.Is(err, ErrNoDriver) {
		t.Errorf("Vista: %v, want ErrNoDriver", err)
	}
	// vioscsi comes only from the flat template, read for amd64 and again for arm64.
	for _, arch := range []string{"amd64", "arm64"} {
		c, err := s.Best(Target{Arch: arch, Version: WinVersion{10, 0, 19045}}, []string{`PCI\VEN_1AF4&DEV_1048&SUBSYS_11001AF4&REV_01`})
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		if !strings.HasSuffix(c[0].File.Path, "vioscsi.inx") || c[0].File.Arch != arch {
			t.Errorf("%s: %s read for %s", arch, c[0].File.Path, c[0].File.Arch)
		}
		p, err := c[0].File.Plan(c[0].Model, arch)
		if err != nil {
			t.Fatal(err)
		}
		if miss := p.Missing(); !reflect.DeepEqual(miss, []string{"vioscsi.sys", "vioscsi.cat"}) {
			t.Errorf("missing %v", miss)
		}
	}
	// Missing() is empty once the files are there.
	write("viostor/w10/amd64/drv.sys", "MZ")
	write("viostor/w10/amd64/drv.cat", "cat")
	c, _ := s.Best(win10, ids)
	p, err := c[0].File.Plan(c[0].Model, "amd64")
	if err != nil {
		t.Fatal(err)
	}
	if miss := p.Missing(); len(miss) != 0 {
		t.Errorf("missing %v", miss)
	}
	if _, err := ScanDirs(Options{}, filepath.Join(root, "nonexistent")); err == nil {
		t.Error("scanning a missing folder should fail")
	}
}

// TestContentsStamped: a template's copy for a target is the stamped text (no $ARCH$ left), and it
// parses back to the same sections; a stamped INF is copied byte for byte.
func TestContentsStamped(t *testing.T) {
	tmpl := "[Version]\r\nSignature=\"$Windows NT$\"\r\n[Manufacturer]\r\nX=M,NT$ARCH$\r\n[M.NT$ARCH$]\r\nD=inst,PCI\\VEN_1AF4&DEV_1001\r\n"
	f, err := Parse("t.inx", []byte(tmpl), Options{Arch: "x86"})
	if err != nil {
		t.Fatal(err)
	}
	c := f.Contents()
	g, err := Parse("t.inf", c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Template) != 0 || g.Encoding != "UTF-16LE" {
		t.Fatalf("stamped copy still a template (%v) or encoded %s", g.Template, g.Encoding)
	}
	if _, ok := g.Section("M.NTx86"); !ok {
		t.Fatalf("stamped copy lacks [M.NTx86]: %v", g.Sections())
	}
	plain := []byte("[Version]\nSignature=\"$Windows NT$\"\n")
	p, err := Parse("p.inf", plain, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if string(p.Contents()) != string(plain) {
		t.Fatal("a stamped INF's contents changed")
	}
}
