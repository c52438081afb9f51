package initramfs_test

// The boot environment mounts network shares: the ISO's shell entry boots, and `cauldron share
// mount` mounts an NFSv3 export and SMB shares from servers on the host's loopback, which the
// guest reaches through QEMU's user network at 10.0.2.2. The NFS server is go-nfs (NFSv3, MOUNT
// and NFS on one port, no rpcbind) in the test process; the SMB server is Debian's smbd with its
// own configuration in a temporary folder.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/qemu"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/go-git/go-billy/v5"
	"github.com/go-git/go-billy/v5/osfs"
	nfs "github.com/willscott/go-nfs"
	"github.com/willscott/go-nfs/helpers"
)

// exportHandler lets only the export path itself be mounted (go-nfs's own handler mounts its
// root whatever path is asked), as a server that exports /export and not its subdirectories
// would, so the guest must find the URL's path inside it.
type exportHandler struct {
	nfs.Handler
	fs     billy.Filesystem
	export string
	log    *syncBuffer
}

func (h exportHandler) Mount(ctx context.Context, c net.Conn, req nfs.MountRequest) (nfs.MountStatus, billy.Filesystem, []nfs.AuthFlavor) {
	if string(req.Dirpath) != h.export {
		fmt.Fprintf(h.log, "MOUNT %s refused\n", req.Dirpath)
		// go-nfs v0.0.4 makes a handle from the file system even for a refusal (and panics
		// on nil), though it sends only the status.
		return nfs.MountStatusErrNoEnt, h.fs, nil
	}
	fmt.Fprintf(h.log, "MOUNT %s\n", req.Dirpath)
	return h.Handler.Mount(ctx, c, req)
}

// syncBuffer collects a server's output for the test's log.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startNFSServer serves root over NFSv3 (go-nfs, in this process) on 127.0.0.1 as the export
// /export and returns its port and what it logged.
func startNFSServer(t *testing.T, root string) (int, *syncBuffer) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	fs := osfs.New(root)
	h := helpers.NewCachingHandler(exportHandler{helpers.NewNullAuthHandler(fs), fs, "/export", log}, 1024)
	go nfs.Serve(l, h)
	t.Cleanup(func() { l.Close() })
	return l.Addr().(*net.TCPAddr).Port, log
}

// startSMBServer runs smbd on 127.0.0.1 with two shares: pub (guest access) over pubDir and priv
// (user tech, password smbPassword) over privDir. It returns the port and smbd's output.
func startSMBServer(t *testing.T, work, pubDir, privDir string) (int, *syncBuffer) {
	t.Helper()
	d := filepath.Join(work, "samba")
	for _, sub := range []string{"run", "lock", "state", "cache", "private", "ncalrpc", "log"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	conf := filepath.Join(d, "smb.conf")
	// Everything smbd keeps goes under d; no NetBIOS (no nmbd), no printing. The guest account
	// and the user's files are root's (force user), as the test runs as root. The user map lets
	// the guest log on as "tech" with root's Samba password.
	text := fmt.Sprintf(`[global]
	server role = standalone server
	smb ports = %d
	interfaces = 127.0.0.1
	bind interfaces only = yes
	disable netbios = yes
	pid directory = %[2]s/run
	lock directory = %[2]s/lock
	state directory = %[2]s/state
	cache directory = %[2]s/cache
	private dir = %[2]s/private
	ncalrpc dir = %[2]s/ncalrpc
	log file = %[2]s/log/%%m.log
	log level = 2
	passdb backend = tdbsam:%[2]s/private/passdb.tdb
	username map = %[2]s/users.map
	map to guest = Bad User
	load printers = no
	printcap name = /dev/null
	disable spoolss = yes
	server min protocol = SMB2_10
[pub]
	path = %[3]s
	read only = no
	guest ok = yes
	force user = root
[priv]
	path = %[4]s
	read only = no
	valid users = root
	force user = root
`, port, d, pubDir, privDir)
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "users.map"), []byte("root = tech\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pw := exec.Command("smbpasswd", "-c", conf, "-a", "-s", "root")
	pw.Stdin = strings.NewReader(smbPassword + "\n" + smbPassword + "\n")
	if out, err := pw.CombinedOutput(); err != nil {
		t.Fatalf("smbpasswd: %v\n%s", err, out)
	}
	cmd := exec.Command("smbd", "--foreground", "--no-process-group", "--debug-stdout", "--configfile="+conf)
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group: smbd forks a child per connection and helpers, all ended with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			t.Logf("smbd's output:\n%s", log.String())
		}
	})
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smbd does not listen on port %d: %v\n%s", port, err, log.String())
		}
	}
	return port, log
}

const smbPassword = "s3cret,pw" // a comma, which the mount options must escape

// guestShell runs commands in the guest's shell over the serial console.
//
// u-root's shell (gosh) reads each line with a Bubble Tea line editor, and under TCG on a loaded
// host that editor now and then never hands the line over: the console goes silent after Enter
// for good, the guest idles (QEMU's monitor: halted, its timer and serial interrupts still
// taken, even as keys arrive) and no later command runs. It failed about one run in three of
// this test's 25 commands on a busy machine. So the editor is used for one line only, which
// starts a read-eval loop of the same shell on the terminal in its ordinary (cooked) mode: the
// kernel echoes what is typed, and nothing switches terminal modes between commands.
type guestShell struct {
	t *testing.T
	v *qemu.VM
	n int
}

// startLoop types, at the line editor's prompt, the command that reads and runs every later
// line, and waits until it runs.
func (g *guestShell) startLoop() {
	g.t.Helper()
	// The marker is computed so that the echo of the typed line does not match it.
	const line = `gosh -c 'echo LOOP-$((40+2)); while read -r l; do eval "$l"; done'`
	for try := 0; ; try++ {
		if _, err := g.v.ExpectPartial(`toggle key help`, time.Minute); err != nil {
			g.t.Fatalf("no prompt: %v", err)
		}
		time.Sleep(300 * time.Millisecond)
		if err := g.v.Send(line); err != nil {
			g.t.Fatal(err)
		}
		if _, err := g.v.ExpectPartial(`done'\s*$`, 30*time.Second); err == nil {
			break
		}
		if try == 2 {
			g.t.Fatal("the shell did not echo the loop's line back whole, three times")
		}
		if err := g.v.Send("\x03"); err != nil { // clears the mangled line
			g.t.Fatal(err)
		}
	}
	if err := g.v.Send("\r"); err != nil {
		g.t.Fatal(err)
	}
	if _, err := g.awaitOutput(`(?m)^LOOP-42`, time.Minute); err != nil {
		g.t.Fatalf("the read-eval loop did not start: %v", err)
	}
}

// run runs cmd in the loop and returns its output and exit status.
func (g *guestShell) run(cmd string, timeout time.Duration) (string, int) {
	g.t.Helper()
	g.n++
	// Standard error joins standard output: the shell copies each to the console on its own,
	// so the error of a command could otherwise come after the marker that follows it.
	marker := fmt.Sprintf("END%d:", g.n)
	start := time.Now()
	if err := g.v.Send(fmt.Sprintf("%s 2>&1; echo %s$?\r", cmd, marker)); err != nil {
		g.t.Fatal(err)
	}
	// The terminal's echo of the line first, then what the command writes.
	if _, err := g.v.Expect(regexp.QuoteMeta(marker+"$?"), time.Minute); err != nil {
		g.t.Fatalf("%s: the line was not echoed: %v", cmd, err)
	}
	m, err := g.awaitOutput(fmt.Sprintf(`(?s)(.*)%s(\d+)`, marker), timeout)
	if err != nil {
		g.t.Fatalf("%s: %v", cmd, err)
	}
	code, _ := strconv.Atoi(m[2])
	g.t.Logf("guest$ %s\n%s[exit %d, %.1fs]", cmd, m[1], code, time.Since(start).Seconds())
	return m[1], code
}

// awaitOutput waits for pattern on the console; when it does not come, it says what the
// guest's processor was doing (halted or running, and where), for the record.
func (g *guestShell) awaitOutput(pattern string, timeout time.Duration) ([]string, error) {
	m, err := g.v.Expect(pattern, timeout)
	if err != nil && errors.Is(err, qemu.ErrTimeout) {
		out, merr := g.v.Monitor("info registers")
		g.t.Logf("the guest's processor when the wait ended: %v %s", merr,
			regexp.MustCompile(`RIP=\S+|HLT=\d`).FindAllString(out, -1))
	}
	return m, err
}

// ok runs cmd and fails the test unless it succeeds and its output matches every pattern.
func (g *guestShell) ok(cmd string, timeout time.Duration, patterns ...string) string {
	g.t.Helper()
	out, code := g.run(cmd, timeout)
	if code != 0 {
		g.t.Fatalf("guest: %s: exit %d\n%s", cmd, code, out)
	}
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			g.t.Errorf("guest: %s: output does not match %s:\n%s", cmd, p, out)
		}
	}
	return out
}

// fails runs cmd and fails the test if it succeeds or its output misses a pattern.
func (g *guestShell) fails(cmd string, timeout time.Duration, patterns ...string) string {
	g.t.Helper()
	out, code := g.run(cmd, timeout)
	if code == 0 {
		g.t.Errorf("guest: %s: succeeded, want a failure\n%s", cmd, out)
	}
	for _, p := range patterns {
		if !regexp.MustCompile(p).MatchString(out) {
			g.t.Errorf("guest: %s: output does not match %s:\n%s", cmd, p, out)
		}
	}
	return out
}

// TestShareMounts boots the ISO's shell entry (UEFI, GRUB's menu over the serial line) and mounts
// an NFS export and SMB shares from the host with `cauldron share mount`: it reads a marker file
// the host wrote, writes a file the host then reads, and checks the messages of mounts that
// cannot work (a missing export, a wrong password).
func TestShareMounts(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "smbd", "smbpasswd")
	qemu.Require(t, qemu.UEFI, false)
	work := t.TempDir()
	iso, _ := testMedia(t, work)

	nfsRoot := filepath.Join(work, "nfs")
	pubDir := filepath.Join(work, "pub")
	privDir := filepath.Join(work, "priv")
	for _, d := range []string{filepath.Join(nfsRoot, "archive"), pubDir, filepath.Join(privDir, "dr")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)
	markers := map[string]string{
		filepath.Join(nfsRoot, "archive", "marker.txt"): "nfs-marker-" + stamp,
		filepath.Join(pubDir, "marker.txt"):             "pub-marker-" + stamp,
		filepath.Join(privDir, "dr", "marker.txt"):      "priv-marker-" + stamp,
	}
	for p, text := range markers {
		if err := os.WriteFile(p, []byte(text+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// A repository on the export, opened by URL (package restore/archive mounts the share).
	img := filepath.Join(work, "small.img")
	if err := os.WriteFile(img, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	repo, err := tib.Init(t.Context(), local.New(filepath.Join(nfsRoot, "archive", "repo")), tib.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Capture(t.Context(), tib.CaptureOptions{Machine: "nfs01", Sources: []string{img}}); err != nil {
		t.Fatal(err)
	}
	nfsPort, nfsLog := startNFSServer(t, nfsRoot)
	smbPort, smbLog := startSMBServer(t, work, pubDir, privDir)

	v := qemu.StartT(t, qemu.Config{Name: "share-mounts", Firmware: qemu.UEFI, CDROM: iso, Timeout: bootTimeout + 10*time.Minute})
	// GRUB draws its menu over the serial line; Ctrl-N moves to the second entry, the shell.
	if _, err := v.ExpectPartial(`Cauldron recovery: shell`, bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := v.Send("\x0e\r"); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Expect(`cauldron: starting \S+; leave it with exit`, bootTimeout); err != nil {
		t.Fatal(err)
	}
	lease := regexp.MustCompile(`cauldron: network eth\d+ 10\.0\.2\.\d+/24 dhcp`)
	for deadline := time.Now().Add(2 * time.Minute); !lease.MatchString(v.Output()); time.Sleep(time.Second) {
		if time.Now().After(deadline) {
			t.Fatal("no DHCP lease line on the console")
		}
	}
	time.Sleep(time.Second) // let the shell draw its prompt
	g := &guestShell{t: t, v: v}
	g.startLoop()
	const step = 3 * time.Minute

	// NFS: the server exports /export only, so the URL's path is found inside the export.
	nfsURL := fmt.Sprintf("nfs://10.0.2.2:%d/export/archive", nfsPort)
	start := time.Now()
	// go-nfs speaks NFSv3 only and answers NFSv4 requests as if they were v3: the user-space
	// probe must see that, so the kernel is never asked for NFSv4 (it would get EIO at best).
	g.ok("cauldron share mount "+nfsURL+" /mnt/n", step, `is at /mnt/n/archive`,
		`NFSv4: the server answered an NFSv4 request with something else`,
		`the server exports /export, not /export/archive: mounted /export`)
	t.Logf("NFS mount took %.1fs (wall, TCG)", time.Since(start).Seconds())
	g.ok("cat /proc/mounts", step, `10\.0\.2\.2:/export /mnt/n nfs .*vers=3`)
	g.ok("cat /mnt/n/archive/marker.txt", step, markers[filepath.Join(nfsRoot, "archive", "marker.txt")])
	g.ok("echo written-over-nfs > /mnt/n/archive/from-guest.txt", step)
	g.ok("cauldron share umount /mnt/n", step, `unmounted /mnt/n`)
	if b, err := os.ReadFile(filepath.Join(nfsRoot, "archive", "from-guest.txt")); err != nil || string(b) != "written-over-nfs\n" {
		t.Errorf("the file the guest wrote over NFS: %q, %v", b, err)
	}
	g.ok("cauldron generations --repo "+nfsURL+"/repo", step, `nfs01`)
	g.fails(fmt.Sprintf("cauldron share mount nfs://10.0.2.2:%d/missing /mnt/x", nfsPort), step,
		regexp.QuoteMeta(fmt.Sprintf("mounting nfs://10.0.2.2:%d/missing on /mnt/x", nfsPort)),
		`NFSv3 /missing: the server has no such export or directory \(ENOENT\)`)
	t.Logf("NFS server log:\n%s", nfsLog.String())

	// SMB with a user and a password (with a comma) read from a file.
	g.ok("echo '"+smbPassword+"' > /tmp/smb.pw", step)
	smbURL := fmt.Sprintf("smb://10.0.2.2:%d/priv/dr", smbPort)
	g.ok("cauldron share mount "+smbURL+" /mnt/s --user tech --password-file /tmp/smb.pw", step, `is at /mnt/s/dr`,
		`mounted with SMB 3\.1\.1 as tech`)
	g.ok("cat /mnt/s/dr/marker.txt", step, markers[filepath.Join(privDir, "dr", "marker.txt")])
	g.ok("echo written-over-smb > /mnt/s/dr/from-guest.txt", step)
	g.ok("cat /proc/mounts", step, `//10\.0\.2\.2/priv /mnt/s cifs .*vers=3\.1\.1`)
	g.ok("cauldron share umount /mnt/s", step)
	if b, err := os.ReadFile(filepath.Join(privDir, "dr", "from-guest.txt")); err != nil || string(b) != "written-over-smb\n" {
		t.Errorf("the file the guest wrote over SMB: %q, %v", b, err)
	}

	// A guest, read-only: the marker reads, a write is refused.
	out := g.ok(fmt.Sprintf("cauldron share mount smb://10.0.2.2:%d/pub /mnt/g --read-only", smbPort), step,
		`mounted with SMB 3\.1\.1 (anonymous|as guest)`)
	t.Logf("guest access: %s", regexp.MustCompile(`mounted with .*`).FindString(out))
	g.ok("cat /mnt/g/marker.txt", step, markers[filepath.Join(pubDir, "marker.txt")])
	g.fails("echo x > /mnt/g/refused.txt", step)
	g.ok("cauldron share umount /mnt/g", step)

	// A wrong password: one clear message, and one logon attempt only (no retry per dialect).
	g.ok("echo wrong > /tmp/bad.pw", step)
	g.fails(fmt.Sprintf("cauldron share mount smb://10.0.2.2:%d/priv /mnt/b --user tech --password-file /tmp/bad.pw", smbPort), step,
		regexp.QuoteMeta(fmt.Sprintf("mounting smb://10.0.2.2:%d/priv on /mnt/b", smbPort)), `logon failure`)
	// A share that is not there.
	g.fails(fmt.Sprintf("cauldron share mount smb://10.0.2.2:%d/nosuch /mnt/b --user tech --password-file /tmp/smb.pw", smbPort), step,
		`no such share`)

	// The kernel loaded the file systems (and what they asked for) through /sbin/modprobe.
	out = g.ok("cat /proc/modules", step, `(?m)^nfsv3 `, `(?m)^cifs `, `(?m)^sunrpc `)
	var mods []string
	for _, m := range regexp.MustCompile(`(?m)^(\S+) `).FindAllStringSubmatch(out, -1) {
		mods = append(mods, m[1])
	}
	t.Logf("guest modules after the mounts: %s", strings.Join(mods, " "))

	// The wrong password was sent once, not once per dialect: a domain's lockout policy counts.
	if n := len(regexp.MustCompile(`Authentication for user \[tech\] -> \[root\] FAILED with error NT_STATUS_WRONG_PASSWORD`).
		FindAllString(smbLog.String(), -1)); n != 1 {
		t.Errorf("smbd saw %d failed logons with the wrong password, want 1", n)
	}
}
