package target

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cauldron-dr/cauldron/partition"
	"golang.org/x/sys/unix"
)

// Gate is the safety gate every write to a target passes, before anything is written: Protect
// lists the paths whose disks must never be written — the repository's directory, the boot
// media, the running program, and whatever the request adds. The recovery computes it once
// (restore.Prepare); each kind of target applies it with the rules that fit it (Target.Check):
//   - a block device: not a partition where a whole disk is meant, not the disk under a protected
//     path (through partitions, loop devices, device-mapper, MD, bind mounts and symlinks), not
//     the running system's disk, nothing on it mounted, used as swap or stacked on it, and not
//     being captured or restored by another process;
//   - an image file: not a protected file or inside a protected directory, not attached to a loop
//     device (the loop's users — perhaps the repository's own filesystem — would see it change),
//     not being captured or restored; a new one only in an existing folder.
//
// Consent (the typed confirmation, --yes, the kickstart's confirm line) is the front ends' part:
// the gate refuses what must never be written, consent is asked for what may be.
type Gate struct {
	Protect []string
}

// Check applies the gate to a target: a convenience for t.Check(g).
func (g *Gate) Check(t Target) error { return t.Check(g) }

// inProtectedDir refuses a new file inside a protected directory (or at a protected path), by
// path or by the identity of its folders (a bind mount of the repository is the repository).
func (g *Gate) inProtectedDir(name string) error {
	abs := Canonical(name)
	if p, ok := partition.InProtected(abs, g.Protect); ok {
		return &Refusal{Target: name, Reason: fmt.Sprintf("it would lie in %s, which must never be written", p)}
	}
	return nil
}

// checkExisting applies the rules every existing target is judged by: partition.CheckTarget's
// for its kind (see the list above), then no boot medium, then nobody else holding it. It
// returns the identity of what it judged, which Open compares with what it opens: a path swapped
// for another file or device (a symlink) between the check and the write is refused.
func (g *Gate) checkExisting(path string) (identity, error) {
	id, err := identityOf(path)
	if err != nil {
		return identity{}, fmt.Errorf("target %s: %w", path, err)
	}
	if err := partition.CheckTarget(path, g.Protect); err != nil {
		return identity{}, err
	}
	if err := notBootMedium(path); err != nil {
		return identity{}, err
	}
	if err := notInUse(path); err != nil {
		return identity{}, err
	}
	if now, err := identityOf(path); err != nil || now != id {
		return identity{}, &Refusal{Target: path, Reason: "it changed while it was being checked"}
	}
	return id, nil
}

// identity is what a path stands for: a file's filesystem and inode, or a device's number.
type identity struct{ dev, ino, rdev uint64 }

func identityOf(path string) (identity, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return identity{}, err
	}
	return statIdentity(&st), nil
}

func statIdentity(st *unix.Stat_t) identity {
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		return identity{rdev: uint64(st.Rdev)}
	}
	return identity{dev: uint64(st.Dev), ino: st.Ino}
}

// holdChecked makes an opened target the writer's: it must be what the gate judged, and nobody
// else may hold it. On failure f is closed.
func holdChecked(f *os.File, checked identity) error {
	err := sameAsChecked(f, checked)
	if err == nil {
		err = lockExclusive(f)
	}
	if err != nil {
		f.Close()
	}
	return err
}

// sameAsChecked refuses an opened target that is not what the gate judged.
func sameAsChecked(f *os.File, checked identity) error {
	if checked == (identity{}) {
		return &Refusal{Target: f.Name(), Reason: "it was not checked by the safety gate before it was opened"}
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("target %s: %w", f.Name(), err)
	}
	if statIdentity(&st) != checked {
		return &Refusal{Target: f.Name(), Reason: "it is no longer the file or device the safety gate checked (replaced or re-linked since)"}
	}
	return nil
}

// Refusal says why the gate refuses a target.
type Refusal struct {
	Target string
	Reason string
}

func (e *Refusal) Error() string { return fmt.Sprintf("refusing to write %s: %s", e.Target, e.Reason) }

// notInUse refuses a target another Cauldron process holds: a capture reading it (tib takes a
// shared lock on its sources) or a restore writing it (Open takes an exclusive one).
func notInUse(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("target %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return &Refusal{Target: path, Reason: "another process is capturing it or restoring onto it"}
		}
		return fmt.Errorf("target %s: lock: %w", path, err)
	}
	return unix.Flock(int(f.Fd()), unix.LOCK_UN)
}

// lockExclusive holds f for writing until it is closed; see notInUse.
func lockExclusive(f *os.File) error {
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return &Refusal{Target: f.Name(), Reason: "another process is capturing it or restoring onto it"}
		}
		return fmt.Errorf("target %s: lock: %w", f.Name(), err)
	}
	return nil
}

// Canonical is a path made absolute with its symlinks resolved (as far as they exist): two names
// of the same file or device compare equal.
func Canonical(p string) string {
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	if real, err := filepath.EvalSymlinks(p); err == nil {
		p = real
	}
	return p
}
