package share

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"golang.org/x/sys/unix"
)

func TestNextSteps(t *testing.T) {
	for err, want := range map[unix.Errno]step{
		unix.ENOENT: tryParent, unix.EACCES: tryParent, unix.EPROTONOSUPPORT: tryNextVersion,
		unix.EINVAL: tryNextVersion, unix.EIO: tryNextVersion, unix.ETIMEDOUT: stop, unix.EHOSTUNREACH: stop,
	} {
		if got := nfsNext(err); got != want {
			t.Errorf("nfsNext(%s) = %d, want %d", unix.ErrnoName(err), got, want)
		}
	}
	for _, c := range []struct {
		err       unix.Errno
		anonymous bool
		want      step
	}{
		{unix.EACCES, false, stop}, // a wrong password is not tried three times
		{unix.EACCES, true, tryNextCredential},
		{unix.EOPNOTSUPP, false, tryNextVersion},
		{unix.EHOSTDOWN, false, tryNextVersion},
		{unix.ENOENT, false, stop},
		{unix.ETIMEDOUT, true, stop},
	} {
		if got := smbNext(c.err, c.anonymous); got != c.want {
			t.Errorf("smbNext(%s, %v) = %d, want %d", unix.ErrnoName(c.err), c.anonymous, got, c.want)
		}
	}
}

func TestExplain(t *testing.T) {
	for _, c := range []struct {
		err  unix.Errno
		s    Scheme
		want string
	}{
		{unix.ENODEV, NFS, "the kernel has no nfs module (or could not load it): NFS shares cannot be mounted here (ENODEV)"},
		{unix.ENODEV, SMB, "the kernel has no cifs module"},
		{unix.ENOENT, NFS, "no such export or directory (ENOENT)"},
		{unix.ENOENT, SMB, "no such share (ENOENT)"},
		{unix.EACCES, SMB, "logon failure or access denied"},
		{unix.EACCES, NFS, "allowed clients"},
		{unix.ETIMEDOUT, NFS, "did not answer in time (ETIMEDOUT)"},
		{unix.EHOSTUNREACH, SMB, "no route to the server"},
		{unix.EPROTONOSUPPORT, NFS, "does not support this version (EPROTONOSUPPORT)"},
		{unix.EXDEV, NFS, "(EXDEV)"},
	} {
		if got := explain(c.err, c.s); !strings.Contains(got, c.want) {
			t.Errorf("explain(%s, %s) = %q, want %q", unix.ErrnoName(c.err), c.s, got, c.want)
		}
	}
	u := mustParse(t, "nfs://10.0.2.2/export/x")
	got := summarize([]failure{
		{"NFSv4.2 /export/x", unix.EPROTONOSUPPORT}, {"NFSv4.1 /export/x", unix.EPROTONOSUPPORT},
		{"NFSv3 /export/x", unix.ENOENT}, {"NFSv3 /export", unix.ENOENT},
	}, u, 2049)
	want := "NFSv4.2 /export/x, NFSv4.1 /export/x: the server (or this kernel) does not support this version (EPROTONOSUPPORT); " +
		"NFSv3 /export/x, NFSv3 /export: the server has no such export or directory (ENOENT)"
	if got != want {
		t.Errorf("summarize:\n got %q\nwant %q", got, want)
	}
}

func TestMountType(t *testing.T) {
	const info = `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
40 22 0:35 / /mnt/my\040share rw,nosuid,nodev - nfs 10.0.2.2:/export rw,vers=3
41 22 0:36 / /mnt/s rw - cifs //nas/pub rw
42 41 0:37 / /mnt/s rw - tmpfs tmpfs rw
`
	for dir, want := range map[string]string{"/": "ext4", "/mnt/my share": "nfs", "/mnt/s": "tmpfs"} {
		if got, ok := mountType(strings.NewReader(info), dir); !ok || got != want {
			t.Errorf("mountType(%q) = %q, %v; want %q", dir, got, ok, want)
		}
	}
	if _, ok := mountType(strings.NewReader(info), "/mnt"); ok {
		t.Error("mountType(/mnt): found a mount that is not there")
	}
}

func TestUnmountRefuses(t *testing.T) {
	if err := Unmount(t.TempDir()); err == nil || !strings.Contains(err.Error(), "nothing is mounted there") {
		t.Errorf("Unmount(a plain directory): %v", err)
	}
	if err := Unmount("/"); err == nil || !strings.Contains(err.Error(), "not an NFS or SMB share") {
		t.Errorf("Unmount(/): %v", err)
	}
	if err := Unmount(filepath.Join(t.TempDir(), "none")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Unmount(a missing directory): %v", err)
	}
}

// TestMountOverMountPoint: a share is never mounted over another mount (here the root), which
// it would hide.
func TestMountOverMountPoint(t *testing.T) {
	_, err := Mount(context.Background(), "nfs://127.0.0.1:1/export", "/", Options{})
	if err == nil || !strings.Contains(err.Error(), "/ is already a mount point") {
		t.Errorf("mounting over /: %v", err)
	}
}

// TestMountUnreachable: a port nobody listens on gives a quick message naming the URL, the
// address and what to check, before the kernel is asked anything.
func TestMountUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	for _, raw := range []string{"smb://127.0.0.1:" + strconv.Itoa(port) + "/share", "nfs://127.0.0.1:" + strconv.Itoa(port) + "/export"} {
		_, err := Mount(context.Background(), raw, filepath.Join(t.TempDir(), "m"), Options{})
		if err == nil {
			t.Fatalf("%s: mounted", raw)
		}
		for _, want := range []string{raw, "nothing accepts connections on 127.0.0.1:" + strconv.Itoa(port), "ECONNREFUSED"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v; want it to say %q", raw, err, want)
			}
		}
	}
	if _, err := Mount(context.Background(), "smb://nas/x", t.TempDir(), Options{Password: "p"}); err == nil ||
		!strings.Contains(err.Error(), "mounting smb://nas/x") || !strings.Contains(err.Error(), "without a user name") {
		t.Errorf("a password without a user: %v", err)
	}
}

// TestMountKernelErrors asks this machine's kernel for real mounts against a server that accepts
// TCP connections and closes them at once. This project's build machines have no nfs or cifs in
// their kernel, so the answer there is ENODEV, which must come out as "the kernel has no … module";
// a kernel that has them gets a closed connection, and the error must still name the URL and
// every attempt.
func TestMountKernelErrors(t *testing.T) {
	testenv.NeedRoot(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	for _, c := range []struct {
		url, fs, module string
		o               Options
	}{
		{"nfs://127.0.0.1:" + port + "/export/a", "nfs", "nfs", Options{NFSVersion: "3"}},
		{"smb://127.0.0.1:" + port + "/share", "cifs", "cifs", Options{User: "u", Password: "p"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		dir := filepath.Join(t.TempDir(), "m")
		_, err := Mount(ctx, c.url, dir, c.o)
		cancel()
		if err == nil {
			unix.Unmount(dir, 0)
			t.Fatalf("%s: mounted a server that closes every connection", c.url)
		}
		t.Logf("%s: %v", c.url, err)
		if !strings.Contains(err.Error(), "mounting "+c.url+" on "+dir) {
			t.Errorf("%s: the error does not name the URL and the directory: %v", c.url, err)
		}
		fs, _ := os.ReadFile("/proc/filesystems")
		if !strings.Contains(string(fs), "\t"+c.fs+"\n") {
			if !strings.Contains(err.Error(), "the kernel has no "+c.module+" module") {
				t.Errorf("%s on a kernel without %s: %v", c.url, c.fs, err)
			}
		}
		var errno unix.Errno
		if errors.As(err, &errno) {
			t.Errorf("%s: the error wraps an errno (%v): callers get the sentence, not the number", c.url, errno)
		}
	}
}
