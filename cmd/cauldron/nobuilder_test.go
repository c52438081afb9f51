package main

import (
	"debug/buildinfo"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// builderModules are the modules of the boot-image builder (package initramfs, used by
// cmd/cauldron-media): about 5 MB of a stripped cauldron, which the boot image carries as
// /bin/cauldron and never builds an image with.
var builderModules = []string{
	"github.com/u-root/gobusybox",
	"github.com/u-root/mkuimage",
	"golang.org/x/tools",
	"mvdan.cc/sh",
}

const builderPackage = "github.com/cauldron-dr/cauldron/initramfs"

func isBuilderModule(mod string) bool {
	for _, m := range builderModules {
		if mod == m || strings.HasPrefix(mod, m+"/") {
			return true
		}
	}
	return false
}

// TestBootBinaryHasNoImageBuilder: cauldron, the binary the boot image starts, links neither the
// image builder nor its modules. It checks the package graph as make build links it (static,
// linux/amd64) and names the import chain that brought any of them in; and the binary TestMain
// built, through the module list Go records in it.
func TestBootBinaryHasNoImageBuilder(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}\t{{with .Module}}{{.Path}}{{end}}\t{{join .Imports \" \"}}", ".")
	// GOPROXY=off: the module cache make deps filled is enough, and the tests reach no mirror.
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOPROXY=off")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, stderrOf(err))
	}
	imports := map[string][]string{}
	module := map[string]string{}
	var root string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			t.Fatalf("go list printed %q, want three tab-separated fields", line)
		}
		imports[f[0]] = strings.Fields(f[2])
		module[f[0]] = f[1]
		root = f[0] // -deps lists a package after everything it imports: the last is cauldron
	}
	// The boot-time side must be there: otherwise this graph is not the boot binary's and an
	// empty list of offenders would prove nothing.
	if _, ok := imports[builderPackage+"/boot"]; !ok {
		t.Fatalf("%s is not among cauldron's %d packages; go list did not give the boot binary's graph", builderPackage+"/boot", len(imports))
	}
	// One message per offending module (and one for the builder package itself), with the
	// shortest import chain that brings it in: that is the import to remove.
	type offence struct {
		packages int
		chain    []string
	}
	offences := map[string]*offence{}
	for pkg, mod := range module {
		key := mod
		switch {
		case pkg == builderPackage:
			key = "package " + pkg
		case !isBuilderModule(mod):
			continue
		}
		o := offences[key]
		if o == nil {
			o = &offence{}
			offences[key] = o
		}
		o.packages++
		if c := importChain(imports, root, pkg); o.chain == nil || len(c) < len(o.chain) {
			o.chain = c
		}
	}
	for _, key := range slices.Sorted(maps.Keys(offences)) {
		o := offences[key]
		if o.packages > 1 {
			key += fmt.Sprintf(" (%d packages)", o.packages)
		}
		t.Errorf("cauldron links %s, through %s; the image builder belongs in cmd/cauldron-media",
			key, strings.Join(o.chain, " → "))
	}

	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Deps) == 0 {
		t.Fatalf("%s records no modules; cannot tell what it links", bin)
	}
	for _, d := range info.Deps {
		if isBuilderModule(d.Path) {
			t.Errorf("the cauldron binary links module %s %s", d.Path, d.Version)
		}
	}
}

// importChain is the shortest chain of imports from root to pkg.
func importChain(imports map[string][]string, root, pkg string) []string {
	prev := map[string]string{root: ""}
	queue := []string{root}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p == pkg {
			var chain []string
			for ; p != ""; p = prev[p] {
				chain = append([]string{p}, chain...)
			}
			return chain
		}
		for _, q := range imports[p] {
			if _, seen := prev[q]; !seen {
				prev[q] = p
				queue = append(queue, q)
			}
		}
	}
	return []string{root, "…", pkg}
}

func stderrOf(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}
