// Package backendtest is the conformance suite every backend must pass: run it from the backend's
// own tests with a constructor for a fresh, empty backend.
package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// Run exercises b's contract. newBackend must return a backend over fresh, empty storage.
func Run(t *testing.T, newBackend func(t *testing.T) backend.Backend) {
	ctx := context.Background()

	t.Run("CreateTwiceFails", func(t *testing.T) {
		b := newBackend(t)
		if err := b.Create(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Save(ctx, backend.Handle{Type: backend.Config}, []byte("c")); err != nil {
			t.Fatal(err)
		}
		if err := b.Create(ctx); err == nil {
			t.Fatal("Create over an existing repository succeeded")
		}
	})

	t.Run("SaveLoadRanges", func(t *testing.T) {
		b := newBackend(t)
		mustCreate(t, b)
		data := bytes.Repeat([]byte("0123456789"), 1000)
		h := backend.Handle{Type: backend.Pack, Name: "ab12cd"}
		if err := b.Save(ctx, h, data); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ off, n int }{{0, 0}, {0, 10}, {5, 100}, {9990, 10}, {3000, 0}} {
			got, err := b.Load(ctx, h, c.n, int64(c.off))
			if err != nil {
				t.Fatalf("Load(%d,%d): %v", c.off, c.n, err)
			}
			want := data[c.off:]
			if c.n > 0 {
				want = data[c.off : c.off+c.n]
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Load(%d,%d) returned wrong bytes", c.off, c.n)
			}
		}
		if _, err := b.Load(ctx, h, 20, 9990); err == nil {
			t.Fatal("Load past the end succeeded")
		}
		fi, err := b.Stat(ctx, h)
		if err != nil || fi.Size != int64(len(data)) {
			t.Fatalf("Stat = %v, %v; want size %d", fi, err, len(data))
		}
	})

	// Prune judges a pack's age by its ModTime against a file it has just written (its lock),
	// both by the storage's clock: Stat and List must report it, and a later file must be newer.
	t.Run("ModTime", func(t *testing.T) {
		b := newBackend(t)
		mustCreate(t, b)
		older := backend.Handle{Type: backend.Pack, Name: "ab01"}
		newer := backend.Handle{Type: backend.Lock, Name: "0123456789abcdef"}
		if err := b.Save(ctx, older, []byte("older")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(1100 * time.Millisecond) // HTTP's Last-Modified counts whole seconds
		if err := b.Save(ctx, newer, []byte("newer")); err != nil {
			t.Fatal(err)
		}
		o, err := b.Stat(ctx, older)
		if err != nil {
			t.Fatal(err)
		}
		n, err := b.Stat(ctx, newer)
		if err != nil {
			t.Fatal(err)
		}
		// The storage is on this host in these tests: its clock is this one.
		if d := time.Since(o.ModTime); o.ModTime.IsZero() || d < -time.Minute || d > time.Minute {
			t.Fatalf("Stat's ModTime %v is not about now (%v)", o.ModTime, time.Now())
		}
		if !n.ModTime.After(o.ModTime) {
			t.Fatalf("a file saved a second later has ModTime %v, the earlier one %v", n.ModTime, o.ModTime)
		}
		var listed time.Time
		if err := b.List(ctx, backend.Pack, func(fi backend.FileInfo) error {
			listed = fi.ModTime
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if d := listed.Sub(o.ModTime); d < -time.Second || d > time.Second {
			t.Fatalf("List's ModTime %v, Stat's %v", listed, o.ModTime)
		}
	})

	t.Run("ImmutableExceptLocks", func(t *testing.T) {
		b := newBackend(t)
		mustCreate(t, b)
		h := backend.Handle{Type: backend.Index, Name: "i1"}
		if err := b.Save(ctx, h, []byte("one")); err != nil {
			t.Fatal(err)
		}
		if err := b.Save(ctx, h, []byte("two")); !errors.Is(err, backend.ErrExist) {
			t.Fatalf("second Save of an index: %v, want ErrExist", err)
		}
		got, _ := backend.ReadAll(ctx, b, h)
		if string(got) != "one" {
			t.Fatalf("immutable file changed to %q", got)
		}
		for _, typ := range []backend.FileType{backend.Lock, backend.Session, backend.Journal} {
			l := backend.Handle{Type: typ, Name: "l1"}
			for _, s := range []string{"a", "b"} {
				if err := b.Save(ctx, l, []byte(s)); err != nil {
					t.Fatal(err)
				}
			}
			if got, _ := backend.ReadAll(ctx, b, l); string(got) != "b" {
				t.Fatalf("replacing a %s file kept %q", typ, got)
			}
		}
	})

	t.Run("NotExist", func(t *testing.T) {
		b := newBackend(t)
		mustCreate(t, b)
		h := backend.Handle{Type: backend.Generation, Name: "missing"}
		if _, err := b.Load(ctx, h, 0, 0); !errors.Is(err, backend.ErrNotExist) {
			t.Fatalf("Load of a missing file: %v", err)
		}
		if _, err := b.Stat(ctx, h); !errors.Is(err, backend.ErrNotExist) {
			t.Fatalf("Stat of a missing file: %v", err)
		}
		if err := b.Remove(ctx, h); !errors.Is(err, backend.ErrNotExist) {
			t.Fatalf("Remove of a missing file: %v", err)
		}
	})

	t.Run("BadNames", func(t *testing.T) {
		b := newBackend(t)
		mustCreate(t, b)
		for _, n := range []string{"", "..", "a/b", "../config"} {
			if err := b.Save(ctx, backend.Handle{Type: backend.Index, Name: n}, []byte("x")); err == nil {
				t.Fatalf("Save accepted name %q", n)
			}
		}
	})

	t.Run("ListAndRemove", func(t *testing.T) {
		b := newBackend(t)
		mustCreate(t, b)
		var want []string
		for i := 0; i < 40; i++ {
			name := fmt.Sprintf("%02x%06d", i*7%256, i)
			want = append(want, name)
			if err := b.Save(ctx, backend.Handle{Type: backend.Pack, Name: name}, []byte(name)); err != nil {
				t.Fatal(err)
			}
		}
		got := list(t, b, backend.Pack)
		sort.Strings(want)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("List = %v, want %v", got, want)
		}
		if n := len(list(t, b, backend.Index)); n != 0 {
			t.Fatalf("index list has %d files, want 0", n)
		}
		for _, n := range want[:10] {
			if err := b.Remove(ctx, backend.Handle{Type: backend.Pack, Name: n}); err != nil {
				t.Fatal(err)
			}
		}
		if got := list(t, b, backend.Pack); len(got) != 30 {
			t.Fatalf("after removing 10 of 40, List has %d", len(got))
		}
	})

	t.Run("ConcurrentSaveSameName", func(t *testing.T) {
		b := newBackend(t)
		mustCreate(t, b)
		h := backend.Handle{Type: backend.Generation, Name: "g"}
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = b.Save(ctx, h, bytes.Repeat([]byte{byte(i)}, 1<<16))
			}(i)
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			if err == nil {
				wins++
			} else if !errors.Is(err, backend.ErrExist) {
				t.Fatal(err)
			}
		}
		if wins != 1 {
			t.Fatalf("%d concurrent writers of one immutable name succeeded, want 1", wins)
		}
		got, _ := backend.ReadAll(ctx, b, h)
		if len(got) != 1<<16 || !bytes.Equal(got, bytes.Repeat(got[:1], 1<<16)) {
			t.Fatal("the file mixes two writers' data")
		}
	})
}

func mustCreate(t *testing.T, b backend.Backend) {
	t.Helper()
	if err := b.Create(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, b backend.Backend, ft backend.FileType) []string {
	t.Helper()
	var names []string
	if err := b.List(context.Background(), ft, func(fi backend.FileInfo) error {
		names = append(names, fi.Name)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	return names
}
