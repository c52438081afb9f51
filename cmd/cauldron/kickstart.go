package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cauldron-dr/cauldron/internal/plainfile"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/restore/kickstart"
	"github.com/spf13/cobra"
)

// newKickstart is `cauldron kickstart`: kickstart files for unattended recovery (package
// restore/kickstart; the format is in docs/kickstart.md).
func newKickstart() *cobra.Command {
	c := &cobra.Command{
		Use:   "kickstart",
		Short: "Kickstart files for unattended recovery: check them",
	}
	c.AddCommand(newKickstartValidate())
	return c
}

// kickstartResult is what `kickstart validate --json` prints.
type kickstartResult struct {
	Valid     bool                 `json:"valid"`
	Kickstart *kickstart.Kickstart `json:"kickstart,omitempty"`
	Errors    []*kickstart.Error   `json:"errors,omitempty"`
	Omitted   int                  `json:"omitted,omitempty"`
}

func newKickstartValidate() *cobra.Command {
	var jsonOut bool
	c := &cobra.Command{
		Use:   "validate FILE|URL|- [--json]",
		Short: "Check a kickstart file and print what Cauldron reads from it, or every error",
		Long: `Parse a kickstart file (- reads standard input; an http(s):// URL is fetched) and check
everything that needs no repository: commands, options, values, and how they fit together.
A valid file is printed back with every default written out (with --json, as JSON). An invalid
one gets every error, one per line as FILE:LINE:COLUMN: message, and exit status 2.
The repository, the machine, its generation and the target disks are checked when the
recovery runs.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, src, err := readKickstart(cmd, args[0])
			if err != nil {
				return err
			}
			ks, err := kickstart.Parse(name, bytes.NewReader(src))
			var list *kickstart.ErrorList
			switch {
			case errors.As(err, &list):
				if jsonOut {
					if err := printJSON(kickstartResult{Errors: list.Errors, Omitted: list.Omitted}); err != nil {
						return err
					}
				} else {
					fmt.Fprintln(cmd.ErrOrStderr(), list.Error())
				}
				n := len(list.Errors) + list.Omitted
				plural := "s"
				if n == 1 {
					plural = ""
				}
				return &exitError{code: 2, msg: fmt.Sprintf("%s: %d error%s: not a valid kickstart", name, n, plural)}
			case err != nil:
				return err
			}
			if jsonOut {
				return printJSON(kickstartResult{Valid: true, Kickstart: ks})
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "# %s is valid. As Cauldron reads it, every default written out:\n", name)
			fmt.Fprint(out, ks.Format())
			if err := ks.ConsentError(); err != nil {
				fmt.Fprintf(out, "# Note: %s\n", strings.TrimPrefix(err.Error(), name+": "))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&jsonOut, "json", false, "print JSON")
	return c
}

// readKickstart reads the file, standard input or URL arg names, and the name messages use.
func readKickstart(cmd *cobra.Command, arg string) (string, []byte, error) {
	if arg == "-" {
		b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), kickstart.MaxSize+1))
		return "stdin", b, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", nil, err
	}
	l, err := archive.ParseLocationFrom(arg, wd, archive.Path, archive.HTTP, archive.CDROM, archive.USB)
	if err != nil {
		return "", nil, err
	}
	switch l.Kind {
	case archive.HTTP:
		b, err := kickstart.Fetch(cmd.Context(), l.URL, kickstart.FetchOptions{
			Attempts: 3,
			Log:      func(format string, a ...any) { fmt.Fprintf(cmd.ErrOrStderr(), format+"\n", a...) },
		})
		return arg, b, err
	case archive.CDROM, archive.USB:
		return "", nil, fmt.Errorf("%s: validate reads files and URLs; mount the medium and give the file's path", arg)
	}
	if err := plainfile.Check(l.Path); err != nil {
		return "", nil, err
	}
	f, err := os.Open(l.Path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.IsDir() {
		return "", nil, fmt.Errorf("%s is a directory, not a kickstart file", arg)
	}
	b, err := io.ReadAll(io.LimitReader(f, kickstart.MaxSize+1))
	return arg, b, err
}
