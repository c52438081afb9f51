package boot

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// ModuleDeps is modules.dep read into memory: where each module's file is and what it needs
// loaded first.
type ModuleDeps struct {
	file    map[string]string   // module name (with _) → path relative to the modules folder
	deps    map[string][]string // module name → the modules it needs, as modules.dep lists them
	builtin map[string]bool     // modules built into the kernel (modules.builtin)
	pre     map[string][]string // module name → soft dependencies to load first (modules.softdep)
}

// ModuleName is the kernel's name for a module file: the base name without .ko and its
// compression suffix, with - written _ (the kernel treats both alike).
func ModuleName(file string) string {
	b := path.Base(file)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// ParseModuleDeps reads modules.dep ("kernel/a.ko.zst: kernel/b.ko.zst kernel/c.ko.zst" per line).
func ParseModuleDeps(r io.Reader) (*ModuleDeps, error) {
	d := &ModuleDeps{file: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}, pre: map[string][]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		mod, deps, ok := strings.Cut(s, ":")
		if !ok || strings.TrimSpace(mod) == "" {
			return nil, fmt.Errorf("modules.dep:%d: want \"MODULE: DEPENDENCIES\", got %q", line, s)
		}
		mod = strings.TrimSpace(mod)
		name := ModuleName(mod)
		d.file[name] = mod
		var names []string
		for _, f := range strings.Fields(deps) {
			names = append(names, ModuleName(f))
		}
		d.deps[name] = names
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return d, nil
}

// AddBuiltin reads modules.builtin (one path per line): those modules need no loading.
func (d *ModuleDeps) AddBuiltin(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			d.builtin[ModuleName(s)] = true
		}
	}
	return sc.Err()
}

// AddSoftdeps reads modules.softdep ("softdep MOD pre: A B post: C"). Only the pre: part is
// kept: modules (or aliases, such as crypto-crc32c) the module asks for at load time, which
// otherwise the kernel would fetch through /sbin/modprobe, one slow process each.
func (d *ModuleDeps) AddSoftdeps(r io.Reader) error {
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "softdep" || len(f) < 3 {
			return fmt.Errorf("modules.softdep:%d: want \"softdep MODULE pre: … post: …\"", line)
		}
		mod := strings.ReplaceAll(f[1], "-", "_")
		pre := false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					d.pre[mod] = append(d.pre[mod], w)
				}
			}
		}
	}
	return sc.Err()
}

// SoftPre are the modules or aliases name asks for before it loads.
func (d *ModuleDeps) SoftPre(name string) []string { return d.pre[strings.ReplaceAll(name, "-", "_")] }

// Builtin reports whether name is built into the kernel.
func (d *ModuleDeps) Builtin(name string) bool { return d.builtin[strings.ReplaceAll(name, "-", "_")] }

// File is the module's path relative to the modules folder, and whether it is known.
func (d *ModuleDeps) File(name string) (string, bool) {
	f, ok := d.file[strings.ReplaceAll(name, "-", "_")]
	return f, ok
}

// Deps are the modules name needs loaded before it.
func (d *ModuleDeps) Deps(name string) []string { return d.deps[strings.ReplaceAll(name, "-", "_")] }

// CmdlineModuleParams picks the module options out of a kernel command line
// ("usb_storage.delay_use=2 nvme_core.io_timeout=60"), as modprobe does: the kernel applies
// such options only to built-in code, and leaves loadable modules' to whoever loads them.
// Values may be double-quoted (a="b c").
func CmdlineModuleParams(cmdline string) map[string]string {
	out := map[string]string{}
	for _, w := range splitCmdline(cmdline) {
		k, v, ok := strings.Cut(w, "=")
		mod, param, dotted := strings.Cut(k, ".")
		if !dotted || mod == "" || param == "" || strings.ContainsAny(mod, "/") {
			continue
		}
		mod = strings.ReplaceAll(mod, "-", "_")
		opt := param
		if ok {
			if strings.ContainsAny(v, " \t") {
				v = `"` + v + `"`
			}
			opt += "=" + v
		}
		if out[mod] != "" {
			out[mod] += " "
		}
		out[mod] += opt
	}
	return out
}
