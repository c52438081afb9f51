package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cauldron-dr/cauldron/internal/plainfile"
	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/restore/kickstart"
	"github.com/spf13/cobra"
)

func newRecover() *cobra.Command {
	var ksPath, scratch string
	var dryRun, yes, asJSON, restart, partial bool
	c := &cobra.Command{
		Use:   "recover --kickstart FILE [--dry-run] [--yes] [--restart]",
		Short: "Recover a machine from the repository as a kickstart file says",
		Long: `recover brings a machine back from a generation in the repository onto this machine's disks or
onto image files, unattended, as a kickstart file describes (docs/kickstart.md): it freezes the
machine's replication, writes the layouts, restores every volume, verifies it against the
generation, makes the restored system boot here, and saves a report in the repository.

The plan is printed first. Nothing is written without consent: the kickstart's
"confirm --destroy-data-on-targets" line, --yes, or ERASE typed at the prompt (as in the wizard).
--dry-run prints the plan and stops. A recovery that is interrupted resumes when it is run again.

A target that holds another recovery that did not finish (its journal, beside an image or in
the repository) stops the recovery before anything is written, naming that journal; the dry run
shows it too. --restart discards it, after the same consent, and starts over: it discards this
recovery's own journal as well, so that an interrupted run starts from the first step instead of
resuming.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ksPath == "" {
				return errors.New("--kickstart FILE is required")
			}
			var data []byte
			var err error
			name := ksPath
			if ksPath == "-" {
				name = "stdin"
				data, err = io.ReadAll(os.Stdin)
			} else {
				data, err = plainfile.Read(ksPath, kickstart.MaxSize)
			}
			if err != nil {
				return err
			}
			_, err = recoverKickstart(cmd.Context(), name, data, recoverOptions{
				out: os.Stdout, dryRun: dryRun, yes: yes, json: asJSON, scratch: scratch, restart: restart, partial: partial,
				confirm: promptConfirm, password: archive.TerminalPrompt,
			})
			return err
		},
	}
	c.Flags().StringVar(&ksPath, "kickstart", "", "the kickstart file (- for standard input)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan and write nothing")
	c.Flags().BoolVar(&yes, "yes", false, "consent to overwriting the target disks without a prompt")
	c.Flags().BoolVar(&asJSON, "json", false, "print the plan (with --dry-run) or the report as JSON")
	c.Flags().BoolVar(&partial, "partial", false, "go on past damage in the repository: restore and verify what is intact, leave each damaged range as zeros and name it in the report (exit status 3); byte-for-byte disks only")
	c.Flags().BoolVar(&restart, "restart", false, "discard the journal of an unfinished recovery on the targets (another's, or this one's) and start from the first step")
	c.Flags().StringVar(&scratch, "scratch", "", "directory for volumes that must be shrunk before they fit (default: the temporary directory)")
	return c
}

type recoverOptions struct {
	out     io.Writer
	dryRun  bool
	yes     bool
	json    bool
	scratch string
	// restart discards the journals on the plan's way (after the consent) and starts over.
	restart bool
	// partial goes on past damage in the repository (restore.Request.Partial).
	partial bool
	// confirm asks for consent when neither --yes nor the kickstart gives it; nil: refuse.
	confirm func(p *restore.Plan) error
	// candidates overrides the machine's disks (tests); nil: SystemDisks.
	candidates []string
	// onTarget: the recovery runs on the machine being recovered (the boot environment), which
	// the plan's inoculation says (restore.Inoculation.OnTarget).
	onTarget bool
	// inoculate overrides the plan's inoculation (tests); nil: the plan's.
	inoculate func(ctx context.Context, p *restore.Plan, emit func(restore.Event)) (*restore.InoculationResult, error)
	mountUSB  func(ctx context.Context, path string) (string, error)
	// password asks for the repository's password when the kickstart names no source (an
	// attended run); nil: none is asked for (the boot environment's unattended recovery).
	password func(confirm bool) ([]byte, error)
}

// recoverKickstart is `cauldron recover` and the boot environment's unattended recovery: parse,
// plan, consent, run, report. It returns the parsed kickstart (nil if it did not parse) so that
// the boot environment can follow its on-success / on-failure.
func recoverKickstart(ctx context.Context, name string, data []byte, o recoverOptions) (*kickstart.Kickstart, error) {
	ks, err := kickstart.Parse(name, strings.NewReader(string(data)))
	if err != nil {
		return nil, err
	}
	req, err := restore.FromKickstart(ctx, ks, restore.KickstartOptions{Candidates: o.candidates, Scratch: o.scratch, MountUSB: o.mountUSB, Prompt: o.password,
		Log: func(s string) { fmt.Fprintln(o.out, "repository:", s) }})
	if err != nil {
		return ks, err
	}
	req.Inoculate.OnTarget = o.onTarget
	req.Partial = o.partial
	plan, err := restore.Prepare(ctx, *req)
	if err != nil {
		return ks, restore.KickstartPlanError(ks, err)
	}
	if o.json && o.dryRun {
		e := json.NewEncoder(o.out)
		e.SetIndent("", "  ")
		return ks, e.Encode(plan)
	}
	plan.WriteText(o.out)
	if o.dryRun {
		pendingJournals(ctx, plan, o)
		fmt.Fprintln(o.out, "dry run: nothing written")
		return ks, nil
	}
	switch {
	case o.yes || ks.ConsentError() == nil:
	case o.confirm != nil:
		if err := o.confirm(plan); err != nil {
			return ks, err
		}
	default:
		return ks, ks.ConsentError()
	}
	if o.restart {
		gone, err := restore.DiscardJournal(ctx, plan, restore.DiscardAll)
		for _, j := range gone {
			// Into the report too: the next technician must see that a recovery was abandoned.
			plan.Warnings = append(plan.Warnings, "--restart discarded: "+j.String())
			if !o.json {
				fmt.Fprintln(o.out, "--restart discarded:", j)
			}
		}
		if err != nil {
			return ks, fmt.Errorf("--restart: %w", err)
		}
		if len(gone) == 0 && !o.json {
			fmt.Fprintln(o.out, "--restart: no journal on the targets; starting from the first step")
		}
	}
	rep, runErr := restore.Run(ctx, plan, restore.RunOptions{
		Events: func(e restore.Event) {
			if !o.json {
				fmt.Fprintln(o.out, e)
			}
		},
		Inoculate: o.inoculate,
	})
	if rep != nil {
		if o.json {
			e := json.NewEncoder(o.out)
			e.SetIndent("", "  ")
			e.Encode(rep)
		} else {
			fmt.Fprintln(o.out)
			rep.WriteText(o.out)
		}
	}
	var jc *restore.JournalConflictError
	if errors.As(runErr, &jc) {
		runErr = fmt.Errorf("%w\nNothing was written. To discard that journal and start this recovery over, run the same command with --restart.", runErr)
	}
	if runErr == nil && rep != nil {
		var n int
		for _, d := range rep.Disks {
			n += len(d.Damaged)
		}
		if n > 0 {
			return ks, &exitError{3, fmt.Sprintf("%d range(s) were damaged in the repository and are zeros on the targets (named in the report); the rest is restored and verified", n)}
		}
	}
	return ks, runErr
}

// pendingJournals tells the dry run what the recovery would resume or be refused by.
func pendingJournals(ctx context.Context, p *restore.Plan, o recoverOptions) {
	js, err := restore.PendingJournals(ctx, p)
	if err != nil {
		fmt.Fprintf(o.out, "  journal: could not be checked: %v\n", err)
	}
	for _, j := range js {
		next := "the recovery is refused until it is discarded (--restart)"
		switch {
		case o.restart:
			next = "--restart discards it"
		case j.Own:
			next = "running it resumes; --restart starts over"
		}
		fmt.Fprintf(o.out, "  journal: %s (%s)\n", j, next)
	}
}

// promptConfirm asks the technician for the same typed confirmation as everywhere (askConsent);
// without a terminal the kickstart's confirm line or --yes is needed.
func promptConfirm(p *restore.Plan) error {
	if !stdinIsTerminal() {
		return fmt.Errorf("%w; or pass --yes", kickstart.ErrNoConsent)
	}
	var targets []string
	for _, d := range p.Disks {
		targets = append(targets, d.Target)
	}
	return askConsent(targets)
}
