package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/spf13/cobra"
)

func newLayout() *cobra.Command {
	c := &cobra.Command{Use: "layout", Short: "Disk layouts: show, plan onto a target, apply a plan"}
	var jsonOut bool
	show := &cobra.Command{
		Use:   "show TARGET [--json]",
		Short: "Print a disk's or image's partition table and filesystems (read-only)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := partition.ReadPath(args[0])
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(d)
			}
			printLayout(d)
			return nil
		},
	}
	show.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	c.AddCommand(show, newLayoutPlan(false), newLayoutPlan(true))
	return c
}

// planFlags are what `layout plan` and `layout apply` share: where the source layout comes from
// (a generation's disk, or --from a disk or image), the target and the plan's choices.
type planFlags struct {
	repo             repoFlags
	machine, genRef  string
	disk, from, to   string
	resize, identity string
	jsonOut, yes     bool
	planFile         string // layout apply --plan: a saved plan

	r *tib.Repository // the repository source() opened, if any
}

// source returns the source layout, the used bytes per partition and a description.
func (f *planFlags) source(cmd *cobra.Command) (*partition.Disk, map[int]int64, string, error) {
	if f.from != "" {
		if f.repo.repo != "" || f.machine != "" {
			return nil, nil, "", errors.New("give either --from SOURCE or --repo with --machine, not both")
		}
		d, err := partition.ReadPath(f.from)
		if err != nil {
			return nil, nil, "", err
		}
		// The filesystems' own counters (Filesystem.UsedBytes) stand for the used bytes.
		return d, nil, f.from, nil
	}
	if f.machine == "" {
		return nil, nil, "", errors.New("--machine NAME is required (or --from SOURCE)")
	}
	r, err := f.repo.open(cmd)
	if err != nil {
		return nil, nil, "", err
	}
	f.r = r
	gen, err := r.FindGeneration(cmd.Context(), f.machine, f.genRef)
	if err != nil {
		return nil, nil, "", err
	}
	d, err := gen.Disk(f.disk)
	if err != nil {
		return nil, nil, "", err
	}
	layout := d.Layout
	return &layout, d.UsedByPartition(), fmt.Sprintf("%s of %s (generation %s)", d.Name, gen.Machine, gen.ID.String()[:12]), nil
}

func newLayoutPlan(apply bool) *cobra.Command {
	var f planFlags
	use, short := "plan", "Print how a captured disk's layout would be laid onto a target disk (a dry run)"
	long := `Map a source layout (disk --disk of a generation, or --from a disk or image) onto TARGET:
every partition old → new (start, size), every identity old → new, the filesystems to grow or
shrink after their data is restored, and every check. Nothing is written. Exits 1 when a check
fails, after printing the plan.`
	if apply {
		use, short = "apply", "Write the planned partition table onto a target disk (no data)"
		long = `Plan as ` + "`layout plan`" + ` does, then write the table onto TARGET: old signatures wiped (both
GPT copies, MBR, filesystem, MD, LVM and LUKS magics at old and new partition starts and ends),
the table, the source's boot code (bytes 0–439), disk signature and active flag; the kernel is
told (BLKRRPART, else BLKPG). Refused for a mounted disk, the disk holding the running system, the
repository or this program, the boot medium, a partition, an image attached to a loop device, and
any disk other than the one planned. Needs consent: --yes, or ERASE typed at the prompt.`
	}
	usage := " (--repo DIR --machine NAME [--generation ID|latest|TIME] [--disk disk0] | --from SOURCE) --to TARGET [--resize proportional|grow-last|keep] [--identity keep|renew] [--json]"
	if apply {
		usage = " (--repo DIR --machine NAME [--generation ID|latest|TIME] [--disk disk0] | --from SOURCE | --plan FILE) --to TARGET [--resize …] [--identity …] [--json] [--yes]"
	}
	c := &cobra.Command{
		Use:   use + usage,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.to == "" {
				return errors.New("--to TARGET is required")
			}
			var plan *partition.LayoutPlan
			var perr error
			var what string
			if f.planFile != "" {
				// The very plan that was shown (with its renewed identities), not a new one.
				b, err := os.ReadFile(f.planFile)
				if err != nil {
					return err
				}
				plan = &partition.LayoutPlan{}
				if err := json.Unmarshal(b, plan); err != nil {
					return fmt.Errorf("%s is not a plan from `cauldron layout plan --json`: %v", f.planFile, err)
				}
				if plan.Layout == nil {
					return fmt.Errorf("%s is not a plan from `cauldron layout plan --json`: it has no \"layout\"", f.planFile)
				}
				what = "the plan in " + f.planFile
			} else {
				src, used, w, err := f.source(cmd)
				if err != nil {
					return err
				}
				tgt, err := partition.ReadTarget(f.to)
				if err != nil {
					return err
				}
				plan, perr = partition.Plan(src, tgt, partition.PlanOptions{Resize: partition.ResizeMode(f.resize),
					Identity: partition.IdentityMode(f.identity), Used: used})
				if plan == nil {
					return perr
				}
				plan.Target.Path, what = f.to, w
			}
			if !apply || perr != nil {
				if f.jsonOut {
					if err := printJSON(plan); err != nil {
						return err
					}
				} else {
					printPlan(plan, what, f.to)
				}
				return perr
			}
			// The engine's way, as every other write: a plan whose one step writes the table,
			// the safety gate (the source disk given by --from is protected too), consent.
			req := restore.Request{Name: "layout apply", Repo: f.r, RepoPath: f.repo.dir, Machine: f.machine, LayoutOnly: true,
				Disks: []restore.DiskRequest{{Source: f.disk, Target: f.to, Plan: plan}}}
			if f.from != "" {
				req.Protect = []string{f.from}
			}
			rp, err := restore.Prepare(cmd.Context(), req)
			if err != nil {
				return err
			}
			if err := confirmOverwrite(rp.Overwrites(), f.yes); err != nil {
				return err
			}
			rep, err := restore.Run(cmd.Context(), rp, restore.RunOptions{})
			if err != nil {
				return err
			}
			res := rep.Disks[0].Table
			if f.jsonOut {
				return printJSON(struct {
					Plan   *partition.LayoutPlan  `json:"plan"`
					Result *partition.ApplyResult `json:"result"`
				}{plan, res})
			}
			printPlan(plan, what, f.to)
			var wiped int64
			for _, e := range res.Wiped {
				wiped += e.Size
			}
			fmt.Printf("written: %s table on %s (%s wiped in %d ranges)", plan.Layout.Table, f.to, human(wiped), len(res.Wiped))
			if res.Reread != "" {
				fmt.Printf("; kernel told by %s: %d partition nodes", res.Reread, len(res.Nodes))
			}
			fmt.Println()
			return nil
		},
	}
	f.repo.register(c)
	c.Flags().StringVar(&f.machine, "machine", "", "machine name")
	c.Flags().StringVar(&f.genRef, "generation", "latest", "latest, a generation ID (a unique prefix), or a time: the newest generation taken at or before it (no zone means UTC)")
	c.Flags().StringVar(&f.disk, "disk", "disk0", "which disk of the generation")
	c.Flags().StringVar(&f.from, "from", "", "take the source layout from this disk or image instead of a repository")
	c.Flags().StringVar(&f.to, "to", "", "target block device or image file (required)")
	c.Flags().StringVar(&f.resize, "resize", string(partition.ResizeProportional), "proportional, grow-last or keep")
	c.Flags().StringVar(&f.identity, "identity", string(partition.IdentityKeep), "keep (recovery in place) or renew (a copy beside the original)")
	c.Flags().BoolVar(&f.jsonOut, "json", false, "print JSON")
	if apply {
		c.Flags().BoolVar(&f.yes, "yes", false, "confirm that TARGET's contents are to be replaced")
		c.Flags().StringVar(&f.planFile, "plan", "", "apply this plan (saved from `layout plan --json`) instead of planning again")
	}
	return c
}

func printPlan(p *partition.LayoutPlan, what, to string) {
	l := p.Layout
	fmt.Printf("plan: %s onto %s\n", what, to)
	fmt.Printf("table %s, %s → %s, sectors %d → %d, resize %s, identity %s\n",
		l.Table, human(p.SourceSize), human(p.Target.Size), p.SourceLSS, p.Target.LogicalSectorSize, p.Resize, p.IdentityOpt)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tKIND\tOLD START\tOLD SIZE\t\tNEW START\tNEW SIZE\tFS\tUSED")
	for _, m := range p.Moves {
		used := ""
		if m.Used > 0 {
			used = human(m.Used)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t→\t%d\t%s\t%s\t%s\n", m.Number, m.Kind, m.OldStart, human(m.OldSize), m.NewStart, human(m.NewSize), m.Filesystem, used)
	}
	tw.Flush()
	if len(p.Identities) > 0 {
		fmt.Println("identities:")
		for _, id := range p.Identities {
			what := id.What
			if id.Partition != 0 {
				what = fmt.Sprintf("%s %d", id.What, id.Partition)
			}
			state := "kept"
			if id.Old != id.New {
				state = "renewed"
			}
			fmt.Printf("  %-18s %s → %s (%s)\n", what, id.Old, id.New, state)
		}
	}
	if len(p.Filesystems) > 0 {
		fmt.Println("filesystems to resize after their data is restored:")
		for _, r := range p.Filesystems {
			fmt.Printf("  partition %d: %s %s %s → %s\n", r.Partition, r.Action, r.Type, human(r.OldSize), human(r.NewSize))
		}
	}
	fmt.Println("checks:")
	for _, c := range p.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		if c.Detail != "" {
			fmt.Printf("  %s %s: %s\n", mark, c.Name, c.Detail)
		} else {
			fmt.Printf("  %s %s\n", mark, c.Name)
		}
	}
	for _, w := range p.Warnings {
		fmt.Printf("warning: %s\n", w)
	}
}

func printLayout(d *partition.Disk) {
	fmt.Printf("table %s, %s (%d bytes), sectors %d/%d", d.Table, human(d.Size), d.Size, d.LogicalSectorSize, d.PhysicalSectorSize)
	if d.DiskGUID != "" {
		fmt.Printf(", disk GUID %s", d.DiskGUID)
	}
	if d.Signature != 0 {
		fmt.Printf(", signature %08x", d.Signature)
	}
	if d.Bootloader != "" {
		fmt.Printf(", boot code: %s", d.Bootloader)
	} else if len(d.BootCode) > 0 {
		fmt.Print(", boot code present")
	}
	fmt.Println()
	for _, s := range []struct{ k, v string }{{"model", d.Model}, {"serial", d.Serial}, {"wwn", d.WWN}} {
		if s.v != "" {
			fmt.Printf("%s %s\n", s.k, s.v)
		}
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tKIND\tSTART\tSIZE\tTYPE\tNAME\tFS\tLABEL\tUUID\tUSED")
	for _, p := range d.Partitions {
		typ := p.Type
		if p.TypeName != "" {
			typ = p.TypeName
		}
		if p.Active {
			typ += " *"
		}
		fs, label, uuid, used := "", "", "", ""
		if p.Filesystem != nil {
			fs, label, uuid = p.Filesystem.Type, p.Filesystem.Label, p.Filesystem.UUID
			if p.Filesystem.UsedBytes > 0 {
				used = human(p.Filesystem.UsedBytes)
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Kind, p.Start, human(p.Size), typ, p.Name, fs, label, uuid, used)
	}
	tw.Flush()
}
