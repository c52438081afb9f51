package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/term"
)

// errNotConfirmed is a typed confirmation that did not match: nothing was written.
var errNotConfirmed = errors.New("not confirmed: nothing was written")

// confirmOverwrite is the consent every command that writes block devices asks for, the same
// everywhere: --yes, or, on a terminal, the expected word (the machine's name) typed in full — a
// yes/no is answered by reflex. Without a terminal and without --yes it refuses: a script must
// say so explicitly.
func confirmOverwrite(devices []string, word string, yes bool) error {
	if yes || len(devices) == 0 {
		return nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return fmt.Errorf("writing %s destroys what it holds: pass --yes to confirm (standard input is not a terminal to ask on); nothing was written", strings.Join(devices, ", "))
	}
	fmt.Fprintf(os.Stderr, "Everything on %s will be overwritten.\nType %q to go on: ", strings.Join(devices, ", "), word)
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	if strings.TrimSpace(line) != word {
		return errNotConfirmed
	}
	return nil
}
