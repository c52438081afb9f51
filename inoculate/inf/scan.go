package inf

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// OSFolder is a virtio-win ISO OS folder: the Windows versions it is built for.
type OSFolder struct {
	Name        string
	Version     WinVersion
	ProductType int
}

// osFolders maps virtio-win's OS folder names (virtio-win-pkg-scripts' layout) to the oldest
// Windows each is for: 2k* are server builds, w* workstation builds.
var osFolders = map[string]OSFolder{
	"xp":     {"xp", WinVersion{5, 1, 0}, ProductWorkstation},
	"2k3":    {"2k3", WinVersion{5, 2, 0}, ProductServer},
	"wlh":    {"wlh", WinVersion{6, 0, 0}, ProductAny},
	"2k8":    {"2k8", WinVersion{6, 0, 0}, ProductServer},
	"w7":     {"w7", WinVersion{6, 1, 0}, ProductWorkstation},
	"2k8r2":  {"2k8r2", WinVersion{6, 1, 0}, ProductServer},
	"w8":     {"w8", WinVersion{6, 2, 0}, ProductWorkstation},
	"2k12":   {"2k12", WinVersion{6, 2, 0}, ProductServer},
	"w8.1":   {"w8.1", WinVersion{6, 3, 0}, ProductWorkstation},
	"2k12r2": {"2k12r2", WinVersion{6, 3, 0}, ProductServer},
	"w10":    {"w10", WinVersion{10, 0, 10240}, ProductWorkstation},
	"2k16":   {"2k16", WinVersion{10, 0, 14393}, ProductServer},
	"2k19":   {"2k19", WinVersion{10, 0, 17763}, ProductServer},
	"2k22":   {"2k22", WinVersion{10, 0, 20348}, ProductServer},
	"w11":    {"w11", WinVersion{10, 0, 22000}, ProductWorkstation},
	"2k25":   {"2k25", WinVersion{10, 0, 26100}, ProductServer},
}

// LookupOSFolder returns the virtio-win OS folder of a name (case-insensitive).
func LookupOSFolder(name string) (OSFolder, bool) {
	f, ok := osFolders[strings.ToLower(name)]
	return f, ok
}

// Found is one INF found by a scan, with where in a virtio-win tree it lies.
type Found struct {
	Path   string
	File   *File     // nil when it could not be read
	Folder *OSFolder // the <os> folder of a <driver>/<os>/<arch>/ layout
	Arch   string    // the <arch> folder, normalised; "" in a flat folder
	Err    error
}

// Scan is every INF and .inx under some folders.
type Scan struct {
	Found []Found
	opts  Options
}

// Problems returns the files that could not be read, each with its error.
func (s *Scan) Problems() []Found {
	var out []Found
	for _, f := range s.Found {
		if f.Err != nil {
			out = append(out, f)
		}
	}
	return out
}

// ScanDirs finds and parses every .inf and .inx file below dirs. A file that cannot be parsed is
// reported in Found with its error and does not stop the scan; a folder that cannot be read does.
// Templates (.inx) are read for opts.Arch; Best re-reads them for another target architecture.
func ScanDirs(opts Options, dirs ...string) (*Scan, error) {
	s := &Scan{opts: opts}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				return nil
			}
			ext := strings.ToLower(filepath.Ext(p))
			if ext != ".inf" && ext != ".inx" {
				return nil
			}
			fd := Found{Path: p}
			if rel, err := filepath.Rel(dir, p); err == nil {
				fd.Folder, fd.Arch = layoutOf(rel)
			}
			o := opts
			if fd.Arch != "" {
				o.Arch = fd.Arch
			}
			fd.File, fd.Err = ParseFile(p, o)
			if fd.Err != nil {
				fd.File = nil
			}
			s.Found = append(s.Found, fd)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("scanning %s: %w", dir, err)
		}
	}
	sort.SliceStable(s.Found, func(i, j int) bool { return s.Found[i].Path < s.Found[j].Path })
	return s, nil
}

// layoutOf reads <...>/<os>/<arch>/file from a path relative to the scanned folder.
func layoutOf(rel string) (*OSFolder, string) {
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) < 3 {
		return nil, ""
	}
	arch, err := normArch(parts[len(parts)-2])
	if err != nil {
		return nil, ""
	}
	osf, ok := LookupOSFolder(parts[len(parts)-3])
	if !ok {
		return nil, arch
	}
	return &osf, arch
}

// ErrNoDriver is returned by Best when no scanned INF has a driver for the device.
var ErrNoDriver = errors.New("no driver found")

// Best ranks every scanned driver for a device on t, best first. ids are the device's IDs,
// most specific first. Drivers in a virtio-win <os>/<arch>/ folder apply only when the folder's
// architecture is t's and its Windows is not newer than t's; among those, the folder closest to
// t (its product type preferred) wins at equal identifier score. Files whose models do not
// apply to t are skipped, not errors.
func (s *Scan) Best(t Target, ids []string) ([]Candidate, error) {
	arch, err := normArch(t.Arch)
	if err != nil {
		return nil, err
	}
	t.Arch = arch
	var out []Candidate
	var skipped []string
	for _, fd := range s.Found {
		if fd.Err != nil {
			continue
		}
		if fd.Arch != "" && fd.Arch != arch {
			continue
		}
		if fd.Folder != nil && t.Version.Less(fd.Folder.Version) {
			continue
		}
		f := fd.File
		if f.Arch != "" && f.Arch != arch {
			o := s.opts
			o.Arch = arch
			if f, err = Parse(fd.Path, f.raw, o); err != nil {
				skipped = append(skipped, err.Error())
				continue
			}
		}
		cands, err := f.Match(t, ids)
		if err != nil {
			skipped = append(skipped, err.Error())
			continue
		}
		for i := range cands {
			if fd.Folder != nil {
				cands[i].Folder = fd.Folder.Name
				cands[i].ProductMatch = productMatch(fd.Folder.Name, t)
				if cands[i].OS.Less(fd.Folder.Version) {
					cands[i].OS = fd.Folder.Version
				}
			}
		}
		out = append(out, cands...)
	}
	if len(out) == 0 {
		// The error starts with ErrNoDriver's text and wraps it, so it reads once.
		detail := ""
		if len(skipped) > 0 {
			detail = " (not applicable: " + strings.Join(skipped, "; ") + ")"
		}
		return nil, fmt.Errorf("%w for %s on %s Windows %s among %d INF files%s", ErrNoDriver, strings.Join(ids, ", "), arch, t.Version, len(s.Found), detail)
	}
	SortCandidates(out)
	return out, nil
}

func productMatch(folder string, t Target) bool {
	f, ok := LookupOSFolder(folder)
	return ok && t.ProductType != ProductAny && f.ProductType == t.ProductType
}

// Missing returns the plan's source files and catalog that are not beside its INF.
func (p *Plan) Missing() []string {
	var out []string
	dir := filepath.Dir(p.INF)
	for _, fc := range p.Files {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(fc.Source))); err != nil {
			out = append(out, fc.Source)
		}
	}
	if p.Catalog != "" {
		if _, err := os.Stat(filepath.Join(dir, p.Catalog)); err != nil {
			out = append(out, p.Catalog)
		}
	}
	return out
}
