package tib_test

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

// Environment of the test binary run as a lock holder on "another host".
const (
	holderRepo  = "CAULDRON_TEST_LOCK_HOLDER"
	holderClock = "CAULDRON_TEST_LOCK_CLOCK"
)

// Test timing: refreshed every 200 ms, stale after 2 s unrefreshed, watched every 50 ms.
const (
	testRefresh = 200 * time.Millisecond
	testStale   = 2 * time.Second
	testPoll    = 50 * time.Millisecond
)

func TestMain(m *testing.M) {
	if repo := os.Getenv(holderRepo); repo != "" {
		os.Exit(holdLock(repo))
	}
	os.Exit(m.Run())
}

// holdLock is the other host: it takes a shared lock on repo, says "locked NAME" on standard
// output, and keeps it (refreshing it) until standard input ends.
func holdLock(repo string) int {
	tib.SetLockTiming(testRefresh, testStale, testPoll)
	if off := os.Getenv(holderClock); off != "" {
		d, err := time.ParseDuration(off)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		tib.SetLockClock(d)
	}
	r, err := tib.Open(ctx, local.New(repo), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	l, err := r.Lock(ctx, false, "capture on another host")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	host, _ := os.Hostname()
	fmt.Printf("locked %s %s %d\n", l.Name(), host, os.Getpid())
	io.Copy(io.Discard, os.Stdin)
	l.Unlock()
	return 0
}

// holder is a running lock holder.
type holder struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	name  string // its lock file
	host  string // its host name
	pid   string // its PID in its own namespace
}

// startHolder runs this test binary as a lock holder through wrap (unshare and a shell line
// that ends by running "$0"), with its clock offset.
func startHolder(t *testing.T, repo string, clock time.Duration, wrap ...string) *holder {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(wrap[0], append(wrap[1:], self)...)
	cmd.Env = append(os.Environ(), holderRepo+"="+repo, holderClock+"="+clock.String())
	cmd.Stderr = os.Stderr
	// A group of its own: killing it kills the holder, not only unshare or the shell.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &holder{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		stdin.Close()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	f := strings.Fields(line)
	if err != nil || len(f) != 4 || f[0] != "locked" {
		t.Fatalf("lock holder: %q, %v", line, err)
	}
	h.name, h.host, h.pid = f[1], f[2], f[3]
	return h
}

func (h *holder) kill(t *testing.T) {
	t.Helper()
	// SIGKILL: the holder leaves its lock behind, as a crashed capture would.
	syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
	h.cmd.Wait()
	// The holder may be a grandchild, not waited for: let the kernel finish it before anyone
	// watches its lock (a refresh in its last moments would look like life).
	time.Sleep(2 * testRefresh)
}

func needUnshare(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "unshare", "sh")
}

func plainRepo(t *testing.T) *tib.Repository {
	t.Helper()
	restore := tib.SetLockTiming(testRefresh, testStale, testPoll)
	t.Cleanup(restore)
	return newRepo(t, t.TempDir(), "")
}

// A capture on another host whose clock is two hours behind holds a lock that looks two hours
// old. It used to be taken as stale, and prune deleted the capture's packs; now the lock is
// watched on this host's clock, seen refreshed, and kept. Once that host is gone (killed, its
// lock left behind), the lock stops advancing and is stale after the stale time.
func TestLockOtherHostClockBehind(t *testing.T) {
	needUnshare(t)
	r := plainRepo(t)
	// Another host: its own host name, and PIDs that mean nothing here.
	h := startHolder(t, r.Location(), -2*time.Hour, "unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", `hostname other-host && "$0"; exit $?`)
	if me, _ := os.Hostname(); h.host != "other-host" || me == "other-host" {
		t.Fatalf("the holder's host name is %q, this one's %q", h.host, me)
	}
	start := time.Now()
	_, err := r.Lock(ctx, true, "prune")
	if !errors.Is(err, tib.ErrLocked) || !strings.Contains(err.Error(), "other-host") {
		t.Fatalf("prune beside a live capture on a host whose clock is behind: %v", err)
	}
	if d := time.Since(start); d > testStale {
		t.Fatalf("deciding that took %v", d)
	}
	removed, kept, err := r.RemoveStaleLocks(ctx, false, nil)
	if err != nil || len(removed) != 0 || len(kept) != 1 || kept[0].Name() != h.name {
		t.Fatalf("unlock beside a live holder: removed %v, kept %v, %v", removed, kept, err)
	}

	h.kill(t)
	var said []string
	r.SetLog(func(m string) { said = append(said, m) })
	l, err := r.Lock(ctx, true, "prune")
	if err != nil {
		t.Fatalf("a dead host's lock was not found stale: %v", err)
	}
	l.Unlock()
	// The watch said what it waited for, and the lock it proved stale is gone: the next command
	// does not watch it again (every prune used to wait the whole watch, silently).
	if got := strings.Join(said, "\n"); !strings.Contains(got, "watching 1 lock(s)") || !strings.Contains(got, "removed the stale lock") {
		t.Fatalf("what the watch said: %q", got)
	}
	locks, err := r.Locks(ctx)
	if err != nil || len(locks) != 0 {
		t.Fatalf("locks after a watch proved one stale: %v, %v", locks, err)
	}
	start = time.Now()
	l, err = r.Lock(ctx, true, "prune")
	if err != nil || time.Since(start) > testStale/2 {
		t.Fatalf("the next prune: %v after %v", err, time.Since(start))
	}
	l.Unlock()
}

// unusedPID is a PID that no process of this namespace has.
func unusedPID(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		t.Fatal(err)
	}
	max, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	for p := max - 50; p > 300; p -= 97 {
		if _, err := os.Stat(filepath.Join("/proc", strconv.Itoa(p))); os.IsNotExist(err) {
			return p
		}
	}
	t.Fatal("no unused PID found")
	return 0
}

// Two "hosts" with one host name (cloned VMs, containers): a holder in another PID namespace has
// a PID that means nothing here (here, no process has it). It used to be taken as gone, its lock
// as stale.
func TestLockSameHostnameOtherPIDNamespace(t *testing.T) {
	needUnshare(t)
	r := plainRepo(t)
	pid := unusedPID(t)
	h := startHolder(t, r.Location(), 0, "unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
		fmt.Sprintf(`echo %d > /proc/sys/kernel/ns_last_pid && "$0"; exit $?`, pid-1))
	if me, _ := os.Hostname(); h.host != me || h.pid != strconv.Itoa(pid) {
		t.Fatalf("the holder is PID %s on %q; want PID %d on this host's name %q", h.pid, h.host, pid, me)
	}
	if _, err := r.Lock(ctx, true, "prune"); !errors.Is(err, tib.ErrLocked) {
		t.Fatalf("prune beside a live capture in another PID namespace: %v", err)
	}
	removed, kept, err := r.RemoveStaleLocks(ctx, false, nil)
	if err != nil || len(removed) != 0 || len(kept) != 1 {
		t.Fatalf("unlock beside a live holder: removed %v, kept %v, %v", removed, kept, err)
	}
	h.kill(t)
	removed, _, err = r.RemoveStaleLocks(ctx, false, nil)
	if err != nil || len(removed) != 1 || removed[0].Lock.Name() != h.name {
		t.Fatalf("unlock after the holder died: removed %v, %v", removed, err)
	}
}

// A lock of a process of this host and namespace that is gone is stale at once (no watching).
func TestLockSameHostProcessGone(t *testing.T) {
	needUnshare(t)
	r := plainRepo(t)
	// exec: the holder is the child this test waits for, so it is gone once killed.
	h := startHolder(t, r.Location(), 0, "sh", "-c", `exec "$0"`)
	if _, err := r.Lock(ctx, true, "prune"); !errors.Is(err, tib.ErrLocked) {
		t.Fatalf("prune beside a live local capture: %v", err)
	}
	h.kill(t)
	start := time.Now()
	removed, kept, err := r.RemoveStaleLocks(ctx, false, nil)
	if err != nil || len(removed) != 1 || !strings.Contains(removed[0].Why, "process "+h.pid+" is gone") {
		t.Fatalf("unlock after the local holder died: removed %v, kept %v, %v", removed, kept, err)
	}
	if d := time.Since(start); d >= testStale {
		t.Fatalf("a gone local process's lock was watched (%v)", d)
	}
}

// A junk lock file (anyone's to write on an append-only server) blocked everything, and unlock
// without --all removed nothing. It is stale now, and unlock says it removed it.
func TestUnreadableLock(t *testing.T) {
	r := plainRepo(t)
	writeFile(t, filepath.Join(r.Location(), "locks", "junk"), []byte("not a lock"))
	l, err := r.Lock(ctx, true, "prune")
	if err != nil {
		t.Fatalf("a junk lock blocks prune: %v", err)
	}
	l.Unlock()
	removed, kept, err := r.RemoveStaleLocks(ctx, false, nil)
	if err != nil || len(removed) != 1 || len(kept) != 0 || !strings.Contains(removed[0].String(), "unreadable lock file locks/junk") {
		t.Fatalf("unlock: removed %v, kept %v, %v", removed, kept, err)
	}
}

// A capture whose lock is removed while it runs (unlock --all, or a process that judged it
// stale and may have pruned its packs) used to save its generation and report success. It fails
// now, saving nothing; so does one whose packs disappeared.
func TestCaptureRechecksLockAndPacks(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 3)
	r := plainRepo(t)
	capture(t, r, "m1", s.Path)
	removeAll := func(sub string) func(tib.CaptureProgress) {
		done := false
		return func(tib.CaptureProgress) {
			if done {
				return
			}
			done = true
			var files []string
			filepath.Walk(filepath.Join(r.Location(), sub), func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().IsRegular() {
					files = append(files, p)
				}
				return nil
			})
			if len(files) == 0 {
				t.Errorf("nothing in %s to remove", sub)
			}
			for _, f := range files {
				os.Remove(f)
			}
		}
	}
	r2 := reopen(t, r, "")
	_, err := r2.Capture(ctx, tib.CaptureOptions{Machine: "m2", Sources: []string{s.Path}, Progress: removeAll("locks")})
	if !errors.Is(err, tib.ErrLockLost) || !strings.Contains(err.Error(), "not saved") {
		t.Fatalf("capture whose lock was removed: %v", err)
	}
	// m2 reuses every pack of m1's; a prune that removed them all.
	r3 := reopen(t, r, "")
	_, err = r3.Capture(ctx, tib.CaptureOptions{Machine: "m2", Sources: []string{s.Path}, Progress: removeAll("data")})
	if err == nil || !strings.Contains(err.Error(), "disappeared while it ran") {
		t.Fatalf("capture whose packs were removed: %v", err)
	}
	gens, err := reopen(t, r, "").Generations(ctx, "m2")
	if err != nil || len(gens) != 0 {
		t.Fatalf("generations of m2: %v, %v", gens, err)
	}
}
