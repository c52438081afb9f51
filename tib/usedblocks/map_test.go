package usedblocks

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

// naive is the obvious reference implementation the Map's word-at-a-time code is checked against.
type naive []bool

func (n naive) runs(from, to int64) []Run {
	from = max(from, 0)
	to = min(to, int64(len(n)))
	var out []Run
	for i := from; i < to; i++ {
		if !n[i] {
			continue
		}
		if len(out) > 0 && out[len(out)-1].Start+out[len(out)-1].Len == i {
			out[len(out)-1].Len++
		} else {
			out = append(out, Run{i, 1})
		}
	}
	return out
}

func (n naive) any(from, to int64) bool { return len(n.runs(from, to)) > 0 }

func collect(m *Map, from, to int64) []Run {
	var out []Run
	m.Runs(from, to, func(r Run) { out = append(out, r) })
	return out
}

// check compares every query of m against the reference over ranges that hit word boundaries.
func check(t *testing.T, m *Map, ref naive) {
	t.Helper()
	n := int64(len(ref))
	var count int64
	for i, v := range ref {
		if m.IsSet(int64(i)) != v {
			t.Fatalf("IsSet(%d) = %v, want %v", i, !v, v)
		}
		if v {
			count++
		}
	}
	if m.Count() != count || m.UsedBytes() != count*m.BlockSize {
		t.Fatalf("Count %d UsedBytes %d, want %d and %d", m.Count(), m.UsedBytes(), count, count*m.BlockSize)
	}
	edges := []int64{-5, -1, 0, 1, 62, 63, 64, 65, 127, 128, 129, 191, 192, n / 2, n - 65, n - 64, n - 63, n - 1, n, n + 1, n + 70}
	for _, from := range edges {
		for _, to := range edges {
			if got, want := collect(m, from, to), ref.runs(from, to); !reflect.DeepEqual(got, want) {
				t.Fatalf("Runs(%d, %d) = %v, want %v", from, to, got, want)
			}
			if got, want := m.AnyInRange(from, to), ref.any(from, to); got != want {
				t.Fatalf("AnyInRange(%d, %d) = %v, want %v", from, to, got, want)
			}
		}
	}
	// No bit past the end may be set: Count and stored words rely on it.
	if r := n % 64; r != 0 && len(m.Words()) > 0 && m.Words()[len(m.Words())-1]>>uint(r) != 0 {
		t.Fatalf("bits set past block %d: %#x", n, m.Words()[len(m.Words())-1])
	}
}

func TestMapSetRangeBoundaries(t *testing.T) {
	for _, n := range []int64{1, 63, 64, 65, 127, 128, 129, 200, 256, 1000} {
		ranges := [][2]int64{{0, n}, {0, 1}, {n - 1, n}, {0, 64}, {63, 65}, {64, 128}, {1, 63}, {60, 200}, {-10, 5}, {n - 3, n + 100}, {5, 5}, {9, 3}}
		for _, rg := range ranges {
			m := New(4096, n)
			ref := make(naive, n)
			m.SetRange(rg[0], rg[1])
			for i := max(rg[0], 0); i < min(rg[1], n); i++ {
				ref[i] = true
			}
			check(t, m, ref)
		}
	}
}

func TestMapRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := range 200 {
		n := int64(1 + rng.IntN(700))
		m := New(512, n)
		ref := make(naive, n)
		for range rng.IntN(12) {
			from := int64(rng.IntN(int(n) + 10))
			to := from + int64(rng.IntN(200))
			if rng.IntN(4) == 0 {
				to = from + 64 + int64(rng.IntN(3))*64 // word-sized and aligned-length runs
			}
			m.SetRange(from, to)
			for i := from; i < min(to, n); i++ {
				ref[i] = true
			}
		}
		for range rng.IntN(20) {
			i := int64(rng.IntN(int(n)))
			if rng.IntN(2) == 0 {
				m.Set(i)
				ref[i] = true
			} else {
				m.Clear(i)
				ref[i] = false
			}
		}
		if iter%2 == 0 { // every block used, a common case for small volumes
			m.SetRange(0, n)
			for i := range ref {
				ref[i] = true
			}
		}
		check(t, m, ref)
	}
}

func TestMapEmptyAndFull(t *testing.T) {
	m := New(4096, 0)
	if m.Count() != 0 || m.AnyInRange(0, 10) || len(collect(m, 0, 10)) != 0 {
		t.Fatal("empty map reports used blocks")
	}
	m = New(4096, 300)
	check(t, m, make(naive, 300))
	m.SetRange(0, 300)
	if got := collect(m, 0, 300); !reflect.DeepEqual(got, []Run{{0, 300}}) {
		t.Fatalf("full map runs %v", got)
	}
	if got := collect(m, 70, 130); !reflect.DeepEqual(got, []Run{{70, 60}}) {
		t.Fatalf("runs cut at the range: %v", got)
	}
}

func TestMapFromWords(t *testing.T) {
	m := New(1024, 130)
	m.SetRange(3, 130)
	words := append([]uint64(nil), m.Words()...)
	words[2] = ^uint64(0) // bits past block 130 must be dropped
	got := FromWords(1024, 130, words)
	if got == nil || got.Count() != 127 || got.Blocks != 130 || got.BlockSize != 1024 {
		t.Fatalf("FromWords: %+v", got)
	}
	for _, bad := range []struct {
		bs, n int64
		words []uint64
	}{
		{1024, 130, make([]uint64, 2)},
		{1024, 130, make([]uint64, 4)},
		{1024, -1, nil},
		{0, 64, make([]uint64, 1)},
	} {
		if FromWords(bad.bs, bad.n, bad.words) != nil {
			t.Errorf("FromWords(%d, %d, %d words) accepted", bad.bs, bad.n, len(bad.words))
		}
	}
	if m := FromWords(512, 0, nil); m == nil || m.Count() != 0 {
		t.Errorf("empty FromWords: %+v", m)
	}
}

func TestMapOrBitmap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 300 {
		n := int64(1 + rng.IntN(500))
		m := New(4096, n)
		ref := make(naive, n)
		src := make([]byte, rng.IntN(40))
		for i := range src {
			src[i] = byte(rng.Uint32())
			if rng.IntN(3) == 0 {
				src[i] = 0xFF
			}
		}
		dst := int64(rng.IntN(int(n)))
		bits := int64(rng.IntN(len(src)*8 + 20))
		m.orBitmap(dst, src, bits)
		for i := int64(0); i < bits && i < int64(len(src))*8; i++ {
			if src[i/8]&(1<<(i%8)) != 0 && dst+i < n {
				ref[dst+i] = true
			}
		}
		check(t, m, ref)
	}
	// Out-of-range destinations are ignored rather than panicking.
	m := New(4096, 10)
	m.orBitmap(-3, []byte{0xFF}, 8)
	m.orBitmap(10, []byte{0xFF}, 8)
	if m.Count() != 0 {
		t.Fatalf("orBitmap outside the map set %d blocks", m.Count())
	}
}

func TestMapSetBytes(t *testing.T) {
	m := New(4096, 10)
	m.setBytes(4095, 2) // straddles blocks 0 and 1
	m.setBytes(3*4096, 4096)
	m.setBytes(5*4096+1, 0) // empty: nothing
	m.setBytes(9*4096+10, 1<<20)
	want := []Run{{0, 2}, {3, 1}, {9, 1}}
	if got := collect(m, 0, 10); !reflect.DeepEqual(got, want) {
		t.Fatalf("setBytes runs %v, want %v", got, want)
	}
}

func TestNewVolumeMap(t *testing.T) {
	// 10 full blocks and a partial one; the filesystem ends after 7 blocks.
	m := newVolumeMap(1024, 10*1024+100, 7*1024)
	if m.Blocks != 11 {
		t.Fatalf("%d blocks", m.Blocks)
	}
	if got := collect(m, 0, m.Blocks); !reflect.DeepEqual(got, []Run{{7, 4}}) {
		t.Fatalf("runs %v", got)
	}
	// Filesystem filling the volume, which ends in a partial block: that block is used anyway.
	m = newVolumeMap(4096, 3*4096+512, 3*4096+512)
	if got := collect(m, 0, m.Blocks); !reflect.DeepEqual(got, []Run{{3, 1}}) {
		t.Fatalf("runs %v", got)
	}
	m = newVolumeMap(4096, 3*4096, 3*4096)
	if m.Count() != 0 {
		t.Fatalf("exact fit marks %d blocks", m.Count())
	}
}

func BenchmarkMapRuns(b *testing.B) {
	m := New(4096, 1<<24) // a 64 GiB volume
	rng := rand.New(rand.NewPCG(5, 6))
	for i := int64(0); i < m.Blocks; i += int64(rng.IntN(5000)) {
		m.SetRange(i, i+int64(rng.IntN(3000)))
	}
	b.ResetTimer()
	for range b.N {
		var n int64
		m.Runs(0, m.Blocks, func(r Run) { n += r.Len })
		if n != m.Count() {
			b.Fatal(n)
		}
	}
}
