package windows

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/inf"
)

func TestMapMountedDevice(t *testing.T) {
	part := "6cdfcd69-de75-4490-8f99-5a84bf264917"
	m := bcd.Mapping{Disks: []bcd.DiskMap{
		mustMap(t, []bcd.Identity{{What: "disk signature", Old: "5cbea03e", New: "0badcafe"}}, []bcd.Move{{OldStart: 1 << 20, NewStart: 3 << 20}}),
		mustMap(t, []bcd.Identity{{What: "disk GUID", Old: "0b2394a9-095e-487d-8d48-719ecd4d78ca", New: "11111111-2222-3333-4444-555555555555"},
			{What: "partition GUID", Old: part, New: "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"}}, nil),
	}}
	mbr := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(nil, 0x5cbea03e), 1<<20)
	nd, _, w := mapMountedDevice(mbr, m)
	want := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(nil, 0x0badcafe), 3<<20)
	if !bytes.Equal(nd, want) || w != "" {
		t.Errorf("MBR: % x (%s), want % x", nd, w, want)
	}
	other := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(nil, 0x5cbea03e), 7<<20)
	if nd, _, w := mapMountedDevice(other, m); nd == nil || w == "" || binary.LittleEndian.Uint64(nd[4:]) != 7<<20 {
		t.Errorf("unmoved partition: % x, warning %q", nd, w)
	}
	g, _ := bcd.ParseGUID(part)
	gpt := append([]byte("DMIO:ID:"), g[:]...)
	nd, _, _ = mapMountedDevice(gpt, m)
	ng, _ := bcd.ParseGUID("aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee")
	if !bytes.Equal(nd, append([]byte("DMIO:ID:"), ng[:]...)) {
		t.Errorf("GPT: % x", nd)
	}
	if nd, _, _ := mapMountedDevice(utf16z(`\??\IDE#CdRom`), m); nd != nil {
		t.Error("a device path was mapped")
	}
}

func TestImagePathRel(t *testing.T) {
	for in, want := range map[string]string{
		`\SystemRoot\system32\drivers\msahci.sys`: `Windows\system32\drivers\msahci.sys`,
		`System32\drivers\stornvme.sys`:           `Windows\System32\drivers\stornvme.sys`,
		`%SystemRoot%\System32\drivers\x.sys`:     `Windows\System32\drivers\x.sys`,
		`\??\C:\Program Files\x\y.sys`:            `Program Files\x\y.sys`,
		``:                                        `Windows\System32\drivers\svc.sys`,
	} {
		if got := imagePathRel(in, "svc"); got != want {
			t.Errorf("imagePathRel(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestFirstBootScript: the script is CRLF cmd text, counts its runs and each driver's attempts
// before pnputil starts, never reboots, clears the setup hook, and uses the pnputil syntax of the
// Windows it runs on.
func TestFirstBootScript(t *testing.T) {
	p := []*pkg{{name: "viostor.inf_amd64_0123456789abcdef", infName: "viostor.inf"}, {name: "vioscsi.inf_amd64_fedcba9876543210", infName: "vioscsi.inf"}}
	s10 := &System{ProductName: "Windows 10", Version: inf.WinVersion{Major: 10, Build: 19045}, Arch: "amd64"}
	s7 := &System{ProductName: "Windows 7", Version: inf.WinVersion{Major: 6, Minor: 1, Build: 7601}, Arch: "x86"}
	b := string(firstBootScript(s10, p, 2))
	for _, want := range []string{"set MAXTRIES=2", `pnputil /add-driver "%PKG%\%~2" /install`, `call :driver "viostor.inf_amd64_0123456789abcdef" "viostor.inf"`,
		`call :driver "vioscsi.inf_amd64_fedcba9876543210" "vioscsi.inf"`, `/v SetupType /t REG_DWORD /d 0`, `cauldron.tries`, `\firstboot-`, `.done"`} {
		if !strings.Contains(b, want) {
			t.Errorf("script lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(b), "shutdown") || strings.Contains(b, "/reboot") {
		t.Error("the script can reboot")
	}
	if strings.Count(b, "\r\n") != strings.Count(b, "\n") {
		t.Error("the script has bare LF lines")
	}
	// The attempt is counted before pnputil runs, so a crash during it still counts.
	if strings.Index(b, `>"%PKG%\cauldron.tries"`) > strings.Index(b, "pnputil") {
		t.Error("attempts are counted after pnputil")
	}
	if b7 := string(firstBootScript(s7, p, 3)); !strings.Contains(b7, `pnputil -i -a`) || strings.Contains(b7, "/add-driver") {
		t.Error("Windows 7 script does not use pnputil -i -a")
	}
}

func TestProfiles(t *testing.T) {
	for _, n := range Profiles() {
		cs, err := Profile(n)
		if err != nil || len(cs) == 0 {
			t.Fatalf("%s: %v", n, err)
		}
		for _, c := range cs {
			if len(c.HardwareIDs) == 0 {
				t.Errorf("%s %s: no IDs", n, c.Name)
			}
		}
	}
	cs, _ := Profile("kvm-virtio-blk")
	if cs[0].HardwareIDs[0] != `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00` || cs[1].HardwareIDs[0] != `PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01` {
		t.Errorf("virtio-blk IDs %v %v", cs[0].HardwareIDs, cs[1].HardwareIDs)
	}
	// The viostor template names exactly these hardware IDs: the profile must meet the INF.
	tmpl := readCorpus(t, "inf/virtio-viostor.inx")
	f, err := inf.Parse("viostor.inx", tmpl, inf.Options{Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		cands, err := f.Match(inf.Target{Arch: "amd64", Version: inf.WinVersion{Major: 10}}, c.IDs())
		if err != nil || len(cands) == 0 || cands[0].Position != 0 {
			t.Errorf("%s: viostor does not match its first hardware ID: %v %+v", c.Name, err, cands)
		}
	}
}

func TestHiberfilAndBitLocker(t *testing.T) {
	root := t.TempDir()
	s := &System{}
	for sig, hib := range map[string]bool{"hibr": true, "HIBR": true, "RSTR": true, "wake": false, "\x00\x00\x00\x00": false} {
		os.WriteFile(filepath.Join(root, "HiberFil.sys"), append([]byte(sig), make([]byte, 60)...), 0o644)
		if err := s.readHibernation(root); err != nil || s.Hibernated != hib {
			t.Errorf("%q: hibernated %v (%s), want %v", sig, s.Hibernated, s.HiberfilState, hib)
		}
		s.Hibernated = false
	}
	sec := make([]byte, 512)
	copy(sec[3:], "-FVE-FS-")
	s.readBitLocker(sec)
	if !s.BitLocker {
		t.Error("BitLocker not seen")
	}
	s = &System{}
	s.readBitLocker(sec[:8])
	if s.BitLocker || !strings.Contains(s.BitLockerState, "not checked") {
		t.Errorf("short sector: %v %s", s.BitLocker, s.BitLockerState)
	}
}
