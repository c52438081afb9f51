package bcd

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"

	"github.com/cauldron-dr/cauldron/internal/corpus"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
	"github.com/cauldron-dr/cauldron/partition"
)

// TestMain removes the corpus files decompressed for the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	corpus.Cleanup()
	os.Exit(code)
}

// v2vStore builds a BCD store from the Windows 11 BCD .reg text of virt-v2v's test data: a real
// 1.3 store (windeploy's UEFI template) with its objects replaced by the .reg's through our
// importer.
func v2vStore(t testing.TB) string {
	t.Helper()
	path := corpus.Copy(t, "bcd/windeploy-BCD-efi")
	regText := corpus.Copy(t, "reg/v2v-windows-bcd.reg")
	f, err := os.Open(regText)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops, err := regf.ParseReg(f, "")
	if err != nil {
		t.Fatal(err)
	}
	h, err := regf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.DeleteKey("Objects"); err != nil {
		t.Fatal(err)
	}
	if err := h.Import(ops); err != nil {
		t.Fatal(err)
	}
	if err := h.Save(""); err != nil {
		t.Fatal(err)
	}
	return path
}

// exportValues runs hivexregedit --export on the whole hive: every value as hivex reads it, by
// upper-cased key path and value name.
func exportValues(t testing.TB, hive string) map[string]regf.RegOp {
	t.Helper()
	testenv.NeedTools(t, "hivexregedit")
	var stderr bytes.Buffer
	cmd := exec.Command("hivexregedit", "--export", hive, `\`)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hivexregedit --export %s: %v\n%s", hive, err, stderr.Bytes())
	}
	ops, err := regf.ParseReg(bytes.NewReader(out), "")
	if err != nil {
		t.Fatalf("parsing hivexregedit's export: %v", err)
	}
	m := map[string]regf.RegOp{}
	for _, op := range ops {
		k := strings.ToUpper(op.Key)
		if !op.IsValue {
			m[k] = op
			continue
		}
		m[k+`\\`+op.Value] = op
	}
	return m
}

var regedEmptyValue = regexp.MustCompile(`(=hex\([0-9a-f]+\):)"`)

// regedValues runs chntpw's reged -x on the hive and returns the values it reads.
func regedValues(t testing.TB, hive string) map[string]regf.RegOp {
	t.Helper()
	testenv.NeedTools(t, "reged")
	out := hive + ".reged.reg"
	cmd := exec.Command("reged", "-x", hive, `HKLM\BCD`, `\`, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("reged -x: %v\n%s", err, b)
	}
	text, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	// reged ends a zero-length value's line without a line break: put it back.
	text = regedEmptyValue.ReplaceAll(text, []byte("$1\r\n\""))
	ops, err := regf.ParseReg(bytes.NewReader(text), `HKLM\BCD`)
	if err != nil {
		t.Fatalf("parsing reged's output: %v", err)
	}
	m := map[string]regf.RegOp{}
	for _, op := range ops {
		if op.IsValue {
			m[strings.ToUpper(op.Key)+`\\`+op.Value] = op
		}
	}
	return m
}

func elementKey(object, element string) string {
	return strings.ToUpper(`Objects\`+object+`\Elements\`+element) + `\\Element`
}

func guidBytes(t testing.TB, s string) []byte {
	t.Helper()
	g, err := ParseGUID(s)
	if err != nil {
		t.Fatal(err)
	}
	return g[:]
}

func open(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// deviceAt returns an object's decoded device element.
func deviceAt(t testing.TB, s *Store, object string, element uint32) *Device {
	t.Helper()
	o, err := s.Object(object)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range o.Elements {
		if e.Type == element {
			if e.Err != nil {
				t.Fatalf("%s %08x: %v", object, element, e.Err)
			}
			return e.Device
		}
	}
	t.Fatalf("%s has no element %08x", object, element)
	return nil
}

// TestDecodeCorpus decodes every object and element of every corpus store and compares each
// element's bytes with what hivexregedit reads, and checks facts read off the stores by hand.
func TestDecodeCorpus(t *testing.T) {
	stores := map[string]string{
		"bios":   corpus.Copy(t, "bcd/windeploy-BCD-bios"),
		"efi":    corpus.Copy(t, "bcd/windeploy-BCD-efi"),
		"regipy": corpus.Copy(t, "bcd/regipy-BCD-uefi.xz"),
		"v2v":    v2vStore(t),
	}
	for name, path := range stores {
		s := open(t, path)
		if maj, min := s.Hive().Version(); maj != 1 || min != 3 {
			t.Errorf("%s: regf %d.%d, want 1.3", name, maj, min)
		}
		objs, err := s.Objects()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		hv := exportValues(t, path)
		elements, devices := 0, 0
		for _, o := range objs {
			for _, e := range o.Elements {
				op, ok := hv[elementKey(o.GUID, e.Key())]
				if !ok {
					if e.Err == nil || e.Err.Error() != "no Element value" {
						t.Errorf("%s %s %s: hivex has no value, we read %v", name, o.GUID, e.Key(), e.Err)
					}
					continue
				}
				elements++
				if !bytes.Equal(op.Data, e.Raw) || op.Type != e.RegType {
					t.Errorf("%s %s %s: hivex reads type %d % x, we %d % x", name, o.GUID, e.Key(), op.Type, op.Data, e.RegType, e.Raw)
				}
				if e.Err != nil {
					t.Errorf("%s %s %s: %v", name, o.GUID, e.Key(), e.Err)
				}
				if e.Format() == FormatDevice {
					devices++
				}
			}
		}
		// hivex sees as many objects as we do.
		hobjs := 0
		for k, op := range hv {
			if !op.IsValue && len(strings.Split(k, `\`)) == 2 && strings.HasPrefix(k, `OBJECTS\{`) {
				hobjs++
			}
		}
		if len(objs) != hobjs || hobjs == 0 {
			t.Errorf("%s: %d objects, hivex sees %d", name, len(objs), hobjs)
		}
		t.Logf("%s: %d objects, %d elements, %d device elements", name, len(objs), elements, devices)
	}

	// BIOS template: boot manager and loader on the boot device; memdiag and resume on MBR
	// partition 1 MiB into disk ddba6bbb.
	s := open(t, stores["bios"])
	if d := deviceAt(t, s, "{bootmgr}", 0x11000001); d.Descriptor.Type != DeviceBoot {
		t.Errorf("bios {bootmgr} device: %s", d)
	}
	bm, _ := s.Object(BootMgr)
	def := ""
	for _, e := range bm.Elements {
		if e.Name == "default" {
			def = e.String
		}
	}
	if def != "{1b67bffd-e290-11eb-8ffa-f459a0d9b879}" || bm.Description != "Windows Boot Manager" || bm.Name != "{bootmgr}" {
		t.Errorf("bios bootmgr: default %s, description %q, name %q", def, bm.Description, bm.Name)
	}
	if d := deviceAt(t, s, def, 0x21000001); d.Descriptor.Type != DeviceBoot {
		t.Errorf("bios osdevice: %s", d)
	}
	p := deviceAt(t, s, "{memdiag}", 0x11000001).Descriptor.Partition
	if p == nil || p.Style != StyleMBR || p.Offset != 1<<20 || p.Signature != 0xddba6bbb {
		t.Errorf("bios memdiag partition %+v", p)
	}

	// UEFI template: bootmgr on a GPT partition; the loader found by locate.
	s = open(t, stores["efi"])
	p = deviceAt(t, s, "{bootmgr}", 0x11000001).Descriptor.Partition
	if p == nil || p.PartitionGUID != "85C434AF-7860-49B3-85C3-B70316081B7B" || p.DiskGUID != "20AC3077-F7CD-4C47-95D5-53FBF8B752B5" {
		t.Errorf("efi bootmgr partition %+v", p)
	}
	locates := 0
	objs, _ := s.Objects()
	for _, o := range objs {
		for _, e := range o.Elements {
			if e.Device != nil && e.Device.Descriptor.Locate != nil {
				locates++
				if l := e.Device.Descriptor.Locate; l.ElementType != 0x12000002 && l.ElementType != 0x22000002 {
					t.Errorf("efi locate %s %s by element %08x", o.GUID, e.Key(), l.ElementType)
				}
			}
		}
	}
	if locates != 2 {
		t.Errorf("efi: %d locate devices, want 2", locates)
	}

	// regipy's real UEFI store: WinRE's ramdisk nests the recovery partition and names the
	// ramdisk options object.
	s = open(t, stores["regipy"])
	winre := "{733b62e6-f608-11eb-825c-c112f60133ab}"
	d := deviceAt(t, s, winre, 0x11000001)
	l := d.Descriptor.Local
	if d.Options != "{733b62e7-f608-11eb-825c-c112f60133ab}" || l == nil || l.Type != LocalRamdisk || l.File == nil ||
		l.File.Path != `\Recovery\WindowsRE\Winre.wim` || l.File.Device == nil || l.File.Device.Partition == nil ||
		l.File.Device.Partition.PartitionGUID != "6CDFCD69-DE75-4490-8F99-5A84BF264917" ||
		l.File.Device.Partition.DiskGUID != "0B2394A9-095E-487D-8D48-719ECD4D78CA" {
		t.Errorf("regipy WinRE device: %s", d)
	}
	sdi := deviceAt(t, s, d.Options, 0x31000003).Descriptor.Partition
	if sdi == nil || sdi.PartitionGUID != "6CDFCD69-DE75-4490-8F99-5A84BF264917" {
		t.Errorf("ramdisk options SDI device %+v", sdi)
	}

	// virt-v2v's Windows 11 store.
	s = open(t, stores["v2v"])
	d = deviceAt(t, s, "{9dd54394-76ea-11ed-8c7c-de4e190a0ee1}", 0x21000001)
	if d.Descriptor.Local == nil || d.Descriptor.Local.File.Device.Partition.PartitionGUID != "0EB91D91-0C98-4596-AC34-9775035EE4A6" ||
		d.Descriptor.Local.File.Device.Partition.DiskGUID != "ADDC0D43-17A9-4E26-A16C-DC71E67393F7" {
		t.Errorf("v2v WinRE osdevice: %s", d)
	}
}

// judge compares a store before and after a rewrite with independent readers: hivexregedit
// reads every value unchanged except the elements in want (by elementKey), which must hold
// exactly the bytes given; reged reads the same bytes for those; regf's checker is clean.
func judge(t *testing.T, before, after string, want map[string][]byte) {
	t.Helper()
	a, b := exportValues(t, before), exportValues(t, after)
	if len(a) != len(b) {
		t.Errorf("hivexregedit: %d keys and values before, %d after", len(a), len(b))
	}
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		x, y := a[k], b[k]
		if w, ok := want[k]; ok {
			if !bytes.Equal(y.Data, w) || y.Type != regf.RegBinary {
				t.Errorf("%s: hivex reads % x, want % x", k, y.Data, w)
			}
			if bytes.Equal(x.Data, w) {
				t.Errorf("%s: expected a change, the bytes were already these", k)
			}
			continue
		}
		if x.Type != y.Type || !bytes.Equal(x.Data, y.Data) || x.IsValue != y.IsValue {
			t.Errorf("%s changed: % x → % x", k, x.Data, y.Data)
		}
	}
	for k := range want {
		if _, ok := a[k]; !ok {
			t.Errorf("%s: no such element before the rewrite", k)
		}
	}
	r := regedValues(t, after)
	for k, w := range want {
		if op, ok := r[k]; !ok || !bytes.Equal(op.Data, w) {
			t.Errorf("reged reads %s as % x, want % x", k, op.Data, w)
		}
	}
	// Same-size data goes back into the cell it came from: the file does not grow.
	bi, _ := os.Stat(before)
	ai, _ := os.Stat(after)
	if bi.Size() != ai.Size() {
		t.Errorf("the store grew from %d to %d bytes", bi.Size(), ai.Size())
	}
	h, err := regf.Open(after)
	if err != nil {
		t.Fatal(err)
	}
	if p := h.Check(); len(p) > 0 {
		t.Errorf("regf Check: %v", p)
	}
	if h.Dirty() {
		t.Error("saved store is dirty")
	}
}

// gptRewrite rewrites a GPT store's disk and partition GUIDs with the identities a layout plan
// would give, then judges the result. old → new pairs are canonical GUID strings.
func gptRewrite(t *testing.T, path, disk, newDisk string, parts map[string]string) (*Report, map[string][]byte) {
	t.Helper()
	before := filepath.Join(t.TempDir(), "before")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(before, orig, 0o644); err != nil {
		t.Fatal(err)
	}
	ids := []Identity{{What: "disk GUID", Old: disk, New: newDisk}}
	n := 1
	for o, nw := range parts {
		ids = append(ids, Identity{What: "partition GUID", Partition: n, Old: o, New: nw})
		n++
	}
	dm, err := NewDiskMap(ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	// What every device element must become, computed independently of the decoder: the old
	// GUIDs' 16 bytes replaced by the new ones wherever they occur in a device element.
	want := map[string][]byte{}
	objs, _ := s.Objects()
	for _, o := range objs {
		for _, e := range o.Elements {
			if e.Format() != FormatDevice || e.Raw == nil {
				continue
			}
			if !bytes.Contains(e.Raw, guidBytes(t, disk)) {
				continue
			}
			w := bytes.ReplaceAll(e.Raw, guidBytes(t, disk), guidBytes(t, newDisk))
			for o2, n2 := range parts {
				w = bytes.ReplaceAll(w, guidBytes(t, o2), guidBytes(t, n2))
			}
			want[elementKey(o.GUID, e.Key())] = w
		}
	}
	rep, err := s.Rewrite(Mapping{Disks: []DiskMap{dm}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(""); err != nil {
		t.Fatal(err)
	}
	if rep.Elements != len(want) {
		t.Errorf("%d elements written, %d expected", rep.Elements, len(want))
	}
	judge(t, before, path, want)
	return rep, want
}

func TestRewriteGPT(t *testing.T) {
	path := corpus.Copy(t, "bcd/regipy-BCD-uefi.xz")
	disk := "0B2394A9-095E-487D-8D48-719ECD4D78CA"
	parts := map[string]string{
		"8E0F2C38-E4EA-47BA-B7FC-9D8C74DCCF0B": "11111111-2222-4333-8444-555555555555", // Windows
		"36BE3955-63BF-4068-A6AB-00195CCA3A22": "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE", // ESP
		"6CDFCD69-DE75-4490-8F99-5A84BF264917": "01020304-0506-4708-890A-0B0C0D0E0F10", // recovery
		"55A1A1A1-0000-4000-8000-000000000001": "55A1A1A1-0000-4000-8000-000000000002", // not named by the store
	}
	rep, _ := gptRewrite(t, path, disk, "FEDCBA98-7654-4321-8FED-CBA987654321", parts)
	// The WinRE loader's ramdisk: the nested partition was rewritten.
	nested := 0
	for _, c := range rep.Changes {
		if c.Object == "{733b62e6-f608-11eb-825c-c112f60133ab}" && c.Where == "device > ramdisk file > device" && c.Field == "partition GUID" {
			nested++
			if c.Old != "6CDFCD69-DE75-4490-8F99-5A84BF264917" || c.New != "01020304-0506-4708-890A-0B0C0D0E0F10" {
				t.Errorf("nested change %+v", c)
			}
		}
	}
	if nested != 2 {
		t.Errorf("%d nested ramdisk partition changes, want 2 (device and osdevice): %+v", nested, rep.Changes)
	}
	// The firmware entries on another disk (376E5397…) stay and are reported.
	other := 0
	for _, u := range rep.Untouched {
		if strings.Contains(u.Reason, "376E5397-7D1F-4E4F-A668-5A62C1269E60 is not in the mapping") {
			other++
		}
	}
	if other != 3 {
		t.Errorf("%d untouched elements on the other disk, want 3: %+v", other, rep.Untouched)
	}
	// Reading the saved store again names the new identities.
	s := open(t, path)
	d := deviceAt(t, s, "{733b62e6-f608-11eb-825c-c112f60133ab}", 0x21000001)
	if p := d.Descriptor.Local.File.Device.Partition; p.PartitionGUID != "01020304-0506-4708-890A-0B0C0D0E0F10" || p.DiskGUID != "FEDCBA98-7654-4321-8FED-CBA987654321" {
		t.Errorf("reopened WinRE: %s", d)
	}
	if d.Options != "{733b62e7-f608-11eb-825c-c112f60133ab}" {
		t.Errorf("options GUID changed: %s", d.Options)
	}
	// A second rewrite with the same mapping finds nothing of the old disk.
	dm, _ := NewDiskMap([]Identity{{What: "disk GUID", Old: disk, New: "FEDCBA98-7654-4321-8FED-CBA987654321"}}, nil)
	rep2, err := s.Rewrite(Mapping{Disks: []DiskMap{dm}})
	if err != nil || len(rep2.Changes) != 0 || rep2.Elements != 0 {
		t.Errorf("second rewrite: %+v %v", rep2, err)
	}
}

func TestRewriteV2VStore(t *testing.T) {
	path := v2vStore(t)
	parts := map[string]string{
		"1581CEA0-12EE-4F7D-8967-A2B73024AAE2": "C0C0C0C0-0000-4000-8000-000000000001",
		"0EB91D91-0C98-4596-AC34-9775035EE4A6": "C0C0C0C0-0000-4000-8000-000000000002",
		"A9CC9A33-A516-4C21-88EB-EED5D2B658A3": "C0C0C0C0-0000-4000-8000-000000000003",
	}
	rep, want := gptRewrite(t, path, "ADDC0D43-17A9-4E26-A16C-DC71E67393F7", "D15CD15C-0000-4000-8000-00000000D15C", parts)
	if len(want) < 8 {
		t.Errorf("only %d device elements name the disk", len(want))
	}
	for _, u := range rep.Untouched {
		if !strings.HasPrefix(u.Reason, "names no disk") {
			t.Errorf("untouched %+v", u)
		}
	}
}

func TestRewriteEFITemplate(t *testing.T) {
	path := corpus.Copy(t, "bcd/windeploy-BCD-efi")
	rep, _ := gptRewrite(t, path, "20AC3077-F7CD-4C47-95D5-53FBF8B752B5", "20AC3077-0000-4000-8000-000000000000",
		map[string]string{"85C434AF-7860-49B3-85C3-B70316081B7B": "85C434AF-0000-4000-8000-000000000000"})
	locate := 0
	for _, u := range rep.Untouched {
		if u.Device == "locate" && strings.Contains(u.Reason, "found at boot by its path") {
			locate++
		}
	}
	if locate != 2 || len(rep.Changes) != 2 {
		t.Errorf("changes %+v untouched %+v", rep.Changes, rep.Untouched)
	}
}

func TestRewriteMBR(t *testing.T) {
	path := corpus.Copy(t, "bcd/windeploy-BCD-bios")
	before := filepath.Join(t.TempDir(), "before")
	orig, _ := os.ReadFile(path)
	os.WriteFile(before, orig, 0o644)
	s := open(t, path)
	// A partition plan as partition.Plan writes it: the signature in %08x, the moves in bytes.
	dm, err := NewDiskMap([]Identity{{What: "disk signature", Old: "ddba6bbb", New: "0badcafe"}},
		[]Move{{OldStart: 1 << 20, NewStart: 2 << 20}, {OldStart: 101 << 20, NewStart: 300 << 20}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	objs, _ := s.Objects()
	for _, o := range objs {
		for _, e := range o.Elements {
			if e.Format() == FormatDevice && e.Raw != nil && binary.LittleEndian.Uint32(e.Raw[0x38:]) == 0xddba6bbb {
				w := append([]byte(nil), e.Raw...)
				binary.LittleEndian.PutUint64(w[0x20:], 2<<20)
				binary.LittleEndian.PutUint32(w[0x38:], 0x0badcafe)
				want[elementKey(o.GUID, e.Key())] = w
			}
		}
	}
	if len(want) != 2 {
		t.Fatalf("%d MBR partition elements, want 2 (memdiag, resume)", len(want))
	}
	rep, err := s.Rewrite(Mapping{Disks: []DiskMap{dm}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(""); err != nil {
		t.Fatal(err)
	}
	judge(t, before, path, want)
	if len(rep.Changes) != 4 || rep.Elements != 2 {
		t.Errorf("changes %+v", rep.Changes)
	}
	for _, c := range rep.Changes {
		if c.Field == "partition start" && (c.Old != "1048576" || c.New != "2097152") {
			t.Errorf("start change %+v", c)
		}
		if c.Field == "disk signature" && (c.Old != "ddba6bbb" || c.New != "0badcafe") {
			t.Errorf("signature change %+v", c)
		}
	}
	boot := 0
	for _, u := range rep.Untouched {
		if u.Device == "boot device" {
			boot++
		}
	}
	if boot != 3 {
		t.Errorf("%d boot devices reported untouched, want 3: %+v", boot, rep.Untouched)
	}
	if got := deviceAt(t, open(t, path), "{memdiag}", 0x11000001).Descriptor.Partition; got.Offset != 2<<20 || got.Signature != 0x0badcafe {
		t.Errorf("reopened memdiag %+v", got)
	}
}

// TestRewriteMBRUnknownStart: a partition the moves do not name is left alone, with a reason,
// rather than given a wrong start.
func TestRewriteMBRUnknownStart(t *testing.T) {
	path := corpus.Copy(t, "bcd/windeploy-BCD-bios")
	s := open(t, path)
	dm, _ := NewDiskMap([]Identity{{What: "disk signature", Old: "DDBA6BBB", New: "12345678"}}, []Move{{OldStart: 32256, NewStart: 1 << 20}})
	rep, err := s.Rewrite(Mapping{Disks: []DiskMap{dm}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, u := range rep.Untouched {
		if strings.Contains(u.Reason, "no partition of the mapped disk starts at byte 1048576") {
			n++
		}
	}
	if n != 2 || len(rep.Changes) != 0 || rep.Elements != 0 {
		t.Errorf("report %+v", rep)
	}
	// Only the signature changes when the plan moved nothing (no moves given).
	dm, _ = NewDiskMap([]Identity{{What: "disk signature", Old: "ddba6bbb", New: "ddba6bbb"}}, nil)
	rep, _ = s.Rewrite(Mapping{Disks: []DiskMap{dm}})
	if len(rep.Changes) != 0 || len(rep.Kept) != 4 {
		t.Errorf("identities kept: %+v", rep)
	}
	// Two disks claiming one old signature: refused.
	if _, err := s.Rewrite(Mapping{Disks: []DiskMap{dm, dm}}); err == nil || !strings.Contains(err.Error(), "old signature ddba6bbb") {
		t.Errorf("duplicate disks: %v", err)
	}
}

func TestNewDiskMapErrors(t *testing.T) {
	for _, ids := range [][]Identity{
		{{What: "disk signature", Old: "xyz", New: "00000001"}},
		{{What: "disk signature", Old: "123456789", New: "00000001"}},
		{{What: "disk GUID", Old: "not-a-guid", New: "20AC3077-0000-4000-8000-000000000000"}},
		{{What: "partition GUID", Old: "20AC3077-0000-4000-8000-000000000000", New: "20AC3077-0000-4000-8000-00000000000G"}},
		{{What: "volume label", Old: "a", New: "b"}},
	} {
		if _, err := NewDiskMap(ids, nil); err == nil {
			t.Errorf("%+v accepted", ids)
		}
	}
	if _, err := NewDiskMap(nil, []Move{{OldStart: -1, NewStart: 0}}); err == nil {
		t.Error("negative start accepted")
	}
	g, err := ParseGUID("{9dea862c-5cdd-4e70-acc1-f32b344d4795}")
	if err != nil || formatGUID(g[:]) != "9DEA862C-5CDD-4E70-ACC1-F32B344D4795" || g[0] != 0x2c || g[8] != 0xac {
		t.Errorf("ParseGUID: % x %v", g, err)
	}
}

func TestOpenNotBCD(t *testing.T) {
	path := corpus.Copy(t, "hives/hivex-minimal")
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "not a BCD store") {
		t.Errorf("Open(minimal hive): %v", err)
	}
	if _, err := Parse([]byte("regf but not really")); err == nil {
		t.Error("Parse of garbage succeeded")
	}
}

func TestDecodeDeviceErrors(t *testing.T) {
	part := func(style uint32, size uint32) []byte {
		b := make([]byte, 88)
		binary.LittleEndian.PutUint32(b[16:], DevicePartition)
		binary.LittleEndian.PutUint32(b[24:], size)
		binary.LittleEndian.PutUint32(b[52:], style)
		return b
	}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"short", make([]byte, 20), "shorter than"},
		{"size", part(0, 0x50), "descriptor size 80 does not fit"},
		{"tiny", part(0, 8), "descriptor size 8"},
		{"style", part(7, 0x48), "partition style 7"},
		{"small partition", append(part(0, 0x20)[:0x30], make([]byte, 8)...), "partition descriptor of 32 bytes"},
	}
	for _, c := range cases {
		_, err := DecodeDevice(c.b)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// A ramdisk whose file path names a device that runs past the end.
	b := make([]byte, 16+16+24+12+16)
	binary.LittleEndian.PutUint32(b[16:], DeviceLocal)
	binary.LittleEndian.PutUint32(b[24:], uint32(len(b)-16))
	binary.LittleEndian.PutUint32(b[32:], LocalRamdisk)
	fp := 32 + 24
	binary.LittleEndian.PutUint32(b[fp:], 1)
	binary.LittleEndian.PutUint32(b[fp+4:], uint32(len(b)-fp))
	binary.LittleEndian.PutUint32(b[fp+8:], 5)
	binary.LittleEndian.PutUint32(b[fp+12:], DevicePartition)
	binary.LittleEndian.PutUint32(b[fp+20:], 0x48)
	if _, err := DecodeDevice(b); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Errorf("nested overflow: %v", err)
	}
}

// synthetic builders for device kinds the corpus stores lack.
func descriptor(typ uint32, payload []byte) []byte {
	b := make([]byte, 16, 16+len(payload))
	binary.LittleEndian.PutUint32(b[0:], typ)
	binary.LittleEndian.PutUint32(b[8:], uint32(16+len(payload)))
	return append(b, payload...)
}

func gptPartition(t testing.TB, part, disk string) []byte {
	p := make([]byte, 0x38)
	copy(p, guidBytes(t, part))
	copy(p[0x18:], guidBytes(t, disk))
	return descriptor(DevicePartition, p)
}

func TestSyntheticDevices(t *testing.T) {
	disk := "11111111-2222-3333-4444-555555555555"
	part := "66666666-7777-8888-9999-AAAAAAAAAAAA"
	// A whole MBR disk (local device type 0, style 1).
	wd := make([]byte, 24)
	binary.LittleEndian.PutUint32(wd[4:], StyleMBR)
	binary.LittleEndian.PutUint32(wd[8:], 0xcafef00d)
	wholeDisk := append(make([]byte, 16), descriptor(DeviceLocal, wd)...)
	// A virtual disk (VHD) whose file lies on a GPT partition: local type 6, then a file path.
	nested := gptPartition(t, part, disk)
	path := []byte{'\\', 0, 'v', 0, '.', 0, 'v', 0, 'h', 0, 'd', 0, 0, 0}
	fp := make([]byte, 12)
	binary.LittleEndian.PutUint32(fp[0:], 1)
	binary.LittleEndian.PutUint32(fp[4:], uint32(12+len(nested)+len(path)))
	binary.LittleEndian.PutUint32(fp[8:], 5)
	fp = append(append(fp, nested...), path...)
	vhdPayload := append([]byte{6, 0, 0, 0, 0, 0, 0, 0}, fp...)
	vhd := append(make([]byte, 16), descriptor(DeviceLocal, vhdPayload)...)
	// A locate device with a parent partition right after its (empty) path.
	locPayload := make([]byte, 14)
	binary.LittleEndian.PutUint32(locPayload[4:], 0x12000002)
	binary.LittleEndian.PutUint32(locPayload[8:], uint32(16+len(locPayload)+2))
	locPayload = append(locPayload, 0, 0)
	locPayload = append(locPayload, gptPartition(t, part, disk)...)
	locate := append(make([]byte, 16), descriptor(DeviceLocate, locPayload)...)

	d, err := DecodeDevice(wholeDisk)
	if err != nil || d.Descriptor.Partition == nil || !d.Descriptor.Partition.WholeDisk || d.Descriptor.Partition.Signature != 0xcafef00d {
		t.Fatalf("whole disk: %v %v", d, err)
	}
	d, err = DecodeDevice(vhd)
	if err != nil || d.Descriptor.Local.Type != LocalVirtualDisk || d.Descriptor.Local.File.Path != `\v.vhd` ||
		d.Descriptor.Local.File.Device.Partition.PartitionGUID != part {
		t.Fatalf("vhd: %v %v", d, err)
	}
	d, err = DecodeDevice(locate)
	if err != nil || d.Descriptor.Locate.Parent == nil || d.Descriptor.Locate.Parent.Partition.DiskGUID != disk {
		t.Fatalf("locate with parent: %v %v", d, err)
	}

	newDisk, newPart := "DDDDDDDD-0000-4000-8000-000000000001", "EEEEEEEE-0000-4000-8000-000000000002"
	gm, _ := NewDiskMap([]Identity{{What: "disk GUID", Old: disk, New: newDisk}, {What: "partition GUID", Old: part, New: newPart}}, nil)
	mm, _ := NewDiskMap([]Identity{{What: "disk signature", Old: "cafef00d", New: "0d15ea5e"}}, []Move{{OldStart: 1 << 20, NewStart: 1 << 21}})
	m := Mapping{Disks: []DiskMap{gm, mm}}
	for name, b := range map[string][]byte{"whole disk": wholeDisk, "vhd": vhd, "locate": locate} {
		d, _ := DecodeDevice(b)
		data := append([]byte(nil), b...)
		rep := &Report{}
		changed := false
		d.Walk(func(where string, x *Descriptor) {
			if r := m.apply(x, data, Change{Where: where}, rep, &changed); r != "" {
				t.Errorf("%s %s: untouched: %s", name, where, r)
			}
		})
		if !changed {
			t.Errorf("%s: nothing changed", name)
		}
		d2, err := DecodeDevice(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		d2.Walk(func(where string, x *Descriptor) {
			p := x.Partition
			switch {
			case p == nil:
			case p.Style == StyleMBR && p.Signature != 0x0d15ea5e:
				t.Errorf("%s %s: signature %08x", name, where, p.Signature)
			case p.Style == StyleGPT && (p.DiskGUID != newDisk || p.PartitionGUID != newPart):
				t.Errorf("%s %s: %s", name, where, p)
			}
		})
	}
}

// TestIdentityFromPlan: a layout plan's identities convert to ours as they are (same fields), so
// the inoculation code fills a DiskMap straight from partition.LayoutPlan.
func TestIdentityFromPlan(t *testing.T) {
	plan := partition.LayoutPlan{
		Identities: []partition.Identity{
			{What: "disk signature", Old: "ddba6bbb", New: "0badcafe"},
		},
		Moves: []partition.Move{{Number: 1, OldStart: 1 << 20, NewStart: 2 << 20}},
	}
	var ids []Identity
	for _, id := range plan.Identities {
		ids = append(ids, Identity(id))
	}
	var moves []Move
	for _, mv := range plan.Moves {
		moves = append(moves, Move{OldStart: mv.OldStart, NewStart: mv.NewStart})
	}
	dm, err := NewDiskMap(ids, moves)
	if err != nil {
		t.Fatal(err)
	}
	if !dm.HasSignature || dm.OldSignature != 0xddba6bbb || dm.NewSignature != 0x0badcafe || dm.Starts[1<<20] != 2<<20 {
		t.Errorf("disk map %+v", dm)
	}
}
