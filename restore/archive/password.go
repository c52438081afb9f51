package archive

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"
)

// PasswordEnv is the environment variable the password is taken from when no source is named.
const PasswordEnv = "CAULDRON_PASSWORD"

// ErrEmptyPassword is returned (wrapped, naming the file or variable) when a password source
// that was named explicitly holds nothing: an empty password opens nothing, and a file emptied
// by mistake should say so instead of failing later as "a password is needed".
var ErrEmptyPassword = errors.New("empty (an empty password opens nothing)")

// PasswordSource says where a repository's password comes from. The kickstart's repository
// line, the command line's --password-file and the wizard all obtain it here, so a source
// means the same, and is refused for the same reasons, everywhere.
type PasswordSource struct {
	// File holds the password (--password-file); a trailing line break is not part of it. "-"
	// is standard input: the only way a password is read from a pipe, so that a password
	// piped to a command that does not expect one is never taken (or lost) silently.
	File string
	// Env names an environment variable that holds it (the kickstart's --password-env).
	Env string
	// Prompt asks for it when neither File nor Env is given and $CAULDRON_PASSWORD is unset
	// or empty; nil: there is no password then. confirm asks twice (a new repository).
	Prompt func(confirm bool) ([]byte, error)
}

// Password returns the password: from File, else from Env, else from $CAULDRON_PASSWORD, else
// from Prompt; nil when none gives one (an unencrypted repository needs none).
func (s PasswordSource) Password(confirm bool) ([]byte, error) {
	switch {
	case s.File == "-":
		return readPasswordStdin("--password-file")
	case s.File != "":
		return ReadPasswordFile(s.File)
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok {
			return nil, fmt.Errorf("--password-env: $%s is not set", s.Env)
		}
		if v == "" {
			return nil, fmt.Errorf("--password-env $%s is %w", s.Env, ErrEmptyPassword)
		}
		return []byte(v), nil
	}
	if v := os.Getenv(PasswordEnv); v != "" {
		return []byte(v), nil
	}
	if s.Prompt != nil {
		return s.Prompt(confirm)
	}
	return nil, nil
}

// Given reports whether Password finds one without asking.
func (s PasswordSource) Given() bool {
	return s.File != "" || s.Env != "" || os.Getenv(PasswordEnv) != ""
}

// ReadPasswordFile reads a password file (a repository's, or an SMB share's): all of it but the
// trailing line breaks. An empty file is refused, naming it.
func ReadPasswordFile(path string) ([]byte, error) { return readPasswordFile("--password-file", path) }

// readPasswordFile is ReadPasswordFile for the option flag, which its messages name.
func readPasswordFile(flag, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%s %s is %w", flag, path, ErrEmptyPassword)
	}
	return b, nil
}

// maxPassword bounds what is read from standard input for a password.
const maxPassword = 64 << 10

// readPasswordStdin reads the password from standard input (flag -), up to its end: all of it
// but the trailing line breaks.
func readPasswordStdin(flag string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(os.Stdin, maxPassword+1))
	if err != nil {
		return nil, fmt.Errorf("%s -: reading standard input: %w", flag, err)
	}
	if len(b) > maxPassword {
		return nil, fmt.Errorf("%s -: standard input holds more than %d bytes: not a password", flag, maxPassword)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) == 0 {
		return nil, fmt.Errorf("%s - (standard input) is %w", flag, ErrEmptyPassword)
	}
	return b, nil
}

// NewPassword reads a new password (`cauldron key add` and `key passwd`) from file (flag names
// the option, for messages), "-" for standard input, or else asks for it twice on the terminal.
// Never from the environment: $CAULDRON_PASSWORD is the current password. Without a file and a
// terminal it fails, saying how to give one.
func NewPassword(flag, file string) ([]byte, error) {
	switch file {
	case "-":
		return readPasswordStdin(flag)
	case "":
		if !term.IsTerminal(int(os.Stdin.Fd())) {
			return nil, fmt.Errorf("no new password: give %s FILE (- reads standard input), or run on a terminal to type it twice", flag)
		}
		return askTerminal("New repository password", true)
	}
	return readPasswordFile(flag, file)
}

// TerminalPrompt asks for the password on the terminal (standard input, without echo); when
// standard input is not a terminal there is no one to ask and it returns no password.
func TerminalPrompt(confirm bool) ([]byte, error) {
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, nil
	}
	return askTerminal("Repository password", confirm)
}

// askTerminal asks for a password on the terminal without echo, twice when confirm says so.
func askTerminal(label string, confirm bool) ([]byte, error) {
	fd := int(os.Stdin.Fd())
	fmt.Fprint(os.Stderr, label+": ")
	pw, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil || !confirm {
		return pw, err
	}
	fmt.Fprint(os.Stderr, "Repeat the password: ")
	again, err := term.ReadPassword(fd)
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(pw, again) {
		return nil, errors.New("the passwords differ")
	}
	return pw, nil
}
