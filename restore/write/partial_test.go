package write_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/restore/write"
	"github.com/cauldron-dr/cauldron/tib"
)

// TestPartialRestore: one damaged pack used to stop a restore at its first chunk, with nothing
// of the rest written. With Partial, what is intact is restored, each range the damaged chunks
// held is left as zeros (not the used target's old bytes) and named, and the verification
// compares everything else.
func TestPartialRestore(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 21)
	r := newRepo(t, dir, "")
	g := capture(t, r, "m", s.Path)
	// Flip a byte in the middle of one data pack: every chunk in it fails its check. The largest
	// pack holds data (the generation's own metadata pack is small, and damage to it alone hits
	// no restore).
	var packs []string
	var largest int64
	filepath.Walk(filepath.Join(r.Location(), "data"), func(p string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() && info.Size() > 4096 {
			packs = append(packs, p)
			if info.Size() > largest {
				largest = info.Size()
				packs[0], packs[len(packs)-1] = packs[len(packs)-1], packs[0]
			}
		}
		return nil
	})
	if len(packs) < 2 {
		t.Fatalf("want several packs to damage one of, have %d", len(packs))
	}
	b, _ := os.ReadFile(packs[0])
	b[len(b)/2] ^= 0x40
	os.WriteFile(packs[0], b, 0o644)

	fi, _ := os.Stat(s.Path)
	old := bytes.Repeat([]byte{0xEE}, int(fi.Size()))
	out := filepath.Join(dir, "out.img")
	writeFile(t, out, old)
	var de *tib.DamageError
	if _, err := restoreTo(r, g, out, restoreOpts{}); !errors.As(err, &de) {
		t.Fatalf("a restore without --partial over a damaged pack: %v", err)
	}
	tg := mustTarget(t, out)
	if err := tg.Check(&target.Gate{}); err != nil {
		t.Fatal(err)
	}
	st, err := write.Disk(ctx, r, write.Options{Generation: g, Disk: "disk0", Target: tg, Gate: &target.Gate{}, Partial: true})
	if err != nil {
		t.Fatalf("partial restore: %v", err)
	}
	if len(st.Damaged) == 0 {
		t.Fatal("a partial restore over a damaged pack named no damage")
	}
	got, _ := os.ReadFile(out)
	src, _ := os.ReadFile(s.Path)
	var damaged int64
	for _, d := range st.Damaged {
		if d.Machine != "m" || d.Disk != "disk0" || d.End <= d.Start || !strings.Contains(d.Error(), "bytes") {
			t.Errorf("damage not named: %v", d)
		}
		if z := got[d.Start:d.End]; bytes.Count(z, []byte{0}) != len(z) {
			t.Errorf("damaged bytes %d–%d are not zeros on the target", d.Start, d.End-1)
		}
		damaged += d.End - d.Start
	}
	// Outside the damage, the GPT areas at both ends (stored whole) came back exactly.
	for _, r := range [][2]int64{{0, 1 << 20}, {fi.Size() - 1<<20, fi.Size()}} {
		overlap := false
		for _, d := range st.Damaged {
			overlap = overlap || r[0] < d.End && d.Start < r[1]
		}
		if !overlap && !bytes.Equal(got[r[0]:r[1]], src[r[0]:r[1]]) {
			t.Errorf("bytes %d–%d differ from the source though undamaged", r[0], r[1]-1)
		}
	}
	vt := mustTarget(t, out)
	vs, err := write.Verify(ctx, r, write.VerifyOptions{Generation: g, Disk: "disk0", Target: vt, Damaged: st.Damaged})
	if err != nil {
		t.Fatalf("verify of what the partial restore wrote: %v", err)
	}
	if !strings.Contains(strings.Join(vs.Skipped, "\n"), "damaged in the repository") || vs.Bytes == 0 {
		t.Fatalf("verify: %+v", vs)
	}
	t.Logf("%d damaged range(s), %d bytes left as zeros; %d bytes verified", len(st.Damaged), damaged, vs.Bytes)
}
