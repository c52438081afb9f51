package main

import (
	"fmt"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/spf13/cobra"
)

func init() { repairCommands = append(repairCommands, newRepairGenerations) }

func newRepairGenerations() *cobra.Command {
	var f repoFlags
	var dryRun bool
	c := &cobra.Command{
		Use:   "generations --repo DIR [--dry-run]",
		Short: "Remove generations that cannot be read; rebuild lost chunk-list and used-map copies",
		Long: `repair generations takes the exclusive lock and:
  - removes every generation whose manifest cannot be read (damaged, sealed with another
    repository's key, not a manifest), naming each: nothing says what it held;
  - writes anew every generation whose chunk lists or used maps are lost in every copy, or whose
    own metadata packs are damaged or missing: a lost used map is rebuilt from the filesystem's
    allocation structures in the region's chunks (or, when that does not give the map captured,
    the region is marked whole: its chunks hold zeros where blocks were unused); the new manifest
    is saved before the old one is removed (after an interruption, the next run removes the
    old one), and keeps the generation's time and machine (its ID changes);
  - names what cannot be rebuilt: a chunk list lost in every copy (the region's data cannot be
    found again), with the bytes it hits.
--dry-run only says what it would do.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			rep, err := r.RepairGenerations(cmd.Context(), tib.RepairGenerationsOptions{DryRun: dryRun})
			if rep != nil {
				printRepairGenerations(rep, dryRun)
			}
			if err != nil {
				return err
			}
			if len(rep.Lost) > 0 {
				return &exitError{3, fmt.Sprintf("%d region(s) of %s cannot be rebuilt (named above)", len(rep.Lost), r.Location())}
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&dryRun, "dry-run", false, "only say what would be removed and rebuilt")
	return c
}

func printRepairGenerations(rep *tib.RepairGenerationsReport, dryRun bool) {
	removed, rewritten := "removed", "written anew as"
	if dryRun {
		removed, rewritten = "would remove", "would write anew"
	}
	for _, d := range rep.Removed {
		fmt.Printf("%s generation %s: its manifest cannot be read: %v\n", removed, d.ID, d.Err)
	}
	for _, g := range rep.Rewritten {
		if dryRun {
			fmt.Printf("%s generation %s of %s:\n", rewritten, g.Old.String()[:12], g.Machine)
		} else {
			fmt.Printf("generation %s of %s %s %s:\n", g.Old.String()[:12], g.Machine, rewritten, g.New.String()[:12])
		}
		for _, w := range g.Rebuilt {
			fmt.Println("  ", w)
		}
	}
	for _, l := range rep.Lost {
		fmt.Println("CANNOT REBUILD:", l)
	}
	if len(rep.Removed)+len(rep.Rewritten)+len(rep.Lost) == 0 {
		fmt.Println("every generation is readable and its metadata intact: nothing to repair")
	}
}
