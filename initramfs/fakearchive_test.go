package initramfs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeArchive is a Debian archive with one suite and its non-free-firmware component, served over
// HTTP on loopback by the test process, so that cauldron-media's own apt can be tested without
// reaching a real mirror. It is laid out like deb.debian.org: an unsigned Release (the sources
// say trusted=yes), Packages and Contents only gzip-compressed, the .deb files under pool/.
type fakeArchive struct {
	t        *testing.T
	srv      *httptest.Server
	codename string
	arch     string // the host's dpkg architecture, the one apt asks for

	mu       sync.Mutex
	files    map[string][]byte // served paths (under /debian/) → content
	requests []fakeRequest
	failing  bool      // answer every request with 500
	date     time.Time // the Release's Date, moved on by each publish
}

// fakeRequest is one request the archive got, kept to prove what apt asked for and from where.
type fakeRequest struct {
	host, uri string // the Host header and the request-target as sent
	status    int
}

// fakePackage is a firmware package to publish: files maps paths in the package (lib/firmware/…)
// to their contents.
type fakePackage struct {
	name, version string
	files         map[string]string
}

const fakeArchiveRoot = "/debian/"

func newFakeArchive(t *testing.T, codename, arch string) *fakeArchive {
	fa := &fakeArchive{t: t, codename: codename, arch: arch, files: map[string][]byte{},
		// In the past, so that apt's Check-Date never finds it in the future; each publish moves
		// it on, as a mirror's does.
		date: time.Now().UTC().Add(-time.Hour).Truncate(time.Second)}
	fa.srv = httptest.NewServer(http.HandlerFunc(fa.serve)) // listens on 127.0.0.1
	t.Cleanup(fa.close)
	return fa
}

// url is the mirror's address for a sources entry.
func (fa *fakeArchive) url() string { return fa.srv.URL + strings.TrimSuffix(fakeArchiveRoot, "/") }

// close shuts the server down; from then on its port refuses connections.
func (fa *fakeArchive) close() { fa.srv.Close() }

func (fa *fakeArchive) serve(w http.ResponseWriter, r *http.Request) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	status := http.StatusOK
	data, ok := fa.files[strings.TrimPrefix(r.URL.Path, fakeArchiveRoot)]
	switch {
	case fa.failing:
		status = http.StatusInternalServerError
	case r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, fakeArchiveRoot) || !ok:
		status = http.StatusNotFound
		// apt tries InRelease and Release.gpg before it settles for an unsigned Release; anything
		// else it asks for and does not get is worth seeing when a test fails.
		if base := path.Base(r.URL.Path); base != "InRelease" && base != "Release.gpg" {
			fa.t.Logf("fake archive: unexpected request %s %s", r.Method, r.RequestURI)
		}
	}
	fa.requests = append(fa.requests, fakeRequest{host: r.Host, uri: r.RequestURI, status: status})
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	// No Last-Modified: apt then cannot get a 304 and always sees what is published now.
	w.Header().Set("Content-Length", fmt.Sprint(len(data)))
	w.Write(data)
}

// setFailing makes the archive answer every request with 500 Internal Server Error.
func (fa *fakeArchive) setFailing(failing bool) {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	fa.failing = failing
}

// takeRequests returns the requests since the last call.
func (fa *fakeArchive) takeRequests() []fakeRequest {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	r := fa.requests
	fa.requests = nil
	return r
}

// publish replaces what the archive serves with these packages: their .deb files (built with
// dpkg-deb), the Packages and Contents indexes and a Release naming both by SHA-256.
func (fa *fakeArchive) publish(pkgs []fakePackage) {
	t := fa.t
	t.Helper()
	files := map[string][]byte{}
	var packages bytes.Buffer
	contents := map[string][]string{} // path → section/package
	for _, p := range pkgs {
		deb := buildFakeDeb(t, p)
		pool := path.Join("pool/non-free-firmware", p.name[:1], p.name, p.name+"_"+p.version+"_all.deb")
		files[pool] = deb
		sum := sha256.Sum256(deb)
		fmt.Fprintf(&packages, "Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: Cauldron tests <tests@localhost>\n"+
			"Installed-Size: 1\nFilename: %s\nSize: %d\nSHA256: %s\nSection: non-free-firmware/kernel\nPriority: optional\n"+
			"Description: firmware for cauldron-media's tests\n\n", p.name, p.version, pool, len(deb), hex.EncodeToString(sum[:]))
		for f := range p.files {
			contents[f] = append(contents[f], "non-free-firmware/kernel/"+p.name)
		}
	}
	var cont bytes.Buffer
	for _, f := range sortedKeys(contents) {
		fmt.Fprintf(&cont, "%-60s %s\n", f, strings.Join(contents[f], ","))
	}

	fa.mu.Lock()
	defer fa.mu.Unlock()
	fa.date = fa.date.Add(time.Minute)
	dist := path.Join("dists", fa.codename)
	pkgIndex := "non-free-firmware/binary-" + fa.arch + "/Packages"
	contIndex := "non-free-firmware/Contents-" + fa.arch
	// As on Debian's mirrors: the Release names the uncompressed indexes, but only the compressed
	// files are there. apt needs both names: it checks what it unpacks against the uncompressed
	// hash, and (apt 2.6) silently skips a target whose uncompressed name the Release lacks.
	indexes := map[string][]byte{
		pkgIndex:          packages.Bytes(),
		pkgIndex + ".gz":  gzipped(t, packages.Bytes()),
		contIndex:         cont.Bytes(),
		contIndex + ".gz": gzipped(t, cont.Bytes()),
	}
	var release bytes.Buffer
	fmt.Fprintf(&release, "Origin: Debian\nLabel: Debian\nSuite: stable\nCodename: %s\nDate: %s\nArchitectures: %s\n"+
		"Components: main non-free-firmware\nDescription: Cauldron's fake archive for tests\nSHA256:\n",
		fa.codename, fa.date.Format(time.RFC1123), fa.arch)
	for _, name := range sortedKeys(indexes) {
		sum := sha256.Sum256(indexes[name])
		fmt.Fprintf(&release, " %s %8d %s\n", hex.EncodeToString(sum[:]), len(indexes[name]), name)
		if strings.HasSuffix(name, ".gz") {
			files[path.Join(dist, name)] = indexes[name]
		}
	}
	files[path.Join(dist, "Release")] = release.Bytes()
	fa.files = files
}

// buildFakeDeb builds a package holding p.files with dpkg-deb.
func buildFakeDeb(t *testing.T, p fakePackage) []byte {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	control := fmt.Sprintf("Package: %s\nVersion: %s\nArchitecture: all\nMaintainer: Cauldron tests <tests@localhost>\n"+
		"Section: non-free-firmware/kernel\nPriority: optional\nDescription: firmware for cauldron-media's tests\n", p.name, p.version)
	write := func(name, data string) {
		f := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("DEBIAN/control", control)
	for _, f := range sortedKeys(p.files) {
		write(f, p.files[f])
	}
	deb := filepath.Join(dir, "p.deb")
	if out, err := exec.Command("dpkg-deb", "--root-owner-group", "-Zgzip", "--build", root, deb).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb --build %s: %v\n%s", p.name, err, out)
	}
	data, err := os.ReadFile(deb)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func gzipped(t *testing.T, data []byte) []byte {
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	z.Write(data)
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// checkRequests takes the requests since the last call and fails the test unless each went to
// the fake archive's own address (not through a proxy: those send the whole URL) and each wanted
// file name was asked for.
func (fa *fakeArchive) checkRequests(want ...string) []fakeRequest {
	t := fa.t
	t.Helper()
	reqs := fa.takeRequests()
	self := fa.srv.Listener.Addr().String()
	asked := map[string]bool{}
	for _, r := range reqs {
		if r.host != self || !strings.HasPrefix(r.uri, "/") {
			t.Errorf("the fake archive on %s got a request for %s %s", self, r.host, r.uri)
		}
		asked[path.Base(r.uri)] = true
	}
	for _, w := range want {
		if !asked[w] {
			t.Errorf("apt did not ask the fake archive for %s; it asked for %v", w, reqs)
		}
	}
	return reqs
}

// debSHA256 is the SHA-256 of the published .deb of a package's version.
func (fa *fakeArchive) debSHA256(name, version string) string {
	fa.mu.Lock()
	defer fa.mu.Unlock()
	data, ok := fa.files[path.Join("pool/non-free-firmware", name[:1], name, name+"_"+version+"_all.deb")]
	if !ok {
		return "(not published)"
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
