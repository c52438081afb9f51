package qemu

// Helpers for the boot tests: a Debian kernel, and a small initramfs around testdata/guestinit.

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// testKernel is a kernel with its modules.
type testKernel struct {
	vmlinuz string
	modules string // lib/modules/VERSION, with modules.dep
}

var (
	kernelOnce sync.Once
	kernelVal  testKernel
	kernelErr  error
	scratch    string // removed by TestMain
)

func TestMain(m *testing.M) {
	var err error
	if scratch, err = os.MkdirTemp("", "cauldron-qemu-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(scratch)
	os.Exit(code)
}

// findKernel finds a Debian kernel: $CAULDRON_KERNEL (a vmlinuz, its modules in
// $CAULDRON_KERNEL_MODULES), else the tree initramfs.Build unpacked in its cache, else a
// linux-image .deb in that cache, unpacked here (dpkg -x, depmod).
func findKernel() (testKernel, error) {
	if k := os.Getenv("CAULDRON_KERNEL"); k != "" {
		return testKernel{vmlinuz: k, modules: os.Getenv("CAULDRON_KERNEL_MODULES")}, nil
	}
	cache := os.Getenv("CAULDRON_CACHE")
	if cache == "" {
		cache = "/var/tmp/cauldron-cache"
	}
	trees, _ := filepath.Glob(filepath.Join(cache, "unpacked", "linux-image-*", ".complete"))
	sort.Sort(sort.Reverse(sort.StringSlice(trees)))
	for _, done := range trees {
		root := filepath.Dir(done)
		if k, err := kernelIn(root); err == nil {
			return k, nil
		}
	}
	debs, _ := filepath.Glob(filepath.Join(cache, "debs", "linux-image-[0-9]*.deb"))
	sort.Sort(sort.Reverse(sort.StringSlice(debs)))
	if len(debs) == 0 {
		return testKernel{}, fmt.Errorf("%w: no Debian kernel: set CAULDRON_KERNEL, or build the media once (make media) so %s holds one", ErrMissing, cache)
	}
	root := filepath.Join(scratch, "kernel")
	if out, err := exec.Command("dpkg", "-x", debs[0], root).CombinedOutput(); err != nil {
		return testKernel{}, fmt.Errorf("dpkg -x %s: %v: %s", debs[0], err, out)
	}
	vers, _ := os.ReadDir(filepath.Join(root, "lib/modules"))
	if len(vers) != 1 {
		return testKernel{}, fmt.Errorf("%s: want one kernel under lib/modules", debs[0])
	}
	if out, err := exec.Command("depmod", "-b", root, vers[0].Name()).CombinedOutput(); err != nil {
		return testKernel{}, fmt.Errorf("depmod: %v: %s", err, out)
	}
	return kernelIn(root)
}

func kernelIn(root string) (testKernel, error) {
	vers, err := os.ReadDir(filepath.Join(root, "lib/modules"))
	if err != nil || len(vers) != 1 {
		return testKernel{}, fmt.Errorf("%s: want one kernel under lib/modules", root)
	}
	v := vers[0].Name()
	k := testKernel{vmlinuz: filepath.Join(root, "boot", "vmlinuz-"+v), modules: filepath.Join(root, "lib/modules", v)}
	if err := regularFile(k.vmlinuz); err != nil {
		return testKernel{}, err
	}
	if err := regularFile(filepath.Join(k.modules, "modules.dep")); err != nil {
		return testKernel{}, err
	}
	return k, nil
}

// needKernel returns the test kernel, failing (Strict) or skipping the test without one.
func needKernel(t *testing.T) testKernel {
	t.Helper()
	kernelOnce.Do(func() { kernelVal, kernelErr = findKernel() })
	if kernelErr != nil {
		if Strict() {
			t.Fatal(kernelErr)
		}
		t.Skip(kernelErr)
	}
	return kernelVal
}

// moduleClosure returns the module files (relative to the modules folder) for names, each after
// the modules it depends on.
func moduleClosure(modDir string, names []string) ([]string, error) {
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string][]string{} // module file -> files it needs
	byName := map[string]string{} // module name -> file
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		file, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[file] = strings.Fields(rest)
		base := strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
		byName[strings.ReplaceAll(base, "-", "_")] = file
	}
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(file string) {
		if seen[file] {
			return
		}
		seen[file] = true
		// modules.dep lists all dependencies, deepest last; load those first.
		d := deps[file]
		for i := len(d) - 1; i >= 0; i-- {
			visit(d[i])
		}
		order = append(order, file)
	}
	for _, n := range names {
		file, ok := byName[strings.ReplaceAll(n, "-", "_")]
		if !ok {
			return nil, fmt.Errorf("module %s not in %s/modules.dep", n, modDir)
		}
		visit(file)
	}
	return order, nil
}

var (
	initOnce sync.Once
	initPath string
	initErr  error
)

// guestInitramfs builds (once per module set) an initramfs holding guestinit as /init and the
// named modules with their dependencies.
func guestInitramfs(t *testing.T, k testKernel, modules ...string) string {
	t.Helper()
	initOnce.Do(func() {
		initPath = filepath.Join(scratch, "guestinit")
		cmd := exec.Command("go", "build", "-trimpath", "-o", initPath, "./testdata/guestinit")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			initErr = fmt.Errorf("building guestinit: %v: %s", err, out)
		}
	})
	if initErr != nil {
		t.Fatal(initErr)
	}
	files, err := moduleClosure(k.modules, modules)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.CreateTemp(scratch, "initrd-*.cpio")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	w := &cpioWriter{w: bufio.NewWriter(out)}
	w.dir("dev")
	w.node("dev/console", 0o020600, 5, 1)
	w.dir("m")
	var list []string
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(k.modules, f))
		if err != nil {
			t.Fatal(err)
		}
		name := "m/" + filepath.Base(f)
		w.file(name, 0o644, b)
		list = append(list, "/"+name)
	}
	w.file("modules.list", 0o644, []byte(strings.Join(list, "\n")+"\n"))
	b, err := os.ReadFile(initPath)
	if err != nil {
		t.Fatal(err)
	}
	w.file("init", 0o755, b)
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	return out.Name()
}

// cpioWriter writes the "newc" cpio format the kernel unpacks as initramfs.
type cpioWriter struct {
	w   *bufio.Writer
	ino int
	n   int64
	err error
}

func (c *cpioWriter) header(name string, mode, size, rdevMajor, rdevMinor int) {
	c.ino++
	nlink := 1
	if mode&0o170000 == 0o040000 {
		nlink = 2
	}
	hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, size, 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	c.write([]byte(hdr + name + "\x00"))
	c.pad()
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	var n int
	n, c.err = c.w.Write(b)
	c.n += int64(n)
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string) { c.header(name, 0o040755, 0, 0, 0) }

func (c *cpioWriter) node(name string, mode, major, minor int) { c.header(name, mode, 0, major, minor) }

func (c *cpioWriter) file(name string, perm int, data []byte) {
	c.header(name, 0o100000|perm, len(data), 0, 0)
	c.write(data)
	c.pad()
}

func (c *cpioWriter) close() error {
	c.header("TRAILER!!!", 0, 0, 0, 0)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}
