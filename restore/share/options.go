package share

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"
)

// Options say how to mount a share.
type Options struct {
	// User, Password and Domain log on to an SMB server; an empty User mounts as a guest
	// (an anonymous session first, then the user "guest"). NFS ignores them.
	User, Password, Domain string
	// NFSVersion is "3", "4.0", "4.1", "4.2", or "4" (4.2, 4.1, then 4.0); empty tries 4.2, 4.1,
	// 4.0, then 3.
	NFSVersion string
	// ReadOnly mounts read-only.
	ReadOnly bool
	// Log, when set, is told of each attempt as it starts, how it failed, and which one worked
	// (version or dialect, credentials, the path mounted), so a technician sees what a slow mount
	// waits for and why a mount took the path it took.
	Log func(msg string)
}

// Default ports, for messages and the reachability check.
const (
	nfsPort = 2049
	smbPort = 445
)

// nfsVersions are the versions tried when Options.NFSVersion is empty, newest first: NFSv3 last
// because it needs the server's MOUNT service (and rpcbind, without a port in the URL) and the
// image runs no lock daemon, so v3 mounts are nolock.
var nfsVersions = []string{"4.2", "4.1", "4.0", "3"}

// smbDialects are tried in order; older dialects (2.0, 1.0) are insecure and left out.
var smbDialects = []string{"3.1.1", "3.0", "2.1"}

// attempt is one mount(2) call.
type attempt struct {
	label  string // what a technician reads: "NFSv4.2 /export", "SMB 3.1.1 as guest"
	fstype string
	source string
	data   string
	// mounted is what the call mounts: for NFS the path on the server, for SMB the share.
	mounted string
	// sub is the path inside the mount that the URL names.
	sub string
	// version is the NFS version or SMB dialect; anonymous marks the guest ladder's first step.
	version   string
	anonymous bool
}

// checkOptions rejects options that cannot be passed to the kernel.
func checkOptions(u *URL, o Options) error {
	if _, err := versionsFor(o.NFSVersion); err != nil {
		return err
	}
	if u.Scheme != SMB {
		return nil
	}
	for _, f := range []struct{ name, v string }{{"user name", o.User}, {"password", o.Password}, {"domain", o.Domain}} {
		for _, r := range f.v {
			// The kernel's option parser stops at NUL; other control characters are typos.
			if unicode.IsControl(r) {
				return fmt.Errorf("the %s contains a control character", f.name)
			}
		}
	}
	if o.User == "" && (o.Password != "" || o.Domain != "") {
		return fmt.Errorf("a password or domain without a user name: give the user too (or neither, for guest access)")
	}
	return nil
}

// versionsFor returns the NFS versions to try for Options.NFSVersion.
func versionsFor(v string) ([]string, error) {
	switch v {
	case "":
		return nfsVersions, nil
	case "3", "4.0", "4.1", "4.2":
		return []string{v}, nil
	case "4":
		return []string{"4.2", "4.1", "4.0"}, nil
	}
	return nil, fmt.Errorf("NFS version %q: want 3, 4, 4.0, 4.1 or 4.2", v)
}

// nfsPaths are the paths to try mounting for a URL's path: the whole path first, then each
// parent, since the export may be any of them and a server may refuse mounting below it.
func nfsPaths(p string) []string {
	var out []string
	for p != "/" && p != "" {
		out = append(out, p)
		i := strings.LastIndex(p, "/")
		p = p[:i]
	}
	return out
}

// nfsAttempt builds the mount of path p of the server at ip with one NFS version. client is
// this machine's address towards the server: NFSv4 hands it to the server for callbacks
// (delegations), which mount.nfs would otherwise find out.
func nfsAttempt(u *URL, ip, client net.IP, version, p string) attempt {
	host := u.Host
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	proto := "tcp"
	if ip.To4() == nil {
		proto = "tcp6" // the kernel checks the address family against proto=
	}
	opts := []string{"vers=" + version, "proto=" + proto, "addr=" + ip.String()}
	fstype := "nfs"
	if version == "3" {
		// No rpc.statd in the image: locks stay local to this machine, which only the recovery
		// uses. The MOUNT service is asked over TCP at the same address.
		opts = append(opts, "nolock", "mountproto="+proto, "mountaddr="+ip.String())
		if u.Port != 0 {
			// A port in the URL means a server without rpcbind (often a user-space server that
			// answers MOUNT and NFS on one port).
			opts = append(opts, "port="+strconv.Itoa(u.Port), "mountport="+strconv.Itoa(u.Port))
		}
	} else {
		fstype = "nfs4"
		if client != nil {
			opts = append(opts, "clientaddr="+client.String())
		}
		if u.Port != 0 {
			opts = append(opts, "port="+strconv.Itoa(u.Port))
		}
	}
	return attempt{
		label:   "NFSv" + version + " " + p,
		fstype:  fstype,
		source:  host + ":" + p,
		data:    strings.Join(opts, ","),
		mounted: p,
		sub:     strings.TrimPrefix(strings.TrimPrefix(u.Path, p), "/"),
		version: version,
	}
}

// smbAttempts builds the mounts to try for an SMB share, in order: each dialect, and for a guest
// an anonymous session and then the user "guest" (Samba's "map to guest = bad user" and Windows
// with the guest account enabled take the latter; servers that allow null sessions the former).
func smbAttempts(u *URL, ip net.IP, o Options) []attempt {
	type cred struct {
		label, opts string
		anonymous   bool
	}
	var creds []cred
	if o.User == "" {
		creds = []cred{{"anonymous", "user=,pass=", true}, {"as guest", "user=guest,pass=", false}}
	} else {
		opts := "user=" + escapeOpt(o.User)
		if o.Domain != "" {
			opts += ",domain=" + escapeOpt(o.Domain)
		}
		// The password goes last: the kernel reads ",," inside a value as a comma.
		opts += ",pass=" + escapeOpt(o.Password)
		creds = []cred{{"as " + o.User, opts, false}}
	}
	var out []attempt
	for _, d := range smbDialects {
		for _, c := range creds {
			opts := []string{"vers=" + d, "ip=" + ip.String()}
			if u.Port != 0 {
				opts = append(opts, "port="+strconv.Itoa(u.Port))
			}
			// Files belong to root, who runs the recovery, whatever the server's owners are.
			opts = append(opts, "uid=0", "gid=0", c.opts)
			out = append(out, attempt{
				label:     "SMB " + d + " " + c.label,
				fstype:    "cifs",
				source:    "//" + u.Host + "/" + u.Share,
				data:      strings.Join(opts, ","),
				mounted:   u.Share,
				sub:       u.Path,
				version:   d,
				anonymous: c.anonymous,
			})
		}
	}
	return out
}

// escapeOpt doubles commas, which the cifs option parser reads back as one comma inside a value.
func escapeOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }
