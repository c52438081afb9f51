package tib

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// Locking: every process that uses a repository writes a lock file (locks/RANDOM, sealed JSON)
// and rewrites it every LockRefresh, counting the rewrites. Captures, restores, verify and forget
// take shared locks, so any number run at once (two machines captured into one repository at the
// same time is the normal case: everything they write is content-named or uniquely named). Prune
// takes an exclusive lock, because it deletes packs a concurrent capture might be about to reuse.
//
// Taking a lock: write ours, then list the others; if any conflicts (one of the two is
// exclusive) and is not stale, remove ours and fail. Two processes racing both see each other and
// both back off, which is safe.
//
// Staleness never trusts another host's clock or PIDs from another PID namespace (cloned VMs,
// containers and boot environments share host names, and their clocks may be hours apart):
//   - a lock file that cannot be read (damaged, junk) is stale;
//   - a lock written on this boot of this machine in this PID namespace (boot ID and namespace
//     recorded in it) is stale when its process is gone, or the PID now belongs to a process
//     started at another time;
//   - any other lock is stale only when it is watched, on this process's own clock, for
//     LockStale without its refresh counter advancing. A lock whose time, by this host's clock,
//     is recent is taken as live without watching (a clock ahead only makes locks look fresher:
//     the safe mistake); `unlock` watches every such lock.
var (
	LockRefresh = time.Minute
	LockStale   = 4 * time.Minute
	// lockPoll is how often a watched lock is re-read.
	lockPoll = 5 * time.Second
	// lockNow is the clock lock times are written with (tests set hosts' clocks apart).
	lockNow = time.Now
)

// LockInfo is a lock file's content.
type LockInfo struct {
	Time      time.Time `json:"time"` // by the holder's clock: informational
	Exclusive bool      `json:"exclusive"`
	Hostname  string    `json:"hostname"`
	PID       int       `json:"pid"`
	Purpose   string    `json:"purpose"`
	// Instance is random per process: it tells processes apart when host names collide.
	Instance string `json:"instance,omitempty"`
	// Boot, PIDNS and Start say where PID means something: the kernel's boot ID, the PID
	// namespace, and the process's start time in clock ticks since boot.
	Boot  string `json:"boot,omitempty"`
	PIDNS string `json:"pidns,omitempty"`
	Start uint64 `json:"start,omitempty"`
	// Refreshes counts the rewrites: a holder alive advances it every LockRefresh.
	Refreshes uint64 `json:"refreshes"`

	name       string
	unreadable error
}

// Name is the lock's file name in locks/.
func (l LockInfo) Name() string { return l.name }

func (l LockInfo) String() string {
	if l.unreadable != nil {
		return fmt.Sprintf("unreadable lock file locks/%s (%v)", l.name, l.unreadable)
	}
	kind := "shared"
	if l.Exclusive {
		kind = "exclusive"
	}
	inst := ""
	if l.Instance != "" {
		inst = ", instance " + l.Instance
	}
	return fmt.Sprintf("%s lock locks/%s for %s by PID %d on %s%s, refreshed %d times, last at %s by its host's clock",
		kind, l.name, l.Purpose, l.PID, l.Hostname, inst, l.Refreshes, FormatTime(l.Time))
}

// identity is this process's: written into its locks, compared with others'.
var identity = sync.OnceValue(func() LockInfo {
	host, _ := os.Hostname()
	id := LockInfo{Hostname: host, PID: os.Getpid(), Instance: randomHex(8)}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		id.Boot = strings.TrimSpace(string(b))
	}
	id.PIDNS, _ = os.Readlink("/proc/self/ns/pid")
	id.Start, _ = processStart(id.PID)
	return id
})

// processStart is a process's start time (clock ticks after boot, /proc/PID/stat field 22), 0
// if unknown; zombie tells whether it has exited but was not reaped yet.
func processStart(pid int) (start uint64, zombie bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces and parentheses: fields count from its end.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false
	}
	fmt.Sscan(f[19], &start)
	return start, f[0] == "Z" || f[0] == "X"
}

// verdict says what can be known of a lock without watching it: stale or live (decided), or
// nothing (its process is out of this process's sight).
func (l LockInfo) verdict() (stale, decided bool, why string) {
	if l.unreadable != nil {
		return true, true, "it cannot be read"
	}
	me := identity()
	if l.Boot == "" || l.PIDNS == "" || l.Boot != me.Boot || l.PIDNS != me.PIDNS || l.PID <= 0 {
		return false, false, ""
	}
	if err := syscall.Kill(l.PID, 0); errors.Is(err, syscall.ESRCH) {
		return true, true, fmt.Sprintf("process %d is gone", l.PID)
	}
	start, zombie := processStart(l.PID)
	if zombie {
		return true, true, fmt.Sprintf("process %d is gone", l.PID)
	}
	if l.Start != 0 && start != l.Start {
		return true, true, fmt.Sprintf("PID %d is another process now", l.PID)
	}
	return false, true, ""
}

// ErrLocked means another process holds a conflicting lock.
var ErrLocked = errors.New("repository is locked")

// ErrLockLost means a process's own lock was removed while it ran (by `unlock --all`, or by
// another process that judged it stale): what it was about to commit may have lost its data.
var ErrLockLost = errors.New("lost the repository lock")

// Lock is a held lock; Unlock releases it.
type Lock struct {
	r      *Repository
	mu     sync.Mutex
	info   LockInfo
	lost   error
	stop   chan struct{}
	done   sync.WaitGroup
	closed sync.Once
}

// Lock takes a shared or exclusive lock.
func (r *Repository) Lock(ctx context.Context, exclusive bool, purpose string) (*Lock, error) {
	info := identity()
	info.Time, info.Exclusive, info.Purpose, info.name = lockNow().UTC(), exclusive, purpose, randomHex(16)
	if err := r.saveLock(ctx, info); err != nil {
		return nil, fmt.Errorf("writing lock: %w", err)
	}
	l := &Lock{r: r, info: info, stop: make(chan struct{})}
	// Refreshed from the start: watching others below may take a while, and they watch us.
	l.done.Add(1)
	go l.refresh()
	others, err := r.Locks(ctx)
	if err != nil {
		l.Unlock()
		return nil, err
	}
	var watch []LockInfo
	for _, o := range others {
		if o.name == info.name || !(o.Exclusive || exclusive) {
			continue
		}
		stale, decided, _ := o.verdict()
		switch {
		case decided && stale:
			continue
		case !decided && time.Since(o.Time) > LockStale:
			// Old by this host's clock, which proves nothing: watch it.
			watch = append(watch, o)
			continue
		}
		l.Unlock()
		return nil, fmt.Errorf("%w: %s (if that process is gone, run `cauldron unlock --repo %s`)", ErrLocked, o, r.Location())
	}
	if len(watch) > 0 {
		live, stale, err := r.watchLocks(ctx, watch, r.log)
		if err != nil {
			l.Unlock()
			return nil, err
		}
		if len(live) > 0 {
			l.Unlock()
			return nil, fmt.Errorf("%w: %s (its holder refreshes it, though its time is old by this host's clock)", ErrLocked, live[0])
		}
		// Proven stale (not refreshed for LockStale on this clock): removed, so that the next
		// command does not watch it again.
		for _, s := range stale {
			r.removeLock(s.name)
			if r.log != nil {
				r.log(fmt.Sprintf("removed the stale lock %s (not refreshed for %s)", s, LockStale))
			}
		}
	}
	return l, nil
}

// watchLocks re-reads locks until each has advanced its refresh counter (live), disappeared, or
// stayed unchanged for LockStale on this process's clock (stale). progress, if set, is told how
// long the watch may last.
func (r *Repository) watchLocks(ctx context.Context, locks []LockInfo, progress func(string)) (live, stale []LockInfo, err error) {
	if len(locks) == 0 {
		return nil, nil, nil
	}
	if progress != nil {
		progress(fmt.Sprintf("watching %d lock(s) for up to %s to see whether their holders still refresh them", len(locks), LockStale))
	}
	pending := append([]LockInfo(nil), locks...)
	deadline := time.Now().Add(LockStale)
	t := time.NewTicker(lockPoll)
	defer t.Stop()
	for len(pending) > 0 {
		if !time.Now().Before(deadline) {
			return live, append(stale, pending...), nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-t.C:
		}
		var still []LockInfo
		for _, o := range pending {
			now, err := r.readLock(ctx, o.name)
			switch {
			case errors.Is(err, backend.ErrNotExist):
				// Released meanwhile.
			case err != nil:
				return nil, nil, err
			case now.unreadable != nil:
				stale = append(stale, now)
			case now.Refreshes != o.Refreshes || now.Instance != o.Instance:
				live = append(live, now)
			default:
				still = append(still, o)
			}
		}
		pending = still
	}
	return live, stale, nil
}

func (r *Repository) saveLock(ctx context.Context, info LockInfo) error {
	b, err := json.Marshal(info)
	if err != nil {
		return err
	}
	return r.be.Save(ctx, backend.Handle{Type: backend.Lock, Name: info.name}, r.key.Seal(nil, b))
}

func (r *Repository) removeLock(name string) {
	_ = r.be.Remove(context.Background(), backend.Handle{Type: backend.Lock, Name: name})
}

func (l *Lock) refresh() {
	defer l.done.Done()
	t := time.NewTicker(LockRefresh)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			// A lock removed under us is not written again: that would hide from Check that
			// someone judged this process gone (and may have pruned what it wrote).
			// Checked and rewritten under mu, so that Check never sees a rewrite half done.
			l.mu.Lock()
			if l.checkLocked(context.Background()) != nil {
				l.mu.Unlock()
				return
			}
			next := l.info
			next.Time = lockNow().UTC()
			next.Refreshes++
			if l.r.saveLock(context.Background(), next) == nil {
				l.info = next
			}
			l.mu.Unlock()
		}
	}
}

// Check makes sure the lock is still this process's: its file exists and holds what this
// process last wrote. A capture checks before it commits its manifest.
func (l *Lock) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.checkLocked(ctx)
}

func (l *Lock) checkLocked(ctx context.Context) error {
	if l.lost != nil {
		return l.lost
	}
	cur, err := l.r.readLock(ctx, l.info.name)
	switch {
	case errors.Is(err, backend.ErrNotExist):
		l.lost = fmt.Errorf("%w: locks/%s was removed while this %s ran (by `cauldron unlock`, or by a process that judged it stale)", ErrLockLost, l.info.name, l.info.Purpose)
	case err != nil:
		return fmt.Errorf("re-reading our lock locks/%s: %w", l.info.name, err)
	case cur.unreadable != nil || cur.Instance != l.info.Instance || cur.Refreshes < l.info.Refreshes:
		l.lost = fmt.Errorf("%w: locks/%s no longer holds this process's lock", ErrLockLost, l.info.name)
	}
	return l.lost
}

// Name is the lock's file name in locks/.
func (l *Lock) Name() string { return l.info.name }

// Unlock releases the lock.
func (l *Lock) Unlock() {
	l.closed.Do(func() {
		close(l.stop)
		l.done.Wait()
		l.r.removeLock(l.info.name)
	})
}

// readLock reads one lock file; a file whose bytes were read but do not open (damaged, or
// junk) is returned with unreadable set, not as an error. A failure to read the bytes (a network
// or disk error) is an error: it says nothing about the lock, and calling the lock unreadable —
// stale — would let prune remove a running capture's lock and data.
func (r *Repository) readLock(ctx context.Context, name string) (LockInfo, error) {
	h := backend.Handle{Type: backend.Lock, Name: name}
	b, err := backend.ReadAll(ctx, r.be, h)
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return LockInfo{}, err
		}
		return LockInfo{}, fmt.Errorf("reading lock %s: %w", name, err)
	}
	var li LockInfo
	plain, err := r.key.Open(nil, b)
	if err == nil {
		err = json.Unmarshal(plain, &li)
	}
	if err != nil {
		li = LockInfo{unreadable: err}
	}
	li.name = name
	return li, nil
}

// Locks lists the repository's locks. Lock files that cannot be read (damaged, or junk) are
// listed too; they are stale.
func (r *Repository) Locks(ctx context.Context) ([]LockInfo, error) {
	var names []string
	if err := r.be.List(ctx, backend.Lock, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing locks: %w", err)
	}
	var out []LockInfo
	for _, n := range names {
		li, err := r.readLock(ctx, n)
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading locks/%s: %w", n, err)
		}
		out = append(out, li)
	}
	return out, nil
}

// RemovedLock is a lock RemoveStaleLocks removed, and why.
type RemovedLock struct {
	Lock LockInfo
	Why  string
}

func (l RemovedLock) String() string { return fmt.Sprintf("%s: %s", l.Lock, l.Why) }

// RemoveStaleLocks removes locks whose holders are gone (every lock when all is set) and returns
// them, each with the reason; kept are the locks found live. Locks of processes out of this
// process's sight are watched for up to LockStale (progress says so).
func (r *Repository) RemoveStaleLocks(ctx context.Context, all bool, progress func(string)) (removed []RemovedLock, kept []LockInfo, err error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return nil, nil, err
	}
	var gone []RemovedLock
	var watch []LockInfo
	mine := identity().Instance
	for _, l := range locks {
		stale, decided, why := l.verdict()
		switch {
		case all:
			gone = append(gone, RemovedLock{l, "--all"})
		case l.Instance == mine && l.unreadable == nil:
			kept = append(kept, l)
		case decided && stale:
			gone = append(gone, RemovedLock{l, why})
		case decided:
			kept = append(kept, l)
		default:
			watch = append(watch, l)
		}
	}
	live, stale, err := r.watchLocks(ctx, watch, progress)
	if err != nil {
		return nil, nil, err
	}
	kept = append(kept, live...)
	for _, l := range stale {
		why := fmt.Sprintf("not refreshed for %s", LockStale)
		if l.unreadable != nil {
			why = "it cannot be read"
		}
		gone = append(gone, RemovedLock{l, why})
	}
	for _, g := range gone {
		err := r.be.Remove(ctx, backend.Handle{Type: backend.Lock, Name: g.Lock.name})
		if err != nil && !errors.Is(err, backend.ErrNotExist) {
			return removed, kept, fmt.Errorf("removing locks/%s: %w", g.Lock.name, err)
		}
		removed = append(removed, g)
	}
	return removed, kept, nil
}
