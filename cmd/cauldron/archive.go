package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/klauspost/compress/zstd"
	"github.com/spf13/cobra"
)

func newInit() *cobra.Command {
	var f repoFlags
	var chunk, packSize int
	var noPassword bool
	c := &cobra.Command{
		Use:   "init --repo DIR [--password-file F]",
		Short: "Create a repository (encrypted when a password is given)",
		Long: `Create a new repository in DIR (missing or empty).

With a password (--password-file FILE, --password-file - for standard input, $CAULDRON_PASSWORD,
or typed at the prompt) every file the repository stores is encrypted and authenticated with
AES-256-GCM under a random master key, which is wrapped with a key derived from the password by
Argon2id. Only --no-password creates an unencrypted repository, whose files are only
checksummed; without a password and without a terminal to ask on, init refuses.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sp, err := f.spec()
			if err != nil {
				return err
			}
			if errs := sp.Check(); len(errs) > 0 {
				return errs[0]
			}
			var pw []byte
			if noPassword && f.passwordFile != "" {
				return errors.New("--no-password and --password-file contradict each other: give one")
			}
			if !noPassword {
				if pw, err = f.passwordSource().Password(true); err != nil {
					return err
				}
				// Never unencrypted by accident: `echo pw | cauldron init` used to create
				// one, the piped password unread.
				if len(pw) == 0 {
					return fmt.Errorf("no password for the new repository at %s: give --password-file FILE (- reads standard input) or $%s, run init on a terminal to type it, or --no-password for an unencrypted repository",
						sp.Location, archive.PasswordEnv)
				}
			}
			// A new directory is made by tib.Init; anywhere else is reached as every command
			// reaches it.
			var be backend.Backend = local.New(sp.Location.Path)
			if sp.Location.Kind != archive.Path {
				opened, err := archive.Open(cmd.Context(), sp)
				if err != nil {
					return err
				}
				defer opened.Close()
				be = opened
			}
			r, err := tib.Init(cmd.Context(), be, tib.InitOptions{Password: pw, ChunkSize: chunk << 10, PackSize: packSize << 20})
			if err != nil {
				return err
			}
			kind := "unencrypted (checksummed only)"
			if r.Config().Encrypted {
				kind = "encrypted (AES-256-GCM, Argon2id)"
			}
			fmt.Printf("created %s repository %s at %s\n", kind, r.Config().ID[:8], sp.Location)
			return nil
		},
	}
	f.register(c)
	c.Flags().IntVar(&chunk, "chunk-size", tib.DefaultChunkSize>>10, "cell (chunk) size in KiB; a multiple of 4")
	c.Flags().IntVar(&packSize, "pack-size", tib.DefaultPackSize>>20, "target pack file size in MiB")
	c.Flags().BoolVar(&noPassword, "no-password", false, "create an unencrypted repository without asking")
	return c
}

func newCapture() *cobra.Command {
	var f repoFlags
	var machine, parent, level string
	var noParent, jsonOut bool
	c := &cobra.Command{
		Use:   "capture --repo DIR --machine NAME SOURCE...",
		Short: "Store one generation of a machine's disks (block devices or raw images)",
		Long: `Capture whole disks (block devices or raw image files) as one generation of a machine.
The disks are named disk0, disk1, … in the order given. Each disk's layout is recorded; ext2/3/4,
FAT and NTFS volumes are read through their allocation maps (only used blocks); other volumes and
the space between partitions are stored whole, without their all-zero cells. Data is deduplicated
against everything in the repository, so a second capture stores only what changed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			lv, err := zstdLevel(level)
			if err != nil {
				return err
			}
			if err := tib.ValidMachineName(machine); err != nil {
				return err
			}
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			pl := newProgressLine()
			start := time.Now()
			gen, err := r.Capture(cmd.Context(), tib.CaptureOptions{
				Machine: machine, Sources: args, Parent: parent, NoParent: noParent, Level: lv,
				Progress: func(p tib.CaptureProgress) {
					el := time.Since(start).Seconds()
					pl.show("%s region %d/%d: %s of %s read (%s), %s new", p.Disk, p.Region+1, p.Regions,
						human(p.ReadBytes), human(p.TotalBytes), rate(p.ReadBytes, el), human(p.NewBytes))
				},
			})
			pl.done()
			if err != nil {
				return err
			}
			if jsonOut {
				return printJSON(genJSON(gen))
			}
			par := "none (first generation)"
			if gen.Parent != nil {
				par = gen.Parent.String()[:12]
			}
			fmt.Printf("generation %s of %s saved (parent %s)\n", gen.ID.String()[:12], gen.Machine, par)
			for _, d := range gen.Disks {
				fmt.Printf("  %s  %s  %s %s, %d regions\n", d.Name, d.Source, human(d.Layout.Size), d.Layout.Table, len(d.Regions))
				for _, g := range d.Regions {
					if g.Note != "" {
						fmt.Printf("  note: %s partition %d (%s): %s\n", d.Name, g.Partition, g.Filesystem, g.Note)
					}
				}
			}
			s := gen.Stats
			fmt.Printf("  %s used of %s; %s new in %d chunks; %.1f s (%s)\n", human(s.UsedBytes), human(s.LogicalBytes),
				human(s.NewBytes), s.NewChunks, s.Seconds, rate(s.UsedBytes, s.Seconds))
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&machine, "machine", "", "machine name (required)")
	c.Flags().StringVar(&parent, "parent", "", "parent generation ID (default: the machine's latest)")
	c.Flags().BoolVar(&noParent, "no-parent", false, "record no parent (a new chain)")
	c.Flags().StringVar(&level, "compression", "fastest", "zstd level: fastest, default, better, best")
	c.Flags().BoolVar(&jsonOut, "json", false, "print the generation as JSON")
	c.MarkFlagRequired("machine")
	return c
}

func zstdLevel(s string) (zstd.EncoderLevel, error) {
	switch s {
	case "fastest":
		return zstd.SpeedFastest, nil
	case "default":
		return zstd.SpeedDefault, nil
	case "better":
		return zstd.SpeedBetterCompression, nil
	case "best":
		return zstd.SpeedBestCompression, nil
	}
	return 0, fmt.Errorf("--compression %q: want fastest, default, better or best", s)
}

// genSummary is the JSON shape of `generations --json`.
type genSummary struct {
	ID      string       `json:"id"`
	Machine string       `json:"machine"`
	Time    time.Time    `json:"time"`
	Parent  string       `json:"parent,omitempty"`
	Disks   []diskSumm   `json:"disks"`
	Stats   tib.GenStats `json:"stats"`
}

type diskSumm struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	Size   int64  `json:"size"`
	Table  string `json:"table"`
}

func genJSON(g *tib.Generation) genSummary {
	s := genSummary{ID: g.ID.String(), Machine: g.Machine, Time: g.Time, Stats: g.Stats}
	if g.Parent != nil {
		s.Parent = g.Parent.String()
	}
	for _, d := range g.Disks {
		s.Disks = append(s.Disks, diskSumm{d.Name, d.Source, d.Layout.Size, string(d.Layout.Table)})
	}
	return s
}

func printJSON(v any) error {
	e := json.NewEncoder(os.Stdout)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

func newGenerations() *cobra.Command {
	var f repoFlags
	var machine string
	var jsonOut bool
	c := &cobra.Command{
		Use:   "generations --repo DIR [--machine NAME] [--json]",
		Short: "List machines and their generations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			gens, damaged, err := r.ListGenerations(cmd.Context(), machine)
			if err != nil {
				return err
			}
			// A manifest that cannot be read is one damaged generation: named (its machine is
			// unknown, so whatever --machine says), with the way to be rid of it.
			for _, d := range damaged {
				fmt.Fprintf(os.Stderr, "cauldron: warning: damaged generation %s: %v; %s\n", d.ID, d.Err, d.Remedy())
			}
			// A session that cannot be read must not hide the list: said, and verify reports it.
			rollbacks, err := r.Rollbacks(cmd.Context(), machine)
			if err != nil {
				fmt.Fprintf(os.Stderr, "cauldron: warning: cannot check for rollbacks: %v\n", err)
			}
			for _, rb := range rollbacks {
				fmt.Fprintf(os.Stderr, "cauldron: warning: %s (run `cauldron verify`)\n", rb)
			}
			if machine != "" && len(gens) == 0 && len(damaged) == 0 {
				if _, err := r.FindGeneration(cmd.Context(), machine, "latest"); err != nil {
					return err
				}
			}
			if jsonOut {
				out := []genSummary{}
				for _, g := range gens {
					out = append(out, genJSON(g))
				}
				return printJSON(out)
			}
			if len(gens) == 0 && len(damaged) == 0 {
				fmt.Println("no generations yet")
				return nil
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "MACHINE\tGENERATION\tTIME\tPARENT\tDISKS\tSIZE\tUSED\tNEW DATA")
			for _, g := range gens {
				par := "-"
				if g.Parent != nil {
					par = g.Parent.String()[:12]
				}
				var disks []string
				for _, d := range g.Disks {
					disks = append(disks, d.Name)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", g.Machine, g.ID.String()[:12], tib.FormatTime(g.Time),
					par, strings.Join(disks, ","), human(g.Stats.LogicalBytes), human(g.Stats.UsedBytes), human(g.Stats.NewBytes))
			}
			for _, d := range damaged {
				fmt.Fprintf(tw, "?\t%s\tDAMAGED\t-\t-\t-\t-\t-\n", d.ID.String()[:12])
			}
			return tw.Flush()
		},
	}
	f.register(c)
	c.Flags().StringVar(&machine, "machine", "", "only this machine")
	c.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return c
}

func newVerify() *cobra.Command {
	var f repoFlags
	var machine, genRef string
	var readData bool
	c := &cobra.Command{
		Use:   "verify --repo DIR [--machine NAME] [--generation ID|latest|TIME] [--read-data]",
		Short: "Check the repository's structure, or every byte; exit status 3 on damage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if genRef != "" && machine == "" {
				return errors.New("--generation needs --machine")
			}
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			pl := newProgressLine()
			rep, err := r.Verify(cmd.Context(), tib.VerifyOptions{Machine: machine, Generation: genRef, ReadData: readData,
				Progress: func(done, total int) { pl.show("packs %d/%d", done, total) }})
			pl.done()
			if err != nil {
				return err
			}
			for _, n := range rep.Notes {
				fmt.Println("note:", n)
			}
			what := "structure"
			if readData {
				what = fmt.Sprintf("every byte (%s read)", human(rep.BytesRead))
			}
			fmt.Printf("checked %s: %d generations, %d packs, %d blobs\n", what, rep.Generations, rep.Packs, rep.Blobs)
			if len(rep.Problems) > 0 {
				for _, p := range rep.Problems {
					fmt.Println("DAMAGE:", p)
				}
				return &exitError{3, fmt.Sprintf("%d problem(s) found in %s", len(rep.Problems), r.Location())}
			}
			fmt.Println("no damage found")
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&machine, "machine", "", "only this machine's generations (and the packs they use)")
	c.Flags().StringVar(&genRef, "generation", "", "only this generation: latest, an ID (a unique prefix) or a time, the newest at or before it (needs --machine)")
	c.Flags().BoolVar(&readData, "read-data", false, "read and check every byte of the packs")
	return c
}

func newForget() *cobra.Command {
	var f repoFlags
	var machine, genRef string
	c := &cobra.Command{
		Use:   "forget --repo DIR [--machine NAME] --generation ID",
		Short: "Remove a generation (run prune to reclaim its space)",
		Long: `forget removes one generation, named by its ID (or a unique prefix of at least 4 hex
digits). A generation whose manifest cannot be read (damaged, or not this repository's) is
removed the same way: its machine cannot be known, so --machine is not checked for it. When
--machine is given, a readable generation must be that machine's.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Forgetting is for good: only an explicit ID, never latest or a time.
			if ref, err := tib.ParseGenerationRef(genRef); genRef == "" || err == nil && ref.Kind != tib.GenerationID {
				return errors.New("--generation ID is required (an explicit ID: forget takes neither latest nor a time)")
			} else if err != nil {
				return fmt.Errorf("--generation: %w", err)
			}
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			lock, err := r.Lock(cmd.Context(), false, "forget")
			if err != nil {
				return err
			}
			defer lock.Unlock()
			gen, damaged, err := r.ForgetID(cmd.Context(), machine, strings.ToLower(genRef))
			if err != nil {
				return err
			}
			if damaged != nil {
				fmt.Printf("forgot damaged generation %s (its manifest could not be read: %v); run `cauldron prune` to reclaim space\n", damaged.ID, damaged.Err)
				return nil
			}
			fmt.Printf("forgot generation %s of %s (%s); run `cauldron prune` to reclaim space\n", gen.ID.String()[:12], gen.Machine, tib.FormatTime(gen.Time))
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&machine, "machine", "", "the machine the generation must belong to")
	c.Flags().StringVar(&genRef, "generation", "", "generation ID or unique prefix (required)")
	return c
}

func newPrune() *cobra.Command {
	var f repoFlags
	var keepYoung time.Duration
	c := &cobra.Command{
		Use:   "prune --repo DIR",
		Short: "Reclaim the space no remaining generation needs",
		Long: `Remove the blobs no remaining generation needs: packs holding only such blobs are removed,
packs mixing them with needed ones are rewritten. It takes the exclusive lock.

A pack younger than --keep-young (by the storage's own clock: compared with prune's lock file,
just written) is neither removed nor rewritten, because it may belong to a capture still running
(one whose lock was wrongly judged stale): a later prune reclaims it. A pack dated in the
storage's future (its clock was ahead when the pack was written) counts as young until then, or
until a prune with --keep-young 0. Files that killed writers left in the repository's tmp/
folder are removed once an hour old (by the same clock).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if keepYoung < 0 {
				return fmt.Errorf("--keep-young %v: not a duration of 0 or more", keepYoung)
			}
			tib.PruneYoung = keepYoung
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			st, err := r.Prune(cmd.Context())
			if err != nil {
				return err
			}
			fmt.Printf("removed %d blobs; %d packs removed, %d rewritten; %s freed\n", st.BlobsRemoved, st.PacksRemoved, st.PacksRewritten, human(st.BytesFreed))
			if st.YoungKept > 0 {
				fmt.Printf("kept %d unneeded pack(s) younger than %v: a capture may still be writing them (a later prune removes them)\n", st.YoungKept, keepYoung)
			}
			if st.TempRemoved > 0 {
				fmt.Printf("removed %d file(s) that interrupted writers left in tmp/\n", st.TempRemoved)
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().DurationVar(&keepYoung, "keep-young", tib.PruneYoung, "keep packs younger than this (a capture may still be writing them); 0 only when no capture can be running")
	return c
}

func newUnlock() *cobra.Command {
	var f repoFlags
	var all bool
	c := &cobra.Command{
		Use:   "unlock --repo DIR [--all]",
		Short: "Remove stale locks (of processes that are gone), saying which",
		Long: `Remove the locks whose holders are gone, naming each lock removed and why. A lock file
that cannot be read is removed. A lock of a process on this machine (same boot, same PID
namespace) is removed when that process is gone. Any other lock is watched: removed when its
holder does not refresh it within the stale time (4 minutes), kept when it does — the other
host's clock is never trusted. --all removes every lock without looking.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.open(cmd)
			if err != nil {
				return err
			}
			removed, kept, err := r.RemoveStaleLocks(cmd.Context(), all, func(s string) { fmt.Fprintln(os.Stderr, "cauldron:", s) })
			// Said even after an error: what was removed is gone.
			for _, l := range removed {
				fmt.Println("removed", l)
			}
			if err != nil {
				return err
			}
			for _, l := range kept {
				fmt.Println("kept (its holder is alive)", l)
			}
			fmt.Printf("removed %d lock(s), kept %d\n", len(removed), len(kept))
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&all, "all", false, "remove every lock, not only stale ones (only when no other cauldron uses the repository)")
	return c
}
