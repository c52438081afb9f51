package share

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/internal/mountinfo"

	"golang.org/x/sys/unix"
)

// probeTimeout bounds the reachability check when the context has no deadline of its own: the
// kernel's own NFS and SMB connection attempts wait minutes before they give up.
const probeTimeout = 15 * time.Second

// Mount mounts the share rawURL names on dir (made if missing) and returns the path inside dir
// that the URL's path names ("" when the mount is exactly that path). An SMB share is mounted
// whole; an NFS URL's whole path is mounted when the server allows it, else the nearest parent
// it exports. The error names the URL and says what failed, per version tried.
func Mount(ctx context.Context, rawURL, dir string, o Options) (sub string, err error) {
	u, err := Parse(rawURL)
	if err != nil {
		return "", err
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("mounting %s on %s: %s", u, dir, fmt.Sprintf(format, a...))
	}
	if err := checkOptions(u, o); err != nil {
		return "", fail("%v", err)
	}
	if dir == "" {
		return "", fmt.Errorf("mounting %s: no directory to mount it on", u)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fail("%v", err)
	}
	// Mounting over a mount point would hide what is there (another share, the boot medium).
	if t, ok := mountedAt(dir); ok {
		return "", fail("%s is already a mount point (%s): unmount it or choose another directory", dir, t)
	}
	ip, err := resolve(ctx, u.Host)
	if err != nil {
		return "", fail("%v", err)
	}
	port := u.Port
	if port == 0 {
		port = map[Scheme]int{NFS: nfsPort, SMB: smbPort}[u.Scheme]
	}
	client, err := probe(ctx, ip, port)
	if err != nil {
		var errno unix.Errno
		// Without a port in the URL an NFSv3 server may listen elsewhere (rpcbind knows): a
		// refused 2049 is not the end there.
		if !(u.Scheme == NFS && u.Port == 0 && errors.As(err, &errno) && errno == unix.ECONNREFUSED) {
			return "", fail("%s", explainNet(err, u.Scheme, ip, port))
		}
	}
	if os.Geteuid() != 0 {
		return "", fail("mounting needs root")
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV) // the server's files are not the image's to trust
	if o.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	logf := func(format string, a ...any) {
		if o.Log != nil {
			o.Log(fmt.Sprintf(format, a...))
		}
	}
	var a attempt
	var fails []failure
	switch u.Scheme {
	case NFS:
		a, fails, err = mountNFS(ctx, u, dir, ip, client, o, flags, logf)
	case SMB:
		a, fails, err = mountSMB(ctx, u, dir, ip, o, flags, logf)
	}
	if err != nil {
		if ctx.Err() != nil {
			return "", fail("%v", ctx.Err())
		}
		return "", fail("%s", summarize(fails, u, port))
	}
	if a.sub != "" {
		st, err := os.Stat(filepath.Join(dir, a.sub))
		if err != nil || !st.IsDir() {
			_ = unix.Unmount(dir, 0)
			what := "the export " + a.mounted
			if u.Scheme == SMB {
				what = "the share " + a.mounted
			}
			if err != nil {
				return "", fail("%s mounted, but %s is not in it", what, a.sub)
			}
			return "", fail("%s mounted, but %s in it is not a directory", what, a.sub)
		}
	}
	return a.sub, nil
}

// failure is one attempt that did not work.
type failure struct {
	label string
	err   error
}

// mountNFS tries the NFS versions in order, each on the URL's path and then its parents; NFSv4
// versions only when the user-space probe does not rule them out.
func mountNFS(ctx context.Context, u *URL, dir string, ip, client net.IP, o Options, flags uintptr, logf func(string, ...any)) (attempt, []failure, error) {
	versions, _ := versionsFor(o.NFSVersion)
	port := u.Port
	if port == 0 {
		port = nfsPort
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	var fails []failure
	var last error
	noV4 := false
	for _, v := range versions {
		if v != "3" {
			if noV4 {
				continue
			}
			verdict, why := probeNFSv4(ctx, addr, uint32(v[2]-'0'))
			if verdict == v4Unknown {
				logf("NFSv%s: the probe got no clear answer (%s): asking the kernel", v, why)
			}
			switch verdict {
			case v4NotSpoken:
				noV4 = true
				last = errors.New(why)
				fails = append(fails, failure{"NFSv4", last})
				logf("NFSv4: %s", why)
				continue
			case v4NoMinor:
				last = errors.New(why)
				fails = append(fails, failure{"NFSv" + v, last})
				logf("NFSv%s: %s", v, why)
				continue
			}
		}
	paths:
		for _, p := range nfsPaths(u.Path) {
			if err := ctx.Err(); err != nil {
				return attempt{}, fails, err
			}
			a := nfsAttempt(u, ip, client, v, p)
			// Said before the call: a server that stops answering keeps the kernel waiting
			// (minutes, for a hard mount), and the technician should see on what.
			logf("trying %s", a.label)
			err := unix.Mount(a.source, dir, a.fstype, flags, a.data)
			if err == nil {
				if p != u.Path {
					logf("the server exports %s, not %s: mounted %s", p, u.Path, p)
				}
				logf("mounted with NFSv%s", v)
				return a, fails, nil
			}
			last = err
			fails = append(fails, failure{a.label, err})
			logf("%s: %s", a.label, explain(err, NFS))
			switch nfsNext(err) {
			case tryParent:
				continue
			case tryNextVersion:
				break paths
			default:
				return attempt{}, fails, err
			}
		}
	}
	return attempt{}, fails, last
}

// mountSMB tries the dialects in order with the credentials (see smbAttempts and smbNext).
func mountSMB(ctx context.Context, u *URL, dir string, ip net.IP, o Options, flags uintptr, logf func(string, ...any)) (attempt, []failure, error) {
	var fails []failure
	var last error
	skip := ""
	for _, a := range smbAttempts(u, ip, o) {
		if a.version == skip {
			continue
		}
		if err := ctx.Err(); err != nil {
			return attempt{}, fails, err
		}
		logf("trying %s", a.label)
		err := unix.Mount(a.source, dir, a.fstype, flags, a.data)
		if err == nil {
			logf("mounted with %s", a.label)
			return a, fails, nil
		}
		last = err
		fails = append(fails, failure{a.label, err})
		logf("%s: %s", a.label, explain(err, SMB))
		switch smbNext(err, a.anonymous) {
		case tryNextCredential:
			continue
		case tryNextVersion:
			skip = a.version
		default:
			return attempt{}, fails, err
		}
	}
	return attempt{}, fails, last
}

// step is what to do after a failed attempt.
type step int

const (
	stop step = iota
	tryParent
	tryNextVersion
	tryNextCredential
)

// nfsNext decides after a failed NFS mount. A missing or refused path may be below the export
// (the parent is tried); a version the server or kernel lacks goes to the next version; network
// trouble is the same for every version, so it ends the tries.
func nfsNext(err error) step {
	switch err {
	case unix.ENOENT, unix.EACCES, unix.EPERM:
		return tryParent
	case unix.ETIMEDOUT, unix.EHOSTUNREACH, unix.ENETUNREACH, unix.EBUSY, unix.ENOTDIR, unix.ENOMEM:
		return stop
	}
	return tryNextVersion
}

// smbNext decides after a failed SMB mount. A refused logon is never retried with the same
// credentials in another dialect, so that a wrong password does not count three times towards
// the account's lockout; only the guest ladder goes on. A dialect the server does not speak
// ends the connection (EHOSTDOWN, ECONNRESET) or is refused (EOPNOTSUPP, EPROTO).
func smbNext(err error, anonymous bool) step {
	switch err {
	case unix.EACCES, unix.EPERM, unix.EKEYREJECTED:
		if anonymous {
			return tryNextCredential
		}
		return stop
	case unix.EOPNOTSUPP, unix.EHOSTDOWN, unix.ECONNRESET, unix.EPROTO, unix.EIO, unix.EINVAL, unix.ECONNABORTED:
		return tryNextVersion
	}
	return stop
}

// explain turns the kernel's errno for a share mount into what it means there.
func explain(err error, s Scheme) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	name := unix.ErrnoName(errno)
	var msg string
	switch errno {
	case unix.ENOENT:
		msg = "the server has no such export or directory"
		if s == SMB {
			msg = "the server has no such share"
		}
	case unix.EACCES:
		msg = "the server refused this machine (is it in the export's allowed clients? a server that wants a privileged source port needs the export option insecure)"
		if s == SMB {
			msg = "logon failure or access denied: the user name, password or domain is wrong, or the user may not use this share"
		}
	case unix.EPERM:
		msg = "operation not permitted (mounting needs root; or the server refused)"
	case unix.ETIMEDOUT:
		msg = "the server did not answer in time"
	case unix.EHOSTUNREACH, unix.ENETUNREACH:
		msg = "no route to the server: is the network up (the boot menu's n starts DHCP) and the address right?"
	case unix.ECONNREFUSED:
		msg = "the server refused the connection: is the service running there, and the port right?"
	case unix.ENODEV:
		mod := "nfs"
		if s == SMB {
			mod = "cifs"
		}
		msg = fmt.Sprintf("the kernel has no %s module (or could not load it): %s shares cannot be mounted here", mod, strings.ToUpper(string(s)))
	case unix.EPROTONOSUPPORT:
		msg = "the server (or this kernel) does not support this version"
	case unix.EOPNOTSUPP:
		msg = "not supported by the server (this dialect or security mode)"
	case unix.EHOSTDOWN:
		msg = "the server ended the session setup (it may not speak this dialect; see dmesg)"
	case unix.ECONNRESET, unix.ECONNABORTED:
		msg = "the server closed the connection"
	case unix.EPROTO:
		msg = "protocol error: the server answered something the kernel did not expect"
	case unix.EINVAL:
		msg = "the kernel rejected the mount (an option or the version is not accepted; see dmesg)"
	case unix.EIO:
		msg = "input/output error talking to the server (see dmesg)"
	case unix.EBUSY:
		msg = "the directory is busy (already a mount point?)"
	case unix.ENOTDIR:
		msg = "the mount point is not a directory"
	case unix.EKEYREJECTED, unix.ENOKEY:
		msg = "the server wants Kerberos, which the boot image does not have"
	case unix.ESTALE:
		msg = "the server says the export's handle is stale (was it re-exported?)"
	default:
		msg = errno.Error()
	}
	return msg + " (" + name + ")"
}

// summarize turns the failed attempts into one message: attempts that failed alike are named
// together, in order.
func summarize(fails []failure, u *URL, port int) string {
	if len(fails) == 0 {
		return "nothing was tried"
	}
	var parts []string
	var labels []string
	for i, f := range fails {
		labels = append(labels, f.label)
		if i+1 < len(fails) && explain(fails[i+1].err, u.Scheme) == explain(f.err, u.Scheme) {
			continue
		}
		parts = append(parts, strings.Join(labels, ", ")+": "+explain(f.err, u.Scheme))
		labels = nil
	}
	msg := strings.Join(parts, "; ")
	if errors.Is(fails[len(fails)-1].err, unix.ETIMEDOUT) {
		msg += fmt.Sprintf(" (TCP port %d answered, but the %s service behind it did not)", port, strings.ToUpper(string(u.Scheme)))
	}
	return msg
}

// resolve turns the host into an address for the kernel (addr=, ip=), preferring IPv4.
func resolve(ctx context.Context, host string) (net.IP, error) {
	if ip := net.ParseIP(host); ip != nil {
		return ip, nil
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupIPAddr(ctx, host)
	if err != nil {
		return nil, fmt.Errorf("cannot resolve %s: %v (is DNS set up? an IP address works without it)", host, err)
	}
	for _, a := range addrs {
		if a.IP.To4() != nil {
			return a.IP, nil
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("cannot resolve %s: no address", host)
	}
	return addrs[0].IP, nil
}

// probe connects to the server's port once, so that an unreachable or silent server gives a
// quick and precise error instead of the kernel's long retries, and returns the local address
// the connection used (the address the server sees, which NFSv4 passes as clientaddr=).
func probe(ctx context.Context, ip net.IP, port int) (net.IP, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, probeTimeout)
		defer cancel()
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if a, ok := c.LocalAddr().(*net.TCPAddr); ok {
		return a.IP, nil
	}
	return nil, nil
}

// explainNet says what a failed connection to the server means.
func explainNet(err error, s Scheme, ip net.IP, port int) string {
	where := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	svc := strings.ToUpper(string(s))
	var errno unix.Errno
	switch {
	case errors.As(err, &errno) && errno == unix.ECONNREFUSED:
		return fmt.Sprintf("nothing accepts connections on %s: is the %s server running, and the port right? (ECONNREFUSED)", where, svc)
	case errors.As(err, &errno) && (errno == unix.EHOSTUNREACH || errno == unix.ENETUNREACH):
		return fmt.Sprintf("no route to %s: is the network up (the boot menu's n starts DHCP) and the address right? (%s)", where, unix.ErrnoName(errno))
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &errno) && errno == unix.ETIMEDOUT:
		return fmt.Sprintf("no answer from %s: is the server up, and does a firewall let TCP port %d through? (ETIMEDOUT)", where, port)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("no answer from %s: is the server up, and does a firewall let TCP port %d through? (ETIMEDOUT)", where, port)
	}
	return fmt.Sprintf("connecting to %s: %v", where, err)
}

// mountedAt reports whether dir is a mount point, and of which file system type.
func mountedAt(dir string) (string, bool) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", false
	}
	if real, err := filepath.EvalSymlinks(abs); err == nil {
		abs = real // mountinfo has the resolved path
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	return mountType(f, abs)
}

// Unmount unmounts the share mounted on dir. It refuses a directory that is not an NFS or SMB
// mount, so a typo cannot unmount the boot medium or a restored disk.
func Unmount(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	fstype, ok := mountedAt(dir)
	switch {
	case !ok:
		return fmt.Errorf("unmounting %s: nothing is mounted there", dir)
	case !isShareType(fstype):
		return fmt.Errorf("unmounting %s: it is a %s mount, not an NFS or SMB share (use umount)", dir, fstype)
	}
	if err := unix.Unmount(dir, 0); err != nil {
		if err == unix.EBUSY {
			return fmt.Errorf("unmounting %s: it is in use (a shell's current directory or an open file inside it): leave it and try again (EBUSY)", dir)
		}
		return fmt.Errorf("unmounting %s: %w", dir, err)
	}
	return nil
}

func isShareType(t string) bool {
	switch t {
	case "nfs", "nfs4", "cifs", "smb3":
		return true
	}
	return false
}

// mountType finds the file system type of the topmost mount on dir in a mountinfo listing.
func mountType(r io.Reader, dir string) (string, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	fstype, found := "", false
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 5 || len(g) < 1 {
			continue
		}
		if mountinfo.Unescape(f[4]) == dir {
			fstype, found = g[0], true // later lines are mounts on top of earlier ones
		}
	}
	return fstype, found
}
