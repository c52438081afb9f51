package main

import (
	"fmt"
	"os"
	"text/tabwriter"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/spf13/cobra"
)

func newLayout() *cobra.Command {
	c := &cobra.Command{Use: "layout", Short: "Disk layouts: show"}
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
	c.AddCommand(show)
	return c
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
