package partition

import (
	"fmt"
	"sort"
	"strings"
)

// Mapping source disks onto target disks. Kernel names (sda, nvme0n1) change between boots and
// between machines (rear #1057, #1301): they are never used to match. A disk is matched, in this
// order, by the technician's explicit choice, by WWN, by serial number, and last by size; when a
// rule finds more than one candidate the mapping is refused with the candidates listed, rather
// than guessed.

// SourceDisk is a captured disk to map: its name in the generation (disk0, disk1, …) and layout.
type SourceDisk struct {
	Name   string
	Layout *Disk
}

// TargetCandidate is a disk of the machine being recovered: its path (any path; shown, never
// matched on) and what ReadPath found on it.
type TargetCandidate struct {
	Path   string
	Layout *Disk
}

// MapDisks returns, for every source disk, the path of the target it goes to. explicit maps
// source names to target paths chosen by the technician.
func MapDisks(sources []SourceDisk, targets []TargetCandidate, explicit map[string]string) (map[string]string, error) {
	out := map[string]string{}
	taken := map[string]string{} // target path → source name
	byPath := map[string]*TargetCandidate{}
	for i := range targets {
		if _, dup := byPath[targets[i].Path]; dup {
			return nil, fmt.Errorf("map disks: target %s is listed twice", targets[i].Path)
		}
		byPath[targets[i].Path] = &targets[i]
	}
	known := map[string]bool{}
	for _, s := range sources {
		known[s.Name] = true
	}
	names := make([]string, 0, len(explicit))
	for n := range explicit {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		path := explicit[n]
		if !known[n] {
			return nil, fmt.Errorf("map disks: the generation has no disk %q", n)
		}
		if _, ok := byPath[path]; !ok {
			return nil, fmt.Errorf("map disks: %s (for %s) is not among the target disks", path, n)
		}
		if other, ok := taken[path]; ok {
			return nil, fmt.Errorf("map disks: %s is chosen for both %s and %s", path, other, n)
		}
		out[n], taken[path] = path, n
	}
	free := func() []*TargetCandidate {
		var f []*TargetCandidate
		for i := range targets {
			if _, ok := taken[targets[i].Path]; !ok {
				f = append(f, &targets[i])
			}
		}
		return f
	}
	assign := func(rule string, match func(s *Disk, t *Disk) bool) error {
		for _, s := range sources {
			if _, done := out[s.Name]; done {
				continue
			}
			var cand []*TargetCandidate
			for _, t := range free() {
				if match(s.Layout, t.Layout) {
					cand = append(cand, t)
				}
			}
			switch len(cand) {
			case 0:
				continue
			case 1:
				out[s.Name], taken[cand[0].Path] = cand[0].Path, s.Name
			default:
				return fmt.Errorf("map disks: %s matches %d target disks by %s: %s; choose one explicitly",
					s.Name, len(cand), rule, describeCandidates(cand))
			}
		}
		return nil
	}
	if err := assign("WWN", func(s, t *Disk) bool { return s.WWN != "" && s.WWN == t.WWN }); err != nil {
		return nil, err
	}
	if err := assign("serial number", func(s, t *Disk) bool { return s.Serial != "" && s.Serial == t.Serial }); err != nil {
		return nil, err
	}
	if err := assign("equal size", func(s, t *Disk) bool { return s.Size == t.Size }); err != nil {
		return nil, err
	}
	// Last, a bigger disk: exactly one must be left, or the choice would be a guess.
	if err := assign("size (bigger than the source)", func(s, t *Disk) bool { return t.Size > s.Size }); err != nil {
		return nil, err
	}
	var missing []string
	for _, s := range sources {
		if _, ok := out[s.Name]; !ok {
			missing = append(missing, fmt.Sprintf("%s (%d bytes)", s.Name, s.Layout.Size))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("map disks: no target disk for %s among the free ones: %s; choose explicitly (a smaller disk is possible when the data fits)",
			strings.Join(missing, ", "), describeCandidates(free()))
	}
	return out, nil
}

func describeCandidates(c []*TargetCandidate) string {
	if len(c) == 0 {
		return "none"
	}
	var s []string
	for _, t := range c {
		d := fmt.Sprintf("%s (%d bytes", t.Path, t.Layout.Size)
		if t.Layout.Serial != "" {
			d += ", serial " + t.Layout.Serial
		}
		if t.Layout.WWN != "" {
			d += ", WWN " + t.Layout.WWN
		}
		s = append(s, d+")")
	}
	return strings.Join(s, ", ")
}
