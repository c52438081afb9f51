package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/spf13/cobra"
)

func newRestoreDisk() *cobra.Command {
	var f repoFlags
	var machine, genRef, disk, to, resize, identity, scratch string
	var dryRun bool
	c := &cobra.Command{
		Use:   "restore-disk --repo DIR --machine NAME --generation ID|latest --disk disk0 --to TARGET [--resize MODE] [--identity MODE] [--scratch DIR] [--dry-run]",
		Short: "Write one disk of a generation back to a block device or image file",
		Long: `Write one captured disk back: its layout and every used block, identical to the source.
TARGET is a block device (not mounted) or an image file (created sparse when missing). Every
chunk is checked against its hash as it is written.

When TARGET exists and differs from the source disk in size or sector size, or --resize or
--identity is given, the layout is planned onto it first (as ` + "`layout plan`" + ` shows), printed and
checked against the captured volumes, then the table is written, every partition restored at its
new place and its filesystem grown or shrunk (ext2/3/4, NTFS, FAT16/32, swap; xfs and btrfs
grow only). Volumes that shrink are rebuilt in --scratch first (it needs their used bytes), so
a failure there leaves TARGET untouched. --dry-run stops after printing the plan and its checks.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("--to TARGET is required")
			}
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			gen, err := r.FindGeneration(cmd.Context(), machine, genRef)
			if err != nil {
				return err
			}
			d, err := gen.Disk(disk)
			if err != nil {
				return err
			}
			explicit := cmd.Flags().Changed("resize") || cmd.Flags().Changed("identity")
			plan, err := restorePlan(d, to, resize, identity, explicit)
			if plan != nil {
				printPlan(plan, fmt.Sprintf("%s of %s (generation %s)", d.Name, gen.Machine, gen.ID.String()[:12]), to)
			}
			if err != nil {
				return err
			}
			if plan != nil {
				warnings, err := r.CheckRestorePlan(cmd.Context(), gen, disk, plan, scratch)
				for _, w := range warnings {
					fmt.Println("warning:", w)
				}
				if err != nil {
					return err
				}
			}
			if dryRun {
				if plan == nil {
					fmt.Printf("%s takes %s as it is: every region at its old place, no plan needed\n", to, d.Name)
				}
				fmt.Println("dry run: nothing written")
				return nil
			}
			var protect []string
			if f.dir != "" {
				protect = append(protect, f.dir)
			}
			if exe, err := os.Executable(); err == nil {
				protect = append(protect, exe)
			}
			pl := newProgressLine()
			start := time.Now()
			st, err := r.RestoreDisk(cmd.Context(), tib.RestoreOptions{Generation: gen, Disk: disk, Target: to,
				Plan: plan, Scratch: scratch, Protect: protect,
				Log: func(s string) { pl.done(); fmt.Println(s) },
				Progress: func(p tib.RestoreProgress) {
					pl.show("%s of %s written (%s)", human(p.Written), human(p.Total), rate(p.Written, time.Since(start).Seconds()))
				}})
			pl.done()
			if err != nil {
				return err
			}
			for _, fr := range st.Resized {
				fmt.Printf("partition %d: %s %s %s → %s\n", fr.Partition, fr.Type, map[string]string{"grow": "grown", "shrink": "shrunk"}[fr.Action], human(fr.OldSize), human(fr.NewSize))
			}
			fmt.Printf("restored %s of %s generation %s to %s: %s written, %s zeroed, %d chunks, %.1f s (%s)\n",
				disk, gen.Machine, gen.ID.String()[:12], to, human(st.Bytes), human(st.Zeroed), st.Chunks, st.Seconds, rate(st.Bytes, st.Seconds))
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&machine, "machine", "", "machine name (required)")
	c.Flags().StringVar(&genRef, "generation", "latest", "generation ID (a unique prefix) or latest")
	c.Flags().StringVar(&disk, "disk", "disk0", "which disk of the generation")
	c.Flags().StringVar(&to, "to", "", "target block device or image file (required)")
	c.Flags().StringVar(&resize, "resize", string(partition.ResizeProportional), "when planning: proportional, grow-last or keep")
	c.Flags().StringVar(&identity, "identity", string(partition.IdentityKeep), "when planning: keep (recovery in place) or renew (a copy beside the original)")
	c.Flags().StringVar(&scratch, "scratch", "", "directory for rebuilding volumes that shrink (default $TMPDIR or /tmp); not on TARGET")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and its checks; write nothing")
	c.MarkFlagRequired("machine")
	return c
}

// restorePlan returns the plan for restoring d onto to, or nil when the target takes the disk as
// it was captured: a new (or empty) image file, or a disk of the same size and sector size when
// no --resize or --identity was asked for. A plan whose checks fail is returned with its error.
func restorePlan(d *tib.Disk, to, resize, identity string, explicit bool) (*partition.LayoutPlan, error) {
	fi, err := os.Stat(to)
	if errors.Is(err, os.ErrNotExist) || (err == nil && fi.Mode().IsRegular() && fi.Size() == 0) {
		if explicit {
			return nil, fmt.Errorf("--resize and --identity plan onto an existing target; %s is new and gets %s exactly as captured", to, d.Name)
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	tgt, err := partition.ReadTarget(to)
	if err != nil {
		return nil, err
	}
	src := &d.Layout
	if !explicit && tgt.Size == src.Size && tgt.LogicalSectorSize == src.LogicalSectorSize {
		return nil, nil
	}
	if src.Table == partition.TableNone && !explicit && tgt.LogicalSectorSize == src.LogicalSectorSize {
		return nil, nil // a disk without a table is restored whole (onto a bigger target too)
	}
	plan, err := partition.Plan(src, tgt, partition.PlanOptions{Resize: partition.ResizeMode(resize),
		Identity: partition.IdentityMode(identity), Used: d.UsedByPartition()})
	if plan != nil {
		plan.Target.Path = to
	}
	return plan, err
}
