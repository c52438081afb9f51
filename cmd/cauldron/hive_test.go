package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/corpus"
	"github.com/cauldron-dr/cauldron/internal/testenv"
)

// The hive commands run in-process through newHive(), so they are tested whether or not the
// root command has registered them yet.
func hive(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	cmd := newHive()
	var out, errb bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errb)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.Execute()
	return out.String(), errb.String(), err
}

func hiveOK(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, err := hive(t, args...)
	if err != nil {
		t.Fatalf("hive %s: %v\n%s%s", strings.Join(args, " "), err, out, errs)
	}
	return out
}

// corpusPath copies a shared corpus file (decompressed) into dir, where the tests want it beside
// others (a hive and its logs).
func corpusPath(t *testing.T, rel, dir string) string {
	t.Helper()
	data, err := os.ReadFile(corpus.File(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, strings.TrimSuffix(filepath.Base(rel), ".xz"))
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestHiveCheck(t *testing.T) {
	dir := t.TempDir()
	if out := hiveOK(t, "check", corpusPath(t, "bcd/windeploy-BCD-bios", dir)); !strings.Contains(out, "ok") {
		t.Fatalf("check output %q", out)
	}
	out, _, err := hive(t, "check", corpusPath(t, "hives/regipy-SYSTEM_WIN_10_1709.xz", dir))
	if err == nil || !strings.Contains(out, "dirty") {
		t.Fatalf("a dirty hive passed check: %v %q", err, out)
	}
	_, _, err = hive(t, "check", corpusPath(t, "hives/regipy-corrupted_system_hive.xz", dir))
	if err == nil || !strings.Contains(err.Error(), "file offset 0x1a000") {
		t.Fatalf("corrupted hive: %v", err)
	}
	out, _, err = hive(t, "check", corpusPath(t, "hives/yarp/WrongOrderHive", dir))
	if err == nil || !strings.Contains(out, "not sorted") {
		t.Fatalf("unsorted hive: %v %q", err, out)
	}
}

func TestHiveExportMatchesHivexregedit(t *testing.T) {
	testenv.NeedTools(t, "hivexregedit")
	dir := t.TempDir()
	p := corpusPath(t, "bcd/regipy-BCD-uefi.xz", dir)
	for _, key := range []string{`\`, `\Objects`} {
		want, err := exec.Command("hivexregedit", "--export", p, key).Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := hiveOK(t, "export", p, key); got != string(want) {
			t.Fatalf("export %s differs from hivexregedit --export", key)
		}
	}
}

func TestHiveSetGetDelete(t *testing.T) {
	testenv.NeedTools(t, "hivexget")
	dir := t.TempDir()
	p := corpusPath(t, "hives/hivex-minimal", dir)
	svc := `ControlSet001\Services\viostor`
	hiveOK(t, "set", p, svc, "Start", "REG_DWORD", "0")
	hiveOK(t, "set", p, svc, "ImagePath", "REG_EXPAND_SZ", `system32\drivers\viostor.sys`)
	hiveOK(t, "set", p, svc, "Group", "REG_SZ", "SCSI miniport")
	hiveOK(t, "set", p, svc, "DependOnService", "REG_MULTI_SZ", "a", "Ключ")
	hiveOK(t, "set", p, svc, "Q", "REG_QWORD", "0x1122334455667788")
	hiveOK(t, "set", p, svc, "B", "REG_BINARY", "01,ff,00")
	hiveOK(t, "set", p, svc, "N", "REG_NONE")
	hiveOK(t, "set", p, `DriverDatabase\DeviceIds\PCI\VEN_1AF4&DEV_1001`, "viostor.inf", "REG_BINARY", "01 ff 00 00")
	for _, c := range []struct{ key, val, want string }{
		{svc, "Start", "0"},
		{svc, "ImagePath", `system32\drivers\viostor.sys`},
		{svc, "Group", "SCSI miniport"},
		{svc, "Q", "1234605616436508552"},
	} {
		if got := strings.TrimSpace(hiveOK(t, "get", p, c.key, c.val)); got != c.want {
			t.Fatalf("get %s = %q, want %q", c.val, got, c.want)
		}
		out, err := exec.Command("hivexget", p, c.key, c.val).Output()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Fatalf("hivexget %s = %q (%v), want %q", c.val, out, err, c.want)
		}
	}
	if got := hiveOK(t, "get", p, strings.ToUpper(svc), "dependonservice"); got != "a\nКлюч\n" {
		t.Fatalf("multi-sz, case-insensitive lookup: %q", got)
	}
	if got := strings.TrimSpace(hiveOK(t, "get", p, `driverdatabase\deviceids\pci\ven_1af4&dev_1001`, "viostor.inf")); got != "01ff0000" {
		t.Fatalf("binary: %q", got)
	}
	hiveOK(t, "delete", p, svc, "Q")
	if _, _, err := hive(t, "get", p, svc, "Q"); err == nil {
		t.Fatal("deleted value still there")
	}
	hiveOK(t, "delete", p, `DriverDatabase`)
	if out, err := exec.Command("hivexget", p, `DriverDatabase`).CombinedOutput(); err == nil {
		t.Fatalf("hivexget still finds the deleted key: %s", out)
	}
	hiveOK(t, "check", p)
	if _, _, err := hive(t, "set", p, svc, "X", "REG_DWORD", "notanumber"); err == nil {
		t.Fatal("bad DWORD accepted")
	}
	if _, _, err := hive(t, "set", p, svc, "X", "REG_FOO", "1"); err == nil {
		t.Fatal("unknown type accepted")
	}
}

func TestHiveImportRoundTrip(t *testing.T) {
	dir := t.TempDir()
	src := corpusPath(t, "bcd/windeploy-BCD-efi", dir)
	text := hiveOK(t, "export", src)
	reg := filepath.Join(dir, "bcd.reg")
	if err := os.WriteFile(reg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := corpusPath(t, "hives/hivex-minimal", dir)
	hiveOK(t, "import", fresh, reg)
	hiveOK(t, "check", fresh)
	if again := hiveOK(t, "export", fresh); again != text {
		t.Fatal("export → import → export changed the text")
	}
	// A prefixed file (virt-v2v's) needs --prefix.
	sys := corpusPath(t, "reg/v2v-windows-system.reg", dir)
	if _, _, err := hive(t, "import", fresh, sys); err == nil {
		t.Fatal("HKEY_ paths imported without --prefix")
	}
	hiveOK(t, "import", "--prefix", `HKEY_LOCAL_MACHINE\SYSTEM`, fresh, sys)
	hiveOK(t, "get", fresh, `Select`)
}

func TestHiveDirty(t *testing.T) {
	dir := t.TempDir()
	// No logs: refused, saying why.
	p := corpusPath(t, "hives/regipy-SYSTEM_WIN_10_1709.xz", dir)
	before, _ := os.ReadFile(p)
	_, _, err := hive(t, "set", p, `ControlSet001\Services\x`, "Start", "REG_DWORD", "0")
	if err == nil || !strings.Contains(err.Error(), "no transaction logs") {
		t.Fatalf("dirty hive without logs: %v", err)
	}
	if after, _ := os.ReadFile(p); !bytes.Equal(before, after) {
		t.Fatal("the refused hive was changed")
	}
	// With logs: replay makes it clean, empties the logs, and matches Windows' own recovery.
	nd := filepath.Join(dir, "nd")
	os.Mkdir(nd, 0o755)
	h := corpusPath(t, "hives/yarp/NewDirtyHive1/NewDirtyHive", nd)
	corpusPath(t, "hives/yarp/NewDirtyHive1/NewDirtyHive.LOG1", nd)
	corpusPath(t, "hives/yarp/NewDirtyHive1/NewDirtyHive.LOG2", nd)
	rec := corpusPath(t, "hives/yarp/NewDirtyHive1/RecoveredHive_Windows10", nd)
	if _, _, err := hive(t, "check", h); err == nil {
		t.Fatal("dirty hive passes check")
	}
	hiveOK(t, "replay", h)
	hiveOK(t, "check", h)
	if hiveOK(t, "export", h) != hiveOK(t, "export", rec) {
		t.Fatal("replayed hive differs from Windows' recovery")
	}
	if st, _ := os.Stat(h + ".LOG1"); st.Size() != 0 {
		t.Fatal("LOG1 not emptied")
	}
	// An edit of a dirty hive with logs replays first.
	od := filepath.Join(dir, "od")
	os.Mkdir(od, 0o755)
	h = corpusPath(t, "hives/yarp/OldDirtyHive/OldDirtyHive", od)
	corpusPath(t, "hives/yarp/OldDirtyHive/OldDirtyHive.LOG1", od)
	_, errs, err := hive(t, "set", h, `new`, "v", "REG_DWORD", "1")
	if err != nil || !strings.Contains(errs, "replayed") {
		t.Fatalf("edit of a dirty hive with logs: %v %q", err, errs)
	}
	hiveOK(t, "check", h)
}
