package rest

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// withinSeconds runs fn and fails the test when it has not returned in a few seconds: a read of
// the htpasswd file that blocks would otherwise hang the test (and, in a server, every login).
func withinSeconds(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: still blocked after 5 s", what)
	}
}

// An htpasswd file that is a FIFO (or a device) is refused at once, naming it: reading it would
// block until some writer opened it — at start, or, once serving, under the lock every login
// takes, so that every request hung.
func TestHtpasswdNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	var err error
	withinSeconds(t, "ReadHtpasswd of a FIFO", func() { _, err = ReadHtpasswd(fifo) })
	if err == nil || !strings.Contains(err.Error(), fifo) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("ReadHtpasswd of a FIFO: %v", err)
	}

	// Served: the file replaced by a FIFO keeps the users as they were, without blocking.
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, ".htpasswd")
	if err := os.WriteFile(path, []byte("alice:"+string(h)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var logged []string
	f, err := OpenHtpasswd(path, func(s string) { logged = append(logged, s) })
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the file is looked at again once a second
	var ok bool
	withinSeconds(t, "a login once the htpasswd file is a FIFO", func() { ok = f.Check("alice", "pw") })
	if !ok {
		t.Error("alice refused: the users did not stay as they were")
	}
	if !strings.Contains(strings.Join(logged, "\n"), "not a regular file") {
		t.Errorf("the log does not say why the file was not read: %q", logged)
	}
}
