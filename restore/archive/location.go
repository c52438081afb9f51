package archive

import (
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/cauldron-dr/cauldron/tib/backend/s3"
)

// Kind says how a location is reached.
type Kind string

const (
	Path  Kind = "path"  // an absolute path on the running system
	USB   Kind = "usb"   // usb:/PATH: a path on a removable disk (the first that has it)
	CDROM Kind = "cdrom" // cdrom:/PATH: a path on the CD/DVD the boot environment started from
	HTTP  Kind = "http"  // an http:// or https:// URL
	S3    Kind = "s3"    // s3://BUCKET/PREFIX: an S3 bucket and key prefix
	NFS   Kind = "nfs"   // nfs://HOST[:PORT]/EXPORT/PATH: an NFS export, mounted first
	SMB   Kind = "smb"   // smb://HOST[:PORT]/SHARE/PATH: an SMB (CIFS) share, mounted first
)

// repositoryKinds are the places a repository can be (a CD cannot take the session, journal
// and report a recovery writes), in the order messages list them.
var repositoryKinds = []Kind{Path, USB, HTTP, S3, NFS, SMB}

// Location is a parsed place: where a repository is (the kickstart's repository line, --repo,
// the wizard), and, in the kickstart, where a kickstart file is read from (`cauldron.ks=`) or a
// report is copied to. ParseLocation reads what String writes.
type Location struct {
	Kind   Kind   `json:"kind"`
	Path   string `json:"path,omitempty"`   // path, cdrom, usb: absolute and clean; s3: the key prefix
	URL    string `json:"url,omitempty"`    // http, nfs, smb: the URL as given
	Bucket string `json:"bucket,omitempty"` // s3
	// Given is the relative path the location was given as (ParseLocationFrom), for messages;
	// "" when it was given as String writes it.
	Given string `json:"-"`
}

// String writes l in the form it is given in (a relative path as the absolute one it means).
func (l Location) String() string {
	switch l.Kind {
	case HTTP, NFS, SMB:
		return l.URL
	case S3:
		if l.Path == "" {
			return "s3://" + l.Bucket
		}
		return "s3://" + l.Bucket + "/" + l.Path
	case CDROM, USB:
		return string(l.Kind) + ":" + l.Path
	}
	return l.Path
}

// Shown is l for messages: as the user gave it, with the absolute path it means when that
// differs ("repo (/root/repo)").
func (l Location) Shown() string {
	if l.Given != "" && l.Given != l.String() {
		return l.Given + " (" + l.String() + ")"
	}
	return l.String()
}

// HTTPS reports whether l is an https:// URL.
func (l Location) HTTPS() bool {
	return l.Kind == HTTP && strings.HasPrefix(strings.ToLower(l.URL), "https://")
}

// ParseLocation reads a location: an absolute path, usb:/PATH, cdrom:/PATH, http(s)://…,
// s3://BUCKET/PREFIX, nfs://SERVER/EXPORT/PATH or smb://SERVER/SHARE/PATH, and refuses the
// kinds not in allowed (none given: the places a repository can be). A path must be absolute:
// a kickstart is read inside the boot environment, which has no working directory of its
// writer's.
func ParseLocation(s string, allowed ...Kind) (Location, error) {
	return parseLocation(s, "", allowed)
}

// ParseLocationFrom is ParseLocation for a location typed on a command line: a relative path
// is taken from dir (the working directory), as every shell user expects, and kept in Given for
// messages.
func ParseLocationFrom(s, dir string, allowed ...Kind) (Location, error) {
	if dir == "" || !filepath.IsAbs(dir) {
		return Location{}, fmt.Errorf("%q: relative to %q, which is not an absolute directory", s, dir)
	}
	return parseLocation(s, dir, allowed)
}

// parseLocation reads s; dir is what a relative path is relative to ("" refuses them).
func parseLocation(s, dir string, allowed []Kind) (Location, error) {
	if len(allowed) == 0 {
		allowed = repositoryKinds
	}
	var l Location
	lower := strings.ToLower(s)
	scheme, rest, hasScheme := strings.Cut(s, ":")
	switch {
	case s == "":
		return l, errors.New("empty location")
	case strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://"):
		u, err := url.Parse(s)
		if err != nil {
			return l, fmt.Errorf("%q is not a valid URL: %v", s, errors.Unwrap(err)) // what is wrong, without url.Error's repeat of s
		}
		if u.Host == "" {
			return l, fmt.Errorf("%q names no host", s)
		}
		if u.User != nil {
			return l, fmt.Errorf("%q carries a user name or password in the URL; keep secrets out of locations (they show in logs and kickstart files)", u.Redacted())
		}
		l = Location{Kind: HTTP, URL: s}
	case strings.HasPrefix(lower, "s3://"):
		// The backend's own rules for bucket names and key prefixes, checked before anything
		// is sent (and before a kickstart is accepted).
		sl, err := s3.ParseLocation(s)
		if err != nil {
			return l, err
		}
		l = Location{Kind: S3, Bucket: sl.Bucket, Path: sl.Prefix}
	case strings.HasPrefix(lower, "nfs://") || strings.HasPrefix(lower, "smb://"):
		kind := Kind(lower[:3])
		u, err := url.Parse(s)
		if err != nil {
			return l, fmt.Errorf("%q is not a valid URL: %v", s, errors.Unwrap(err)) // what is wrong, without url.Error's repeat of s
		}
		if u.Host == "" || u.Hostname() == "" {
			return l, fmt.Errorf("%q names no server", s)
		}
		if u.User != nil {
			return l, fmt.Errorf("%q carries a user name or password in the URL; keep secrets out of locations (use --credentials-file)", u.Redacted())
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return l, fmt.Errorf("%q: a share URL takes no ?query or #fragment", s)
		}
		p := strings.Trim(u.Path, "/")
		switch {
		case kind == NFS && p == "":
			return l, fmt.Errorf("%q names no export; want nfs://SERVER/EXPORT/PATH", s)
		case kind == SMB && p == "":
			return l, fmt.Errorf("%q names no share; want smb://SERVER/SHARE/PATH", s)
		}
		l = Location{Kind: kind, URL: s}
	case strings.HasPrefix(s, "/"):
		l = Location{Kind: Path, Path: path.Clean(s)}
	case hasScheme && (strings.EqualFold(scheme, "cdrom") || strings.EqualFold(scheme, "usb")):
		kind := Kind(strings.ToLower(scheme))
		if !strings.HasPrefix(rest, "/") {
			return l, fmt.Errorf("%q: want %s:/PATH, a path from the top of the medium", s, kind)
		}
		l = Location{Kind: kind, Path: path.Clean(rest)}
	case hasScheme && isScheme(scheme):
		return l, fmt.Errorf("%q: %s is not supported; want %s", s, scheme, kindList(allowed, dir != ""))
	case dir != "":
		l = Location{Kind: Path, Path: filepath.Join(dir, s), Given: s}
	default:
		return l, fmt.Errorf("%q is not an absolute path; want %s", s, kindList(allowed, false))
	}
	for _, k := range allowed {
		if k == l.Kind {
			return l, nil
		}
	}
	return Location{}, fmt.Errorf("%q: %s locations cannot be used here; want %s", s, l.Kind, kindList(allowed, dir != ""))
}

func isScheme(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

// kindForms are how "want …" messages write each kind.
var kindForms = map[Kind]string{Path: "an absolute path", HTTP: "http(s)://…", CDROM: "cdrom:/PATH", USB: "usb:/PATH",
	S3: "s3://BUCKET/PREFIX", NFS: "nfs://SERVER/EXPORT", SMB: "smb://SERVER/SHARE"}

// kindList names the kinds for "want …" messages; relative says a path need not be absolute.
func kindList(kinds []Kind, relative bool) string {
	var s []string
	for _, k := range kinds {
		if k == Path && relative {
			s = append(s, "a path")
		} else {
			s = append(s, kindForms[k])
		}
	}
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}
