package main

import (
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
	// password is the one that opened the repository (nil when none was asked for): key
	// passwd checks what else it opens.
	password []byte
}

func (f *repoFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.repo, "repo", os.Getenv("CAULDRON_REPOSITORY"),
		"repository: a directory (a relative one is taken from the working directory), http(s)://HOST/PATH (cauldron serve), s3://BUCKET/PREFIX, nfs://SERVER/EXPORT/PATH or smb://SERVER/SHARE/PATH (also $CAULDRON_REPOSITORY)")
	c.Flags().StringVar(&f.passwordFile, "password-file", "", "read the repository password from this file, - for standard input (else $CAULDRON_PASSWORD, else a prompt on a terminal); an empty file is refused")
	c.Flags().StringVar(&f.endpoint, "endpoint", "", "s3:// only: the http(s) URL of an S3-compatible server (empty: Amazon S3)")
	c.Flags().BoolVar(&f.insecureTLS, "insecure-tls", false, "https:// and s3:// only: do not check the server's certificate (a lab's self-signed one)")
	c.Flags().StringVar(&f.credentialsFile, "credentials-file", "", "s3://: an AWS shared-credentials file (else $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY); smb:// and http(s)://: username=/password= lines (smb: also domain=; else a guest; http: else $CAULDRON_HTTP_USER/$CAULDRON_HTTP_PASSWORD)")
}

// location is --repo parsed as every command reads it.
func (f *repoFlags) location() (archive.Location, error) { return repoLocation(f.repo) }

// repoLocation reads a --repo value: a relative directory is taken from the working directory
// (the location keeps it as given, for messages), as every shell user expects.
func repoLocation(repo string) (archive.Location, error) {
	if repo == "" {
		return archive.Location{}, errors.New("--repo is required (or set CAULDRON_REPOSITORY)")
	}
	wd, err := os.Getwd()
	if err != nil {
		return archive.Location{}, fmt.Errorf("--repo %s: the working directory: %w", repo, err)
	}
	l, err := archive.ParseLocationFrom(repo, wd)
	if err != nil {
		return archive.Location{}, fmt.Errorf("--repo: %w", err)
	}
	return l, nil
}

// spec is where --repo and its options say the repository is.
func (f *repoFlags) spec() (archive.Spec, error) {
	l, err := f.location()
	if err != nil {
		return archive.Spec{}, err
	}
	return archive.Spec{Location: l, Endpoint: f.endpoint, InsecureTLS: f.insecureTLS, CredentialsFile: f.credentialsFile,
		Log: func(s string) { fmt.Fprintln(os.Stderr, "cauldron: repository:", s) }}, nil
}

// passwordSource is where the password comes from: --password-file, then $CAULDRON_PASSWORD,
// then a prompt when standard input is a terminal.
func (f *repoFlags) passwordSource() archive.PasswordSource {
	return archive.PasswordSource{File: f.passwordFile, Prompt: archive.TerminalPrompt}
}

func (f *repoFlags) open(cmd *cobra.Command) (*tib.Repository, error) {
	sp, err := f.spec()
	if err != nil {
		return nil, err
	}
	src := f.passwordSource()
	r, opened, err := archive.OpenRepository(cmd.Context(), sp, func() ([]byte, error) {
		pw, err := src.Password(false)
		f.password = pw
		return pw, err
	})
	if err != nil {
		return nil, err
	}
	f.dir = opened.Dir
	for _, w := range r.Warnings() {
		fmt.Fprintf(os.Stderr, "cauldron: warning: %s: %s\n", r.Location(), w)
	}
	r.SetLog(func(s string) { fmt.Fprintf(os.Stderr, "cauldron: %s: %s\n", r.Location(), s) })
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
