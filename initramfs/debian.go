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
	"strings"
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

// fetchDeb downloads a package's .deb from the configured apt sources into the cache, unless the
// cache has it already (checked against the SHA-256 apt knows). It returns the file and version.
func (b *builder) fetchDeb(pkg string) (file, version string, err error) {
	out, err := b.command("", nil, "apt-cache", "show", "--no-all-versions", pkg)
	if err != nil {
		return "", "", fmt.Errorf("package %s is not in the apt sources (run apt-get update?): %w", pkg, err)
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
	b.logf("downloading %s %s", pkg, version)
	// Into a folder of this build's own (builds may share the cache), then into place.
	dl, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dl)
	if _, err := b.command(dl, nil, "apt-get", "download", "-q", pkg+"="+version); err != nil {
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
