package partition

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

const (
	MiB = int64(1 << 20)
	GiB = int64(1 << 30)

	efiType  = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	msrType  = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
	dataType = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
)

// seqRand is a deterministic random source for renewed identities.
type seqRand struct{ r *rand.ChaCha8 }

func newSeqRand(seed byte) *seqRand {
	var s [32]byte
	s[0] = seed
	return &seqRand{rand.NewChaCha8(s)}
}
func (s *seqRand) Read(p []byte) (int, error) { return s.r.Read(p) }

func fsOf(typ string) *Filesystem { return &Filesystem{Type: typ} }

// windowsGPT is a typical Windows disk: EFI (vfat), MSR (nothing), C: (ntfs), recovery (ntfs).
func windowsGPT(size int64, lss int) *Disk {
	last := uint64(size/int64(lss)) - 1 - uint64(16384/lss) - 1
	return &Disk{Table: TableGPT, Size: size, LogicalSectorSize: lss, PhysicalSectorSize: lss,
		DiskGUID: "11111111-2222-4333-8444-555555555555", EntryCount: 128, EntrySize: 128,
		FirstUsableLBA: uint64(2 + 16384/lss), LastUsableLBA: last,
		Partitions: []Partition{
			{Number: 1, Kind: KindPrimary, Start: 1 * MiB, Size: 100 * MiB, Type: efiType, GUID: "A0000000-0000-4000-8000-000000000001", Name: "EFI system partition", Filesystem: fsOf("vfat")},
			{Number: 2, Kind: KindPrimary, Start: 101 * MiB, Size: 16 * MiB, Type: msrType, GUID: "A0000000-0000-4000-8000-000000000002", Name: "Microsoft reserved partition"},
			{Number: 3, Kind: KindPrimary, Start: 117 * MiB, Size: size - 117*MiB - 600*MiB, Type: dataType, GUID: "A0000000-0000-4000-8000-000000000003", Name: "Basic data partition", Filesystem: fsOf("ntfs")},
			{Number: 4, Kind: KindPrimary, Start: size - 600*MiB, Size: 599 * MiB, Type: "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC", GUID: "A0000000-0000-4000-8000-000000000004", Filesystem: fsOf("ntfs"), Attributes: 1},
		}}
}

// linuxMBR is an MBR disk with a primary /boot, an extended container with three logicals (root,
// swap, home) — the layout Debian's installer makes with "separate /home".
func linuxMBR(size int64, lss int) *Disk {
	s := int64(lss)
	return &Disk{Table: TableMBR, Size: size, LogicalSectorSize: lss, PhysicalSectorSize: lss, Signature: 0xdeadbeef,
		BootCode: []byte("GRUB Geom"), Bootloader: "grub2",
		Partitions: []Partition{
			{Number: 1, Kind: KindPrimary, Start: 1 * MiB, Size: 256 * MiB, Type: "0x83", Active: true, Filesystem: fsOf("ext4")},
			{Number: 2, Kind: KindExtended, Start: 257*MiB + s, Size: size - 257*MiB - s, Type: "0x05"},
			{Number: 5, Kind: KindLogical, Start: 258 * MiB, Size: size/2 - 258*MiB, Type: "0x83", Filesystem: fsOf("ext4")},
			{Number: 6, Kind: KindLogical, Start: size/2 + MiB, Size: 512 * MiB, Type: "0x82", Filesystem: fsOf("swap")},
			{Number: 7, Kind: KindLogical, Start: size/2 + 514*MiB, Size: size - (size/2 + 514*MiB), Type: "0x83", Filesystem: fsOf("ext4")},
		}}
}

func target(size int64, lss int) *Disk {
	return &Disk{Table: TableNone, Size: size, LogicalSectorSize: lss, PhysicalSectorSize: lss}
}

// checkPlanGeometry checks the properties every successful plan must have, independently of
// finalChecks: whole target sectors, aligned data starts, inside the usable area, no overlaps, the
// source's order and numbers, logical partitions inside the extended one with room for their EBRs,
// and every shrunk volume at least as big as its data needs.
func checkPlanGeometry(t *testing.T, src *Disk, p *LayoutPlan, used map[int]int64) {
	t.Helper()
	d := p.Layout
	lss := int64(d.LogicalSectorSize)
	first, end := lss, d.Size/lss*lss
	if d.Table == TableGPT {
		first, end = int64(d.FirstUsableLBA)*lss, int64(d.LastUsableLBA+1)*lss
		if int64(d.LastUsableLBA) >= d.Size/lss-1 {
			t.Fatalf("last usable LBA %d leaves no room for the backup GPT (%d sectors)", d.LastUsableLBA, d.Size/lss)
		}
	}
	if len(d.Partitions) != len(src.Partitions) {
		t.Fatalf("%d partitions planned, source has %d", len(d.Partitions), len(src.Partitions))
	}
	var ext *Partition
	for i, q := range d.Partitions {
		s := src.Partitions[i]
		if q.Number != s.Number || q.Kind != s.Kind || q.Type != s.Type {
			t.Errorf("partition %d planned as %d %s %s", s.Number, q.Number, q.Kind, q.Type)
		}
		if q.Start%lss != 0 || q.Size%lss != 0 || q.Size <= 0 {
			t.Errorf("partition %d [%d,+%d) is not whole %d-byte sectors", q.Number, q.Start, q.Size, lss)
		}
		if q.HoldsData() && q.Start%MiB != 0 {
			t.Errorf("partition %d starts at %d, not MiB-aligned", q.Number, q.Start)
		}
		if q.Start < first || q.End() > end {
			t.Errorf("partition %d [%d,%d) outside the usable [%d,%d)", q.Number, q.Start, q.End(), first, end)
		}
		if q.Kind == KindExtended {
			e := q
			ext = &e
		}
		if q.HoldsData() && q.Size < s.Size {
			u, ok := used[q.Number]
			if q.Filesystem != nil && q.Filesystem.Type == "swap" {
				// A swap area's contents are disposable: it needs only its header.
				u, ok = swapNeed, true
			}
			if !ok || q.Size < u {
				t.Errorf("partition %d shrunk to %d bytes holding %d used (known %v)", q.Number, q.Size, u, ok)
			}
		}
	}
	for i, a := range d.Partitions {
		for j, b := range d.Partitions {
			if i < j && a.HoldsData() && b.HoldsData() && a.Start < b.End() && b.Start < a.End() {
				t.Errorf("partitions %d and %d overlap", a.Number, b.Number)
			}
			// Order by position kept.
			sa, sb := src.Partitions[i], src.Partitions[j]
			if a.HoldsData() && b.HoldsData() && (sa.Start < sb.Start) != (a.Start < b.Start) {
				t.Errorf("partitions %d and %d swapped places", a.Number, b.Number)
			}
		}
	}
	if ext != nil {
		for _, q := range d.Partitions {
			switch q.Kind {
			case KindLogical:
				if q.Start-MiB < ext.Start || q.End() > ext.End() {
					t.Errorf("logical %d [%d,%d) (EBR at %d) outside extended [%d,%d)", q.Number, q.Start, q.End(), q.Start-MiB, ext.Start, ext.End())
				}
			case KindPrimary:
				if q.Start < ext.End() && ext.Start < q.End() {
					t.Errorf("primary %d overlaps the extended partition", q.Number)
				}
			}
		}
	}
}

func TestPlanTable(t *testing.T) {
	win := windowsGPT(64*GiB, 512)
	lin := linuxMBR(32*GiB, 512)
	used := map[int]int64{3: 20 * GiB, 4: 400 * MiB, 5: 6 * GiB, 6: 0, 7: 3 * GiB}
	for _, c := range []struct {
		name     string
		src      *Disk
		tgt      *Disk
		opts     PlanOptions
		want     map[int][2]int64 // partition → new start, size (only those listed)
		fs       []string         // "3 grow" …
		failWith string
	}{
		{name: "GPT same size keep", src: win, tgt: target(64*GiB, 512), opts: PlanOptions{Resize: ResizeKeep},
			want: map[int][2]int64{1: {MiB, 100 * MiB}, 2: {101 * MiB, 16 * MiB}, 3: {117 * MiB, 64*GiB - 717*MiB}, 4: {64*GiB - 600*MiB, 599 * MiB}}},
		{name: "GPT same size proportional is the identity", src: win, tgt: target(64*GiB, 512), opts: PlanOptions{},
			want: map[int][2]int64{1: {MiB, 100 * MiB}, 3: {117 * MiB, 64*GiB - 717*MiB}, 4: {64*GiB - 600*MiB, 599 * MiB}}},
		{name: "GPT same size grow-last is the identity", src: win, tgt: target(64*GiB, 512), opts: PlanOptions{Resize: ResizeGrowLast},
			want: map[int][2]int64{3: {117 * MiB, 64*GiB - 717*MiB}, 4: {64*GiB - 600*MiB, 599 * MiB}}},
		{name: "GPT bigger grow-last", src: win, tgt: target(128*GiB, 512), opts: PlanOptions{Resize: ResizeGrowLast},
			want: map[int][2]int64{3: {117 * MiB, 64*GiB - 717*MiB}, 4: {64*GiB - 600*MiB, 64*GiB + 599*MiB}},
			fs:   []string{"4 grow"}},
		{name: "GPT bigger proportional: ntfs doubles, EFI and MSR stay", src: win, tgt: target(128*GiB, 512), opts: PlanOptions{},
			want: map[int][2]int64{1: {MiB, 100 * MiB}, 2: {101 * MiB, 16 * MiB}},
			fs:   []string{"3 grow", "4 grow"}},
		{name: "GPT smaller proportional, data fits", src: win, tgt: target(32*GiB, 512), opts: PlanOptions{Used: used},
			want: map[int][2]int64{1: {MiB, 100 * MiB}, 2: {101 * MiB, 16 * MiB}},
			fs:   []string{"3 shrink", "4 shrink"}},
		{name: "GPT smaller, C: does not fit", src: win, tgt: target(16*GiB, 512), opts: PlanOptions{Used: used},
			failWith: "partition 3 (ntfs) holds 21474836480 used bytes and needs"},
		{name: "GPT smaller, used unknown", src: win, tgt: target(32*GiB, 512), opts: PlanOptions{},
			failWith: "partition 3 (ntfs): its used bytes are unknown"},
		{name: "GPT smaller keep refused", src: win, tgt: target(32*GiB, 512), opts: PlanOptions{Resize: ResizeKeep, Used: used},
			failWith: "bytes short); --resize proportional"},
		{name: "GPT 512 to 4096", src: win, tgt: target(64*GiB, 4096), opts: PlanOptions{Resize: ResizeKeep},
			want: map[int][2]int64{1: {MiB, 100 * MiB}, 3: {117 * MiB, 64*GiB - 717*MiB}}},
		{name: "GPT 4096 to 512 bigger", src: windowsGPT(64*GiB, 4096), tgt: target(80*GiB, 512), opts: PlanOptions{Resize: ResizeGrowLast},
			want: map[int][2]int64{4: {64*GiB - 600*MiB, 16*GiB + 599*MiB}}, fs: []string{"4 grow"}},
		{name: "MBR same size keep", src: lin, tgt: target(32*GiB, 512), opts: PlanOptions{Resize: ResizeKeep},
			want: map[int][2]int64{1: {MiB, 256 * MiB}, 5: {258 * MiB, 16*GiB - 258*MiB}, 6: {16*GiB + MiB, 512 * MiB}, 7: {16*GiB + 514*MiB, 16*GiB - 514*MiB}}},
		{name: "MBR bigger proportional", src: lin, tgt: target(64*GiB, 512), opts: PlanOptions{},
			fs: []string{"1 grow", "5 grow", "6 grow", "7 grow"}},
		{name: "MBR smaller proportional", src: lin, tgt: target(16*GiB, 512), opts: PlanOptions{Used: used},
			// /boot's used bytes are unknown: it keeps its size.
			want: map[int][2]int64{1: {MiB, 256 * MiB}},
			fs:   []string{"5 shrink", "6 shrink", "7 shrink"}},
		{name: "MBR smaller grow-last: the others alone do not fit", src: lin, tgt: target(16*GiB, 512), opts: PlanOptions{Resize: ResizeGrowLast, Used: used},
			failWith: "bytes short"},
		{name: "MBR smaller grow-last: home shrinks", src: lin, tgt: target(24*GiB, 512), opts: PlanOptions{Resize: ResizeGrowLast, Used: used},
			want: map[int][2]int64{7: {16*GiB + 514*MiB, 8*GiB - 514*MiB}}, fs: []string{"7 shrink"}},
		{name: "MBR smaller grow-last: home does not fit", src: lin, tgt: target(24*GiB, 512), opts: PlanOptions{Resize: ResizeGrowLast, Used: map[int]int64{7: 10 * GiB}},
			failWith: "partition 7 (ext4) holds 10737418240 used bytes and needs"},
		{name: "MBR 4096 target", src: lin, tgt: target(32*GiB, 4096), opts: PlanOptions{Resize: ResizeGrowLast}},
		{name: "MBR over 2 TiB capped", src: lin, tgt: target(3<<40, 512), opts: PlanOptions{Resize: ResizeGrowLast},
			want: map[int][2]int64{7: {16*GiB + 514*MiB, (2<<40 - 16*GiB - 514*MiB) &^ (MiB - 1)}}, fs: []string{"7 grow"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := Plan(c.src, c.tgt, c.opts)
			if c.failWith != "" {
				var pe *PlanError
				if !errors.As(err, &pe) || !strings.Contains(err.Error(), c.failWith) {
					t.Fatalf("err = %v, want a PlanError containing %q", err, c.failWith)
				}
				if p == nil || len(p.Failed()) == 0 {
					t.Fatal("a refused plan must be returned with its failed checks")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkPlanGeometry(t, c.src, p, c.opts.Used)
			for n, w := range c.want {
				q := partitionNumbered(p.Layout, n)
				if q.Start != w[0] || q.Size != w[1] {
					t.Errorf("partition %d at [%d,+%d), want [%d,+%d)", n, q.Start, q.Size, w[0], w[1])
				}
			}
			var fs []string
			for _, f := range p.Filesystems {
				fs = append(fs, fmt.Sprintf("%d %s", f.Partition, f.Action))
			}
			if strings.Join(fs, ",") != strings.Join(c.fs, ",") {
				t.Errorf("filesystems %v, want %v", fs, c.fs)
			}
			for _, m := range p.Moves {
				q := partitionNumbered(p.Layout, m.Number)
				s := partitionNumbered(c.src, m.Number)
				if m.NewStart != q.Start || m.NewSize != q.Size || m.OldStart != s.Start || m.OldSize != s.Size {
					t.Errorf("move %+v does not match the layout", m)
				}
			}
		})
	}
}

// TestPlanShrinkNamesBytes checks the exact shortfall a refused shrink reports.
func TestPlanShrinkNamesBytes(t *testing.T) {
	// One ext4 partition of 10 GiB holding 9 GiB onto a 4 GiB disk: it gets the whole usable
	// space (aligned), and needs shrinkNeed(9 GiB) minus that.
	src := &Disk{Table: TableMBR, Size: 10*GiB + MiB, LogicalSectorSize: 512, Partitions: []Partition{
		{Number: 1, Kind: KindPrimary, Start: MiB, Size: 10 * GiB, Type: "0x83", Filesystem: fsOf("ext4")}}}
	p, err := Plan(src, target(4*GiB, 512), PlanOptions{Used: map[int]int64{1: 9 * GiB}})
	if err == nil {
		t.Fatal("planned 9 GiB of data onto 4 GiB")
	}
	got := p.Layout.Partitions[0].Size
	need := shrinkNeed(9*GiB) - got
	if want := fmt.Sprintf("needs %d more bytes", need); !strings.Contains(err.Error(), want) {
		t.Errorf("%v\nwant %q", err, want)
	}
	if got != 4*GiB-MiB {
		t.Errorf("proportional share %d, want the whole usable space %d", got, 4*GiB-MiB)
	}
}

func TestPlanIdentities(t *testing.T) {
	for _, src := range []*Disk{windowsGPT(8*GiB, 512), linuxMBR(8*GiB, 512)} {
		keep, err := Plan(src, target(8*GiB, 512), PlanOptions{Resize: ResizeKeep})
		if err != nil {
			t.Fatal(err)
		}
		renew, err := Plan(src, target(8*GiB, 512), PlanOptions{Resize: ResizeKeep, Identity: IdentityRenew, Rand: newSeqRand(1)})
		if err != nil {
			t.Fatal(err)
		}
		wantIDs := 1
		if src.Table == TableGPT {
			wantIDs = 1 + 4 // disk GUID + 4 partition GUIDs (the protective MBR has no signature)
		}
		for _, p := range []*LayoutPlan{keep, renew} {
			if len(p.Identities) != wantIDs {
				t.Fatalf("%s: %d identities recorded, want %d: %+v", src.Table, len(p.Identities), wantIDs, p.Identities)
			}
		}
		for _, id := range keep.Identities {
			if id.Old != id.New || id.Old == "" {
				t.Errorf("keep changed %+v", id)
			}
		}
		seen := map[string]bool{}
		for _, id := range renew.Identities {
			if id.Old == id.New || seen[id.New] {
				t.Errorf("renew kept or repeated %+v", id)
			}
			seen[id.New] = true
			if id.What != "disk signature" && (id.New[14] != '4' || !strings.ContainsAny(id.New[19:20], "89AB")) {
				t.Errorf("renewed GUID %s is not version 4, variant 10", id.New)
			}
		}
		// The layout carries the renewed identities.
		switch src.Table {
		case TableGPT:
			if renew.Layout.DiskGUID != renew.Identities[0].New || renew.Layout.Partitions[2].GUID != renew.Identities[3].New {
				t.Error("renewed GUIDs are not in the layout")
			}
		case TableMBR:
			if fmt.Sprintf("%08x", renew.Layout.Signature) != renew.Identities[0].New || renew.Layout.Signature == 0 {
				t.Error("renewed signature is not in the layout")
			}
		}
		// Deterministic for a given random source.
		again, _ := Plan(src, target(8*GiB, 512), PlanOptions{Resize: ResizeKeep, Identity: IdentityRenew, Rand: newSeqRand(1)})
		if again.Identities[0] != renew.Identities[0] {
			t.Error("renew with the same random source differs")
		}
	}
}

func TestPlanUnalignedSourceIsAligned(t *testing.T) {
	// An XP-era disk: partition at sector 63, an odd number of sectors, onto a 4Kn disk.
	src := &Disk{Table: TableMBR, Size: 4 * GiB, LogicalSectorSize: 512, Signature: 1, Partitions: []Partition{
		{Number: 1, Kind: KindPrimary, Start: 63 * 512, Size: 1001 * 512 * 1000, Type: "0x07", Active: true, Filesystem: fsOf("ntfs")}}}
	p, err := Plan(src, target(4*GiB, 4096), PlanOptions{Resize: ResizeKeep})
	if err != nil {
		t.Fatal(err)
	}
	q := p.Layout.Partitions[0]
	if q.Start != MiB || q.Size != alignUp(1001*512*1000, 4096) || !q.Active {
		t.Errorf("planned %+v", q)
	}
	if !strings.Contains(strings.Join(p.Warnings, "\n"), "partition 1 (ntfs) moves from byte 32256 to 1048576: restore rewrites its boot sector's hidden-sectors field to 256") {
		t.Errorf("no warning about the NTFS hidden-sectors field: %v", p.Warnings)
	}
	if !strings.Contains(strings.Join(p.Warnings, "\n"), "partition 1: ntfs records its sector size") {
		t.Errorf("no warning about NTFS on a sector size change: %v", p.Warnings)
	}
}

func TestPlanCarriesSourceWarnings(t *testing.T) {
	src := windowsGPT(8*GiB, 512)
	src.Warnings = []string{"hybrid MBR: its entries besides the protective one are ignored; the GPT is read"}
	p, err := Plan(src, target(8*GiB, 512), PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Warnings) != 1 || p.Warnings[0] != "source: "+src.Warnings[0] {
		t.Errorf("warnings %q", p.Warnings)
	}
}

func TestPlanRefusesBadInput(t *testing.T) {
	win := windowsGPT(8*GiB, 512)
	for _, c := range []struct {
		src, tgt *Disk
		opts     PlanOptions
		want     string
	}{
		{win, target(8*GiB, 512), PlanOptions{Resize: "shrink-first"}, "unknown resize mode"},
		{win, target(8*GiB, 512), PlanOptions{Identity: "new"}, "unknown identity mode"},
		{win, target(8*GiB, 1000), PlanOptions{}, "logical sector size 1000"},
		{&Disk{Table: TableNone, Size: GiB, LogicalSectorSize: 512}, target(GiB, 512), PlanOptions{}, "no partition table"},
		{win, target(32*1024, 512), PlanOptions{}, "too small for a GPT"},
		{&Disk{Table: TableMBR, Size: GiB, LogicalSectorSize: 512, Partitions: []Partition{{Number: 1, Kind: KindPrimary, Start: MiB, Size: GiB}}}, target(GiB, 512), PlanOptions{}, "lies outside the disk"},
		{&Disk{Table: TableMBR, Size: GiB, LogicalSectorSize: 512, Partitions: []Partition{{Number: 1, Kind: KindPrimary, Start: MiB, Size: 10 * MiB}, {Number: 2, Kind: KindPrimary, Start: 5 * MiB, Size: 10 * MiB}}}, target(GiB, 512), PlanOptions{}, "overlap"},
		{&Disk{Table: TableMBR, Size: GiB, LogicalSectorSize: 512, Partitions: []Partition{{Number: 5, Kind: KindLogical, Start: MiB, Size: 10 * MiB}}}, target(GiB, 512), PlanOptions{}, "outside an extended partition"},
		{&Disk{Table: TableGPT, Size: GiB, LogicalSectorSize: 512, Partitions: []Partition{{Number: 5, Kind: KindLogical, Start: MiB, Size: 10 * MiB}}}, target(GiB, 512), PlanOptions{}, "impossible in a table of type gpt"},
	} {
		_, err := Plan(c.src, c.tgt, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err %v, want %q", c.opts, err, c.want)
		}
	}
}

// randomSource makes a random valid layout (as Read would return it).
func randomSource(r *rand.Rand) (*Disk, map[int]int64) {
	lss := []int{512, 4096}[r.IntN(2)]
	s := int64(lss)
	fsTypes := []string{"ext4", "ntfs", "vfat", "swap", "xfs", "btrfs", "unknown", ""}
	d := &Disk{LogicalSectorSize: lss, Signature: r.Uint32()}
	used := map[int]int64{}
	pos := int64(1+r.IntN(4)) * MiB
	if r.IntN(8) == 0 {
		pos = 63 * s // unaligned, old style
	}
	mkfs := func(p *Partition) {
		if t := fsTypes[r.IntN(len(fsTypes))]; t != "" {
			p.Filesystem = fsOf(t)
		}
		if r.IntN(4) != 0 {
			used[p.Number] = r.Int64N(p.Size + 1)
		}
	}
	size := func() int64 { return int64(1+r.IntN(4000)) * s * int64(1+r.IntN(512)) }
	if r.IntN(2) == 0 {
		d.Table = TableGPT
		d.EntryCount, d.EntrySize = 128, 128
		n := 1 + r.IntN(8)
		num := 0
		for i := 0; i < n; i++ {
			num += 1 + r.IntN(3)
			p := Partition{Number: num, Kind: KindPrimary, Start: pos, Size: size(), Type: linuxFS, GUID: fmt.Sprintf("A0000000-0000-4000-8000-%012X", num)}
			mkfs(&p)
			d.Partitions = append(d.Partitions, p)
			pos = p.End() + int64(r.IntN(3))*MiB + int64(r.IntN(8))*s
		}
		d.Size = pos + int64(r.IntN(100))*MiB + 64*s
	} else {
		d.Table = TableMBR
		prim := 1 + r.IntN(3)
		withExt := r.IntN(2) == 0
		extAt := r.IntN(prim + 1)
		num := 0
		for i := 0; i <= prim; i++ {
			if i == extAt && withExt {
				num++
				ext := Partition{Number: num, Kind: KindExtended, Start: pos, Type: "0x0f"}
				logicals := r.IntN(5)
				ln := 4 + 1
				if logicals == 0 {
					ext.Size = MiB
				}
				for l := 0; l < logicals; l++ {
					ebr := pos
					p := Partition{Number: 0, Kind: KindLogical, Start: ebr + int64(1+r.IntN(2048))*s, Size: size(), Type: "0x83"}
					p.Number = ln
					ln++
					mkfs(&p)
					d.Partitions = append(d.Partitions, p)
					pos = p.End() + int64(r.IntN(3))*s
					ext.Size = pos - ext.Start
				}
				pos = ext.Start + ext.Size
				d.Partitions = append(d.Partitions, ext)
				continue
			}
			if i == prim {
				break
			}
			num++
			p := Partition{Number: num, Kind: KindPrimary, Start: pos, Size: size(), Type: "0x83", Active: r.IntN(4) == 0}
			mkfs(&p)
			d.Partitions = append(d.Partitions, p)
			pos = p.End() + int64(r.IntN(3))*MiB
		}
		d.Size = pos + int64(r.IntN(100))*s
	}
	// Partitions sorted by number, as Read returns them.
	ps := d.Partitions
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Number < ps[j-1].Number; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
	return d, used
}

// TestPlanProperties plans random layouts onto random targets in every mode: every plan that
// passes its checks must satisfy checkPlanGeometry, and same-size keep plans of aligned sources
// must reproduce the source.
func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(42, 1))
	planned, refused := 0, 0
	for i := 0; i < 3000; i++ {
		src, used := randomSource(r)
		tlss := []int{512, 4096}[r.IntN(2)]
		tsize := src.Size * int64(50+r.IntN(150)) / 100 / int64(tlss) * int64(tlss)
		mode := []ResizeMode{ResizeKeep, ResizeGrowLast, ResizeProportional}[r.IntN(3)]
		ident := []IdentityMode{IdentityKeep, IdentityRenew}[r.IntN(2)]
		p, err := Plan(src, target(tsize, tlss), PlanOptions{Resize: mode, Identity: ident, Used: used, Rand: newSeqRand(byte(i))})
		var pe *PlanError
		if errors.As(err, &pe) {
			refused++
			continue
		}
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		planned++
		t.Run(fmt.Sprint(i), func(t *testing.T) { checkPlanGeometry(t, src, p, used) })
		if t.Failed() {
			t.Fatalf("case %d: source %+v\nplan %+v", i, src, p.Moves)
		}
	}
	if planned < 500 || refused < 100 {
		t.Errorf("planned %d, refused %d: the generator does not exercise both outcomes", planned, refused)
	}
}
