package linux

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/cauldron-dr/cauldron/internal/atomicfile"
)

// normModule is a module's canonical name: the kernel treats '-' and '_' alike.
func normModule(n string) string { return strings.ReplaceAll(n, "-", "_") }

// moduleName turns a module file's path (kernel/drivers/nvme/host/nvme.ko.xz) into its name.
func moduleName(p string) string {
	b := path.Base(p)
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return normModule(b)
}

// kernelDrivers lists a kernel's loadable modules and built-in drivers, by canonical name.
func kernelDrivers(root string, k Kernel) (mods, builtin map[string]bool, err error) {
	mods, builtin = map[string]bool{}, map[string]bool{}
	if b, found, err := readSys(root, k.Modules+"/modules.dep"); err != nil {
		return nil, nil, err
	} else if found {
		for _, line := range strings.Split(string(b), "\n") {
			if f, _, ok := strings.Cut(line, ":"); ok {
				mods[moduleName(f)] = true
			}
		}
	} else {
		// Not depmod'ed yet (the initramfs tools run depmod themselves): look at the files.
		h, err := resolve(root, k.Modules)
		if err != nil {
			return nil, nil, err
		}
		err = filepath.WalkDir(h, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.Contains(d.Name(), ".ko") {
				mods[moduleName(d.Name())] = true
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	if b, found, err := readSys(root, k.Modules+"/modules.builtin"); err != nil {
		return nil, nil, err
	} else if found {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.TrimSpace(line) != "" {
				builtin[moduleName(line)] = true
			}
		}
	}
	return mods, builtin, nil
}

// ErrMissingDriver is wrapped when a kernel has no driver of the name asked for.
var ErrMissingDriver = fmt.Errorf("driver missing from a kernel")

// checkDrivers makes sure every kernel has every driver, as a module or built in. It returns the
// drivers that are a module in at least one kernel (those go into the configuration; a driver
// built into every kernel needs nothing) and notes.
func checkDrivers(s *System, drivers []string) ([]string, []string, error) {
	var need []string
	var notes []string
	seen := map[string]bool{}
	for _, d := range drivers {
		n := normModule(strings.TrimSpace(d))
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if !regexp.MustCompile(`^[A-Za-z0-9_]+$`).MatchString(n) {
			return nil, nil, fmt.Errorf("driver name %q: letters, digits, '-' and '_' only", d)
		}
		asModule, builtinAll := false, true
		for _, k := range s.Kernels {
			mods, builtin, err := kernelDrivers(s.Root, k)
			if err != nil {
				return nil, nil, err
			}
			switch {
			case mods[n]:
				asModule, builtinAll = true, false
			case builtin[n]:
			default:
				return nil, nil, fmt.Errorf("%w: kernel %s has no %s (neither a module in %s nor built in): an initramfs of it cannot find the target's disks", ErrMissingDriver, k.Version, n, k.Modules)
			}
		}
		if asModule {
			need = append(need, n)
		} else if builtinAll && len(s.Kernels) > 0 {
			notes = append(notes, fmt.Sprintf("driver %s is built into every kernel: nothing to add", n))
		}
	}
	return need, notes, nil
}

// fileEdit is a planned change to one file of the system.
type fileEdit struct {
	Path    string // inside the system
	Exists  bool
	Old     []byte
	New     []byte
	Why     string
	Changes []LineChange
}

// lineDiff lists what changed between two texts that differ only by edited, appended or
// removed lines at the end (what the edits here do): a line-by-line comparison is enough.
func lineDiff(old, new string) []LineChange {
	if old == new {
		return nil
	}
	a := strings.Split(strings.TrimSuffix(old, "\n"), "\n")
	b := strings.Split(strings.TrimSuffix(new, "\n"), "\n")
	if old == "" {
		a = nil
	}
	var out []LineChange
	for i := 0; i < max(len(a), len(b)); i++ {
		var x, y string
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y || (i >= len(a)) != (i >= len(b)) {
			out = append(out, LineChange{Line: i + 1, Old: x, New: y})
		}
	}
	return out
}

// planEdit makes a fileEdit from a file's current and wanted content; nil when nothing changes.
func planEdit(root, p string, want []byte, why string) (*fileEdit, error) {
	old, exists, err := readSys(root, p)
	if err != nil {
		return nil, err
	}
	if exists && string(old) == string(want) {
		return nil, nil
	}
	return &fileEdit{Path: p, Exists: exists, Old: old, New: want, Why: why, Changes: lineDiff(string(old), string(want))}, nil
}

const addedByCauldron = "# Added by Cauldron's inoculation: the storage drivers of the hardware this system was restored onto."

// whyNotDep explains the switch away from MODULES=dep / host-only initramfs, in the files it
// writes, for whoever reads them later.
const whyNotDep = `# Cauldron's inoculation: this system was restored onto other hardware. A host-only initramfs
# (initramfs-tools MODULES=dep, dracut hostonly) holds only the drivers of the machine the tool
# runs on, and at recovery time that is the recovery environment, not this system's new disk
# controller; the same happens on the next rebuild after any later move. So the initramfs carries
# the generic set of storage drivers, and the target's drivers are named explicitly as well.
`

var confdNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// initramfsToolsModules returns the effective MODULES= of initramfs-tools: initramfs.conf, then
// the conf.d files in name order, the last assignment winning, as mkinitramfs sources them.
func initramfsToolsModules(root string) (string, string, error) {
	value, where := "most", "(initramfs-tools' default)"
	files := []string{"/etc/initramfs-tools/initramfs.conf"}
	confd := globSys(root, "/etc/initramfs-tools/conf.d", "*")
	sort.Strings(confd)
	files = append(files, confd...)
	re := regexp.MustCompile(`^\s*MODULES=(.*)$`)
	for _, f := range files {
		// mkinitramfs' maybe_add_conf reads names of letters, digits, '.', '_' and '-' that
		// start with a letter or digit, and no dpkg leftovers.
		if b := path.Base(f); !confdNameRE.MatchString(b) || strings.Contains(b, ".dpkg-") {
			continue
		}
		b, found, err := readSys(root, f)
		if err != nil {
			return "", "", err
		}
		if !found {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				value, where = shellUnquote(m[1]), f
			}
		}
	}
	return value, where, nil
}

// planDriverConfig plans the configuration changes that put drivers into every future initramfs.
func planDriverConfig(s *System, drivers []string, onTarget bool) ([]*fileEdit, []string, error) {
	var edits []*fileEdit
	var notes []string
	add := func(e *fileEdit, err error) error {
		if err != nil {
			return err
		}
		if e != nil {
			edits = append(edits, e)
		}
		return nil
	}
	switch s.InitramfsTool {
	case InitramfsTools:
		const mf = "/etc/initramfs-tools/modules"
		old, _, err := readSys(s.Root, mf)
		if err != nil {
			return nil, nil, err
		}
		have := map[string]bool{}
		for _, line := range strings.Split(string(old), "\n") {
			if f := strings.Fields(line); len(f) > 0 && !strings.HasPrefix(f[0], "#") {
				have[normModule(f[0])] = true
			}
		}
		var missing []string
		for _, d := range drivers {
			if !have[d] {
				missing = append(missing, d)
			}
		}
		if len(missing) > 0 {
			text := string(old)
			if text != "" && !strings.HasSuffix(text, "\n") {
				text += "\n"
			}
			if !strings.Contains(text, addedByCauldron) {
				text += addedByCauldron + "\n"
			}
			text += strings.Join(missing, "\n") + "\n"
			if err := add(planEdit(s.Root, mf, []byte(text), "load the target's storage drivers from the initramfs")); err != nil {
				return nil, nil, err
			}
		}
		mode, where, err := initramfsToolsModules(s.Root)
		if err != nil {
			return nil, nil, err
		}
		switch {
		case mode == "dep" && onTarget:
			// Running on the target itself, MODULES=dep finds the target's controller from the
			// root filesystem's device, as it will at every later rebuild here: the system's
			// own choice stands (and the target's drivers are named in modules as well).
			notes = append(notes, fmt.Sprintf("initramfs-tools MODULES=dep (from %s) kept: this machine is the target", where))
		case mode == "dep":
			if err := add(planEdit(s.Root, "/etc/initramfs-tools/conf.d/zz-cauldron", []byte(whyNotDep+"MODULES=most\n"),
				"MODULES=dep (set in "+where+") would build only the recovery environment's drivers")); err != nil {
				return nil, nil, err
			}
		default:
			notes = append(notes, fmt.Sprintf("initramfs-tools MODULES=%s (from %s) kept", mode, where))
		}
	case Dracut:
		const f = "/etc/dracut.conf.d/cauldron.conf"
		old, _, err := readSys(s.Root, f)
		if err != nil {
			return nil, nil, err
		}
		// A second inoculation (onto yet other hardware) keeps the drivers of the first.
		all := map[string]bool{}
		var list []string
		re := regexp.MustCompile(`^\s*add_drivers\+?=\s*"([^"]*)"`)
		for _, line := range strings.Split(string(old), "\n") {
			if m := re.FindStringSubmatch(line); m != nil {
				for _, d := range strings.Fields(m[1]) {
					if !all[d] {
						all[d] = true
						list = append(list, d)
					}
				}
			}
		}
		for _, d := range drivers {
			if !all[d] {
				all[d] = true
				list = append(list, d)
			}
		}
		text := whyNotDep + fmt.Sprintf("add_drivers+=\" %s \"\nhostonly=\"no\"\n", strings.Join(list, " "))
		if onTarget {
			// On the target itself a host-only image is the right one: keep the system's choice.
			text = addedByCauldron + fmt.Sprintf("\nadd_drivers+=\" %s \"\n", strings.Join(list, " "))
		}
		if err := add(planEdit(s.Root, f, []byte(text), "put the target's storage drivers into every initramfs dracut builds")); err != nil {
			return nil, nil, err
		}
	case Mkinitcpio:
		const f = "/etc/mkinitcpio.conf"
		old, found, err := readSys(s.Root, f)
		if err != nil {
			return nil, nil, err
		}
		if !found {
			return nil, nil, fmt.Errorf("mkinitcpio is installed but %s does not exist in %s", f, s.Root)
		}
		lines := strings.Split(string(old), "\n")
		re := regexp.MustCompile(`^(\s*)MODULES=(\((.*)\)|"(.*)"|(\S*))\s*(#.*)?$`)
		idx := -1
		var have []string
		for i, l := range lines {
			if m := re.FindStringSubmatch(l); m != nil {
				idx = i
				have = nil
				for _, x := range strings.Fields(m[3] + " " + m[4] + " " + m[5]) {
					have = append(have, strings.Trim(x, `"'`))
				}
			}
		}
		set := map[string]bool{}
		for _, h := range have {
			set[normModule(h)] = true
		}
		list := append([]string(nil), have...)
		for _, d := range drivers {
			if !set[d] {
				list = append(list, d)
			}
		}
		if len(list) != len(have) {
			nl := fmt.Sprintf("MODULES=(%s)", strings.Join(list, " "))
			if idx >= 0 {
				lines[idx] = nl
			} else {
				lines = append(lines, "# Added by Cauldron's inoculation: the target's storage drivers.", nl, "")
			}
			if err := add(planEdit(s.Root, f, []byte(strings.Join(lines, "\n")), "put the target's storage drivers into every initramfs mkinitcpio builds (MODULES are kept by autodetect)")); err != nil {
				return nil, nil, err
			}
		}
		if len(globSys(s.Root, "/etc/mkinitcpio.conf.d", "*.conf")) > 0 {
			notes = append(notes, "/etc/mkinitcpio.conf.d has drop-ins: a MODULES= there would override /etc/mkinitcpio.conf")
		}
	default:
		return nil, nil, ErrUnknownInitramfsTool
	}
	return edits, notes, nil
}

// ErrUnknownInitramfsTool is returned when no known initramfs tool is installed.
var ErrUnknownInitramfsTool = fmt.Errorf("no known initramfs tool (initramfs-tools' update-initramfs, dracut, mkinitcpio) is installed")

// rebuildCommands are the commands that rebuild the initramfs of every kernel.
func rebuildCommands(s *System) [][]string {
	var out [][]string
	switch s.InitramfsTool {
	case InitramfsTools:
		for _, k := range s.Kernels {
			// -c creates one that is missing; -u only updates an existing one.
			op := "-u"
			if !k.InitramfsExists {
				op = "-c"
			}
			out = append(out, []string{s.InitramfsCommand, op, "-k", k.Version})
		}
	case Dracut:
		for _, k := range s.Kernels {
			out = append(out, []string{s.InitramfsCommand, "--force", "--kver", k.Version, k.Initramfs})
		}
	case Mkinitcpio:
		// The presets name every kernel's images; -P builds them all.
		out = append(out, []string{s.InitramfsCommand, "-P"})
	}
	return out
}

// writeFileAs replaces a file's content atomically, keeping an existing file's mode and owner.
func writeFileAs(host string, data []byte, like os.FileInfo) error {
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(host, data, func(f *os.File) error {
		if like == nil {
			return nil
		}
		// FAT (the ESP) refuses modes and owners it cannot represent; the file keeps the
		// mount's then.
		if err := f.Chmod(like.Mode().Perm()); err != nil && !os.IsPermission(err) {
			return err
		}
		if uid, gid, ok := owner(like); ok {
			if err := f.Chown(uid, gid); err != nil && !os.IsPermission(err) {
				return err
			}
		}
		return nil
	})
}
