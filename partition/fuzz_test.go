package partition

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"sort"
	"strings"
	"testing"
	"unicode/utf8"
)

// The fuzz targets feed Read and DetectFilesystem sparse disks: an input is
//
//	u32 LE  disk size in 512-byte sectors (taken modulo 2^23: up to 4 GiB)
//	u8      flags: bit 0 = 4096-byte logical sectors, bit 1 = recompute the GPT CRCs
//	records of u32 LE byte offset (modulo the disk size), u8 length n, n bytes written there
//
// so that a few hundred bytes describe EBRs megabytes apart or a backup GPT at the end of a large
// disk. Inputs must stay small: the fuzzer's minimizer is quadratic in the input's length. Seeds
// are the bytes Read and DetectFilesystem actually read from images made by sfdisk, sgdisk and the
// mkfs tools, plus hand-made tables.

const (
	flag4K     = 1
	flagFixCRC = 2
	maxFuzzSec = 1 << 23
)

func decodeSparse(data []byte) (*memDisk, byte) {
	if len(data) < 5 {
		return newMemDisk(0), 0
	}
	size := int64(binary.LittleEndian.Uint32(data)%maxFuzzSec) * 512
	m := newMemDisk(size)
	flags := data[4]
	for rec := data[5:]; len(rec) >= 5 && size > 0; {
		off := int64(binary.LittleEndian.Uint32(rec)) % size
		n := min(int(rec[4]), len(rec)-5)
		b := rec[5 : 5+n]
		rec = rec[5+n:]
		if int64(n) > size-off {
			b = b[:size-off]
		}
		m.write(off, b)
	}
	return m, flags
}

// encodeSparse encodes the non-zero bytes of the given 512-byte chunks as records, merging runs
// separated by fewer zero bytes than a record header costs.
func encodeSparse(size int64, flags byte, chunks map[int64][]byte) []byte {
	out := binary.LittleEndian.AppendUint32(nil, uint32(size/512))
	out = append(out, flags)
	idx := make([]int64, 0, len(chunks))
	for i := range chunks {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	for _, i := range idx {
		c := chunks[i]
		for pos := 0; pos < len(c); {
			if c[pos] == 0 {
				pos++
				continue
			}
			end, zeros := pos, 0
			for end < len(c) && end-pos < 255 && zeros < 5 {
				if c[end] == 0 {
					zeros++
				} else {
					zeros = 0
				}
				end++
			}
			end -= zeros
			out = binary.LittleEndian.AppendUint32(out, uint32(i*512+int64(pos)))
			out = append(out, byte(end-pos))
			out = append(out, c[pos:end]...)
			pos = end
		}
	}
	return out
}

// recorder remembers the 512-byte chunks read through it.
type recorder struct {
	r      io.ReaderAt
	chunks map[int64][]byte
}

func (rc *recorder) ReadAt(p []byte, off int64) (int, error) {
	n, err := rc.r.ReadAt(p, off)
	for c := off / 512; n > 0 && c <= (off+int64(n)-1)/512; c++ {
		if _, ok := rc.chunks[c]; !ok {
			b := make([]byte, 512)
			_, _ = rc.r.ReadAt(b, c*512)
			rc.chunks[c] = b
		}
	}
	return n, err
}

// seedFromImage reads an image file through a recorder and returns its sparse encoding.
func seedFromImage(t testing.TB, img string, flags byte, probe func(r io.ReaderAt, size int64)) []byte {
	t.Helper()
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	rc := &recorder{r: f, chunks: map[int64][]byte{}}
	probe(rc, fi.Size())
	return encodeSparse(fi.Size(), flags, rc.chunks)
}

func readSeed(lss int) func(r io.ReaderAt, size int64) {
	return func(r io.ReaderAt, size int64) { _, _ = Read(r, size, lss) }
}

// checkDisk asserts what every successful Read must guarantee.
func checkDisk(t *testing.T, d *Disk, size int64) {
	t.Helper()
	if d == nil || d.Size != size {
		t.Fatalf("disk %+v for size %d", d, size)
	}
	switch d.Table {
	case TableNone:
		if len(d.Partitions) != 0 {
			t.Fatalf("table none with partitions %+v", d.Partitions)
		}
	case TableMBR, TableGPT:
	default:
		t.Fatalf("table %q", d.Table)
	}
	if d.Filesystem != nil {
		checkFilesystem(t, d.Filesystem)
	}
	seen := map[int]bool{}
	var covered int64
	for i, p := range d.Partitions {
		if seen[p.Number] || p.Number < 1 {
			t.Fatalf("partition number %d repeated or invalid", p.Number)
		}
		seen[p.Number] = true
		if p.Start < 0 || p.Size <= 0 || p.End() > size || p.End() < p.Start {
			t.Fatalf("partition %d outside the disk: %+v", p.Number, p)
		}
		if !utf8.ValidString(p.Name) || !utf8.ValidString(p.TypeName) {
			t.Fatalf("invalid UTF-8 in %+v", p)
		}
		switch {
		case d.Table == TableGPT && (p.Kind != KindPrimary || len(p.Type) != 36 || len(p.GUID) != 36):
			t.Fatalf("bad GPT partition %+v", p)
		case d.Table == TableMBR && (len(p.Type) != 4 || !strings.HasPrefix(p.Type, "0x")):
			t.Fatalf("bad MBR type %+v", p)
		case d.Table == TableMBR && p.Kind == KindLogical && p.Number < 5,
			d.Table == TableMBR && p.Kind != KindLogical && p.Number > 4:
			t.Fatalf("bad MBR numbering %+v", p)
		}
		if !p.HoldsData() {
			if p.Filesystem != nil {
				t.Fatalf("extended partition with a filesystem %+v", p)
			}
			continue
		}
		checkFilesystem(t, p.Filesystem)
		covered += p.Size
		for _, q := range d.Partitions[i+1:] {
			if q.HoldsData() && p.Start < q.End() && q.Start < p.End() {
				t.Fatalf("data partitions overlap: %+v %+v", p, q)
			}
		}
	}
	// The gaps and the data partitions tile the disk exactly.
	var gapBytes, last int64
	for _, g := range d.Gaps() {
		if g.Size <= 0 || g.Start < last || g.End() > size {
			t.Fatalf("bad gap %+v in %v", g, d.Gaps())
		}
		for _, p := range d.Partitions {
			if p.HoldsData() && p.Start < g.End() && g.Start < p.End() {
				t.Fatalf("gap %+v overlaps partition %+v", g, p)
			}
		}
		gapBytes += g.Size
		last = g.End()
	}
	if gapBytes+covered != size {
		t.Fatalf("gaps (%d bytes) and partitions (%d bytes) do not tile the disk (%d bytes)", gapBytes, covered, size)
	}
}

func fuzzRead(t *testing.T, data []byte) {
	m, flags := decodeSparse(data)
	lss := 512
	if flags&flag4K != 0 {
		lss = 4096
	}
	if flags&flagFixCRC != 0 {
		fixGPTCRCs(m, int64(lss))
	}
	d, err := Read(m, m.size, lss)
	if err != nil {
		if d != nil {
			t.Fatalf("disk %+v with error %v", d, err)
		}
		var pe *Error
		if errors.As(err, &pe) && (pe.Offset < 0 || pe.Offset >= m.size || pe.Msg == "") {
			t.Fatalf("error offset %d outside the disk (%d bytes): %v", pe.Offset, m.size, err)
		}
		return
	}
	checkDisk(t, d, m.size)
}

// fixGPTCRCs recomputes the CRCs of both GPT headers and their arrays, so that the fuzzer reaches
// the code behind the CRC checks.
func fixGPTCRCs(m *memDisk, lss int64) {
	sectors := m.size / lss
	if sectors < 3 {
		return
	}
	for _, lba := range []int64{1, sectors - 1} {
		h := make([]byte, lss)
		if _, err := m.ReadAt(h, lba*lss); err != nil || string(h[:8]) != "EFI PART" {
			continue
		}
		hsize := int64(binary.LittleEndian.Uint32(h[12:]))
		n := uint64(binary.LittleEndian.Uint32(h[80:])) * uint64(binary.LittleEndian.Uint32(h[84:]))
		arrayLBA := binary.LittleEndian.Uint64(h[72:])
		if n <= gptMaxArrayBytes && arrayLBA < uint64(sectors) && int64(arrayLBA)*lss+int64(n) <= m.size {
			array := make([]byte, n)
			if _, err := m.ReadAt(array, int64(arrayLBA)*lss); err == nil {
				binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(array))
			}
		}
		if hsize >= gptMinHeaderSize && hsize <= lss {
			binary.LittleEndian.PutUint32(h[16:], 0)
			binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:hsize]))
		}
		m.write(lba*lss, h)
	}
}

func memSeed(m *memDisk, flags byte) []byte { return encodeSparse(m.size, flags, m.chunks) }

func FuzzReadMBR(f *testing.F) {
	// The table only: filesystems are FuzzDetectFilesystem's, and small inputs fuzz faster.
	img := newImage(f, "mbr.img", 128<<20)
	runIn(f, mbrScript, "sfdisk", "-q", img)
	f.Add(seedFromImage(f, img, 0, readSeed(512)))

	m := newMemDisk(100 << 20)
	m.putMBR(0, tEntry{0x80, 0x83, 2048, 2048}, tEntry{0, 0x05, 4096, 8192}, tEntry{0, 0x0f, 16384, 4096})
	m.putMBR(4096*512, tEntry{0, 0x83, 1, 1000}, tEntry{0, 0x05, 2048, 4096})
	m.putMBR((4096+2048)*512, tEntry{0, 0x82, 8, 1000})
	m.putMBR(16384*512, tEntry{0, 0x07, 2048, 2048})
	f.Add(memSeed(m, 0))

	loop := newMemDisk(100 << 20)
	loop.putMBR(0, tEntry{0, 0x05, 2048, 8192})
	loop.putMBR(2048*512, tEntry{0, 0x83, 1, 100}, tEntry{0, 0x05, 1000, 200})
	loop.putMBR(3048*512, tEntry{0, 0x83, 1, 100}, tEntry{0, 0x05, 0, 200})
	f.Add(memSeed(loop, 0))

	k := newMemDisk(64 << 20)
	k.putMBR(0, tEntry{0x80, 0x83, 256, 1024}, tEntry{0, 0x05, 2048, 4096})
	k.putMBR(2048*4096, tEntry{0, 0x83, 256, 512})
	f.Add(memSeed(k, flag4K))

	f.Fuzz(fuzzRead)
}

func FuzzReadGPT(f *testing.F) {
	img := makeGPTTable(f)
	f.Add(seedFromImage(f, img, 0, readSeed(512)))
	f.Add(seedFromImage(f, img, flagFixCRC, readSeed(512)))

	for _, g := range []tGPT{
		{lss: 512, size: 8 << 20, entrySize: 256, entryCount: 64},
		{lss: 4096, size: 16 << 20, headerSize: 128, entryCount: 16},
	} {
		g.diskGUID = testDiskGUID
		g.parts = []tGPTPart{{}, {typ: linuxFS, guid: testEFIGUID, first: uint64(1 << 20 / g.lss), last: uint64(2<<20/g.lss) - 1, name: "😀 fuzz"}}
		m := newMemDisk(g.size)
		if err := g.write(m); err != nil {
			f.Fatal(err)
		}
		var flags byte = flagFixCRC
		if g.lss == 4096 {
			flags |= flag4K
		}
		f.Add(memSeed(m, flags))
		// The same disk cut short: the primary header points past the end.
		m.size -= 4 << 20
		for c := range m.chunks {
			if c*512 >= m.size {
				delete(m.chunks, c)
			}
		}
		f.Add(memSeed(m, flags))
	}
	f.Fuzz(fuzzRead)
}

func FuzzDetectFilesystem(f *testing.F) {
	for _, c := range fsCases() {
		if c.size > 64<<20 {
			continue // xfs and btrfs images take longest to make; their seeds come by hand below
		}
		vol := newImage(f, "vol", c.size)
		c.mkfs(f, vol)
		f.Add(seedFromImage(f, vol, 0, func(r io.ReaderAt, size int64) { DetectFilesystem(r, 0, size) }))
	}
	// The magic numbers of the probes not seeded from a tool above.
	xfs := newMemDisk(300 << 20)
	sb := make([]byte, 512)
	copy(sb, "XFSB")
	binary.BigEndian.PutUint32(sb[4:], 4096)
	binary.BigEndian.PutUint64(sb[8:], 76800)
	binary.BigEndian.PutUint64(sb[144:], 60000)
	xfs.write(0, sb)
	f.Add(memSeed(xfs, 0))
	btrfs := newMemDisk(128 << 20)
	bsb := make([]byte, 4096)
	copy(bsb[0x40:], "_BHRfS_M")
	binary.LittleEndian.PutUint32(bsb, crc32.Checksum(bsb[0x20:], crc32.MakeTable(crc32.Castagnoli)))
	btrfs.write(btrfsSuperOffset, bsb)
	f.Add(memSeed(btrfs, 0))

	f.Fuzz(func(t *testing.T, data []byte) {
		m, flags := decodeSparse(data)
		checkFilesystem(t, DetectFilesystem(m, 0, m.size))
		// The same volume seen through a window that starts inside the disk.
		off := int64(flags) * 512
		checkFilesystem(t, DetectFilesystem(m, off, m.size-off))
	})
}

// TestFuzzSeedsReproduceReads checks the fuzz encoding: a disk rebuilt from the sectors Read
// recorded on a real image reads exactly like the image, filesystems included. So the seeds hold
// real tables and superblocks, not noise.
func TestFuzzSeedsReproduceReads(t *testing.T) {
	img := makeMBRImage(t)
	want, err := readImage(t, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	m, flags := decodeSparse(seedFromImage(t, img, 0, readSeed(512)))
	if flags != 0 || m.size != want.Size {
		t.Fatalf("decoded flags %d, size %d", flags, m.size)
	}
	got, err := Read(m, m.size, 512)
	if err != nil {
		t.Fatal(err)
	}
	if seed := seedFromImage(t, img, 0, readSeed(512)); len(got.Partitions) != 7 || len(seed) > 8<<10 {
		t.Fatalf("%d partitions from %d chunks", len(got.Partitions), len(m.chunks))
	}
	for i := range got.Partitions {
		g, w := got.Partitions[i], want.Partitions[i]
		if (g.Filesystem == nil) != (w.Filesystem == nil) || (g.Filesystem != nil && *g.Filesystem != *w.Filesystem) {
			t.Errorf("partition %d: filesystem %+v, want %+v", g.Number, g.Filesystem, w.Filesystem)
		}
		g.Filesystem, w.Filesystem = nil, nil
		if g != w {
			t.Errorf("partition %+v, want %+v", g, w)
		}
	}
}
