// Command cauldron is Cauldron's recovery binary: bare-metal recovery from a backup archive. It is a
// thin layer over the packages that do the work (tib, partition, …); the same binary runs as
// uinit in the boot image.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// exitError carries an exit status other than 1.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	if msg := err.Error(); msg != "" {
		fmt.Fprintln(os.Stderr, "cauldron:", msg)
	}
	os.Exit(code)
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "cauldron",
		Short: "Bare-metal recovery: capture disks into a backup archive and bring machines back from it",
		Long: `Cauldron captures machines' disks into generations in a repository (deduplicated,
compressed, optionally encrypted), and writes them back onto the same or different disks.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newInit(), newCapture(), newGenerations(), newRestoreDisk(), newVerify(),
		newForget(), newPrune(), newUnlock(), newLayout(), newHive(), newBoot(), newReplication(), newKickstart(), newRecover(), newWizard(), newInoculate(), newServe(), newShare(), newRepair(), newKey())
	return root
}
