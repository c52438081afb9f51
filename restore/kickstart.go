package restore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/restore/kickstart"
	"github.com/cauldron-dr/cauldron/tib"
)

// KickstartOptions are what FromKickstart needs beside the kickstart.
type KickstartOptions struct {
	// Candidates are the disks selectors choose from; nil means SystemDisks().
	Candidates []string
	// MountUSB makes a usb:/PATH location reachable and returns the local path (the boot
	// environment mounts the stick); nil refuses usb: locations.
	MountUSB func(ctx context.Context, path string) (string, error)
	// Prompt asks for the repository's password when the kickstart names no source and
	// $CAULDRON_PASSWORD is unset (an attended run: archive.TerminalPrompt); nil: no password.
	Prompt func(confirm bool) ([]byte, error)
	// Scratch is passed on to the Request.
	Scratch string
	// Log hears about share mounts that needed more than one attempt; nil discards.
	Log func(string)
}

// FromKickstart opens the kickstart's repository and turns the kickstart into a Request. Every
// error names the kickstart line it comes from and wraps its cause (errors.Is finds
// tib.ErrWrongPassword through it).
func FromKickstart(ctx context.Context, ks *kickstart.Kickstart, o KickstartOptions) (*Request, error) {
	at := func(p kickstart.Pos, format string, args ...any) error {
		return fmt.Errorf("%s: %w", p, fmt.Errorf(format, args...))
	}
	repo := ks.Repository
	spec := repo.Spec()
	spec.MountUSB, spec.Log = o.MountUSB, o.Log
	source := repo.Password()
	source.Prompt = o.Prompt
	r, opened, err := archive.OpenRepository(ctx, spec, func() ([]byte, error) { return source.Password(false) })
	if err != nil {
		return nil, at(repo.Pos, "repository %s: %w", repo.Location, err)
	}
	dir := opened.Dir

	if ks.Target.Kind == kickstart.TargetVM {
		return nil, at(ks.Target.Pos, "target vm: writing virtual disk images and registering them with a hypervisor is not supported yet; use target physical (disks or image files)")
	}
	req := &Request{Name: ks.File, Repo: r, RepoPath: dir, Machine: ks.Machine.Name,
		AutoResize: ks.AutoResize, AutoIdentity: ks.AutoIdentity, Scratch: o.Scratch, Candidates: o.Candidates}
	for _, rt := range ks.Reports {
		dir := rt.To.Path
		if rt.To.Kind == archive.USB {
			if o.MountUSB == nil {
				return nil, at(rt.Pos, "report --to %s: usb: locations work only in the boot environment", rt.To)
			}
			p, err := o.MountUSB(ctx, rt.To.Path)
			if err != nil {
				return nil, fmt.Errorf("%s: report --to %s: %w", rt.Pos, rt.To, err)
			}
			dir = p
		}
		req.ReportTo = append(req.ReportTo, dir)
	}
	for _, n := range ks.Networks {
		// Parsed and validated, but not yet written into the restored system: say so in the
		// plan rather than drop it silently.
		req.Notes = append(req.Notes, fmt.Sprintf("%s: network settings are not applied to the restored system yet (it keeps its own)", n.Pos))
	}
	// The repository resolves every kind of reference by one rule (tib.FindGeneration),
	// times included: the kickstart hands it on as written.
	req.Generation = ks.Machine.Generation.String()
	if ks.Replication != nil {
		req.Freeze = true
		req.Release = tib.ReleaseMode(ks.Replication.Release)
	}
	in := ks.Inoculate
	req.Inoculate = Inoculation{Skip: in.Skip, Hardware: string(in.Hardware), Drivers: in.Drivers, EnableInbox: in.EnableInbox, DisableServices: in.DisableServices}

	cands := o.Candidates
	if cands == nil {
		if cands, err = SystemDisks(); err != nil {
			return nil, err
		}
	}
	var info []candidate
	for _, c := range cands {
		if d, err := partition.ReadTarget(c); err == nil {
			info = append(info, candidate{c, d})
		}
	}
	if ks.IgnoreDisk != nil {
		for _, sel := range ks.IgnoreDisk.Drives {
			paths, err := selectDisks(sel, info)
			if err != nil {
				return nil, at(ks.IgnoreDisk.Pos, "ignoredisk %s: %w", sel, err)
			}
			req.Exclude = append(req.Exclude, paths...)
		}
	}
	excluded := map[string]bool{}
	for _, e := range req.Exclude {
		excluded[canonical(e)] = true
	}
	var free []candidate
	for _, c := range info {
		if !excluded[canonical(c.path)] {
			free = append(free, c)
		}
	}
	for _, d := range ks.Disks {
		dr := DiskRequest{Source: d.Source, Resize: d.Resize, Identity: d.Identity}
		if d.Target.By != kickstart.SelectAuto {
			paths, err := selectDisks(d.Target, free)
			if err != nil {
				return nil, at(d.Pos, "disk %s --target %s: %w", d.Source, d.Target, err)
			}
			if len(paths) != 1 {
				return nil, at(d.Pos, "disk %s --target %s: %d disks match (%s); make the selector unambiguous", d.Source, d.Target, len(paths), strings.Join(paths, ", "))
			}
			dr.Target = paths[0]
		}
		req.Disks = append(req.Disks, dr)
	}
	return req, nil
}

type candidate struct {
	path string
	disk *partition.Disk
}

// selectDisks returns the candidates a selector picks (a path is taken as given).
func selectDisks(sel kickstart.DiskSelector, cands []candidate) ([]string, error) {
	var out []string
	switch sel.By {
	case kickstart.SelectPath:
		return []string{sel.Value}, nil
	case kickstart.SelectSerial, kickstart.SelectWWN:
		for _, c := range cands {
			v := c.disk.Serial
			if sel.By == kickstart.SelectWWN {
				v = c.disk.WWN
			}
			if v != "" && strings.EqualFold(strings.TrimSpace(v), sel.Value) {
				out = append(out, c.path)
			}
		}
	case kickstart.SelectBiggest, kickstart.SelectSmallest:
		if len(cands) == 0 {
			break
		}
		s := append([]candidate(nil), cands...)
		sort.SliceStable(s, func(i, j int) bool { return s[i].disk.Size > s[j].disk.Size })
		pick := s[0]
		if sel.By == kickstart.SelectSmallest {
			pick = s[len(s)-1]
		}
		for _, c := range s {
			if c.disk.Size == pick.disk.Size {
				out = append(out, c.path)
			}
		}
	case kickstart.SelectSize:
		for _, c := range cands {
			if c.disk.Size >= sel.Min && c.disk.Size <= sel.Max {
				out = append(out, c.path)
			}
		}
	default:
		return nil, fmt.Errorf("unknown selector %q", sel.By)
	}
	if len(out) == 0 {
		var have []string
		for _, c := range cands {
			have = append(have, fmt.Sprintf("%s (%s, serial %q, WWN %q)", filepath.Base(c.path), HumanBytes(c.disk.Size), c.disk.Serial, c.disk.WWN))
		}
		if len(have) == 0 {
			return nil, errors.New("no disk matches: this machine has no candidate disks")
		}
		return nil, fmt.Errorf("no disk matches; the disks are: %s", strings.Join(have, "; "))
	}
	return out, nil
}

// KickstartPlanError names the kickstart lines a planning error comes from, keeping its chain:
// an unknown machine or generation gets the machine command's line (or its --generation value's),
// and each problem of the plan that concerns a disk a `disk` command names gets that command's
// line (PlanError.Disks). Other errors are returned as they are.
func KickstartPlanError(ks *kickstart.Kickstart, err error) error {
	if err == nil || ks == nil {
		return err
	}
	var pe *PlanError
	switch {
	case errors.Is(err, tib.ErrUnknownGeneration) && ks.Machine.Generation.Pos.Line > 0:
		return fmt.Errorf("%s: %w", ks.Machine.Generation.Pos, err)
	case errors.Is(err, tib.ErrUnknownMachine), errors.Is(err, tib.ErrUnknownGeneration):
		return fmt.Errorf("%s: %w", ks.Machine.Pos, err)
	case !errors.As(err, &pe):
		return err
	}
	out := &PlanError{Disks: pe.Disks, causes: pe.causes}
	for i, p := range pe.Problems {
		if i < len(pe.Disks) {
			for _, d := range ks.Disks {
				if d.Source == pe.Disks[i] && pe.Disks[i] != "" {
					p = d.Pos.String() + ": " + p
					break
				}
			}
		}
		out.Problems = append(out.Problems, p)
	}
	return out
}
