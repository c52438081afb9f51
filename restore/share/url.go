// Package share mounts network shares that hold backup archives (NFS exports and SMB shares) in
// the boot environment, where the technician's archive often lives on a file server rather than
// a local disk.
//
// It talks to the kernel's nfs and cifs file systems with mount(2) directly: the boot image has
// no mount.nfs or mount.cifs helper (nor rpc.statd, rpcbind or a keyring upcall), so everything
// those helpers would do for the kernel — resolving the host, picking a protocol version or
// dialect, building the option string — is done here, and the kernel's terse errno is turned
// into a sentence a technician can act on.
//
// Addresses are URLs:
//
//	nfs://HOST[:PORT]/EXPORT/PATH   an NFS export, or a directory inside one
//	smb://HOST[:PORT]/SHARE/PATH    an SMB share, or a directory inside one
package share

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Scheme is the kind of share.
type Scheme string

// The schemes Parse accepts.
const (
	NFS Scheme = "nfs"
	SMB Scheme = "smb"
)

// URL is a parsed and checked share address.
type URL struct {
	Scheme Scheme
	// Host is the server's name or IP address as written (IPv6 without brackets).
	Host string
	// Port is the server's TCP port; 0 means the protocol's usual one (NFS: 2049 and rpcbind
	// for the MOUNT service; SMB: 445).
	Port int
	// Share is the SMB share name; empty for NFS.
	Share string
	// Path is, for NFS, the whole path on the server ("/export/archives"); for SMB, the path
	// inside the share without a leading slash ("" for the share's top).
	Path string
}

// String gives the URL back in its canonical form.
func (u *URL) String() string {
	host := u.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if u.Port != 0 {
		host += ":" + strconv.Itoa(u.Port)
	}
	p := u.Path
	if u.Scheme == SMB {
		p = "/" + u.Share
		if u.Path != "" {
			p += "/" + u.Path
		}
	}
	return string(u.Scheme) + "://" + host + escapePath(p)
}

// escapePath percent-encodes each element of a path for a URL.
func escapePath(p string) string {
	elems := strings.Split(p, "/")
	for i, e := range elems {
		elems[i] = url.PathEscape(e)
	}
	return strings.Join(elems, "/")
}

// Parse checks a share URL and splits it into its parts. Its errors say what is wrong in words
// a technician typing the URL at a shell understands.
func Parse(raw string) (*URL, error) {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("share URL %q: %s", raw, fmt.Sprintf(format, a...))
	}
	if raw == "" {
		return nil, fmt.Errorf("no share URL given: want nfs://HOST/EXPORT or smb://HOST/SHARE")
	}
	if !utf8.ValidString(raw) {
		return nil, bad("not valid UTF-8")
	}
	for _, r := range raw {
		if unicode.IsControl(r) {
			return nil, bad("contains a control character")
		}
	}
	scheme, _, ok := strings.Cut(raw, "://")
	if !ok {
		return nil, bad("want nfs://HOST/EXPORT or smb://HOST/SHARE")
	}
	switch Scheme(strings.ToLower(scheme)) {
	case NFS, SMB:
	case "cifs":
		return nil, bad("write smb:// for an SMB (CIFS) share")
	default:
		return nil, bad("unknown scheme %q: want nfs:// or smb://", scheme)
	}
	pu, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, bad("%v", err)
	}
	u := &URL{Scheme: Scheme(strings.ToLower(pu.Scheme))}
	if pu.User != nil {
		return nil, bad("a user name or password in the URL is not used (it would show in logs and the process list): give them as options")
	}
	if pu.RawQuery != "" || pu.ForceQuery {
		return nil, bad("a query (?…) is not part of a share address")
	}
	if pu.Fragment != "" || strings.Contains(raw, "#") {
		return nil, bad("a fragment (#…) is not part of a share address")
	}
	u.Host = pu.Hostname()
	if u.Host == "" {
		return nil, bad("no server name or address after %s://", u.Scheme)
	}
	if err := checkHost(u.Host); err != nil {
		return nil, bad("%v", err)
	}
	if p := pu.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, bad("port %q is not a number from 1 to 65535", p)
		}
		u.Port = n
	} else if strings.HasSuffix(pu.Host, ":") {
		return nil, bad("empty port after the host")
	}

	p := pu.Path
	if strings.Contains(p, "\x00") {
		return nil, bad("the path contains a NUL byte")
	}
	if strings.Contains(p, `\`) {
		return nil, bad(`use / between path elements, not \`)
	}
	var elems []string
	for _, e := range strings.Split(p, "/") {
		switch e {
		case "", ".":
			continue
		case "..":
			return nil, bad("the path may not contain ..")
		}
		elems = append(elems, e)
	}
	switch u.Scheme {
	case NFS:
		if len(elems) == 0 {
			return nil, bad("no export path: want nfs://%s/EXPORT[/PATH]", pu.Host)
		}
		u.Path = "/" + strings.Join(elems, "/")
		if len(u.Path) > 1024 {
			return nil, bad("the path is longer than NFS allows (1024 bytes)")
		}
	case SMB:
		if len(elems) == 0 {
			return nil, bad("no share name: want smb://%s/SHARE[/PATH]", pu.Host)
		}
		u.Share = elems[0]
		if len(u.Share) > 80 {
			return nil, bad("share name %q is longer than SMB allows (80 characters)", u.Share)
		}
		if i := strings.IndexAny(u.Share, `"*+,:;<=>?[]|`); i >= 0 {
			return nil, bad("share name %q contains %q, which SMB share names may not", u.Share, u.Share[i])
		}
		u.Path = path.Join(elems[1:]...)
	}
	return u, nil
}

// checkHost accepts an IP address or a DNS name (letters, digits, '-', '_' and '.').
func checkHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	if strings.Contains(h, "%") {
		return fmt.Errorf("zoned IPv6 addresses (%q) are not supported", h)
	}
	if len(h) > 253 {
		return fmt.Errorf("host name longer than 253 characters")
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("host %q is not a valid name or IP address", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("host %q is not a valid name or IP address", h)
			}
		}
	}
	return nil
}
