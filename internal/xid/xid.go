// Package xid stands in for github.com/rs/xid v1.6.0 in Cauldron's build (see the replace
// directive in Cauldron's go.mod). It is written by hand, not copied, and offers only what
// Cauldron's dependencies call: New and ID.String (minio-go names replication rules with them).
//
// Why: rs/xid v1.6.0 reads crypto/rand in a package-level variable initialiser. Every program
// that links minio-go therefore makes a blocking getrandom(2) before main runs, and the kernel
// answers it only once its random pool is ready. On a machine without RDRAND (QEMU's default
// qemu64 CPU under TCG; hypervisor CPU models that hide it) that is about a second of jitter
// sampling after boot, and the boot environment's recovery program waited for it before it
// could print a line. Here the randomness is read on the first New call instead, which
// Cauldron never makes while booting.
//
// The identifiers keep xid's documented layout: 12 bytes (4-byte big-endian Unix seconds,
// 3-byte machine identifier, 2-byte process identifier, 3-byte counter starting at a random
// value), written as 20 characters of lower-case base32hex without padding.
package xid

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ID is a 12-byte globally unique identifier.
type ID [12]byte

var encoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

var (
	once    sync.Once
	machine [3]byte
	pid     uint16
	counter atomic.Uint32
)

// start reads what identifies this process among others: a hash of the machine's identity and
// a random counter start. It runs once, on the first New.
func start() {
	name := ""
	for _, f := range []string{"/etc/machine-id", "/var/lib/dbus/machine-id"} {
		if b, err := os.ReadFile(f); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			name = strings.TrimSpace(string(b))
			break
		}
	}
	if name == "" {
		name, _ = os.Hostname()
	}
	var r [6]byte
	_, _ = rand.Read(r[:]) // crypto/rand.Read does not fail on Linux (Go 1.24+)
	if name == "" {
		copy(machine[:], r[3:])
	} else {
		h := sha256.Sum256([]byte(name))
		copy(machine[:], h[:])
	}
	pid = uint16(os.Getpid())
	counter.Store(uint32(r[0])<<16 | uint32(r[1])<<8 | uint32(r[2]))
}

// New returns a new identifier for the current time.
func New() ID {
	return NewWithTime(time.Now())
}

// NewWithTime returns a new identifier whose time part is t.
func NewWithTime(t time.Time) ID {
	once.Do(start)
	var id ID
	binary.BigEndian.PutUint32(id[0:4], uint32(t.Unix()))
	copy(id[4:7], machine[:])
	binary.BigEndian.PutUint16(id[7:9], pid)
	c := counter.Add(1)
	id[9], id[10], id[11] = byte(c>>16), byte(c>>8), byte(c)
	return id
}

// String returns the 20-character text form.
func (id ID) String() string {
	return encoding.EncodeToString(id[:])
}

// Time returns the identifier's time part.
func (id ID) Time() time.Time {
	return time.Unix(int64(binary.BigEndian.Uint32(id[0:4])), 0)
}
