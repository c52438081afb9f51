package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cauldron-dr/cauldron/restore"
	"golang.org/x/term"
)

// errNotConfirmed is a typed confirmation that did not match: nothing was written.
var errNotConfirmed = errors.New("not confirmed: nothing was written")

// confirmOverwrite is the consent every command that overwrites disks asks for, the same
// everywhere and the same as the wizard's: --yes, or, on a terminal, restore.ConfirmWord typed in
// full. Without a terminal and without --yes it refuses: a script must say so explicitly.
func confirmOverwrite(targets []string, yes bool) error {
	if yes || len(targets) == 0 {
		return nil
	}
	if !stdinIsTerminal() {
		return fmt.Errorf("writing %s destroys what it holds: pass --yes to confirm (standard input is not a terminal to ask on); nothing was written", strings.Join(targets, ", "))
	}
	return askConsent(targets)
}

func stdinIsTerminal() bool { return term.IsTerminal(int(os.Stdin.Fd())) }

// askConsent asks on the terminal for restore.ConfirmWord.
func askConsent(targets []string) error {
	fmt.Fprintf(os.Stderr, "Everything on %s will be overwritten.\nType %s (capital letters) to go on: ", strings.Join(targets, ", "), restore.ConfirmWord)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != restore.ConfirmWord {
		return errNotConfirmed
	}
	return nil
}
