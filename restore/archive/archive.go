// Package archive opens a backup repository wherever a technician keeps it: a directory (a local
// disk, a USB stick, a share mounted by hand), an HTTP(S) server running `cauldron serve`, an S3
// bucket, or an NFS export or SMB share that it mounts first. The kickstart, the wizard and the
// command line all come through here, so a location means the same thing everywhere.
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
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/rest"
	"github.com/cauldron-dr/cauldron/tib/backend/s3"
)

// Kind says how a location is reached.
type Kind string

const (
	Dir  Kind = "directory"
	HTTP Kind = "http"
	S3   Kind = "s3"
	NFS  Kind = "nfs"
	SMB  Kind = "smb"
)

// KindOf classifies a location by its scheme; anything without a known scheme is a directory.
func KindOf(location string) Kind {
	l := strings.ToLower(location)
	switch {
	case strings.HasPrefix(l, "http://"), strings.HasPrefix(l, "https://"):
		return HTTP
	case strings.HasPrefix(l, "s3://"):
		return S3
	case strings.HasPrefix(l, "nfs://"):
		return NFS
	case strings.HasPrefix(l, "smb://"):
		return SMB
	}
	return Dir
}

// Spec says where a repository is and how to reach it. Only Location is always needed.
type Spec struct {
	// Location: an absolute directory, http(s)://HOST[:PORT]/PATH, s3://BUCKET/PREFIX,
	// nfs://SERVER[:PORT]/EXPORT/PATH or smb://SERVER[:PORT]/SHARE/PATH.
	Location string
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
	// Log, when set, hears about mount attempts that failed before one worked.
	Log func(string)
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

// Open reaches the location. A directory must exist; a share is mounted (read-write: a
// recovery writes its session, journal and report into the repository).
func Open(ctx context.Context, sp Spec) (*Opened, error) {
	loc := strings.TrimSpace(sp.Location)
	if loc == "" {
		return nil, errors.New("no repository location given")
	}
	kind := KindOf(loc)
	if sp.Endpoint != "" && kind != S3 {
		return nil, fmt.Errorf("%s: an endpoint is for s3:// locations only", loc)
	}
	if sp.InsecureTLS && !(kind == HTTP || kind == S3) {
		return nil, fmt.Errorf("%s: skipping the certificate check is for https:// and s3:// locations only", loc)
	}
	switch kind {
	case HTTP:
		be, err := rest.New(loc, rest.Options{InsecureTLS: sp.InsecureTLS})
		if err != nil {
			return nil, err
		}
		return &Opened{Backend: be}, nil
	case S3:
		l, err := s3.ParseLocation(loc)
		if err != nil {
			return nil, err
		}
		cred, err := s3Credentials(sp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, err)
		}
		be, err := s3.New(ctx, s3.Options{Bucket: l.Bucket, Prefix: l.Prefix, Endpoint: sp.Endpoint,
			Credentials: cred, InsecureTLS: sp.InsecureTLS})
		if err != nil {
			return nil, err
		}
		return &Opened{Backend: be}, nil
	case NFS, SMB:
		return mountShare(ctx, loc, sp)
	}
	if !filepath.IsAbs(loc) {
		return nil, fmt.Errorf("%s: want an absolute directory, http(s)://, s3://, nfs:// or smb:// location", loc)
	}
	dir := filepath.Clean(loc)
	if fi, err := os.Stat(dir); err != nil {
		return nil, err
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("%s: not a directory", dir)
	}
	return &Opened{Backend: local.New(dir), Dir: dir}, nil
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

// mountShare mounts the share under MountRoot (a folder named after the URL, so the same share
// is not mounted twice) and opens the repository in it.
func mountShare(ctx context.Context, loc string, sp Spec) (*Opened, error) {
	o := share.Options{User: sp.User, Password: sp.Password, Domain: sp.Domain, Log: sp.Log}
	if KindOf(loc) == SMB && sp.User == "" && sp.CredentialsFile != "" {
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
	b, err := os.ReadFile(path)
	if err != nil {
		return SMBCredentials{}, fmt.Errorf("SMB credentials: %w", err)
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
			return SMBCredentials{}, fmt.Errorf("SMB credentials %s:%d: want KEY=VALUE (username=, password=, domain=)", path, n)
		}
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "username", "user":
			c.User = strings.TrimSpace(v)
		case "password", "pass":
			c.Password = v
		case "domain", "dom", "workgroup":
			c.Domain = strings.TrimSpace(v)
		default:
			return SMBCredentials{}, fmt.Errorf("SMB credentials %s:%d: unknown key %q (want username, password or domain)", path, n, strings.TrimSpace(k))
		}
	}
	if c.User == "" {
		return SMBCredentials{}, fmt.Errorf("SMB credentials %s: no username= line", path)
	}
	// A domain may also be given as DOMAIN\user, as Windows users write it.
	if d, u, ok := strings.Cut(c.User, `\`); ok && c.Domain == "" {
		c.Domain, c.User = d, u
	}
	return c, nil
}
