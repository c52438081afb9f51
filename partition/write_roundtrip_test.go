package partition

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"testing"
)

// planWriteRead plans src onto a target, writes the table into a sparse in-memory disk and reads
// it back: what Read finds must be exactly the plan's layout. It returns false when the plan was
// refused.
func planWriteRead(t *testing.T, src *Disk, tsize int64, tlss int, opts PlanOptions) bool {
	t.Helper()
	p, err := Plan(src, target(tsize, tlss), opts)
	var pe *PlanError
	if errors.As(err, &pe) || (err != nil && p == nil) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	chunks, err := encodeTable(p.Layout)
	if err != nil {
		t.Fatalf("a plan that passed its checks does not encode: %v", err)
	}
	m := newMemDisk(tsize)
	if err := writeChunks(m, chunks); err != nil {
		t.Fatal(err)
	}
	got, err := Read(m, tsize, tlss)
	if err != nil {
		t.Fatalf("the written table does not read back: %v\nlayout %+v", err, p.Layout.Partitions)
	}
	if d := layoutDiff(got, p.Layout); d != "" {
		t.Fatalf("read back differs: %s", d)
	}
	if len(got.Warnings) > 0 {
		t.Fatalf("read back with warnings: %v", got.Warnings)
	}
	return true
}

// TestWriteTableRoundTripProperty writes thousands of random planned layouts (GPT, MBR with
// extended and logical partitions, 512 and 4096 sectors) and reads each back.
func TestWriteTableRoundTripProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 7))
	written := 0
	for i := 0; i < 2000; i++ {
		src, used := randomSource(r)
		tlss := []int{512, 4096}[r.IntN(2)]
		tsize := src.Size * int64(50+r.IntN(150)) / 100 / int64(tlss) * int64(tlss)
		mode := []ResizeMode{ResizeKeep, ResizeGrowLast, ResizeProportional}[r.IntN(3)]
		ident := []IdentityMode{IdentityKeep, IdentityRenew}[r.IntN(2)]
		if planWriteRead(t, src, tsize, tlss, PlanOptions{Resize: mode, Identity: ident, Used: used, Rand: newSeqRand(byte(i))}) {
			written++
		}
	}
	if written < 500 {
		t.Errorf("only %d of 2000 random layouts were planned and written", written)
	}
}

// FuzzPlanManifestLayout feeds Plan layouts as a generation's manifest stores them (JSON), as a
// damaged or hostile repository could: Plan must not panic, and a plan it accepts must write a
// table that reads back as planned.
func FuzzPlanManifestLayout(f *testing.F) {
	for _, d := range []*Disk{windowsGPT(8*GiB, 512), linuxMBR(8*GiB, 512), windowsGPT(2*GiB, 4096)} {
		b, _ := json.Marshal(d)
		f.Add(b, uint32(16<<20), false, uint8(0))
		f.Add(b, uint32(4<<20), true, uint8(1))
	}
	// Found by the fuzzer: a GPT asking for 100000 entries, more than Read accepts.
	f.Add([]byte(`{"table":"gpt","size":1000000000,"entryCount":100000}`), uint32(16777155), false, uint8(0))
	f.Fuzz(func(t *testing.T, manifest []byte, targetMiB uint32, lss4k bool, mode uint8) {
		var src Disk
		if json.Unmarshal(manifest, &src) != nil {
			return
		}
		tlss := 512
		if lss4k {
			tlss = 4096
		}
		tsize := int64(targetMiB%(1<<22)) << 20 // up to 4 TiB: the memory disk is sparse
		opts := PlanOptions{
			Resize:   []ResizeMode{ResizeProportional, ResizeGrowLast, ResizeKeep}[mode%3],
			Identity: []IdentityMode{IdentityKeep, IdentityRenew}[mode/3%2],
			Rand:     newSeqRand(mode),
		}
		planWriteRead(t, &src, tsize, tlss, opts)
	})
}

// FuzzParseGUID checks that parseGUID accepts exactly what formatGUID produces.
func FuzzParseGUID(f *testing.F) {
	f.Add("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	f.Add("c12a7328-f81f-11d2-ba4b-00a0c93ec93b")
	f.Add("C12A7328F81F11D2BA4B00A0C93EC93B----")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := parseGUID(s)
		if err != nil {
			return
		}
		if got := formatGUID(b); !equalFoldASCII(got, s) {
			t.Fatalf("parseGUID(%q) formats back as %q", s, got)
		}
	})
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 32
		}
		if 'a' <= y && y <= 'z' {
			y -= 32
		}
		if x != y {
			return false
		}
	}
	return true
}

// FuzzPlanRandomLayout explores the generator of TestPlanProperties beyond its fixed seeds: every
// accepted plan must keep the geometry properties and write a table that reads back as planned.
func FuzzPlanRandomLayout(f *testing.F) {
	f.Add(uint64(1), uint64(2), uint8(100), uint8(0))
	f.Add(uint64(42), uint64(1), uint8(60), uint8(5))
	f.Fuzz(func(t *testing.T, s1, s2 uint64, pct, mode uint8) {
		r := rand.New(rand.NewPCG(s1, s2))
		src, used := randomSource(r)
		tlss := []int{512, 4096}[mode%2]
		tsize := src.Size * int64(25+int(pct)) / 100 / int64(tlss) * int64(tlss)
		opts := PlanOptions{Resize: []ResizeMode{ResizeKeep, ResizeGrowLast, ResizeProportional}[mode/2%3],
			Identity: []IdentityMode{IdentityKeep, IdentityRenew}[mode/6%2], Used: used, Rand: newSeqRand(mode)}
		if p, err := Plan(src, target(tsize, tlss), opts); err == nil {
			checkPlanGeometry(t, src, p, used)
		}
		planWriteRead(t, src, tsize, tlss, opts)
	})
}
