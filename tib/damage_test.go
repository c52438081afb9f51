package tib_test

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
)

// flip changes one byte of a file in place.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b := readRange(t, path, off, 1)
	b[0] ^= 0x40
	writeAt(t, path, b, off)
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			out = append(out, p)
		}
		return nil
	})
	if len(out) == 0 {
		t.Fatalf("no files in %s", dir)
	}
	return out
}

func TestDamageIsFoundAndNamed(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 7)
	for _, tc := range []struct {
		name   string
		folder string
		at     func(size int64) int64
		want   []string // substrings every problem report must contain
	}{
		{"pack data", "data", func(n int64) int64 { return n / 3 }, []string{"machine web", "generation ", "disk0 bytes "}},
		{"pack header", "data", func(n int64) int64 { return n - 20 }, []string{"pack "}},
		{"index", "index", func(n int64) int64 { return n / 2 }, []string{"index "}},
		{"manifest", "generations", func(n int64) int64 { return n / 2 }, []string{"generation "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := t.TempDir()
			r := newRepo(t, d, "pw")
			g := capture(t, r, "web", s.Path)
			// Damage the largest file of the folder (for data: the pack with the most chunks).
			var target string
			var size int64
			for _, f := range files(t, filepath.Join(d, "repo", tc.folder)) {
				if fi, _ := os.Stat(f); fi.Size() > size {
					target, size = f, fi.Size()
				}
			}
			flip(t, target, tc.at(size))
			r = reopen(t, r, "pw")
			rep, err := r.Verify(ctx, tib.VerifyOptions{ReadData: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Problems) == 0 {
				t.Fatal("verify --read-data found no damage")
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.Join(rep.Problems, "\n"), w) {
					t.Errorf("problems do not say %q:\n%s", w, strings.Join(rep.Problems, "\n"))
				}
			}
			// The structural check (no --read-data) finds header, index and manifest damage too.
			if tc.name != "pack data" {
				rep, err := reopen(t, r, "pw").Verify(ctx, tib.VerifyOptions{})
				if err != nil || len(rep.Problems) == 0 {
					t.Errorf("structural verify missed %s damage: %v", tc.name, err)
				}
			}
			if tc.name == "pack data" {
				// Reading the disk back stops at the damaged chunk and names what it hits.
				dr, err := r.NewDiskReader(ctx, g, "disk0")
				if err == nil {
					_, err = io.Copy(io.Discard, io.NewSectionReader(dr, 0, dr.Size()))
				}
				var de *tib.DamageError
				if !errors.As(err, &de) || de.Machine != "web" || de.Disk != "disk0" || de.End <= de.Start {
					t.Fatalf("restore of damaged data: %v", err)
				}
			}
		})
	}
}
