package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// winVolume lays out a Windows 7 system volume in a folder (the command does not care whether it
// is an ntfs-3g mount; the package's tests use real NTFS images): the corpus SYSTEM hive, a
// SOFTWARE hive from virt-v2v's Windows 7 .reg text, the BIOS BCD store and stand-in inbox
// driver files.
func winVolume(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	src := t.TempDir()
	cfg := filepath.Join(root, "Windows", "System32", "config")
	os.MkdirAll(cfg, 0o755)
	os.MkdirAll(filepath.Join(root, "Windows", "System32", "drivers"), 0o755)
	os.MkdirAll(filepath.Join(root, "Boot"), 0o755)
	copyTo := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyTo(corpusPath(t, "hives/regipy-SYSTEM.xz", src), filepath.Join(cfg, "SYSTEM"))
	copyTo(corpusPath(t, "bcd/windeploy-BCD-bios", src), filepath.Join(root, "Boot", "BCD"))
	soft := filepath.Join(cfg, "SOFTWARE")
	copyTo(corpusPath(t, "hives/hivex-minimal", src), soft)
	f, err := os.Open(corpusPath(t, "reg/v2v-win7-32-software.reg", src))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ops, err := regf.ParseReg(f, `HKEY_LOCAL_MACHINE\SOFTWARE`)
	if err != nil {
		t.Fatal(err)
	}
	h, err := regf.Open(soft)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Import(ops); err != nil {
		t.Fatal(err)
	}
	if err := h.Save(""); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"msahci", "pciide", "atapi", "intelide"} {
		os.WriteFile(filepath.Join(root, "Windows", "System32", "drivers", d+".sys"), []byte("MZ"), 0o644)
	}
	return root
}

func dirHash(t *testing.T, root string) string {
	t.Helper()
	var b bytes.Buffer
	filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(p)
		if fi.Mode().IsRegular() {
			d, _ := os.ReadFile(p)
			b.Write(d)
		}
		return nil
	})
	return string(b.Bytes())
}

func TestInoculateCommand(t *testing.T) {
	testenv.NeedTools(t, "hivexget")
	root := winVolume(t)
	sys := filepath.Join(root, "Windows", "System32", "config", "SYSTEM")

	out := ok(t, nil, "inoculate", "--root", root, "--detect")
	if !strings.Contains(out, "Windows 7") || !strings.Contains(out, "ControlSet002") || !strings.Contains(out, "firmware bios") {
		t.Errorf("--detect:\n%s", out)
	}

	before := dirHash(t, root)
	out = ok(t, nil, "inoculate", "--root", root, "--hardware", "ahci", "--dry-run", "--json")
	var rep struct {
		DryRun   bool
		Drivers  []struct{ Service, Source string }
		Registry []struct {
			Key, Value, Before, After string
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	if !rep.DryRun || len(rep.Drivers) != 1 || rep.Drivers[0].Service != "msahci" || rep.Drivers[0].Source != "inbox" || len(rep.Registry) < 2 {
		t.Fatalf("dry-run report %+v", rep)
	}
	if dirHash(t, root) != before {
		t.Fatal("--dry-run changed the volume")
	}

	// A layout plan as `cauldron layout plan --json` writes it: new signature, C: moved.
	plan := filepath.Join(t.TempDir(), "plan.json")
	os.WriteFile(plan, []byte(`{"moves":[{"number":1,"kind":"primary","oldStart":1048576,"oldSize":1,"newStart":2097152,"newSize":1}],
		"identities":[{"what":"disk signature","old":"5cbea03e","new":"0badcafe"}]}`), 0o644)
	out = ok(t, nil, "inoculate", "--root", root, "--hardware", "ahci", "--plan", plan)
	if !strings.Contains(out, "msahci") || !strings.Contains(out, "MountedDevices") {
		t.Errorf("report:\n%s", out)
	}
	for _, cs := range []string{"ControlSet001", "ControlSet002"} {
		if v, err := exec.Command("hivexget", sys, cs+`\Services\msahci`, "Start").Output(); err != nil || strings.TrimSpace(string(v)) != "0" {
			t.Errorf("%s msahci Start = %q (%v)", cs, v, err)
		}
	}
	c, _ := exec.Command("hivexget", sys, "MountedDevices", `\DosDevices\C:`).Output()
	want := binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint32(nil, 0x0badcafe), 2<<20)
	if !bytes.Equal(bytes.TrimSuffix(c, []byte("\n")), want) {
		t.Errorf("MountedDevices C: % x, want % x", c, want)
	}
	if _, err := os.Stat(sys + ".cauldron-backup"); err != nil {
		t.Errorf("no backup: %v", err)
	}

	// Bad input: a controller nothing drives; nothing written, one clear message, exit 1.
	before = dirHash(t, root)
	out, errs, code := cauldron(t, nil, "inoculate", "--root", root, "--hardware", "kvm-virtio-blk", "--drivers", t.TempDir())
	if code != 1 || !strings.Contains(errs, "no driver for virtio-blk") {
		t.Errorf("exit %d\n%s%s", code, out, errs)
	}
	if dirHash(t, root) != before {
		t.Error("a failed inoculation changed the volume")
	}
	sector := filepath.Join(t.TempDir(), "sector")
	os.WriteFile(sector, append([]byte("\xeb\x58\x90-FVE-FS-"), make([]byte, 501)...), 0o644)
	_, errs, code = cauldron(t, nil, "inoculate", "--root", root, "--hardware", "ahci", "--boot-sector", sector)
	if code != 1 || !strings.Contains(errs, "BitLocker") {
		t.Errorf("--boot-sector of a BitLocker volume: exit %d: %s", code, errs)
	}
	if dirHash(t, root) != before {
		t.Error("a refused inoculation changed the volume")
	}
	_, errs, code = cauldron(t, nil, "inoculate", "--root", root, "--hardware", "ahci", "--plan", sys)
	if code != 1 || !strings.Contains(errs, "not a layout plan") {
		t.Errorf("--plan of a non-plan: exit %d: %s", code, errs)
	}
}
