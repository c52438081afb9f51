package partition

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const (
	testEFIGUID  = "AAAAAAAA-BBBB-4CCC-8DDD-EEEEEEEEEEEE"
	testDiskGUID = "11111111-2222-4333-8444-555555555555"
	testCustom   = "DEADBEEF-0000-4000-8000-000000000001"
	astralName   = "𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞𝄞" // 18 surrogate pairs: all 72 bytes, no NUL
)

// makeGPTImage builds a GPT disk with sgdisk: an EFI partition with FAT16, an unused entry 2, an
// ext4 partition with a non-ASCII name, a swap partition with an astral-plane name filling the
// whole name field, a partition of an unknown type, and an NTFS partition. Filesystems are made by
// the mkfs tools, in place (-E offset) or in a separate file copied in.
func makeGPTImage(t testing.TB) string {
	t.Helper()
	img := makeGPTTable(t)
	st := sfdiskDump(t, img)
	starts := map[int]int64{}
	for _, p := range st.PartitionTable.Partitions {
		starts[nodeNumber(t, p.Node)] = p.Start * 512
	}
	efi := newImage(t, "efi.fat", 16<<20)
	run(t, "mkfs.vfat", "-F", "16", "-n", "EFI", "-i", "1234ABCD", efi)
	ddInto(t, img, starts[1], efi)
	run(t, "mkfs.ext4", "-F", "-q", "-E", fmt.Sprintf("offset=%d", starts[3]), "-L", "rootfs",
		"-U", "01234567-89ab-4def-8123-456789abcdef", img, "24M")
	swap := newImage(t, "swap", 8<<20)
	run(t, "mkswap", "-L", "swap", "-U", "fedcba98-7654-4321-8fed-cba987654321", swap)
	ddInto(t, img, starts[4], swap)
	ntfs := newImage(t, "ntfs", 16<<20)
	run(t, "mkntfs", "-F", "-f", "-q", "-L", "Win data", "-s", "512", ntfs)
	ddInto(t, img, starts[6], ntfs)
	return img
}

// makeGPTTable is the table of makeGPTImage, without filesystems.
func makeGPTTable(t testing.TB) string {
	t.Helper()
	img := newImage(t, "gpt.img", 96<<20)
	run(t, "sgdisk", "-o", "-U", testDiskGUID,
		"-n", "1:2048:+16M", "-t", "1:ef00", "-c", "1:EFI system", "-u", "1:"+testEFIGUID, "-A", "1:set:0",
		"-n", "3:0:+24M", "-t", "3:8300", "-c", "3:Données 😀", "-A", "3:set:60", "-A", "3:set:63",
		"-n", "4:0:+8M", "-t", "4:8200", "-c", "4:"+astralName,
		"-n", "5:0:+8M", "-t", "5:"+testCustom, "-c", "5:custom",
		"-n", "6:0:+16M", "-t", "6:0700", "-c", "6:Windows",
		img)
	return img
}

func readImage(t testing.TB, img string, lss int) (*Disk, error) {
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
	return Read(f, fi.Size(), lss)
}

var sgdiskAttrRE = regexp.MustCompile(`Attribute flags: ([0-9A-Fa-f]{16})`)

// sgdiskAttributes is the attribute word of partition n as `sgdisk -i` prints it.
func sgdiskAttributes(t *testing.T, dev string, n int) uint64 {
	t.Helper()
	out := run(t, "sgdisk", "-i", strconv.Itoa(n), dev)
	m := sgdiskAttrRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no attribute flags in sgdisk -i %d:\n%s", n, out)
	}
	v, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var sgdiskEntriesRE = regexp.MustCompile(`Partition table holds up to (\d+) entries`)

// compareGPT checks a read GPT disk against sfdisk --json and sgdisk on dev (the image or the loop
// device holding it).
func compareGPT(t *testing.T, d *Disk, dev string) {
	t.Helper()
	st := sfdiskDump(t, dev)
	pt := st.PartitionTable
	if d.Table != TableGPT || pt.Label != "gpt" {
		t.Fatalf("table %q, sfdisk says %q", d.Table, pt.Label)
	}
	lss := int64(pt.SectorSize)
	if int64(d.LogicalSectorSize) != lss {
		t.Errorf("logical sector size %d, sfdisk says %d", d.LogicalSectorSize, lss)
	}
	if d.DiskGUID != pt.ID {
		t.Errorf("disk GUID %s, sfdisk says %s", d.DiskGUID, pt.ID)
	}
	if d.FirstUsableLBA != pt.FirstLBA || d.LastUsableLBA != pt.LastLBA {
		t.Errorf("usable LBAs %d–%d, sfdisk says %d–%d", d.FirstUsableLBA, d.LastUsableLBA, pt.FirstLBA, pt.LastLBA)
	}
	m := sgdiskEntriesRE.FindStringSubmatch(run(t, "sgdisk", "-p", dev))
	if m == nil || strconv.FormatUint(uint64(d.EntryCount), 10) != m[1] || d.EntrySize != 128 {
		t.Errorf("entry count/size %d/%d, sgdisk says %v entries of 128 bytes", d.EntryCount, d.EntrySize, m)
	}
	if len(d.Partitions) != len(pt.Partitions) {
		t.Fatalf("%d partitions, sfdisk lists %d: %+v", len(d.Partitions), len(pt.Partitions), d.Partitions)
	}
	var data []Extent
	for _, sp := range pt.Partitions {
		n := nodeNumber(t, sp.Node)
		p := partitionByNumber(d, n)
		if p == nil {
			t.Errorf("partition %d (sfdisk) not read", n)
			continue
		}
		if p.Start != sp.Start*lss || p.Size != sp.Size*lss {
			t.Errorf("partition %d: bytes %d+%d, sfdisk says %d+%d", n, p.Start, p.Size, sp.Start*lss, sp.Size*lss)
		}
		if p.Type != sp.Type || p.GUID != sp.UUID || p.Name != sp.Name {
			t.Errorf("partition %d: type %s GUID %s name %q; sfdisk says %s %s %q", n, p.Type, p.GUID, p.Name, sp.Type, sp.UUID, sp.Name)
		}
		if p.Kind != KindPrimary {
			t.Errorf("partition %d: kind %s", n, p.Kind)
		}
		if a := sgdiskAttributes(t, dev, n); p.Attributes != a {
			t.Errorf("partition %d: attributes %016x, sgdisk says %016x", n, p.Attributes, a)
		}
		data = append(data, Extent{p.Start, p.Size})
	}
	if got, want := fmt.Sprint(d.Gaps()), fmt.Sprint(dataGaps(d.Size, data)); got != want {
		t.Errorf("gaps %s, want %s", got, want)
	}
}

func TestReadGPTAgainstSgdisk(t *testing.T) {
	img := makeGPTImage(t)
	d, err := readImage(t, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	compareGPT(t, d, img)
	if len(d.Warnings) != 0 {
		t.Errorf("warnings on a clean disk: %q", d.Warnings)
	}
	if d.Size != 96<<20 || d.PhysicalSectorSize != 512 {
		t.Errorf("size %d, physical sector %d", d.Size, d.PhysicalSectorSize)
	}
	// Entry 2 is unused: numbering follows the entry index, as the kernel's does.
	if partitionByNumber(d, 2) != nil {
		t.Error("unused entry 2 read as a partition")
	}
	names := map[int]string{1: "EFI System", 3: "Linux filesystem", 4: "Linux swap", 5: "", 6: "Microsoft basic data"}
	for n, want := range names {
		if p := partitionByNumber(d, n); p == nil || p.TypeName != want {
			t.Errorf("partition %d type name: %+v, want %q", n, p, want)
		}
	}
	if p := partitionByNumber(d, 4); p == nil || p.Name != astralName {
		t.Errorf("astral-plane name not decoded: %+v", p)
	}
	if p := partitionByNumber(d, 1); p == nil || p.GUID != testEFIGUID || p.Attributes != 1 {
		t.Errorf("partition 1: %+v", p)
	}
	if p := partitionByNumber(d, 3); p == nil || p.Attributes != 1<<60|1<<63 {
		t.Errorf("partition 3 attributes: %+v", p)
	}
	// The first gap is the protective MBR, both GPT structures' primary copy and alignment.
	if g := d.Gaps(); len(g) == 0 || g[0] != (Extent{0, 2048 * 512}) {
		t.Errorf("first gap %v", g)
	}
	// sgdisk writes no boot code into the protective MBR.
	if d.BootCode != nil || d.Bootloader != "" {
		t.Errorf("boot code %d bytes, boot loader %q", len(d.BootCode), d.Bootloader)
	}
	for _, p := range d.Partitions {
		checkAgainstBlkid(t, fmt.Sprintf("partition %d", p.Number), p.Filesystem, img, p.Start, p.Size)
	}
	if p := partitionByNumber(d, 3); p.Filesystem.UsedBytes <= 0 {
		t.Errorf("ext4 used bytes %d", p.Filesystem.UsedBytes)
	}
}

// rewriteGPT edits both partition entry arrays of a GPT image and recomputes all CRCs, the way a
// (buggy or hostile) partitioning tool would write a consistent but bad table.
func rewriteGPT(t *testing.T, img string, lss int64, edit func(array []byte)) {
	t.Helper()
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	for _, lba := range []int64{1, fi.Size()/lss - 1} {
		hdr := readFileAt(t, img, lba*lss, int(lss))
		arrayLBA := int64(binary.LittleEndian.Uint64(hdr[72:]))
		n := int(binary.LittleEndian.Uint32(hdr[80:]) * binary.LittleEndian.Uint32(hdr[84:]))
		array := readFileAt(t, img, arrayLBA*lss, n)
		edit(array)
		writeAt(t, img, arrayLBA*lss, array)
		binary.LittleEndian.PutUint32(hdr[88:], crc32.ChecksumIEEE(array))
		hsize := binary.LittleEndian.Uint32(hdr[12:])
		binary.LittleEndian.PutUint32(hdr[16:], 0)
		binary.LittleEndian.PutUint32(hdr[16:], crc32.ChecksumIEEE(hdr[:hsize]))
		writeAt(t, img, lba*lss, hdr)
	}
}

func copyImage(t *testing.T, src string) string {
	t.Helper()
	dst := newImage(t, "copy.img", 0)
	run(t, "cp", "--sparse=always", src, dst)
	return dst
}

func TestReadGPTDamaged(t *testing.T) {
	needTool(t, "sgdisk")
	orig := newImage(t, "gpt.img", 32<<20)
	run(t, "sgdisk", "-o", "-n", "1:2048:+4M", "-c", "1:one", "-n", "2:0:+4M", "-t", "2:8200", "-c", "2:two", orig)
	good, err := readImage(t, orig, 512)
	if err != nil {
		t.Fatal(err)
	}
	lastLBA := int64(32<<20)/512 - 1
	backupHeader := lastLBA * 512

	t.Run("primary header", func(t *testing.T) {
		img := copyImage(t, orig)
		writeAt(t, img, 512+60, []byte{0x5A}) // inside the disk GUID: header CRC now wrong
		// sgdisk agrees on what is damaged and what it falls back to.
		out, err := exec.Command("sgdisk", "-v", img).CombinedOutput() // the verdict is on stderr
		if err != nil || !bytes.Contains(out, []byte("Main header: ERROR")) || !bytes.Contains(out, []byte("Backup header: OK")) {
			t.Errorf("sgdisk -v does not see the damage the test made:\n%s", out)
		}
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		sameLayout(t, d, good)
		wantWarning(t, d, "primary GPT header at byte 512 is damaged (header CRC32 mismatch")
		wantWarning(t, d, fmt.Sprintf("the backup at byte %d is used", backupHeader))
	})
	t.Run("primary entry array", func(t *testing.T) {
		img := copyImage(t, orig)
		writeAt(t, img, 1024+56, []byte{'X'}) // first entry's name: array CRC now wrong
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		sameLayout(t, d, good)
		wantWarning(t, d, "partition entry array at byte 1024: CRC32 mismatch")
	})
	t.Run("backup header", func(t *testing.T) {
		img := copyImage(t, orig)
		writeAt(t, img, backupHeader+60, []byte{0x5A})
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		sameLayout(t, d, good)
		wantWarning(t, d, fmt.Sprintf("backup GPT header at byte %d is damaged", backupHeader))
	})
	t.Run("both headers", func(t *testing.T) {
		img := copyImage(t, orig)
		writeAt(t, img, 512+60, []byte{0x5A})
		writeAt(t, img, backupHeader, []byte("XFI PART"))
		_, err := readImage(t, img, 512)
		var pe *Error
		if !errors.As(err, &pe) {
			t.Fatalf("error %v, want *Error", err)
		}
		if pe.Offset != 512 || !strings.Contains(pe.Msg, "primary header at byte 512: header CRC32 mismatch") ||
			!strings.Contains(pe.Msg, fmt.Sprintf("backup header at byte %d: no \"EFI PART\" signature", backupHeader)) {
			t.Errorf("unclear error: %v", err)
		}
	})
	t.Run("disk grew", func(t *testing.T) {
		// An image copied to a larger disk: the backup stays where it was.
		img := copyImage(t, orig)
		if err := os.Truncate(img, 40<<20); err != nil {
			t.Fatal(err)
		}
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		sameLayout(t, d, good)
		wantWarning(t, d, fmt.Sprintf("the backup GPT header is at LBA %d, not at the last LBA %d", lastLBA, 40<<20/512-1))
		if len(d.Warnings) != 1 {
			t.Errorf("warnings %q", d.Warnings)
		}
	})
	t.Run("disk shrank", func(t *testing.T) {
		img := copyImage(t, orig)
		if err := os.Truncate(img, 24<<20); err != nil {
			t.Fatal(err)
		}
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		sameLayout(t, d, good)
		wantWarning(t, d, "the GPT was made for a disk of at least 65503 sectors; this one has 49152")
		wantWarning(t, d, "places the backup at LBA 65535, past the end of the disk (last LBA 49151)")
		if len(d.Warnings) != 2 {
			t.Errorf("warnings %q", d.Warnings)
		}
	})
	t.Run("hybrid MBR", func(t *testing.T) {
		img := copyImage(t, orig)
		run(t, "sgdisk", "-h", "1", img)
		st := sfdiskDump(t, img)
		if st.PartitionTable.Label != "gpt" {
			t.Fatalf("sfdisk sees %s", st.PartitionTable.Label)
		}
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		sameLayout(t, d, good)
		wantWarning(t, d, "hybrid MBR")
	})
	t.Run("partition over the primary array", func(t *testing.T) {
		img := copyImage(t, orig)
		rewriteGPT(t, img, 512, func(a []byte) { binary.LittleEndian.PutUint64(a[32:], 20) })
		wantError(t, img, 1024, "partition 1 (bytes [10240, 5242880)) overlaps the primary GPT partition array (bytes [1024, 17408))")
	})
	t.Run("partition over the backup header", func(t *testing.T) {
		img := copyImage(t, orig)
		rewriteGPT(t, img, 512, func(a []byte) { binary.LittleEndian.PutUint64(a[128+40:], uint64(lastLBA)) })
		wantError(t, img, 1024+128, "partition 2 (bytes [5242880, 33554432)) overlaps the backup GPT partition array")
	})
	t.Run("partition past the end", func(t *testing.T) {
		img := copyImage(t, orig)
		rewriteGPT(t, img, 512, func(a []byte) { binary.LittleEndian.PutUint64(a[128+40:], uint64(lastLBA+100)) })
		wantError(t, img, 1024+128, "partition 2 (LBAs 10240–65635) extends past the end of the disk (65536 sectors of 512 bytes)")
	})
	t.Run("overlapping partitions", func(t *testing.T) {
		img := copyImage(t, orig)
		rewriteGPT(t, img, 512, func(a []byte) { binary.LittleEndian.PutUint64(a[128+32:], 4096) })
		wantError(t, img, 1024+128, "partition 2 (bytes [2097152, 9437184)) overlaps partition 1 (bytes [1048576, 5242880))")
	})
	t.Run("end before start", func(t *testing.T) {
		img := copyImage(t, orig)
		rewriteGPT(t, img, 512, func(a []byte) { binary.LittleEndian.PutUint64(a[40:], 100) })
		wantError(t, img, 1024, "partition 1 ends (LBA 100) before it starts (LBA 2048)")
	})
}

// sameLayout checks that two reads found the same partitions.
func sameLayout(t *testing.T, got, want *Disk) {
	t.Helper()
	if got.Table != want.Table || got.DiskGUID != want.DiskGUID || len(got.Partitions) != len(want.Partitions) {
		t.Fatalf("layout differs: %+v\nwant %+v", got, want)
	}
	for i := range got.Partitions {
		g, w := got.Partitions[i], want.Partitions[i]
		g.Filesystem, w.Filesystem = nil, nil
		if g != w {
			t.Errorf("partition %d: %+v, want %+v", i, g, w)
		}
	}
}

func wantWarning(t *testing.T, d *Disk, substr string) {
	t.Helper()
	for _, w := range d.Warnings {
		if strings.Contains(w, substr) {
			return
		}
	}
	t.Errorf("no warning containing %q in %q", substr, d.Warnings)
}

func wantError(t *testing.T, img string, off int64, msg string) {
	t.Helper()
	d, err := readImage(t, img, 512)
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("got %+v, %v; want *Error %q", d, err, msg)
	}
	if pe.Offset != off || !strings.Contains(pe.Msg, msg) {
		t.Errorf("error %q at %d, want %q at %d", pe.Msg, pe.Offset, msg, off)
	}
}

// TestReadGPT4096 reads a GPT with 4096-byte logical sectors, written by sgdisk to a loop device
// that presents 4096-byte sectors: through the device (ioctls) and through the image file (sector
// size found from the GPT header).
func TestReadGPT4096(t *testing.T) {
	needTool(t, "sgdisk")
	img := newImage(t, "4k.img", 64<<20)
	dev := losetup(t, img, 4096)
	run(t, "sgdisk", "-o", "-n", "1:256:+16M", "-t", "1:ef00", "-c", "1:EFI", "-n", "2:0:+16M", "-c", "2:root", "-A", "2:set:2", dev)
	st := sfdiskDump(t, dev)
	if st.PartitionTable.SectorSize != 4096 {
		t.Fatalf("loop device sector size %d", st.PartitionTable.SectorSize)
	}
	// A FAT with 4096-byte sectors (what a 4Kn disk's EFI partition needs) and an ext4.
	efi := newImage(t, "efi", 16<<20)
	run(t, "mkfs.vfat", "-S", "4096", "-n", "EFI4K", efi)
	ddInto(t, img, st.PartitionTable.Partitions[0].Start*4096, efi)
	run(t, "mkfs.ext4", "-F", "-q", "-b", "4096", "-L", "root4k", "-E",
		fmt.Sprintf("offset=%d", st.PartitionTable.Partitions[1].Start*4096), img, "16M")

	viaDev, err := ReadPath(dev)
	if err != nil {
		t.Fatal(err)
	}
	if viaDev.LogicalSectorSize != 4096 || viaDev.PhysicalSectorSize != 4096 || viaDev.Size != 64<<20 {
		t.Errorf("device geometry %d/%d, %d bytes", viaDev.LogicalSectorSize, viaDev.PhysicalSectorSize, viaDev.Size)
	}
	if viaDev.Model != "" || viaDev.Serial != "" || viaDev.WWN != "" {
		t.Errorf("a loop device has no identity, got %q %q %q", viaDev.Model, viaDev.Serial, viaDev.WWN)
	}
	compareGPT(t, viaDev, dev)

	viaFile, err := ReadPath(img)
	if err != nil {
		t.Fatal(err)
	}
	if viaFile.LogicalSectorSize != 4096 || viaFile.PhysicalSectorSize != 4096 {
		t.Errorf("image sector size %d/%d, want 4096 found from the GPT", viaFile.LogicalSectorSize, viaFile.PhysicalSectorSize)
	}
	compareGPT(t, viaFile, dev)
	for _, p := range viaFile.Partitions {
		checkAgainstBlkid(t, fmt.Sprintf("partition %d", p.Number), p.Filesystem, img, p.Start, p.Size)
	}

	// Read as 512-byte sectors, the protective MBR promises a GPT that is not there: an error,
	// not an empty disk.
	if _, err := readImage(t, img, 512); err == nil || !strings.Contains(err.Error(), "no valid GPT") {
		t.Errorf("reading a 4Kn GPT with 512-byte sectors: %v", err)
	}
}

// TestGPTTypeNamesKnownToSgdisk checks every type GUID in the name table against sgdisk's own
// table, so that a typo in a GUID cannot hide.
func TestGPTTypeNamesKnownToSgdisk(t *testing.T) {
	img := newImage(t, "types.img", 4<<20)
	for guid := range gptTypeNames {
		// -P: pretend, nothing is written (a write makes sgdisk sync and wait a second).
		out := run(t, "sgdisk", "-P", "-o", "-n", "1:0:0", "-t", "1:"+guid, "-i", "1", img)
		if !strings.Contains(out, "Partition GUID code: "+guid+" (") || strings.Contains(out, "(Unknown)") {
			t.Errorf("sgdisk does not know %s (%s):\n%s", guid, gptTypeNames[guid], out)
		}
	}
}

func TestFormatGUIDMixedEndian(t *testing.T) {
	// The EFI System type as stored on disk: the first three fields are little-endian.
	b := []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}
	if got := formatGUID(b); got != "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" {
		t.Errorf("formatGUID = %s", got)
	}
}

func TestDecodeGPTName(t *testing.T) {
	enc := func(units ...uint16) []byte {
		b := make([]byte, gptNameLen)
		for i, u := range units {
			binary.LittleEndian.PutUint16(b[2*i:], u)
		}
		return b
	}
	cases := []struct {
		in   []byte
		want string
	}{
		{enc('a', 'b', 0, 'c'), "ab"},        // stops at the first NUL
		{enc(0xD83D, 0xDE00), "😀"},           // surrogate pair
		{enc('x', 0xD83D), "x\uFFFD"},        // unpaired high surrogate at the end
		{enc(0xDE00, 'y'), "\uFFFDy"},        // lone low surrogate
		{enc(0xD83D, 'z'), "\uFFFDz"},        // high surrogate not followed by a low one
		{enc(), ""},                          // empty
		{enc(0x00E9, 0x4E2D, 0x6587), "é中文"}, // BMP
		{[]byte{0x41}, ""},                   // odd trailing byte
	}
	for _, c := range cases {
		if got := decodeGPTName(c.in); got != c.want {
			t.Errorf("decodeGPTName(% x) = %q, want %q", c.in, got, c.want)
		}
	}
}
