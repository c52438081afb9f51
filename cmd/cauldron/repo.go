package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// repoFlags are the flags every repository command shares.
type repoFlags struct {
	repo            string
	passwordFile    string
	endpoint        string
	insecureTLS     bool
	credentialsFile string

	// dir is the opened repository's directory on this machine ("" over HTTP or S3): its disk
	// is protected from being written.
	dir string
}

func (f *repoFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.repo, "repo", os.Getenv("CAULDRON_REPOSITORY"),
		"repository: a directory, http(s)://HOST/PATH (cauldron serve), s3://BUCKET/PREFIX, nfs://SERVER/EXPORT/PATH or smb://SERVER/SHARE/PATH (also $CAULDRON_REPOSITORY)")
	c.Flags().StringVar(&f.passwordFile, "password-file", "", "read the repository password from this file (else $CAULDRON_PASSWORD, else a prompt)")
	c.Flags().StringVar(&f.endpoint, "endpoint", "", "s3:// only: the http(s) URL of an S3-compatible server (empty: Amazon S3)")
	c.Flags().BoolVar(&f.insecureTLS, "insecure-tls", false, "https:// and s3:// only: do not check the server's certificate (a lab's self-signed one)")
	c.Flags().StringVar(&f.credentialsFile, "credentials-file", "", "s3:// only: an AWS shared-credentials file (else $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY); smb:// only: username=/password=/domain= lines (else a guest)")
}

// spec is where --repo and its options say the repository is.
func (f *repoFlags) spec() archive.Spec {
	return archive.Spec{Location: f.repo, Endpoint: f.endpoint, InsecureTLS: f.insecureTLS, CredentialsFile: f.credentialsFile,
		Log: func(s string) { fmt.Fprintln(os.Stderr, "cauldron: repository:", s) }}
}

func (f *repoFlags) check() error {
	if f.repo == "" {
		return errors.New("--repo is required (or set CAULDRON_REPOSITORY)")
	}
	return nil
}

// password finds the password: --password-file, then $CAULDRON_PASSWORD, then a prompt when
// standard input is a terminal.
func (f *repoFlags) password(confirm bool) ([]byte, error) {
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--password-file: %w", err)
		}
		b = bytes.TrimRight(b, "\r\n")
		if len(b) == 0 {
			return nil, fmt.Errorf("--password-file %s is empty", f.passwordFile)
		}
		return b, nil
	}
	if pw, ok := os.LookupEnv("CAULDRON_PASSWORD"); ok && pw != "" {
		return []byte(pw), nil
	}
	if !term.IsTerminal(int(os.Stdin.Fd())) {
		return nil, nil
	}
	fmt.Fprint(os.Stderr, "Repository password: ")
	pw, err := term.ReadPassword(int(os.Stdin.Fd()))
	fmt.Fprintln(os.Stderr)
	if err != nil {
		return nil, err
	}
	if confirm {
		fmt.Fprint(os.Stderr, "Repeat the password: ")
		again, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the passwords differ")
		}
	}
	return pw, nil
}

func (f *repoFlags) open(cmd *cobra.Command) (*tib.Repository, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	if archive.KindOf(f.repo) == archive.Dir {
		if st, err := os.Stat(f.repo); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%s: %w (create one with `cauldron init --repo %s`)", f.repo, tib.ErrNoRepository, f.repo)
		}
	}
	be, err := archive.Open(cmd.Context(), f.spec())
	if err != nil {
		return nil, err
	}
	f.dir = be.Dir
	r, err := tib.Open(cmd.Context(), be, func() ([]byte, error) { return f.password(false) })
	if errors.Is(err, tib.ErrWrongPassword) {
		err = fmt.Errorf("wrong password for the repository %s", f.repo)
	}
	if err != nil {
		be.Close()
		return nil, err
	}
	// A share mounted for this command is left mounted: the process ends soon after, and the
	// boot environment reuses the mount (same folder for the same URL).
	return r, nil
}

// human formats a byte count.
func human(n int64) string { return restore.HumanBytes(n) }

func rate(n int64, seconds float64) string {
	if seconds <= 0 {
		return "-"
	}
	return human(int64(float64(n)/seconds)) + "/s"
}

// progressLine rewrites one status line on a terminal; elsewhere it stays silent.
type progressLine struct {
	tty  bool
	last int
}

func newProgressLine() *progressLine {
	return &progressLine{tty: term.IsTerminal(int(os.Stderr.Fd()))}
}

func (p *progressLine) show(format string, a ...any) {
	if !p.tty {
		return
	}
	s := fmt.Sprintf(format, a...)
	pad := ""
	if n := p.last - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(os.Stderr, "\r%s%s", s, pad)
	p.last = len(s)
}

func (p *progressLine) done() {
	if p.tty && p.last > 0 {
		fmt.Fprintf(os.Stderr, "\r%s\r", strings.Repeat(" ", p.last))
		p.last = 0
	}
}
