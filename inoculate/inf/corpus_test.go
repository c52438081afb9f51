package inf

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/corpus"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

var (
	win7      = Target{Arch: "amd64", Version: WinVersion{6, 1, 7601}, ProductType: ProductWorkstation}
	win10     = Target{Arch: "amd64", Version: WinVersion{10, 0, 19045}, ProductType: ProductWorkstation}
	server19  = Target{Arch: "amd64", Version: WinVersion{10, 0, 17763}, ProductType: ProductServer}
	win10_x86 = Target{Arch: "x86", Version: WinVersion{10, 0, 19045}, ProductType: ProductWorkstation}
)

// regValue finds a decoded registry value by key and name.
func regValue(t *testing.T, vals []RegValue, key, name string) RegValue {
	t.Helper()
	for _, v := range vals {
		if strings.EqualFold(v.Key, key) && strings.EqualFold(v.Name, name) && !v.KeyOnly {
			return v
		}
	}
	t.Fatalf("no registry value %s\\%s among %d values", key, name, len(vals))
	return RegValue{}
}

func wantDword(t *testing.T, vals []RegValue, key, name string, want uint32) {
	t.Helper()
	v := regValue(t, vals, key, name)
	got, ok := v.Dword()
	if !ok || got != want {
		t.Errorf("%s\\%s = %s %x (%v), want REG_DWORD %#x", key, name, TypeName(v.Type), v.Data, ok, want)
	}
}

func wantString(t *testing.T, vals []RegValue, key, name string, typ uint32, want string) {
	t.Helper()
	v := regValue(t, vals, key, name)
	if v.Type != typ || !reflect.DeepEqual(v.Text(), []string{want}) {
		t.Errorf("%s\\%s = %s %q, want %s %q", key, name, TypeName(v.Type), v.Text(), TypeName(typ), want)
	}
}

// corpusFacts are facts read off each corpus file by hand.
type corpusFact struct {
	file        string
	target      Target
	models      [][2]string // hardware ID, first compatible ID ("" for none)
	install     string      // decorated install section
	service     string
	serviceType uint32
	startType   uint32
	errCtl      uint32
	group       string
	image       string
	source      string // the .sys source path
	dest        string
	catalog     string
	driverVer   string // date,version as parsed
	check       func(t *testing.T, f *File, p *Plan)
}

var corpusFacts = []corpusFact{
	{
		file: "inf/virtio-viostor.inx", target: win10,
		models: [][2]string{
			{`PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`, `PCI\VEN_1AF4&DEV_1001`},
			{`PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01`, `PCI\VEN_1AF4&DEV_1042`},
		},
		install: "scsi_inst", service: "viostor", serviceType: 1, startType: 0, errCtl: 1, group: "SCSI miniport",
		image: `System32\drivers\viostor.sys`, source: "viostor.sys", dest: `System32\drivers\viostor.sys`, catalog: "viostor.cat",
		driverVer: "2008-01-01 0.0.0.1",
		check: func(t *testing.T, f *File, p *Plan) {
			s := p.Services[0]
			if s.Flags != 2 {
				t.Errorf("AddService flags %#x, want 0x2", s.Flags)
			}
			wantDword(t, s.AddReg, `Parameters\PnpInterface`, "5", 1)
			wantDword(t, s.AddReg, "Parameters", "BusType", 1)
			wantDword(t, s.AddReg, "Parameters", "DmaRemappingCompatible", 0)
			if s.EventLog == nil || s.EventLog.Log != "System" || s.EventLog.Source != "viostor" {
				t.Fatalf("event log %+v", s.EventLog)
			}
			wantString(t, s.EventLog.AddReg, "", "EventMessageFile", regf.RegExpandSz, `%SystemRoot%\System32\IoLogMsg.dll`)
			wantDword(t, s.EventLog.AddReg, "", "TypesSupported", 7)
			wantDword(t, p.HWAddReg, `Interrupt Management\MessageSignaledInterruptProperties`, "MessageNumberLimit", 257)
			wantDword(t, p.HWAddReg, `Interrupt Management\Affinity Policy`, "DevicePolicy", 5)
			if f.Version.Class != "SCSIAdapter" || f.Version.ClassGUID != "{4D36E97B-E325-11CE-BFC1-08002BE10318}" || !f.Version.PnpLockdown {
				t.Errorf("version %+v", f.Version)
			}
			if f.Version.Provider != "Red Hat, Inc." || p.Model.Description != "Red Hat VirtIO SCSI controller" {
				t.Errorf("provider %q, description %q", f.Version.Provider, p.Model.Description)
			}
		},
	},
	{
		file: "inf/virtio-vioscsi.inx", target: server19,
		models: [][2]string{
			{`PCI\VEN_1AF4&DEV_1004&SUBSYS_00081AF4&REV_00`, `PCI\VEN_1AF4&DEV_1004`},
			{`PCI\VEN_1AF4&DEV_1048&SUBSYS_11001AF4&REV_01`, `PCI\VEN_1AF4&DEV_1048`},
		},
		install: "scsi_inst", service: "vioscsi", serviceType: 1, startType: 0, errCtl: 1, group: "SCSI miniport",
		image: `System32\drivers\vioscsi.sys`, source: "vioscsi.sys", dest: `System32\drivers\vioscsi.sys`, catalog: "vioscsi.cat",
		driverVer: "2008-01-01 0.0.0.1",
		check: func(t *testing.T, f *File, p *Plan) {
			s := p.Services[0]
			if s.DisplayName != "Red Hat VirtIO SCSI pass-through Service" {
				t.Errorf("DisplayName %q", s.DisplayName)
			}
			wantDword(t, s.AddReg, "Parameters", "BusType", 0x0A)
			wantDword(t, p.HWAddReg, `Interrupt Management\MessageSignaledInterruptProperties`, "MessageNumberLimit", 258)
			wantDword(t, p.HWAddReg, `Interrupt Management\Affinity Policy`, "DevicePriority", 3)
		},
	},
	{
		file: "inf/virtio-balloon.inx", target: win7,
		models: [][2]string{
			{`PCI\VEN_1AF4&DEV_1002&SUBSYS_00051AF4&REV_00`, `PCI\VEN_1AF4&DEV_1002`},
			{`PCI\VEN_1AF4&DEV_1045&SUBSYS_11001AF4&REV_01`, `PCI\VEN_1AF4&DEV_1045`},
		},
		install: "BALLOON_Device.NT", service: "BALLOON", serviceType: 1, startType: 3, errCtl: 1,
		image: `System32\drivers\balloon.sys`, source: "balloon.sys", dest: `System32\drivers\balloon.sys`, catalog: "Balloon.cat",
		driverVer: "2008-01-01 0.0.0.1",
		check: func(t *testing.T, f *File, p *Plan) {
			s := p.Services[0]
			wantString(t, s.EventLog.AddReg, "", "EventMessageFile", regf.RegExpandSz,
				`%SystemRoot%\System32\IoLogMsg.dll;%SystemRoot%\System32\drivers\balloon.sys`)
			wantString(t, p.HWAddReg, "", "Security", regf.RegSz, "D:P(A;;GA;;;SY)")
			wantDword(t, s.AddReg, "Parameters", "DmaRemappingCompatible", 2)
			if s.DisplayName != "VirtIO Balloon Service" {
				t.Errorf("DisplayName %q", s.DisplayName)
			}
		},
	},
	{
		file: "inf/virtio-fwcfg.inf", target: win10,
		models:  [][2]string{{`ACPI\QEMU0002`, ""}},
		install: "FwCfg_Device.NT", service: "FwCfg", serviceType: 1, startType: 3, errCtl: 1,
		image: `System32\drivers\fwcfg.sys`, source: "fwcfg.sys", dest: `System32\drivers\fwcfg.sys`, catalog: "fwcfg.cat",
		driverVer: "2008-01-01 0.0.0.1",
		check: func(t *testing.T, f *File, p *Plan) {
			if p.Services[0].EventLog != nil {
				t.Errorf("fwcfg has no event-log section, got %+v", p.Services[0].EventLog)
			}
			if p.Model.Description != "QEMU FwCfg Device" {
				t.Errorf("description %q", p.Model.Description)
			}
		},
	},
	{
		file: "inf/virtio-viofs.inf", target: win10,
		models:  [][2]string{{`PCI\VEN_1AF4&DEV_105A&SUBSYS_11001AF4&REV_01`, `PCI\VEN_1AF4&DEV_105A`}},
		install: "VirtioFs_Device.NT", service: "VirtioFsDrv", serviceType: 1, startType: 3, errCtl: 1, group: "Extended Base",
		image: `System32\drivers\viofs.sys`, source: "viofs.sys", dest: `System32\drivers\viofs.sys`, catalog: "viofs.cat",
		driverVer: "2008-01-01 0.0.0.1",
		check: func(t *testing.T, f *File, p *Plan) {
			wantDword(t, p.HWAddReg, `Interrupt Management\MessageSignaledInterruptProperties`, "MSISupported", 1)
			keys := 0
			for _, v := range p.HWAddReg {
				if v.KeyOnly {
					keys++
				}
			}
			if keys != 2 {
				t.Errorf("%d key-only lines in the .HW AddReg, want 2", keys)
			}
		},
	},
	{
		file: "inf/wds-diskdev.inf", target: win10,
		models:  [][2]string{{"GenDisk", ""}, {"GenOptical", ""}},
		install: "disk.NT", service: "disk", serviceType: 1, startType: 0, errCtl: 1, group: "SCSI Class",
		image: `System32\drivers\disk.sys`, source: "amd64/disk.sys", dest: `System32\drivers\disk.sys`, catalog: "diskdev.cat",
		driverVer: "1999-08-27 5.2.1425.0",
		check: func(t *testing.T, f *File, p *Plan) {
			if p.Services[0].DisplayName != "Disk Drive" || p.Model.Description != "Disk drive" {
				t.Errorf("names %q, %q", p.Services[0].DisplayName, p.Model.Description)
			}
			// Only NTamd64 is offered: an x86 Windows has no driver here.
			if _, err := f.Models(win10_x86); err == nil || !strings.Contains(err.Error(), "wds-diskdev.inf:") || !strings.Contains(err.Error(), "x86") {
				t.Errorf("x86 models: %v, want an error naming the file and x86", err)
			}
		},
	},
	{
		file: "inf/wds-lsi_u3.inf", target: win7,
		models:  [][2]string{{`PCI\VEN_1000&DEV_0020`, ""}, {`PCI\VEN_1000&DEV_0021`, ""}},
		install: "LSI_U3_Inst", service: "LSI_U3", serviceType: 1, startType: 0, errCtl: 1, group: "SCSI Miniport",
		image: `System32\drivers\lsi_u3.sys`, source: "lsi_u3.sys", dest: `System32\drivers\lsi_u3.sys`, catalog: "lsi_u3.cat",
		driverVer: "2008-06-12 5.9.10.4",
		check: func(t *testing.T, f *File, p *Plan) {
			s := p.Services[0]
			// Two AddReg lines in one service section: both apply.
			wantDword(t, s.AddReg, `Parameters\PnpInterface`, "5", 1)
			wantDword(t, s.AddReg, "Parameters", "BusType", 1)
			if p.Model.Description != "LSI Ultra3 PCI SCSI Adapter; 53C1010-33 (StorPort)" {
				t.Errorf("a ';' inside quotes is text: description %q", p.Model.Description)
			}
			if s.EventLog == nil || len(s.EventLog.AddReg) != 2 {
				t.Errorf("event log %+v", s.EventLog)
			}
			if len(f.Template) != 1 || f.Template[0] != "$ARCH$=amd64" {
				t.Errorf("the unstamped NT$ARCH$ should be the only template variable, got %v", f.Template)
			}
		},
	},
	{
		file: "inf/wds-toastpkg.inf", target: win10,
		models:  [][2]string{{`{b85b7c50-6a01-11d2-b841-00c04fad5171}\MsToaster`, ""}},
		install: "Toaster_Device.NT", service: "toaster", serviceType: 1, startType: 3, errCtl: 1,
		image: `System32\drivers\toaster.sys`, source: "toaster.sys", dest: `System32\drivers\toaster.sys`, catalog: "toastpkg.cat",
		driverVer: "2006-09-21 6.0.5736.1",
		check: func(t *testing.T, f *File, p *Plan) {
			if p.Files[0].DirID != 13 {
				t.Errorf("DirID %d, want 13 recorded", p.Files[0].DirID)
			}
			notes := strings.Join(p.Notes, "\n")
			if !strings.Contains(notes, "13 (driver store) rewritten") || !strings.Contains(notes, "%13% (driver store) rewritten") {
				t.Errorf("notes should say DIRID 13 was rewritten for both the copy and ServiceBinary: %q", notes)
			}
			if p.Model.Decoration.Text != "NTamd64.10.0...16299" || !p.Model.Decoration.HasBuild || p.Model.Decoration.Version != (WinVersion{10, 0, 16299}) {
				t.Errorf("decoration %+v", p.Model.Decoration)
			}
			v := regValue(t, p.HWAddReg, "", "BeepCount")
			if d, ok := v.Dword(); !ok || d != 4 || !v.NoClobber {
				t.Errorf("BeepCount 0x00010003,4 should be REG_DWORD 4 with FLG_ADDREG_NOCLOBBER: %+v", v)
			}
			// 10.0...16299 is Windows 10 1709: 1703 (15063) gets nothing.
			old := Target{Arch: "amd64", Version: WinVersion{10, 0, 15063}}
			if _, err := f.Models(old); err == nil || !strings.Contains(err.Error(), "NTamd64.10.0...16299") {
				t.Errorf("Windows 10 1703: %v, want an error listing the decoration", err)
			}
			if got, _ := f.String("ToastRUs"); got != "Toast'R'Us" {
				t.Errorf("ToastRUs = %q", got)
			}
		},
	},
}

// TestCorpusINFs parses every INF and INX of the corpus, checks that the facts above hold, and
// that every corpus file is covered by a fact.
func TestCorpusINFs(t *testing.T) {
	dir, _ := corpus.Dir()
	corpus.Path(t, "inf/virtio-viostor.inx")
	all, err := filepath.Glob(filepath.Join(dir, "inf", "*"))
	if err != nil {
		t.Fatal(err)
	}
	covered := map[string]bool{}
	for _, fc := range corpusFacts {
		covered[filepath.Base(fc.file)] = true
	}
	for _, p := range all {
		if !covered[filepath.Base(p)] {
			t.Errorf("corpus file %s has no facts in corpusFacts", p)
		}
	}
	for _, fc := range corpusFacts {
		t.Run(filepath.Base(fc.file), func(t *testing.T) {
			f, err := ParseFile(corpus.Path(t, fc.file), Options{Arch: fc.target.Arch})
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Version.DriverDate.Format("2006-01-02") + " " + f.Version.VersionString(); got != fc.driverVer {
				t.Errorf("DriverVer %s, want %s", got, fc.driverVer)
			}
			models, err := f.Models(fc.target)
			if err != nil {
				t.Fatal(err)
			}
			var got [][2]string
			for _, m := range models {
				c := ""
				if len(m.CompatibleIDs) > 0 {
					c = m.CompatibleIDs[0]
				}
				got = append(got, [2]string{m.HardwareID, c})
			}
			if !reflect.DeepEqual(got, fc.models) {
				t.Fatalf("models %q, want %q", got, fc.models)
			}
			p, err := f.Plan(models[0], fc.target.Arch)
			if err != nil {
				t.Fatal(err)
			}
			if p.Install != fc.install || p.Catalog != fc.catalog {
				t.Errorf("install section %q catalog %q, want %q %q", p.Install, p.Catalog, fc.install, fc.catalog)
			}
			if len(p.Files) != 1 || p.Files[0].Source != fc.source || p.Files[0].Dest != fc.dest {
				t.Errorf("files %+v, want %s → %s", p.Files, fc.source, fc.dest)
			}
			if len(p.Services) != 1 {
				t.Fatalf("services %+v", p.Services)
			}
			s := p.Services[0]
			if s.Name != fc.service || s.ServiceType != fc.serviceType || s.StartType != fc.startType || s.ErrorControl != fc.errCtl ||
				s.LoadOrderGroup != fc.group || s.ImagePath != fc.image {
				t.Errorf("service %s type %d start %d error %d group %q image %q; want %s %d %d %d %q %q",
					s.Name, s.ServiceType, s.StartType, s.ErrorControl, s.LoadOrderGroup, s.ImagePath,
					fc.service, fc.serviceType, fc.startType, fc.errCtl, fc.group, fc.image)
			}
			// Every model line of the file matches its own hardware ID first.
			for _, m := range models {
				c, err := f.Match(fc.target, []string{m.HardwareID})
				if err != nil || len(c) == 0 || c[0].Model.HardwareID != m.HardwareID || c[0].Rank != 0 {
					t.Errorf("Match(%s) = %+v, %v", m.HardwareID, c, err)
				}
			}
			fc.check(t, f, p)
		})
	}
}

// TestViostorDeviceMatch ranks viostor's lines for a virtio-blk device's real ID list.
func TestViostorDeviceMatch(t *testing.T) {
	f, err := ParseFile(corpus.Path(t, "inf/virtio-viostor.inx"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	ids := []string{
		`PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`, `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4`,
		`PCI\VEN_1AF4&DEV_1001&REV_00`, `PCI\VEN_1AF4&DEV_1001`, `PCI\VEN_1AF4&CC_010000`, `PCI\CC_0100`,
	}
	c, err := f.Match(win10, ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 1 || c[0].Rank != 0 || c[0].INFCompatible || c[0].Matched != ids[0] {
		t.Fatalf("candidates %+v", c)
	}
	// A device with another subsystem ID only meets the INF line's compatible ID: rank 0x1000+3.
	other := []string{`PCI\VEN_1AF4&DEV_1001&SUBSYS_00011AF4&REV_00`, `PCI\VEN_1AF4&DEV_1001&SUBSYS_00011AF4`, `PCI\VEN_1AF4&DEV_1001&REV_00`, `PCI\VEN_1AF4&DEV_1001`}
	c, err = f.Match(win10, other)
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 1 || c[0].Rank != 0x1003 || !c[0].INFCompatible || c[0].Position != 3 {
		t.Fatalf("candidates %+v", c)
	}
	// Kept apart as Windows keeps them, a match on the device's compatible ID scores 0x2000+.
	c, err = f.MatchDevice(win10, other[:3], other[3:])
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 1 || c[0].Rank != 0x3000 {
		t.Fatalf("candidates %+v", c)
	}
	// The modern (1.0) device ID matches the DEV_1042 line.
	c, _ = f.Match(win10, []string{`PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01`})
	if len(c) != 1 || c[0].Model.HardwareID != `PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01` {
		t.Fatalf("DEV_1042: %+v", c)
	}
	// Nothing for vioscsi's device.
	if c, _ := f.Match(win10, []string{`PCI\VEN_1AF4&DEV_1004`}); len(c) != 0 {
		t.Errorf("viostor matched vioscsi's device: %+v", c)
	}
}

// TestINXForArm64 reads a template for another architecture: $ARCH$ becomes ARM64 and only an
// Arm64 target finds the models.
func TestINXForArm64(t *testing.T) {
	f, err := ParseFile(corpus.Path(t, "inf/virtio-viostor.inx"), Options{Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	arm := Target{Arch: "arm64", Version: WinVersion{10, 0, 22631}}
	m, err := f.Models(arm)
	if err != nil || len(m) != 2 || m[0].Section != "VioStor.NTARM64" {
		t.Fatalf("arm64 models %+v, %v", m, err)
	}
	if _, err := f.Models(win10); err == nil || !strings.Contains(err.Error(), "read it again with Options.Arch") {
		t.Errorf("an ARM64-stamped template and an amd64 target: %v", err)
	}
	if _, err := f.Plan(m[0], "amd64"); err == nil {
		t.Error("Plan for amd64 from an ARM64-stamped template should fail")
	}
}
