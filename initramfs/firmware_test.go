package initramfs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
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

// hostAptState fingerprints the host's apt configuration, lists and cache, to prove cauldron-media's
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

// TestFirmwareApt runs cauldron-media's own apt against a fake Debian archive on loopback: a new
// cache's lists are fetched, the Contents index names the packages that hold firmware files, a
// package is downloaded and unpacked, fresh lists are kept, day-old ones are refreshed, a failed
// refresh falls back to the old ones, and nothing of the host's apt changes.
func TestFirmwareApt(t *testing.T) {
	testenv.NeedTools(t, "apt-get", "apt-cache", "apt-config", "dpkg", "dpkg-deb")
	before := hostAptState(t)
	codename := hostCodename()
	fa := newFakeArchive(t, codename, dpkgArchitecture(t))
	keepAptOffProxies(t)
	realtek := func(version string, files map[string]string) fakePackage {
		files["lib/firmware/shared/both.fw"] = "held by two packages\n"
		files["usr/share/doc/firmware-fake-realtek/copyright"] = "not firmware\n"
		return fakePackage{name: "firmware-fake-realtek", version: version, files: files}
	}
	misc := fakePackage{name: "firmware-fake-misc", version: "1", files: map[string]string{
		"lib/firmware/shared/both.fw":     "held by two packages\n",
		"usr/lib/firmware/tigon/test.bin": "under /usr/lib/firmware\n",
	}}
	fa.publish([]fakePackage{realtek("1", map[string]string{"lib/firmware/rtl_nic/test.fw": "version 1\n"}), misc})

	// The host's sources as the test writes them: trusted=yes is carried over to the derived
	// entry, so the unsigned Release is accepted.
	host := filepath.Join(t.TempDir(), "sources.list")
	if err := os.WriteFile(host, []byte(fmt.Sprintf("deb [trusted=yes] %s %s main\n", fa.url(), codename)), 0o644); err != nil {
		t.Fatal(err)
	}
	b, log := testBuilder(t)
	// The cache as cauldron-media makes it (0755), not t.TempDir's 0700: apt's download methods run
	// as its sandbox user _apt, which must reach the lists.
	if err := os.Chmod(filepath.Dir(b.cache), 0o755); err != nil {
		t.Fatal(err)
	}
	open := func(what string) *firmwareApt {
		t.Helper()
		log.Reset()
		t0 := time.Now()
		a, err := b.openFirmwareApt([]string{host})
		if err != nil {
			t.Fatalf("%s: %v\n%s", what, err, log)
		}
		t.Logf("%s (%v):\n%s", what, time.Since(t0), log)
		return a
	}
	stale := func() {
		old := time.Now().Add(-2 * firmwareAptMaxAge)
		if err := os.Chtimes(filepath.Join(b.cache, "apt", "updated"), old, old); err != nil {
			t.Fatal(err)
		}
	}
	contents := func(a *firmwareApt, want map[string][]string) {
		t.Helper()
		holders, err := b.firmwareContents(a, append(sortedKeys(want), "cauldron/no-such-firmware.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if !maps.EqualFunc(holders, want, slices.Equal) {
			t.Errorf("Contents lookup found %v, want %v", holders, want)
		}
	}
	fetch := func(a *firmwareApt, pkg, version, file, data string) {
		t.Helper()
		deb, got, err := b.fetchDebFrom(a, pkg)
		if err != nil {
			t.Fatal(err)
		}
		if got != version || fileSHA256(deb) != fa.debSHA256(pkg, version) {
			t.Errorf("fetched %s %s (SHA-256 %s), want version %s as published", pkg, got, fileSHA256(deb), version)
		}
		root, err := b.unpackDeb(deb, false)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(file))); err != nil || string(d) != data {
			t.Errorf("%s %s: %s holds %q (%v), want %q", pkg, version, file, d, err, data)
		}
	}

	a := open("a new cache")
	if !strings.Contains(log.String(), "refreshing") {
		t.Errorf("a new cache's lists were not fetched")
	}
	lists, _ := filepath.Glob(filepath.Join(b.cache, "apt", "lists", "*non-free-firmware*Packages"))
	if len(lists) == 0 {
		t.Fatalf("no non-free-firmware Packages index in %s", filepath.Join(b.cache, "apt", "lists"))
	}
	loopbackSourcesOnly(t, filepath.Join(b.cache, "apt"))
	fa.checkRequests("Release", "Packages.gz", "Contents-"+fa.arch+".gz")

	contents(a, map[string][]string{
		"rtl_nic/test.fw": {"firmware-fake-realtek"},
		"shared/both.fw":  {"firmware-fake-misc", "firmware-fake-realtek"},
		"tigon/test.bin":  {"firmware-fake-misc"},
	})
	// A package through the private configuration: verified by SHA-256, unpacked, the file inside.
	fetch(a, "firmware-fake-realtek", "1", "lib/firmware/rtl_nic/test.fw", "version 1\n")
	fa.checkRequests("firmware-fake-realtek_1_all.deb")
	// The host's apt does not know the package: the private lists did the work, and stayed private.
	if out, err := exec.Command("apt-cache", "show", "firmware-fake-realtek").CombinedOutput(); err == nil {
		t.Errorf("the host's apt knows the fake archive's package:\n%s", out)
	}
	a.close()

	// Fresh lists are not fetched again by the next build.
	open("fresh lists").close()
	if strings.Contains(log.String(), "refreshing") {
		t.Errorf("fresh lists were fetched again")
	}
	if r := fa.checkRequests(); len(r) > 0 {
		t.Errorf("fresh lists, yet apt asked the archive for %v", r)
	}

	// Day-old lists are refreshed: a new version published meanwhile is seen, with its new file.
	fa.publish([]fakePackage{realtek("2", map[string]string{
		"lib/firmware/rtl_nic/test.fw": "version 2\n",
		"lib/firmware/rtl_nic/new.fw":  "new in version 2\n",
	}), misc})
	stale()
	a = open("day-old lists")
	if !strings.Contains(log.String(), "refreshing") || strings.Contains(log.String(), "failed") {
		t.Errorf("day-old lists were not refreshed")
	}
	fa.checkRequests("Release", "Packages.gz", "Contents-"+fa.arch+".gz")
	contents(a, map[string][]string{"rtl_nic/new.fw": {"firmware-fake-realtek"}})
	fetch(a, "firmware-fake-realtek", "2", "lib/firmware/rtl_nic/new.fw", "new in version 2\n")
	fa.checkRequests("firmware-fake-realtek_2_all.deb")
	a.close()

	// When a refresh fails, the build goes on with the lists it has: first the mirror answers
	// 500 to everything, then nothing listens on its port any more.
	// apt retries a failed download three times, 1, 2 and 4 seconds apart; the fallback, not
	// apt's retrying, is what is tested here.
	addAptConfig(t, `Acquire::Retries "0";`)
	fa.setFailing(true)
	for _, failure := range []string{"a mirror answering 500", "a mirror gone"} {
		if failure == "a mirror gone" {
			fa.close()
		}
		stale()
		a = open("day-old lists and " + failure)
		if !strings.Contains(log.String(), "refreshing the lists failed, using those from") {
			t.Errorf("%s: the failed refresh is not logged as falling back to the old lists", failure)
		}
		contents(a, map[string][]string{"rtl_nic/new.fw": {"firmware-fake-realtek"}, "rtl_nic/test.fw": {"firmware-fake-realtek"}})
		a.close()
		if r := fa.checkRequests(); failure == "a mirror answering 500" && len(r) == 0 {
			t.Errorf("%s: apt did not even ask", failure)
		}
	}

	if after := hostAptState(t); after != before {
		t.Errorf("the host's apt configuration, lists or cache changed")
	}
}

// dpkgArchitecture is the host's architecture, the one apt asks the archive for.
func dpkgArchitecture(t *testing.T) string {
	out, err := exec.Command("dpkg", "--print-architecture").Output()
	if err != nil {
		t.Fatalf("dpkg --print-architecture: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// keepAptOffProxies makes apt go straight to the fake archive on a machine whose environment or
// apt configuration names an HTTP proxy, which would not reach this machine's loopback (or would
// make the test reach further). $no_proxy covers $http_proxy; apt's own Acquire::http::Proxy is
// outranked by a proxy for the host, here DIRECT.
func keepAptOffProxies(t *testing.T) {
	if os.Getenv("http_proxy") != "" {
		t.Setenv("no_proxy", "127.0.0.1")
	}
	out, err := exec.Command("apt-config", "shell", "P", "Acquire::http::Proxy", "A", "Acquire::http::Proxy-Auto-Detect",
		"D", "Acquire::http::Proxy::127.0.0.1").Output()
	if err != nil {
		t.Fatalf("apt-config: %v", err)
	}
	if !strings.Contains(string(out), "P=") && !strings.Contains(string(out), "A=") || strings.Contains(string(out), "D='DIRECT'") {
		return
	}
	t.Logf("apt has a proxy (%s): loopback goes around it", strings.Join(strings.Fields(string(out)), " "))
	addAptConfig(t, `Acquire::http::Proxy::127.0.0.1 "DIRECT";`)
}

// addAptConfig adds a line to the configuration every apt the test runs reads, through
// $APT_CONFIG: apt reads that file first and its usual configuration after, so nothing of the
// host's configuration is lost, and nothing of it changes. What an earlier call (or the caller's
// environment) put there is kept.
func addAptConfig(t *testing.T, line string) {
	var conf []byte
	if prev := os.Getenv("APT_CONFIG"); prev != "" {
		data, err := os.ReadFile(prev)
		if err != nil {
			t.Fatal(err)
		}
		conf = append(data, '\n')
	}
	conf = append(conf, line+"\n"...)
	f := filepath.Join(t.TempDir(), "apt.conf")
	if err := os.WriteFile(f, conf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("APT_CONFIG", f)
}

// loopbackSourcesOnly fails the test unless every address in the sources derived into dir is on
// 127.0.0.1, and checks trusted=yes was carried over (the fake archive is not signed).
func loopbackSourcesOnly(t *testing.T, dir string) {
	t.Helper()
	var all []byte
	for _, f := range []string{"sources.list", "sources.list.d/cauldron.sources"} {
		data, _ := os.ReadFile(filepath.Join(dir, f))
		all = append(all, data...)
	}
	urls := regexp.MustCompile(`[a-z][a-z0-9+.-]*://[^\s\]]+`).FindAllString(string(all), -1)
	if len(urls) == 0 {
		t.Errorf("no address in the derived sources:\n%s", all)
	}
	for _, s := range urls {
		if u, err := url.Parse(s); err != nil || u.Hostname() != "127.0.0.1" {
			t.Errorf("the derived sources name %s, not the fake archive on 127.0.0.1", s)
		}
	}
	if !strings.Contains(string(all), "trusted=yes") {
		t.Errorf("trusted=yes was not carried over to the derived sources:\n%s", all)
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
