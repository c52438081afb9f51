package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/spf13/cobra"
)

func newReplication() *cobra.Command {
	c := &cobra.Command{
		Use:   "replication",
		Short: "Show, freeze and release machines' replication sessions",
		Long: `A machine that is captured into a repository has a replication session. A recovery freezes it
(no new generation is stored while the machine is being recovered) and at the end removes it
(production failover) or resumes it (copy-and-recover, where the original keeps being captured).
These commands do the same by hand.`,
	}
	c.AddCommand(newReplicationStatus(), newReplicationFreeze(), newReplicationRelease())
	return c
}

func newReplicationStatus() *cobra.Command {
	var f repoFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "status --repo DIR [MACHINE]",
		Short: "List replication sessions",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			var list []tib.Session
			if len(args) == 1 {
				s, err := r.Session(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				if s == nil {
					return fmt.Errorf("machine %q has no replication session in %s", args[0], r.Location())
				}
				list = []tib.Session{*s}
			} else if list, err = r.Sessions(cmd.Context()); err != nil {
				return err
			}
			if asJSON {
				e := json.NewEncoder(os.Stdout)
				e.SetIndent("", "  ")
				if list == nil {
					list = []tib.Session{}
				}
				return e.Encode(list)
			}
			if len(list) == 0 {
				fmt.Println("no replication sessions")
			}
			for _, s := range list {
				fmt.Println(s)
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func newReplicationFreeze() *cobra.Command {
	var f repoFlags
	c := &cobra.Command{
		Use:   "freeze --repo DIR MACHINE",
		Short: "Stop new generations of a machine until it is released",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			s, err := r.Freeze(cmd.Context(), args[0], tib.SessionHolder("cauldron replication freeze"))
			if err != nil {
				return err
			}
			fmt.Println(s)
			return nil
		},
	}
	f.register(c)
	return c
}

func newReplicationRelease() *cobra.Command {
	var f repoFlags
	var resume, remove bool
	c := &cobra.Command{
		Use:   "release --repo DIR MACHINE --resume|--remove",
		Short: "End a freeze: resume captures, or remove the session (failover done)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if resume == remove {
				return fmt.Errorf("say how to release: --resume (captures continue) or --remove (the session ends)")
			}
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			how := tib.ReleaseResume
			if remove {
				how = tib.ReleaseRemove
			}
			if err := r.Release(cmd.Context(), args[0], how); err != nil {
				return err
			}
			fmt.Printf("%s: released (%s)\n", args[0], how)
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&resume, "resume", false, "make the session active again")
	c.Flags().BoolVar(&remove, "remove", false, "remove the session")
	return c
}
