package tib

import "time"

// SetLockTiming shortens the lock intervals for a test (and for the processes it starts as
// other hosts); the returned function restores them.
func SetLockTiming(refresh, stale, poll time.Duration) (restore func()) {
	r, s, p := LockRefresh, LockStale, lockPoll
	LockRefresh, LockStale, lockPoll = refresh, stale, poll
	return func() { LockRefresh, LockStale, lockPoll = r, s, p }
}

// SetLockClock sets this process's clock, as lock times see it, offset from the real one: a
// host whose clock is wrong.
func SetLockClock(offset time.Duration) {
	lockNow = func() time.Time { return time.Now().Add(offset) }
}

// SetFingerprintCollide makes every chunk's fingerprint match any other's (so a capture must
// confirm, and store after all, chunks it skipped), and runs before, when not nil, just before a
// capture confirms them.
func SetFingerprintCollide(before func()) (restore func()) {
	fingerprintCollide, beforeConfirm = true, before
	return func() { fingerprintCollide, beforeConfirm = false, nil }
}
