package tib

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// Locking: every process that uses a repository writes a lock file (locks/RANDOM, sealed JSON)
// and rewrites it every LockRefresh. Captures, restores, verify and forget take shared locks, so
// any number run at once (two machines captured into one repository at the same time is the
// normal case: everything they write is content-named or uniquely named). Prune takes an
// exclusive lock, because it deletes packs a concurrent capture might be about to reuse.
//
// Taking a lock: write ours, then list the others; if any conflicts (one of the two is
// exclusive) and is not stale, remove ours and fail. Two processes racing both see each other and
// both back off, which is safe. A lock is stale when it was not refreshed for LockStale, or when
// it names this host and a process that no longer runs.
const (
	LockRefresh = 5 * time.Minute
	LockStale   = 30 * time.Minute
)

// LockInfo is a lock file's content.
type LockInfo struct {
	Time      time.Time `json:"time"`
	Exclusive bool      `json:"exclusive"`
	Hostname  string    `json:"hostname"`
	PID       int       `json:"pid"`
	Purpose   string    `json:"purpose"`
	name      string
}

func (l LockInfo) String() string {
	kind := "shared"
	if l.Exclusive {
		kind = "exclusive"
	}
	return fmt.Sprintf("%s lock for %s by PID %d on %s, refreshed %s", kind, l.Purpose, l.PID, l.Hostname, FormatTime(l.Time))
}

// Stale reports whether the lock's holder is gone.
func (l LockInfo) Stale() bool {
	if time.Since(l.Time) > LockStale {
		return true
	}
	host, _ := os.Hostname()
	if l.Hostname == host && l.PID > 0 {
		err := syscall.Kill(l.PID, 0)
		return errors.Is(err, syscall.ESRCH)
	}
	return false
}

// ErrLocked means another process holds a conflicting lock.
var ErrLocked = errors.New("repository is locked")

// Lock is a held lock; Unlock releases it.
type Lock struct {
	r      *Repository
	info   LockInfo
	stop   chan struct{}
	done   sync.WaitGroup
	closed sync.Once
}

// Lock takes a shared or exclusive lock.
func (r *Repository) Lock(ctx context.Context, exclusive bool, purpose string) (*Lock, error) {
	host, _ := os.Hostname()
	info := LockInfo{Time: time.Now().UTC(), Exclusive: exclusive, Hostname: host, PID: os.Getpid(), Purpose: purpose, name: randomHex(16)}
	if err := r.saveLock(ctx, info); err != nil {
		return nil, fmt.Errorf("writing lock: %w", err)
	}
	others, err := r.Locks(ctx)
	if err != nil {
		r.removeLock(info.name)
		return nil, err
	}
	for _, o := range others {
		if o.name == info.name || o.Stale() || !(o.Exclusive || exclusive) {
			continue
		}
		r.removeLock(info.name)
		return nil, fmt.Errorf("%w: %s (if that process is gone, run `cauldron unlock --repo %s`)", ErrLocked, o, r.Location())
	}
	l := &Lock{r: r, info: info, stop: make(chan struct{})}
	l.done.Add(1)
	go l.refresh()
	return l, nil
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
			l.info.Time = time.Now().UTC()
			_ = l.r.saveLock(context.Background(), l.info)
		}
	}
}

// Unlock releases the lock.
func (l *Lock) Unlock() {
	l.closed.Do(func() {
		close(l.stop)
		l.done.Wait()
		l.r.removeLock(l.info.name)
	})
}

// Locks lists the repository's locks. Lock files that cannot be read (damaged, or sealed under a
// key this process does not have) are reported as exclusive locks of unknown origin: safe.
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
		plain, err := r.loadSealed(ctx, backend.Handle{Type: backend.Lock, Name: n})
		if errors.Is(err, backend.ErrNotExist) {
			continue
		}
		var li LockInfo
		if err != nil || json.Unmarshal(plain, &li) != nil {
			li = LockInfo{Time: time.Now(), Exclusive: true, Hostname: "?", Purpose: "unreadable lock file " + n}
		}
		li.name = n
		out = append(out, li)
	}
	return out, nil
}

// RemoveStaleLocks removes locks whose holders are gone (all locks when all is set) and says how
// many it removed.
func (r *Repository) RemoveStaleLocks(ctx context.Context, all bool) (int, error) {
	locks, err := r.Locks(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range locks {
		if all || l.Stale() {
			if err := r.be.Remove(ctx, backend.Handle{Type: backend.Lock, Name: l.name}); err == nil {
				n++
			}
		}
	}
	return n, nil
}
