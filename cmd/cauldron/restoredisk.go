package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore"
	"github.com/spf13/cobra"
)

func newRestoreDisk() *cobra.Command {
	var f repoFlags
	var machine, genRef, disk, to, resize, identity, scratch string
	var dryRun, yes, noVerify, partial bool
	c := &cobra.Command{
		Use:   "restore-disk --repo DIR --machine NAME --generation ID|latest|TIME --disk disk0 --to TARGET [--resize MODE] [--identity MODE] [--scratch DIR] [--dry-run] [--yes]",
		Short: "Write one disk of a generation back to a block device or image file",
		Long: `Write one captured disk back: its layout and every used block, identical to the source.
TARGET is a whole disk (not mounted, not in use) or an image file (created sparse when missing).
It is the recovery engine's one-disk case: the same plan, safety gate, journal, verification and
report as ` + "`recover`" + `, without inoculation (the disk is written as it was captured).

When TARGET exists and differs from the source disk in size or sector size, or --resize or
--identity is given, the layout is planned onto it first (as ` + "`layout plan`" + ` shows), printed and
checked against the captured volumes, then the table is written, every partition restored at its
new place and its filesystem grown or shrunk (ext2/3/4, NTFS, FAT16/32, swap; xfs and btrfs
grow only). Volumes that shrink are rebuilt in --scratch first (it needs their used bytes), so
a failure there leaves TARGET untouched. Afterwards the target is read back and compared with the
generation's chunk hashes.

Damage in the repository stops the restore at the first damaged chunk, naming the bytes it holds.
With --partial (byte for byte only) the restore goes on: what is intact is restored and verified,
each damaged range is left as zeros on TARGET and named, and the exit status is 3.

Refused before anything is written: the disk (or image file) holding the repository or this
program, the boot medium, a mounted, swap or stacked device, a partition where a whole disk is
meant, an image attached to a loop device. A block device or an existing image file is written
only with consent: --yes, or ERASE typed at the prompt (as in the wizard). --dry-run prints the plan
and stops.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("--to TARGET is required")
			}
			explicit := cmd.Flags().Changed("resize") || cmd.Flags().Changed("identity")
			if _, err := os.Stat(to); errors.Is(err, os.ErrNotExist) && explicit {
				return fmt.Errorf("--resize and --identity plan onto an existing target; %s is new and gets %s exactly as captured", to, disk)
			}
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			dr := restore.DiskRequest{Source: disk, Target: to}
			if cmd.Flags().Changed("resize") {
				dr.Resize = partition.ResizeMode(resize)
			}
			if cmd.Flags().Changed("identity") {
				dr.Identity = partition.IdentityMode(identity)
			}
			plan, err := restore.Prepare(cmd.Context(), restore.Request{Name: "restore-disk", Repo: r, RepoPath: f.dir,
				Machine: machine, Generation: genRef, Disks: []restore.DiskRequest{dr}, Only: true, Candidates: []string{}, NoVerify: noVerify, Partial: partial,
				Scratch: scratch, Inoculate: restore.Inoculation{Skip: true, Why: "restore-disk writes the disk as it was captured"}})
			if err != nil {
				return err
			}
			d := plan.Disks[0]
			if d.Layout != nil {
				printPlan(d.Layout, fmt.Sprintf("%s of %s (generation %s)", d.Source, plan.Machine, plan.Generation[:12]), to)
			}
			plan.WriteText(os.Stdout)
			if dryRun {
				if d.Layout == nil {
					fmt.Printf("%s takes %s as it is: every region at its old place, no plan needed\n", to, d.Source)
				}
				fmt.Println("dry run: nothing written")
				return nil
			}
			if err := confirmOverwrite(plan.Overwrites(), yes); err != nil {
				return err
			}
			pl := newProgressLine()
			rep, err := restore.Run(cmd.Context(), plan, restore.RunOptions{Events: func(e restore.Event) {
				switch {
				case e.Kind == restore.EventProgress:
					pl.show("%s: %s of %s (%s/s)", e.Stage, human(e.Bytes), human(e.Total), human(int64(e.Rate)))
				case e.Kind == restore.EventInfo && e.Stage == restore.StageRestore:
					pl.done()
					fmt.Println(e.Message)
				}
			}})
			pl.done()
			if rep != nil {
				for _, dr := range rep.Disks {
					for _, fr := range dr.Resized {
						fmt.Printf("partition %d: %s %s %s → %s\n", fr.Partition, fr.Type, map[string]string{"grow": "grown", "shrink": "shrunk"}[fr.Action], human(fr.OldSize), human(fr.NewSize))
					}
				}
				for _, w := range rep.Warnings {
					fmt.Println("warning:", w)
				}
			}
			if err != nil {
				return err
			}
			dr0 := rep.Disks[0]
			checked := human(dr0.Verified) + " compared with the generation"
			if noVerify {
				checked = "not read back (--no-verify)"
			}
			fmt.Printf("restored %s of %s generation %s to %s: %s written in %.1f s (%s), %s\n",
				d.Source, plan.Machine, plan.Generation[:12], to, human(dr0.Bytes), dr0.Seconds, rate(dr0.Bytes, dr0.Seconds), checked)
			if len(dr0.Damaged) > 0 {
				for _, dm := range dr0.Damaged {
					fmt.Println("DAMAGED, left as zeros:", dm)
				}
				return &exitError{3, fmt.Sprintf("%d range(s) of %s were damaged in the repository and are zeros on %s; the rest is restored and verified", len(dr0.Damaged), d.Source, to)}
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&machine, "machine", "", "machine name (required)")
	c.Flags().StringVar(&genRef, "generation", "latest", "latest, a generation ID (a unique prefix), or a time: the newest generation taken at or before it (no zone means UTC)")
	c.Flags().StringVar(&disk, "disk", "disk0", "which disk of the generation")
	c.Flags().StringVar(&to, "to", "", "target block device or image file (required)")
	c.Flags().StringVar(&resize, "resize", string(partition.ResizeProportional), "when planning: proportional, grow-last or keep")
	c.Flags().StringVar(&identity, "identity", string(partition.IdentityKeep), "when planning: keep (recovery in place) or renew (a copy beside the original)")
	c.Flags().StringVar(&scratch, "scratch", "", "directory for rebuilding volumes that shrink (default $TMPDIR or /tmp); not on TARGET")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and its checks; write nothing")
	c.Flags().BoolVar(&partial, "partial", false, "go on past damage in the repository: restore and verify what is intact, leave each damaged range as zeros and name it (exit status 3); byte for byte only")
	c.Flags().BoolVar(&noVerify, "no-verify", false, "do not read the target back to compare it with the generation (chunks are still checked as they are written)")
	c.Flags().BoolVar(&yes, "yes", false, "consent to overwriting TARGET (a block device or an existing image) without the typed confirmation")
	c.MarkFlagRequired("machine")
	return c
}
