package tib_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/crypto"
)

// corruptBlob flips a byte in the middle of blob id where the index places it, and returns the
// pack's name.
func corruptBlob(t *testing.T, r *tib.Repository, id crypto.ID) crypto.ID {
	t.Helper()
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	loc, ok := r.Index().Lookup(id)
	if !ok {
		t.Fatalf("blob %s is not indexed", id.Short())
	}
	p := loc.Pack.String()
	flip(t, filepath.Join(r.Location(), "data", p[:2], p), int64(loc.Offset)+int64(loc.Length)/2)
	return loc.Pack
}

// Chunk lists and used maps equal across generations are stored once for all of them; each
// capture's own metadata packs keep a second copy, so that one damaged pack does not take every
// generation of every machine that shares them.
func TestSharedMetadataSurvivesOnePack(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 13)
	r := newRepo(t, dir, "pw")
	a := capture(t, r, "alpha", s.Path)
	b := capture(t, r, "beta", s.Path)
	// Damage the ext4 region's used map and chunk list, shared by both machines' generations,
	// where the index finds them.
	var ext *tib.Region
	for i, g := range a.Disks[0].Regions {
		if g.Filesystem == "ext4" {
			ext = &a.Disks[0].Regions[i]
		}
	}
	if ext == nil || ext.Whole || ext.UsedMap != b.Disks[0].Regions[0].UsedMap && ext.UsedMap != b.Disks[0].Regions[1].UsedMap {
		t.Fatalf("the sample's ext4 region is not mapped and shared: %+v", ext)
	}
	corruptBlob(t, r, ext.UsedMap)
	corruptBlob(t, r, ext.Chunks)

	r = reopen(t, r, "pw")
	for _, g := range []*tib.Generation{a, b} {
		out := filepath.Join(dir, g.Machine+".img")
		readDisk(t, r, g, "disk0", out)
		checkRestored(t, s, out, dir)
		os.Remove(out)
		rep, err := reopen(t, r, "pw").Verify(ctx, tib.VerifyOptions{Machine: g.Machine})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Problems) > 0 {
			t.Errorf("verify of %s with its own metadata copies intact:\n%s", g.Machine, strings.Join(rep.Problems, "\n"))
		}
	}
	// Prune keeps both machines' metadata packs, and what it keeps still reads.
	if _, err := reopen(t, r, "pw").Prune(ctx); err == nil {
		// The damaged shared pack may make prune refuse to copy it; either way nothing is lost.
		r = reopen(t, r, "pw")
		readDisk(t, r, b, "disk0", filepath.Join(dir, "b2.img"))
	}
	for _, g := range []*tib.Generation{a, b} {
		for _, p := range g.MetaPacks {
			if _, err := os.Stat(filepath.Join(r.Location(), "data", p.String()[:2], p.String())); err != nil {
				t.Errorf("metadata pack of %s: %v", g.Machine, err)
			}
		}
	}
}

// Prune keeps each generation's metadata packs, and a shared copy of the metadata besides them:
// after prune, losing the indexed copy still leaves one.
func TestPruneKeepsMetadataCopies(t *testing.T) {
	pruneEverything(t)
	dir := t.TempDir()
	s := makeSample(t, dir, 14)
	r := newRepo(t, dir, "pw")
	a := capture(t, r, "alpha", s.Path)
	capture(t, r, "beta", s.Path)
	if len(a.MetaPacks) == 0 {
		t.Fatal("the capture wrote no metadata pack")
	}
	g, _, err := r.ForgetID(ctx, "", a.ID.String())
	if err != nil || g == nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	r = reopen(t, r, "pw")
	b, err := r.FindGeneration(ctx, "beta", "latest")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range a.MetaPacks {
		if _, err := os.Stat(filepath.Join(r.Location(), "data", p.String()[:2], p.String())); !os.IsNotExist(err) {
			t.Errorf("prune kept the forgotten generation's metadata pack %s: %v", p.Short(), err)
		}
	}
	reg := b.Disks[0].Regions[0]
	corruptBlob(t, r, reg.Chunks)
	corruptBlob(t, r, reg.UsedMap)
	r = reopen(t, r, "pw")
	readDisk(t, r, b, "disk0", filepath.Join(dir, "b.img"))
	checkRestored(t, s, filepath.Join(dir, "b.img"), dir)
}

// A manifest without metaPacks (written before they existed) reads, verifies and prunes as
// before; metadata packs no manifest names any more are pruned.
func TestManifestWithoutMetaPacks(t *testing.T) {
	pruneEverything(t)
	dir := t.TempDir()
	s := makeSample(t, dir, 16)
	r := newRepo(t, dir, "pw")
	g := capture(t, r, "web", s.Path)
	old := *g
	old.MetaPacks = nil
	if err := r.SaveGeneration(ctx, &old); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ForgetID(ctx, "", g.ID.String()); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range g.MetaPacks {
		if _, err := os.Stat(filepath.Join(r.Location(), "data", p.String()[:2], p.String())); !os.IsNotExist(err) {
			t.Errorf("metadata pack %s named by no manifest survived prune: %v", p.Short(), err)
		}
	}
	r = reopen(t, r, "pw")
	verifyClean(t, r, true)
	out := filepath.Join(dir, "out.img")
	readDisk(t, r, &old, "disk0", out)
	checkRestored(t, s, out, dir)
}

// indexAheadOfAll writes an index file listing pack p, as a capture does for a pack no index
// lists, named so that it is read before every other index file: the index then resolves p's
// blobs to p, not to the copies the other files list.
func indexAheadOfAll(t *testing.T, r *tib.Repository, p crypto.ID) {
	t.Helper()
	fi, err := os.Stat(filepath.Join(r.Location(), "data", p.String()[:2], p.String()))
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := r.PackHeader(ctx, p, fi.Size())
	if err != nil {
		t.Fatal(err)
	}
	others, err := r.IndexFiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 500 { // each try is named at random (a fresh nonce): one sorts first soon
		id, err := r.WriteIndex(ctx, []tib.PackBlobs{{Pack: p, Blobs: blobs}})
		if err != nil {
			t.Fatal(err)
		}
		first := true
		for _, o := range others {
			first = first && id.String() < o.String()
		}
		if first {
			return
		}
		if err := os.Remove(filepath.Join(r.Location(), "index", id.String())); err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("no index file name sorted first")
}

// A capture that starts while another is between saving its own metadata packs and its
// manifest finds those packs in no index and named by no manifest, and indexes them (they look
// like a killed capture's). The index may then resolve the generation's chunk lists and used maps
// to its own copy: prune kept that copy and dropped the shared one as a duplicate, so that the
// generation was down to one copy for good — its metadata pack's loss took it. Prune keeps the
// shared copy, and takes the own packs out of the index again.
func TestPruneKeepsSharedCopyOfIndexedMetaPack(t *testing.T) {
	pruneEverything(t)
	dir := t.TempDir()
	s := makeSample(t, dir, 18)
	r := newRepo(t, dir, "pw")
	a := capture(t, r, "alpha", s.Path)
	for _, p := range a.MetaPacks {
		indexAheadOfAll(t, r, p)
	}
	r = reopen(t, r, "pw")
	if _, err := r.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	r = reopen(t, r, "pw")
	// The manifests first, as every reader of the whole index does: a known metadata pack is
	// not read through its header as a pack no index lists.
	if _, err := r.Generations(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if err := r.LoadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range a.MetaPacks {
		if r.Index().HasPack(p) {
			t.Errorf("prune left the own metadata pack %s in the index", p.Short())
		}
	}
	removeMetaPacks(t, r, a)
	r = reopen(t, r, "pw")
	readDisk(t, r, a, "disk0", filepath.Join(dir, "a.img"))
	checkRestored(t, s, filepath.Join(dir, "a.img"), dir)
}
