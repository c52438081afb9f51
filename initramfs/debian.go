package initramfs

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// kernel is an unpacked Debian kernel package.
type kernel struct {
	pkg, pkgVersion string
	version         string // uname -r, the folder under /lib/modules
	root            string // the unpacked package (with a full modules.dep from depmod)
	vmlinuz         string
	buildTime       int64 // modification time of vmlinuz in the package
}

// kernel resolves, downloads (into the cache) and unpacks the kernel package. It installs nothing.
func (b *builder) kernel() (*kernel, error) {
	pkg := b.o.KernelPackage
	if pkg == "" {
		out, err := b.command("", nil, "apt-cache", "depends", "linux-image-amd64")
		if err != nil {
			return nil, fmt.Errorf("resolving linux-image-amd64: %w", err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
				pkg = f[1]
				break
			}
		}
		if pkg == "" {
			return nil, fmt.Errorf("linux-image-amd64 depends on no linux-image package in the apt sources (run apt-get update?): %s", out)
		}
	}
	deb, version, err := b.fetchDeb(pkg)
	if err != nil {
		return nil, err
	}
	root, err := b.unpackDeb(deb, true)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(filepath.Join(root, "lib/modules"))
	if err != nil || len(ents) != 1 {
		return nil, fmt.Errorf("%s: expected one kernel under lib/modules (%v)", deb, err)
	}
	k := &kernel{pkg: pkg, pkgVersion: version, version: ents[0].Name(), root: root}
	k.vmlinuz = filepath.Join(root, "boot", "vmlinuz-"+k.version)
	fi, err := os.Stat(k.vmlinuz)
	if err != nil {
		return nil, fmt.Errorf("%s has no kernel: %w", deb, err)
	}
	k.buildTime = fi.ModTime().Unix()
	return k, nil
}

// fetchDeb downloads a package's .deb from the host's apt sources into the cache, unless the
// cache has it already (checked against the SHA-256 apt knows). It returns the file and version.
func (b *builder) fetchDeb(pkg string) (file, version string, err error) {
	return b.fetchDebFrom(nil, pkg)
}

// fetchDebFrom is fetchDeb through cauldron-media's own apt configuration for non-free-firmware,
// or the host's when a is nil.
func (b *builder) fetchDebFrom(a *firmwareApt, pkg string) (file, version string, err error) {
	var opts []string
	where := "the apt sources (run apt-get update?)"
	if a != nil {
		opts = a.opts
		where = "Debian non-free-firmware (cauldron-media's own apt lists in " + a.dir + ")"
	}
	out, err := b.command("", nil, "apt-cache", append(append([]string(nil), opts...), "show", "--no-all-versions", pkg)...)
	if err != nil {
		return "", "", fmt.Errorf("package %s is not in %s: %w", pkg, where, err)
	}
	fields := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			break
		}
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(line, " ") {
			fields[k] = v
		}
	}
	version, sum, filename := fields["Version"], fields["SHA256"], fields["Filename"]
	if version == "" || filename == "" {
		return "", "", fmt.Errorf("apt-cache show %s: no Version or Filename", pkg)
	}
	dir := filepath.Join(b.cache, "debs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	file = filepath.Join(dir, path.Base(filename))
	if sum != "" && fileSHA256(file) == sum {
		return file, version, nil
	}
	if b.o.Offline {
		return "", "", fmt.Errorf("%s %s is not in the cache (%s) and an offline build downloads nothing: fill the cache first (make prefetch, or cauldron-media --prefetch)",
			pkg, version, dir)
	}
	b.logf("downloading %s %s", pkg, version)
	// Into a folder of this build's own (builds may share the cache), then into place.
	dl, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dl)
	// apt downloads as its sandbox user (_apt), which must get into the folder; MkdirTemp's 0700
	// would make it fall back to downloading as root.
	if err := os.Chmod(dl, 0o755); err != nil {
		return "", "", err
	}
	if _, err := b.command(dl, nil, "apt-get", append(append([]string(nil), opts...), "download", "-q", pkg+"="+version)...); err != nil {
		return "", "", fmt.Errorf("downloading %s: %w", pkg, err)
	}
	got, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(got) != 1 {
		return "", "", fmt.Errorf("apt-get download %s left %d .deb files", pkg, len(got))
	}
	if sum != "" && fileSHA256(got[0]) != sum {
		return "", "", fmt.Errorf("downloaded %s does not match the SHA-256 in the apt sources", filepath.Base(got[0]))
	}
	if err := os.Rename(got[0], file); err != nil {
		return "", "", err
	}
	return file, version, nil
}

// unpackDeb unpacks a .deb into the cache (once) with dpkg -x and returns the folder. With
// depmod, it also builds modules.dep and friends for the kernel inside.
func (b *builder) unpackDeb(deb string, depmod bool) (string, error) {
	dir := filepath.Join(b.cache, "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb"))
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err == nil {
		return dir, nil
	}
	b.logf("unpacking %s", filepath.Base(deb))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	// Builds may share the cache: each unpacks into its own folder, the first rename wins.
	tmp, err := os.MkdirTemp(filepath.Dir(dir), filepath.Base(dir)+".tmp")
	if err != nil {
		return "", err
	}
	if _, err := b.command("", nil, "dpkg", "-x", deb, tmp); err != nil {
		os.RemoveAll(tmp)
		return "", fmt.Errorf("unpacking %s: %w", deb, err)
	}
	if depmod {
		ents, _ := os.ReadDir(filepath.Join(tmp, "lib/modules"))
		for _, e := range ents {
			if _, err := b.command("", nil, "depmod", "-b", tmp, e.Name()); err != nil {
				os.RemoveAll(tmp)
				return "", err
			}
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(dir, ".complete")); serr == nil {
			return dir, nil
		}
		return "", err
	}
	return dir, nil
}

func fileSHA256(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return ""
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Debian keeps the firmware most server and desktop NICs need (Realtek, Broadcom, QLogic, Intel
// ice's DDP package) in its non-free-firmware component, which a host's apt sources often leave
// out and which cauldron-media must not add to the host's configuration. So cauldron-media keeps an
// apt configuration of its own under <cache>/apt: a sources list with the host's Debian entries
// (same mirrors, same Signed-By keyrings) reduced to non-free-firmware, its own lists, package
// cache, dpkg status and preferences. apt-get reads it after the host's configuration (-c), so
// the host's proxy and trust settings still apply. Main packages (the kernel, firmware-linux-free)
// keep coming from the host's apt as before; only non-free-firmware goes through this one.

// contentsTarget names the index target that makes apt-get update fetch the archive's Contents
// files (which package holds which path) along with Packages: with them cauldron-media downloads only
// the packages that hold the firmware the modules declare, and needs no table of its own.
const contentsTarget = "CauldronContents"

// firmwareAptMaxAge is how old cauldron-media's own non-free-firmware lists may get before a build
// refreshes them (the host's lists are refreshed by whoever runs apt-get update; these only by us).
const firmwareAptMaxAge = 24 * time.Hour

// firmwareApt is cauldron-media's own apt configuration for non-free-firmware, locked for one build.
type firmwareApt struct {
	dir  string   // <cache>/apt
	opts []string // the apt-get/apt-cache options that select it
	lock *os.File // flock held while the build uses the lists (builds may share the cache)
}

func (a *firmwareApt) close() {
	if a != nil && a.lock != nil {
		a.lock.Close() // releases the flock
	}
}

// openFirmwareApt writes the configuration and sources derived from the host's apt sources and
// refreshes the lists when they are missing, stale or were made from other sources. An error
// means non-free-firmware cannot be used at all; a failed refresh with older lists at hand only
// logs, and the build goes on with those.
func (b *builder) openFirmwareApt(hostFiles []string) (*firmwareApt, error) {
	var hosts []hostSource
	for _, f := range hostFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // apt reads only what exists; so do we
		}
		hosts = append(hosts, hostSource{name: f, data: data})
	}
	list, sources := deriveFirmwareSources(hostCodename(), hosts)
	if len(list) == 0 && len(sources) == 0 {
		return nil, fmt.Errorf("the host's apt sources (%s) have no Debian %s entry with main to derive non-free-firmware from",
			strings.Join(hostFiles, ", "), hostCodename())
	}
	a := &firmwareApt{dir: filepath.Join(b.cache, "apt")}
	if strings.ContainsAny(a.dir, "\"\n") {
		return nil, fmt.Errorf("cache path %q cannot be written into an apt configuration", a.dir)
	}
	for _, d := range []string{"lists/partial", "cache/archives/partial", "sources.list.d"} {
		if err := os.MkdirAll(filepath.Join(a.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	lock, err := os.OpenFile(filepath.Join(a.dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		lock.Close()
		return nil, fmt.Errorf("locking %s: %w", a.dir, err)
	}
	a.lock = lock
	conf := filepath.Join(a.dir, "apt.conf")
	files := map[string][]byte{
		conf:                                 firmwareAptConf(a.dir),
		filepath.Join(a.dir, "sources.list"): list,
		filepath.Join(a.dir, "sources.list.d", "cauldron.sources"): sources,
		filepath.Join(a.dir, "status"):                             nil,
	}
	for _, f := range sortedKeys(files) {
		if old, err := os.ReadFile(f); err == nil && bytes.Equal(old, files[f]) {
			continue
		}
		if err := os.WriteFile(f, files[f], 0o644); err != nil {
			a.close()
			return nil, err
		}
	}
	a.opts = []string{"-c", conf}

	// The stamp records what the lists were made from: other sources (the host moved to another
	// mirror) or another configuration mean a refresh, like age does.
	stamp := filepath.Join(a.dir, "updated")
	want := append(append(append([]byte(nil), files[conf]...), list...), sources...)
	fresh := false
	if fi, err := os.Stat(stamp); err == nil && time.Since(fi.ModTime()) < firmwareAptMaxAge {
		old, _ := os.ReadFile(stamp)
		fresh = bytes.Equal(old, want)
	}
	if !fresh && b.o.Offline {
		if !a.hasLists() {
			a.close()
			return nil, fmt.Errorf("no non-free-firmware lists in %s and an offline build fetches none (make prefetch, or cauldron-media --prefetch)", a.dir)
		}
		b.logf("non-free-firmware: offline, using the lists from %s as they are", listsDate(stamp))
	} else if !fresh {
		b.logf("refreshing cauldron-media's own apt lists for Debian non-free-firmware (%s)", a.dir)
		// Error-Mode any (apt-get update --error-on=any): a mirror that cannot be reached is an
		// error, not a warning with old lists. As an option, an older apt ignores it.
		args := append(append([]string(nil), a.opts...), "-o", "APT::Update::Error-Mode=any", "update", "-q")
		if _, err := b.command("", nil, "apt-get", args...); err != nil {
			if !a.hasLists() {
				a.close()
				return nil, err
			}
			b.logf("non-free-firmware: refreshing the lists failed, using those from %s: %v", listsDate(stamp), err)
		} else if err := os.WriteFile(stamp, want, 0o644); err != nil {
			a.close()
			return nil, err
		}
	}
	return a, nil
}

// listsDate says when the lists were last refreshed, from the stamp file's time.
func listsDate(stamp string) string {
	if fi, err := os.Stat(stamp); err == nil {
		return fi.ModTime().UTC().Format(time.RFC3339)
	}
	return "an earlier build"
}

// hasLists reports whether an earlier apt-get update left a Packages index.
func (a *firmwareApt) hasLists() bool {
	got, _ := filepath.Glob(filepath.Join(a.dir, "lists", "*_Packages*"))
	return len(got) > 0
}

// firmwareAptConf is the configuration read after the host's (apt-get -c): every place apt would
// read or write state points into dir, and the host's update hooks, which act on the host's own
// cache and tools (docker-clean, appstream, PackageKit), are cleared.
func firmwareAptConf(dir string) []byte {
	q := func(p ...string) string { return `"` + filepath.Join(append([]string{dir}, p...)...) + `"` }
	var c bytes.Buffer
	c.WriteString("// Written by cauldron-media for its own use; rewritten by every build.\n")
	c.WriteString("#clear APT::Update::Pre-Invoke;\n#clear APT::Update::Post-Invoke;\n#clear APT::Update::Post-Invoke-Success;\n")
	fmt.Fprintf(&c, "Dir::Etc::SourceList %s;\nDir::Etc::SourceParts %s;\n", q("sources.list"), q("sources.list.d"))
	fmt.Fprintf(&c, "Dir::Etc::Preferences %s;\nDir::Etc::PreferencesParts %s;\n", q("preferences"), q("preferences.d"))
	fmt.Fprintf(&c, "Dir::State %s;\nDir::State::Lists %s;\nDir::State::status %s;\n", q("state"), q("lists"), q("status"))
	fmt.Fprintf(&c, "Dir::Cache %s;\nDir::Cache::Archives %s;\n", q("cache"), q("cache", "archives"))
	// No binary caches: the lists are small, and an absolute pkgcache path in the host's
	// configuration would otherwise be overwritten with ours.
	c.WriteString("Dir::Cache::pkgcache \"\";\nDir::Cache::srcpkgcache \"\";\n")
	// Uncompressed lists, so the Contents files can be read directly.
	c.WriteString("Acquire::GzipIndexes \"false\";\n")
	fmt.Fprintf(&c, "#clear Acquire::IndexTargets::deb::%s;\n", contentsTarget)
	fmt.Fprintf(&c, "Acquire::IndexTargets::deb::%s {\n", contentsTarget)
	c.WriteString("\tMetaKey \"$(COMPONENT)/Contents-$(ARCHITECTURE)\";\n")
	c.WriteString("\tShortDescription \"Contents-$(ARCHITECTURE)\";\n")
	c.WriteString("\tDescription \"$(RELEASE)/$(COMPONENT) $(ARCHITECTURE) Contents\";\n};\n")
	return c.Bytes()
}

// hostSource is one of the host's apt source files.
type hostSource struct {
	name string // its path: .sources is deb822, anything else one-line
	data []byte
}

// hostSourceFiles returns the host's apt source files, in the order apt reads them.
func (b *builder) hostSourceFiles() []string {
	list, parts := "/etc/apt/sources.list", "/etc/apt/sources.list.d"
	// apt-config knows where the host's configuration puts them (APT_CONFIG, Dir::Etc).
	if out, err := b.command("", nil, "apt-config", "shell", "L", "Dir::Etc::sourcelist/f", "P", "Dir::Etc::sourceparts/d"); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			v = strings.ReplaceAll(strings.Trim(v, "'"), `'"'"'`, "'")
			switch k {
			case "L":
				list = v
			case "P":
				parts = v
			}
		}
	}
	files := []string{list}
	ents, _ := os.ReadDir(parts)
	for _, e := range ents {
		if n := e.Name(); !e.IsDir() && (strings.HasSuffix(n, ".list") || strings.HasSuffix(n, ".sources")) {
			files = append(files, filepath.Join(parts, n))
		}
	}
	return files
}

// hostCodename is the host's Debian release (bookworm on Debian 12), which tells its Debian
// entries from other vendors' (cloud-sdk-bookworm, nodistro, …).
func hostCodename() string {
	for _, f := range []string{"/etc/os-release", "/usr/lib/os-release"} {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "VERSION_CODENAME="); ok && strings.Trim(v, `"'`) != "" {
				return strings.Trim(v, `"'`)
			}
		}
	}
	return "bookworm" // the release cauldron-media is made for
}

// isDebianSuite accepts the suites Debian's installer sets up: the release, its updates and its
// security updates.
func isDebianSuite(codename, suite string) bool {
	return suite == codename || suite == codename+"-updates" || suite == codename+"-security"
}

// deriveFirmwareSources turns the host's Debian entries (binary packages, component main, the
// host's release) into entries for non-free-firmware on the same mirrors with the same options,
// Signed-By included, fetching only Packages and Contents. One-line entries stay one-line (list),
// deb822 stays deb822 (sources), so no option needs translating between the two formats.
func deriveFirmwareSources(codename string, hosts []hostSource) (list, sources []byte) {
	target := "Packages," + contentsTarget
	seen := map[string]bool{}
	var l, s bytes.Buffer
	for _, h := range hosts {
		if strings.HasSuffix(h.name, ".sources") {
			for _, para := range deb822Paragraphs(h.data) {
				out := deriveDeb822(codename, para, target)
				if out != "" && !seen[out] {
					seen[out] = true
					if s.Len() > 0 {
						s.WriteString("\n")
					}
					fmt.Fprintf(&s, "# from %s\n%s", h.name, out)
				}
			}
			continue
		}
		for _, line := range strings.Split(string(h.data), "\n") {
			out := deriveOneLine(codename, line, target)
			if out != "" && !seen[out] {
				seen[out] = true
				fmt.Fprintf(&l, "%s  # from %s\n", out, h.name)
			}
		}
	}
	return l.Bytes(), s.Bytes()
}

// deb822Field is one field of a deb822 paragraph with its continuation lines, kept as written
// (an inline Signed-By key spans many).
type deb822Field struct {
	name  string
	value string   // the first line's value
	more  []string // continuation lines, verbatim
}

func deb822Paragraphs(data []byte) [][]deb822Field {
	var paras [][]deb822Field
	var cur []deb822Field
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimRight(line, "\r")
		switch {
		case strings.HasPrefix(line, "#"):
			// apt allows comments anywhere, also between a field's lines.
		case strings.TrimSpace(line) == "":
			if len(cur) > 0 {
				paras = append(paras, cur)
				cur = nil
			}
		case line[0] == ' ' || line[0] == '\t':
			if len(cur) > 0 {
				cur[len(cur)-1].more = append(cur[len(cur)-1].more, line)
			}
		default:
			name, value, _ := strings.Cut(line, ":")
			cur = append(cur, deb822Field{name: strings.TrimSpace(name), value: strings.TrimSpace(value)})
		}
	}
	if len(cur) > 0 {
		paras = append(paras, cur)
	}
	return paras
}

// deriveDeb822 returns the non-free-firmware paragraph for a host paragraph, or "".
func deriveDeb822(codename string, para []deb822Field, target string) string {
	get := func(name string) (string, bool) {
		for _, f := range para {
			if strings.EqualFold(f.name, name) {
				return strings.Join(append([]string{f.value}, f.more...), " "), true
			}
		}
		return "", false
	}
	if v, ok := get("Enabled"); ok && !aptBool(v) {
		return ""
	}
	types, _ := get("Types")
	comps, _ := get("Components")
	uris, _ := get("URIs")
	suites, _ := get("Suites")
	if !slices.Contains(strings.Fields(types), "deb") || !slices.Contains(strings.Fields(comps), "main") {
		return ""
	}
	var keepURIs, keepSuites []string
	for _, u := range strings.Fields(uris) {
		if !strings.HasPrefix(u, "cdrom:") { // a disc apt-cdrom knows of; not one cauldron-media can read
			keepURIs = append(keepURIs, u)
		}
	}
	for _, su := range strings.Fields(suites) {
		if isDebianSuite(codename, su) {
			keepSuites = append(keepSuites, su)
		}
	}
	if len(keepURIs) == 0 || len(keepSuites) == 0 {
		return ""
	}
	var out strings.Builder
	for _, f := range para {
		switch strings.ToLower(f.name) {
		case "types":
			out.WriteString("Types: deb\n")
		case "uris":
			out.WriteString("URIs: " + strings.Join(keepURIs, " ") + "\n")
		case "suites":
			out.WriteString("Suites: " + strings.Join(keepSuites, " ") + "\n")
		case "components":
			out.WriteString("Components: non-free-firmware\n")
		case "targets", "enabled":
		default:
			if f.value == "" {
				out.WriteString(f.name + ":\n") // the value starts on the next line (an inline key)
			} else {
				out.WriteString(f.name + ": " + f.value + "\n")
			}
			for _, m := range f.more {
				out.WriteString(m + "\n")
			}
		}
	}
	out.WriteString("Targets: " + strings.ReplaceAll(target, ",", " ") + "\n")
	return out.String()
}

// deriveOneLine returns the non-free-firmware line for a host one-line entry, or "".
func deriveOneLine(codename, line, target string) string {
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "deb" {
		return ""
	}
	var opts []string
	rest := f[1:]
	if strings.HasPrefix(rest[0], "[") {
		// Options: [a=b c=d], with or without spaces inside the brackets.
		joined := ""
		i := 0
		for ; i < len(rest); i++ {
			joined += " " + rest[i]
			if strings.HasSuffix(rest[i], "]") {
				break
			}
		}
		if i == len(rest) {
			return "" // no closing bracket: apt rejects the line too
		}
		rest = rest[i+1:]
		for _, o := range strings.Fields(strings.NewReplacer("[", " ", "]", " ").Replace(joined)) {
			key := strings.TrimRight(strings.SplitN(o, "=", 2)[0], "+-")
			if key != "target" && key != "enabled" {
				opts = append(opts, o)
			}
		}
	}
	if len(rest) < 3 || strings.HasPrefix(rest[0], "cdrom:") || !isDebianSuite(codename, rest[1]) ||
		!slices.Contains(rest[2:], "main") {
		return ""
	}
	opts = append(opts, "target="+target)
	return fmt.Sprintf("deb [%s] %s %s non-free-firmware", strings.Join(opts, " "), rest[0], rest[1])
}

// aptBool reads a yes/no value the way apt does.
func aptBool(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "no", "false", "0", "off", "without", "disable":
		return false
	}
	return true
}

// contents maps the wanted firmware names (relative to lib/firmware) to the packages the
// archive's Contents files say hold them.
func (b *builder) firmwareContents(a *firmwareApt, want []string) (map[string][]string, error) {
	args := append(append([]string(nil), a.opts...), "indextargets", "--format", "$(FILENAME)", "Identifier: "+contentsTarget)
	out, err := b.command("", nil, "apt-get", args...)
	if err != nil {
		return nil, err
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	found := map[string][]string{}
	read := 0
	for _, file := range strings.Fields(string(out)) {
		f, err := os.Open(file)
		if err != nil {
			continue // a suite without Contents (security, updates)
		}
		read++
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			// "PATH   SECTION/PACKAGE,SECTION/PACKAGE": the path may hold spaces, the list not.
			line := strings.TrimRight(sc.Text(), " \t")
			i := strings.LastIndexAny(line, " \t")
			if i < 0 {
				continue
			}
			p := strings.TrimSpace(line[:i])
			name, ok := strings.CutPrefix(p, "lib/firmware/")
			if !ok {
				name, ok = strings.CutPrefix(p, "usr/lib/firmware/")
			}
			if !ok || !wanted[name] {
				continue
			}
			for _, q := range strings.Split(line[i+1:], ",") {
				if pkg := path.Base(q); !slices.Contains(found[name], pkg) {
					found[name] = append(found[name], pkg)
				}
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", file, err)
		}
	}
	if read == 0 {
		return nil, fmt.Errorf("no Contents index for non-free-firmware in %s (the mirror may not publish Contents files)", filepath.Join(a.dir, "lists"))
	}
	for _, pkgs := range found {
		sort.Strings(pkgs)
	}
	return found, nil
}
