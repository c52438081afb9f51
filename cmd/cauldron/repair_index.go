package main

import (
	"fmt"
	"sort"

	"github.com/spf13/cobra"
)

func init() { repairCommands = append(repairCommands, newRepairIndex) }

func newRepairIndex() *cobra.Command {
	var f repoFlags
	c := &cobra.Command{
		Use:   "index --repo DIR",
		Short: "Rebuild the index from the pack headers",
		Long: `repair index rebuilds the repository's index from the headers of the stored packs, under
the exclusive lock (no capture, restore or prune runs meanwhile). It reads the header of every
pack, writes index files covering every pack whose header opens, then removes every other index
file: damaged ones (not hashing to their name, not opening, not decoding) and the ones the new
index supersedes. It says what it wrote and removed. A pack whose header does not open is named
and left in place for verify (run 'cauldron verify --read-data'); if an intact old index file
listed it, the new index keeps that listing so that its intact blobs stay readable.

Restores, captures and prunes work without it — they skip damaged index files and read the
headers of the packs no intact index lists — but each of them pays for those reads until the
index is repaired. 'cauldron verify' says when it is needed.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			rep, err := r.RepairIndex(cmd.Context())
			if rep != nil {
				for _, d := range rep.Damaged {
					fmt.Printf("damaged: %v\n", d)
				}
				var bad []string
				for id, e := range rep.DamagedPacks {
					bad = append(bad, fmt.Sprintf("damaged pack data/%s: %v: left in place; run `cauldron verify --read-data`", id, e))
				}
				sort.Strings(bad)
				for _, b := range bad {
					fmt.Println(b)
				}
				for _, id := range rep.FromOldIndex {
					fmt.Printf("pack data/%s: its header does not open; kept as an intact old index file listed it\n", id)
				}
				fmt.Printf("wrote %d index file(s) listing %d packs (%d blobs); removed %d old index file(s) (%d damaged)\n",
					len(rep.Written), rep.Packs, rep.Blobs, len(rep.Removed), len(rep.Damaged))
			}
			return err
		},
	}
	f.register(c)
	return c
}
