// Package archive opens a backup repository wherever a technician keeps it: a directory (a local
// disk, a USB stick, a share mounted by hand), an HTTP(S) server running `cauldron serve`, an S3
// bucket, or an NFS export or SMB share that it mounts first. The kickstart, the wizard and the
// command line all come through here, so a location means the same thing everywhere: Location
// is the one parsed place (ParseLocation, ParseLocationFrom for a command line's relative
// directory), Spec says how to reach it (Check is the one rule for its options), PasswordSource
// is the one way to the password, and OpenRepository opens the repository there.
package archive

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cauldron-dr/cauldron/restore/share"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/rest"
	"github.com/cauldron-dr/cauldron/tib/backend/s3"
)

// Spec says where a repository is and how to reach it. Only Location is always needed.
type Spec struct {
	// Location: a directory (Path), usb:/PATH, http(s)://HOST[:PORT]/PATH, s3://BUCKET/PREFIX,
	// nfs://SERVER[:PORT]/EXPORT/PATH or smb://SERVER[:PORT]/SHARE/PATH.
	Location Location
	// Endpoint is an S3-compatible server's http(s) URL; empty for Amazon S3.
	Endpoint string
	// InsecureTLS skips checking an https server's certificate (a lab's self-signed one).
	InsecureTLS bool
	// CredentialsFile: for S3 an AWS shared-credentials file (profile $AWS_PROFILE or
	// "default"); for SMB username=/password=/domain= lines as mount.cifs reads them.
	CredentialsFile string
	// S3 keys typed by hand (the wizard); they win over CredentialsFile and the environment.
	AccessKeyID, SecretAccessKey string
	// SMB logon typed by hand (the wizard); it wins over CredentialsFile. Empty: a guest.
	User, Password, Domain string
	// MountRoot is where shares are mounted; empty: /run/cauldron/shares.
	MountRoot string
	// MountUSB makes a usb:/PATH location reachable and returns its local path (the boot
	// environment mounts the stick); nil refuses usb: locations.
	MountUSB func(ctx context.Context, path string) (string, error)
	// Log, when set, hears about mount attempts that failed before one worked.
	Log func(string)
}

// OptionError is an option of a Spec that does not fit its location. The kickstart places it at
// the option (or its value); the command line and the wizard show it as it is.
type OptionError struct {
	Option  string // endpoint, insecure-tls or credentials-file
	InValue bool   // the value is wrong (else the option does not go with this location)
	Msg     string
}

func (e *OptionError) Error() string { return e.Msg }

// Check returns what in sp does not fit its location, at most one error per option. A Location
// that is not set (its Kind empty: it did not parse) is not held against the options.
func (sp Spec) Check() []*OptionError {
	var errs []*OptionError
	add := func(opt string, inValue bool, format string, a ...any) {
		errs = append(errs, &OptionError{Option: opt, InValue: inValue, Msg: fmt.Sprintf(format, a...)})
	}
	l := sp.Location
	known := l.Kind != ""
	endpointTLS := true // Amazon S3 is reached over https
	if sp.Endpoint != "" {
		switch el, err := ParseLocation(sp.Endpoint, HTTP); {
		case err != nil && !strings.Contains(sp.Endpoint, "://"):
			add("endpoint", true, "--endpoint: want the server's URL, such as https://%s, got %q", sp.Endpoint, sp.Endpoint)
		case err != nil:
			add("endpoint", true, "--endpoint: %v", err)
		case known && l.Kind != S3:
			add("endpoint", false, "--endpoint is for s3:// repositories (an S3-compatible server's URL), not for %s", l)
		default:
			endpointTLS = el.HTTPS()
		}
	}
	if sp.InsecureTLS && known && !(l.HTTPS() || l.Kind == S3 && endpointTLS) {
		add("insecure-tls", false, "--insecure-tls: %s is not reached over TLS, so there is no certificate to skip checking", l)
	}
	if sp.CredentialsFile != "" && known && l.Kind != S3 && l.Kind != SMB && l.Kind != HTTP {
		add("credentials-file", false, "--credentials-file is for s3:// (access keys), smb:// and http(s):// (user name and password) repositories, not for %s", l)
	}
	return errs
}

// DefaultMountRoot is where shares are mounted in the boot environment.
const DefaultMountRoot = "/run/cauldron/shares"

// Opened is an open location: the backend to hand to tib.Open and, when the repository is a
// directory on this machine (a local one or a mounted share), that directory.
type Opened struct {
	backend.Backend
	// Dir is the repository's directory on this machine, or "" (HTTP, S3). The recovery
	// protects its disk.
	Dir string
	// Share is true when Dir is on a share this package mounted; Close unmounts it.
	Share bool

	unmount string
}

// CleanTemp removes what killed writers left in the storage's temporary area, for the backends
// that keep one (backend.TempCleaner: a directory, local or mounted); others have none.
func (o *Opened) CleanTemp(ctx context.Context) (int, error) {
	if c, ok := o.Backend.(backend.TempCleaner); ok {
		return c.CleanTemp(ctx)
	}
	return 0, nil
}

// Close closes the backend and unmounts a share mounted for it.
func (o *Opened) Close() error {
	err := o.Backend.Close()
	if o.unmount != "" {
		if uerr := share.Unmount(o.unmount); uerr != nil && err == nil {
			err = uerr
		}
		_ = os.Remove(o.unmount)
		o.unmount = ""
	}
	return err
}

// Open reaches the location. A directory must hold a repository; a share is mounted
// (read-write: a recovery writes its session, journal and report into the repository).
func Open(ctx context.Context, sp Spec) (*Opened, error) {
	l := sp.Location
	if l.Kind == "" {
		return nil, errors.New("no repository location given")
	}
	if errs := sp.Check(); len(errs) > 0 {
		return nil, errs[0]
	}
	dir := l.Path
	switch l.Kind {
	case HTTP:
		user, password, err := httpCredentials(sp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l, err)
		}
		be, err := rest.New(l.URL, rest.Options{InsecureTLS: sp.InsecureTLS, User: user, Password: password})
		if err != nil {
			return nil, err
		}
		return &Opened{Backend: be}, nil
	case S3:
		cred, err := s3Credentials(sp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l, err)
		}
		be, err := s3.New(ctx, s3.Options{Bucket: l.Bucket, Prefix: l.Path, Endpoint: sp.Endpoint,
			Credentials: cred, InsecureTLS: sp.InsecureTLS})
		if err != nil {
			return nil, err
		}
		return &Opened{Backend: be}, nil
	case NFS, SMB:
		return mountShare(ctx, l, sp)
	case USB:
		if sp.MountUSB == nil {
			return nil, fmt.Errorf("%s: usb: locations work only in the boot environment (which mounts the stick); give the directory it is mounted on", l)
		}
		p, err := sp.MountUSB(ctx, l.Path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", l, err)
		}
		dir = p
	case Path:
	default:
		return nil, fmt.Errorf("%s: a repository cannot be at a %s location; want %s", l, l.Kind, kindList(repositoryKinds, false))
	}
	if fi, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil, noRepository(l)
	} else if err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", l.Shown())
	}
	return &Opened{Backend: local.New(dir), Dir: dir}, nil
}

// noRepository says that l holds no repository, naming it as given and as the absolute path it
// means, and how to make one.
func noRepository(l Location) error {
	return fmt.Errorf("%s: %w (create one with `cauldron init --repo %s`)", l.Shown(), tib.ErrNoRepository, l)
}

// OpenRepository reaches sp's location and opens the repository there; password is called only
// when it is encrypted (PasswordSource.Password, or a password the wizard asked for). Errors
// keep their chain (errors.Is finds tib.ErrWrongPassword, tib.ErrNeedPassword,
// tib.ErrNoRepository). The caller closes the Opened when done with the repository; a share
// mounted for it is unmounted then.
func OpenRepository(ctx context.Context, sp Spec, password func() ([]byte, error)) (*tib.Repository, *Opened, error) {
	o, err := Open(ctx, sp)
	if err != nil {
		return nil, nil, err
	}
	r, err := tib.Open(ctx, o, password)
	if err != nil {
		o.Close() // unmounts a share mounted for it; the next attempt mounts it again
		if errors.Is(err, tib.ErrNoRepository) && o.Dir != "" && sp.Location.Kind == Path {
			err = noRepository(sp.Location)
		}
		return nil, nil, err
	}
	return r, o, nil
}

func s3Credentials(sp Spec) (s3.Credentials, error) {
	switch {
	case sp.AccessKeyID != "" || sp.SecretAccessKey != "":
		if sp.AccessKeyID == "" || sp.SecretAccessKey == "" {
			return s3.Credentials{}, errors.New("S3 credentials: give both the access key ID and the secret access key")
		}
		return s3.Credentials{AccessKeyID: sp.AccessKeyID, SecretAccessKey: sp.SecretAccessKey}, nil
	case sp.CredentialsFile != "":
		return s3.CredentialsFromFile(sp.CredentialsFile, os.Getenv("AWS_PROFILE"))
	}
	return s3.CredentialsFromEnv()
}

// httpCredentials are the user name and password for a cauldron serve that asks for them:
// typed by hand (the wizard), from CredentialsFile (username= and password= lines), or from
// $CAULDRON_HTTP_USER and $CAULDRON_HTTP_PASSWORD; never from the URL, which ends up in
// kickstart files and logs. None at all is fine: a server without authentication.
func httpCredentials(sp Spec) (user, password string, err error) {
	switch {
	case sp.User != "":
		return sp.User, sp.Password, nil
	case sp.CredentialsFile != "":
		c, err := readCredentials(sp.CredentialsFile, "HTTP credentials")
		if err != nil {
			return "", "", err
		}
		if c.Domain != "" {
			return "", "", fmt.Errorf("HTTP credentials %s: domain= is for SMB shares; an HTTP server takes username= and password=", sp.CredentialsFile)
		}
		return c.User, c.Password, nil
	}
	user, password = os.Getenv("CAULDRON_HTTP_USER"), os.Getenv("CAULDRON_HTTP_PASSWORD")
	if user == "" && password != "" {
		return "", "", errors.New("$CAULDRON_HTTP_PASSWORD is set but $CAULDRON_HTTP_USER is not")
	}
	return user, password, nil
}

// mountShare mounts the share under MountRoot (a folder named after the URL, so the same share
// is not mounted twice) and opens the repository in it.
func mountShare(ctx context.Context, l Location, sp Spec) (*Opened, error) {
	loc := l.URL
	o := share.Options{User: sp.User, Password: sp.Password, Domain: sp.Domain, Log: sp.Log}
	if l.Kind == SMB && sp.User == "" && sp.CredentialsFile != "" {
		c, err := ReadSMBCredentials(sp.CredentialsFile)
		if err != nil {
			return nil, err
		}
		o.User, o.Password, o.Domain = c.User, c.Password, c.Domain
	}
	root := sp.MountRoot
	if root == "" {
		root = DefaultMountRoot
	}
	sum := sha256.Sum256([]byte(loc))
	dir := filepath.Join(root, hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sub, err := share.Mount(ctx, loc, dir, o)
	if err != nil {
		_ = os.Remove(dir)
		return nil, err
	}
	repo := filepath.Join(dir, filepath.FromSlash(sub))
	if fi, err := os.Stat(repo); err != nil || !fi.IsDir() {
		_ = share.Unmount(dir)
		_ = os.Remove(dir)
		if err == nil {
			err = errors.New("not a directory")
		}
		return nil, fmt.Errorf("%s: mounted, but %s: %w", loc, sub, err)
	}
	return &Opened{Backend: local.New(repo), Dir: repo, Share: true, unmount: dir}, nil
}

// SMBCredentials is a user name, password and domain for an SMB share.
type SMBCredentials struct{ User, Password, Domain string }

// ReadSMBCredentials reads a credentials file in mount.cifs's form: username=, password= and
// domain= lines (user= and pass= too, # comments, blank lines). The password may contain any
// character but a newline.
func ReadSMBCredentials(path string) (SMBCredentials, error) {
	c, err := readCredentials(path, "SMB credentials")
	if err != nil {
		return SMBCredentials{}, err
	}
	// A domain may also be given as DOMAIN\user, as Windows users write it.
	if d, u, ok := strings.Cut(c.User, `\`); ok && c.Domain == "" {
		c.Domain, c.User = d, u
	}
	return c, nil
}

// readCredentials reads username=, password= and domain= lines; what names the file's use in
// messages.
func readCredentials(path, what string) (SMBCredentials, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SMBCredentials{}, fmt.Errorf("%s: %w", what, err)
	}
	var c SMBCredentials
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if t := strings.TrimSpace(line); t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return SMBCredentials{}, fmt.Errorf("%s %s:%d: want KEY=VALUE (username=, password=, domain=)", what, path, n)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "username", "user":
			c.User = strings.TrimSpace(v)
		case "password", "pass":
			c.Password = v
		case "domain", "dom", "workgroup":
			c.Domain = strings.TrimSpace(v)
		default:
			return SMBCredentials{}, fmt.Errorf("%s %s:%d: unknown key %q (want username, password or domain)", what, path, n, strings.TrimSpace(k))
		}
	}
	if c.User == "" {
		return SMBCredentials{}, fmt.Errorf("%s %s: no username= line", what, path)
	}
	return c, nil
}
