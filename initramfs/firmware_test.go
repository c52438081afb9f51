package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/u-root/mkuimage/cpio"
)

// A host with Debian entries in both formats, next to other vendors' entries, source entries,
// disabled ones and a disc: only the Debian binary entries with main become non-free-firmware
// entries, with their mirrors and Signed-By kept.
const hostDeb822 = `Types: deb deb-src
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates bookworm-backports
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Targets: Packages Translations
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEY865UxYJKwYBBAHaRw8BAQdAd7Z0srwuhlB6JKFkcf4HU4SSS/xcRfwEQWzr
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
URIs: https://deb.nodesource.com/node_20.x
Suites: nodistro
Components: main
Signed-By: /usr/share/keyrings/nodesource.gpg

Enabled: no
Types: deb
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
`

const hostOneLine = `# /etc/apt/sources.list of an older installation
deb http://ftp.de.debian.org/debian bookworm main contrib non-free non-free-firmware
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://security.debian.org/debian-security bookworm-security main
deb [ arch=amd64 target=Packages ] http://ftp.de.debian.org/debian bookworm-updates main # the updates
deb-src http://ftp.de.debian.org/debian bookworm main
deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main
deb http://ftp.de.debian.org/debian bookworm contrib
deb cdrom:[Debian GNU/Linux 12.0.0 _Bookworm_ - Official amd64 DVD Binary-1 20230610-10:23]/ bookworm contrib main
#deb http://ftp.de.debian.org/debian bookworm-proposed-updates main
`

func TestSourcesDerive(t *testing.T) {
	list, sources := deriveFirmwareSources("bookworm", []hostSource{
		{name: "/etc/apt/sources.list", data: []byte(hostOneLine)},
		{name: "/etc/apt/sources.list.d/debian.sources", data: []byte(hostDeb822)},
		{name: "/etc/apt/sources.list.d/again.sources", data: []byte(hostDeb822)}, // duplicates go once
	})
	wantList := `deb [target=Packages,CauldronContents] http://ftp.de.debian.org/debian bookworm non-free-firmware  # from /etc/apt/sources.list
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg target=Packages,CauldronContents] http://security.debian.org/debian-security bookworm-security non-free-firmware  # from /etc/apt/sources.list
deb [arch=amd64 target=Packages,CauldronContents] http://ftp.de.debian.org/debian bookworm-updates non-free-firmware  # from /etc/apt/sources.list
`
	wantSources := `# from /etc/apt/sources.list.d/debian.sources
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
Targets: Packages CauldronContents

# from /etc/apt/sources.list.d/debian.sources
Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: non-free-firmware
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mDMEY865UxYJKwYBBAHaRw8BAQdAd7Z0srwuhlB6JKFkcf4HU4SSS/xcRfwEQWzr
 -----END PGP PUBLIC KEY BLOCK-----
Targets: Packages CauldronContents
`
	if string(list) != wantList {
		t.Errorf("one-line list:\n%s\nwant:\n%s", list, wantList)
	}
	if string(sources) != wantSources {
		t.Errorf("deb822 sources:\n%s\nwant:\n%s", sources, wantSources)
	}

	// Another release's host keeps nothing of these.
	if l, s := deriveFirmwareSources("trixie", []hostSource{{name: "a.list", data: []byte(hostOneLine)},
		{name: "b.sources", data: []byte(hostDeb822)}}); len(l)+len(s) != 0 {
		t.Errorf("trixie host derived entries from bookworm ones:\n%s%s", l, s)
	}

	// apt itself must read what was derived (only the file-path keys are placeholders here).
	if _, err := exec.LookPath("apt-get"); err != nil {
		testenv.SkipOrFail(t, "apt-get is not installed")
	}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "sources.list.d"), 0o755)
	os.MkdirAll(filepath.Join(dir, "lists", "partial"), 0o755)
	os.MkdirAll(filepath.Join(dir, "cache", "archives", "partial"), 0o755)
	os.WriteFile(filepath.Join(dir, "sources.list"), list, 0o644)
	os.WriteFile(filepath.Join(dir, "sources.list.d", "cauldron.sources"), sources, 0o644)
	os.WriteFile(filepath.Join(dir, "status"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "apt.conf"), firmwareAptConf(dir), 0o644)
	out, err := exec.Command("apt-get", "-c", filepath.Join(dir, "apt.conf"), "indextargets",
		"--no-release-info", "--format", "$(SITE) $(RELEASE) $(COMPONENT) $(CREATED_BY)").CombinedOutput()
	if err != nil || strings.Contains(string(out), "E:") {
		t.Fatalf("apt-get indextargets with the derived sources: %v\n%s", err, out)
	}
	for _, want := range []string{
		"http://ftp.de.debian.org/debian bookworm non-free-firmware Packages",
		"http://ftp.de.debian.org/debian bookworm non-free-firmware " + contentsTarget,
		"http://security.debian.org/debian-security bookworm-security non-free-firmware Packages",
		"http://deb.debian.org/debian bookworm-updates non-free-firmware " + contentsTarget,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("apt sees no index target %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{" main ", "Translations", "nodesource", "backports", "cloud"} {
		if strings.Contains(string(out), bad) {
			t.Errorf("apt would fetch %q:\n%s", bad, out)
		}
	}
}

// hostAptState fingerprints the host's apt configuration, lists and cache, to prove build-media's
// own apt leaves them alone.
func hostAptState(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, root := range []string{"/etc/apt", "/var/lib/apt/lists", "/var/cache/apt"} {
		filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			fi, err := os.Lstat(p)
			if err != nil {
				return nil
			}
			sum := ""
			if fi.Mode().IsRegular() && strings.HasPrefix(p, "/etc/") {
				data, _ := os.ReadFile(p)
				h := sha256.Sum256(data)
				sum = hex.EncodeToString(h[:])
			}
			fmt.Fprintf(&b, "%s %v %d %d %s\n", p, fi.Mode(), fi.Size(), fi.ModTime().UnixNano(), sum)
			return nil
		})
	}
	return b.String()
}

func testBuilder(t *testing.T) (*builder, *bytes.Buffer) {
	var log bytes.Buffer
	return &builder{ctx: context.Background(), cache: t.TempDir(), log: &log}, &log
}

// TestFirmwareApt runs build-media's own apt against the host's mirrors: it finds the packages
// that hold the NIC firmware, downloads one, and changes nothing of the host's apt.
func TestFirmwareApt(t *testing.T) {
	if testing.Short() {
		t.Skip("downloads Debian's non-free-firmware lists: not in -short")
	}
	testenv.NeedTools(t, "apt-get", "apt-cache", "apt-config", "dpkg")
	before := hostAptState(t)
	b, log := testBuilder(t)
	a, err := b.openFirmwareApt(b.hostSourceFiles())
	if err != nil {
		testenv.SkipOrFail(t, "Debian non-free-firmware cannot be reached from here: %v\n%s", err, log)
	}
	defer a.close()
	t.Logf("%s", log)
	if !strings.Contains(log.String(), "refreshing") {
		t.Errorf("a new cache's lists were not fetched")
	}
	lists, _ := filepath.Glob(filepath.Join(b.cache, "apt", "lists", "*non-free-firmware*Packages"))
	if len(lists) == 0 {
		t.Fatalf("no non-free-firmware Packages index in %s", filepath.Join(b.cache, "apt", "lists"))
	}

	want := map[string]string{
		"rtl_nic/rtl8168h-2.fw":                   "firmware-realtek",
		"rtl_nic/rtl8156b-2.fw":                   "firmware-realtek",
		"bnx2/bnx2-mips-09-6.2.1b.fw":             "firmware-bnx2",
		"bnx2x/bnx2x-e2-7.13.21.0.fw":             "firmware-bnx2x",
		"qed/qed_init_values_zipped-8.59.1.0.bin": "firmware-qlogic",
		"tigon/tg3_tso5.bin":                      "firmware-misc-nonfree",
		"intel/ice/ddp/ice.pkg":                   "firmware-misc-nonfree",
	}
	holders, err := b.firmwareContents(a, append(sortedKeys(want), "cauldron/no-such-firmware.bin"))
	if err != nil {
		t.Fatal(err)
	}
	for fw, pkg := range want {
		if !slices.Contains(holders[fw], pkg) {
			t.Errorf("%s: Contents says %v, want %s", fw, holders[fw], pkg)
		}
	}
	if len(holders) != len(want) {
		t.Errorf("Contents lookup found %d files, want %d: %v", len(holders), len(want), holders)
	}

	// A package through the private configuration: verified by SHA-256, unpacked, the file inside.
	deb, version, err := b.fetchDebFrom(a, "firmware-realtek")
	if err != nil {
		t.Fatal(err)
	}
	root, err := b.unpackDeb(deb, false)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(root, "lib/firmware/rtl_nic/rtl8168h-2.fw")); err != nil || fi.Size() == 0 {
		t.Errorf("firmware-realtek %s holds no rtl_nic/rtl8168h-2.fw: %v", version, err)
	}
	// The host's apt does not know the component: the private lists did the work.
	if out, err := exec.Command("apt-cache", "show", "--no-all-versions", "firmware-realtek").CombinedOutput(); err == nil && len(out) > 0 {
		t.Logf("note: the host's own apt sources carry non-free-firmware too")
	}
	a.close()

	// Fresh lists are not fetched again by the next build.
	log.Reset()
	a2, err := b.openFirmwareApt(b.hostSourceFiles())
	if err != nil {
		t.Fatal(err)
	}
	a2.close()
	if strings.Contains(log.String(), "refreshing") {
		t.Errorf("fresh lists were fetched again:\n%s", log)
	}

	// Day-old lists are refreshed; when that fails (here: apt's HTTP proxy is a closed port),
	// the build goes on with them.
	old := time.Now().Add(-2 * firmwareAptMaxAge)
	os.Chtimes(filepath.Join(b.cache, "apt", "updated"), old, old)
	t.Setenv("http_proxy", "http://127.0.0.1:9")
	log.Reset()
	a3, err := b.openFirmwareApt(b.hostSourceFiles())
	if err != nil {
		t.Fatalf("a failed refresh with lists at hand failed: %v", err)
	}
	switch {
	case !strings.Contains(log.String(), "refreshing"):
		t.Errorf("day-old lists were not refreshed:\n%s", log)
	case !strings.Contains(log.String(), "refreshing the lists failed, using those from"):
		// Only a proxy in the host's apt configuration, which outranks $http_proxy, lets the
		// refresh through; otherwise the fallback was not exercised and that is a failure.
		if out, _ := exec.Command("apt-config", "dump", "Acquire::http::Proxy").Output(); !strings.Contains(string(out), "Proxy") {
			t.Errorf("the refresh got through a closed proxy port; the fallback to old lists was not tested:\n%s", log)
		} else {
			testenv.SkipOrFail(t, "the host's apt has a proxy of its own (%s); the failed-refresh fallback cannot be tested here", strings.TrimSpace(string(out)))
		}
	default:
		if h, err := b.firmwareContents(a3, []string{"rtl_nic/rtl8168h-2.fw"}); err != nil || len(h) != 1 {
			t.Errorf("the old lists are not usable after a failed refresh: %v %v", h, err)
		}
	}
	a3.close()
	if after := hostAptState(t); after != before {
		t.Errorf("the host's apt configuration, lists or cache changed")
	}
}

// TestFirmwareUnreachable: when non-free-firmware cannot be reached, the files are reported
// missing and the build is not failed.
func TestFirmwareUnreachable(t *testing.T) {
	testenv.NeedTools(t, "apt-get", "apt-cache", "apt-config")
	b, log := testBuilder(t)
	src := filepath.Join(t.TempDir(), "sources.list")
	// A closed port on loopback: refused at once, nothing leaves the machine.
	os.WriteFile(src, []byte("deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://127.0.0.1:9/debian bookworm main\n"), 0o644)
	want := []string{"bnx2x/bnx2x-e2-7.13.21.0.fw", "rtl_nic/rtl8168h-2.fw"}
	tr := newTree()
	m := &Media{}
	missing, err := b.addNonFreeFirmware(tr, want, m, []string{src})
	if err != nil {
		t.Fatalf("an unreachable non-free-firmware failed the build: %v", err)
	}
	if !slices.Equal(missing, want) || len(m.Firmware) != 0 || tr.has("lib/firmware") {
		t.Errorf("missing %v, included %v; want everything missing, nothing included", missing, m.Firmware)
	}
	if !strings.Contains(log.String(), "non-free-firmware not available") || !strings.Contains(log.String(), "127.0.0.1:9") {
		t.Errorf("the log does not say why:\n%s", log)
	}

	// Host sources with no Debian entry at all: the same, without trying the network.
	os.WriteFile(src, []byte("deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"), 0o644)
	log.Reset()
	if missing, err := b.addNonFreeFirmware(tr, want, m, []string{src}); err != nil || !slices.Equal(missing, want) {
		t.Errorf("without Debian entries: missing %v, err %v", missing, err)
	}
	if !strings.Contains(log.String(), "no Debian") {
		t.Errorf("the log does not say why:\n%s", log)
	}
}

// TestFirmwareInImage checks the built image: the NIC drivers that need non-free firmware are in,
// with the files they declare, and MissingFirmware lists none of what non-free-firmware has.
func TestFirmwareInImage(t *testing.T) {
	buildFixture(t)
	m := fixture.a
	if slices.Contains(m.MissingFirmware, "rtl_nic/rtl8168h-2.fw") {
		testenv.SkipOrFail(t, "the build could not use Debian non-free-firmware (see the build log); missing: %v", m.MissingFirmware)
	}
	e := initramfsEntries(t, m)
	kdir := path.Join("lib/modules", m.KernelVersion)
	dep := content(t, e[path.Join(kdir, "modules.dep")])
	for _, mod := range []string{"bnx2", "bnx2x", "qede", "qed", "r8169", "tg3", "ice"} {
		if !regexp.MustCompile(`(?m)^kernel/\S+/` + mod + `\.ko\.zst:`).MatchString(dep) {
			t.Errorf("module %s not in the image's modules.dep", mod)
		}
	}
	for _, mod := range []string{"qla2xxx", "lpfc", "be2iscsi"} {
		if regexp.MustCompile(`(?m)/` + mod + `\.ko\.zst:`).MatchString(dep) {
			t.Errorf("module %s is in the image, but FC/iSCSI HBAs are left out on purpose", mod)
		}
	}
	regular := func(p string) []byte {
		r, ok := e[p]
		if !ok || r.Mode&cpio.S_IFMT != cpio.S_IFREG || r.FileSize == 0 {
			t.Errorf("%s: no regular file in the initramfs", p)
			return nil
		}
		return []byte(content(t, r))
	}
	for _, fw := range []string{"rtl_nic/rtl8168h-2.fw", "rtl_nic/rtl8153b-2.fw", "bnx2/bnx2-mips-09-6.2.1b.fw",
		"bnx2x/bnx2x-e2-7.13.21.0.fw", "bnx2x/bnx2x-e1h-7.13.15.0.fw", "qed/qed_init_values_zipped-8.59.1.0.bin",
		"tigon/tg3_tso5.bin"} {
		regular(path.Join("lib/firmware", fw))
		if !slices.Contains(m.Firmware, fw) {
			t.Errorf("Media.Firmware lacks %s", fw)
		}
	}
	// ice.pkg is a symlink in the package: it stays one, and its file comes along.
	if r, ok := e["lib/firmware/intel/ice/ddp/ice.pkg"]; !ok || r.Mode&cpio.S_IFMT != cpio.S_IFLNK {
		t.Errorf("lib/firmware/intel/ice/ddp/ice.pkg is not a symlink in the image")
	} else {
		target := path.Join("lib/firmware/intel/ice/ddp", content(t, r))
		if data := regular(target); len(data) < 100000 {
			t.Errorf("%s → %s: %d bytes, not a DDP package", "ice.pkg", target, len(data))
		}
	}
	for _, fw := range m.MissingFirmware {
		for _, prefix := range []string{"rtl_nic/", "bnx2/", "bnx2x/", "qed/", "tigon/", "intel/ice/"} {
			if strings.HasPrefix(fw, prefix) {
				t.Errorf("Media.MissingFirmware lists %s, which non-free-firmware has", fw)
			}
		}
	}
	// Nothing but declared files and what they link to: no whole packages.
	declared := map[string]bool{}
	for _, fw := range m.Firmware {
		declared[path.Join("lib/firmware", fw)] = true
	}
	for p, r := range e {
		if strings.HasPrefix(p, "lib/firmware/") && r.Mode&cpio.S_IFMT != cpio.S_IFDIR && !declared[p] {
			t.Errorf("%s is in the image but not in Media.Firmware", p)
		}
	}
	t.Logf("firmware included (%d): %s", len(m.Firmware), strings.Join(m.Firmware, " "))
	t.Logf("firmware missing (%d): %s", len(m.MissingFirmware), strings.Join(m.MissingFirmware, " "))
}
