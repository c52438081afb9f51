package main

import "github.com/spf13/cobra"

// repairCommands are repair's subcommands. Each lives in a file of its own and adds itself here
// from an init function, so that the kinds of repair stay apart.
var repairCommands []func() *cobra.Command

func newRepair() *cobra.Command {
	c := &cobra.Command{
		Use:   "repair",
		Short: "Rebuild a repository's metadata from what is intact in it",
		Long: `repair rebuilds what one damaged or missing metadata file would otherwise block: each
subcommand names what it rebuilds, from which intact files, and what it removes. verify says
which repair a damage needs.`,
	}
	for _, sub := range repairCommands {
		c.AddCommand(sub())
	}
	return c
}
