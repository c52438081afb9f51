package partition

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// These tests prove the go-diskfs v1.9.4 limitations that made this package parse GPT by hand
// (see the package comment), and that Read handles the same disks. If one starts failing after a
// go-diskfs upgrade, the limitation is gone: update the package comment.

const linuxFS = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

func writeGPTFile(t testing.TB, g tGPT) string {
	t.Helper()
	img := newImage(t, "hand.img", g.size)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := g.write(f); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestHandBuiltGPTValidForSgdisk(t *testing.T) {
	img := writeGPTFile(t, tGPT{lss: 512, size: 8 << 20, diskGUID: testDiskGUID, parts: []tGPTPart{
		{typ: linuxFS, guid: testEFIGUID, first: 2048, last: 4095, name: "hand"},
	}})
	out := run(t, "sgdisk", "-v", img)
	if !strings.Contains(out, "No problems found") {
		t.Fatalf("sgdisk -v on the hand-built GPT:\n%s", out)
	}
	d, err := readImage(t, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	compareGPT(t, d, img)
}

// A GPT with 256-byte entries and a 128-byte header is valid UEFI (entry size 128 × 2^n, header
// size up to a sector); sgdisk reads it. go-diskfs refuses both.
func TestGoDiskfsRefusesLargerGPTEntries(t *testing.T) {
	for _, g := range []tGPT{
		{entrySize: 256, entryCount: 64},
		{headerSize: 128},
	} {
		name := fmt.Sprintf("entry size %d, header size %d", g.entrySize, g.headerSize)
		g.lss, g.size, g.diskGUID = 512, 8<<20, testDiskGUID
		g.parts = []tGPTPart{{}, {typ: linuxFS, guid: testEFIGUID, first: 2048, last: 4095, name: "wide 😀", attrs: 1 << 62}}
		img := writeGPTFile(t, g)
		if out := run(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found") {
			t.Errorf("%s: sgdisk -v:\n%s", name, out)
		}
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(d.Partitions) != 1 || d.Partitions[0].Number != 2 || d.Partitions[0].Name != "wide 😀" || d.Partitions[0].Attributes != 1<<62 {
			t.Errorf("%s: %+v", name, d.Partitions)
		}
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gpt.Read(f, 512, 512); err == nil {
			t.Errorf("%s: go-diskfs now reads this GPT: update the package comment", name)
		}
		f.Close()
	}
}

// A header (with a valid CRC) that asks for an absurd entry array makes go-diskfs allocate it
// before any check: here a make() that panics. Read refuses it with an error.
func TestGoDiskfsPanicsOnHugeEntryArray(t *testing.T) {
	img := writeGPTFile(t, tGPT{lss: 512, size: 8 << 20, diskGUID: testDiskGUID})
	for _, lba := range []int64{1, 8<<20/512 - 1} {
		h := readFileAt(t, img, lba*512, 92)
		binary.LittleEndian.PutUint32(h[80:], 0xFFFFFFFF)
		binary.LittleEndian.PutUint32(h[84:], 0x80000000)
		binary.LittleEndian.PutUint32(h[16:], 0)
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
		writeAt(t, img, lba*512, h)
	}
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	panicked := func() (p any) {
		defer func() { p = recover() }()
		_, _ = gpt.Read(f, 512, 512)
		return nil
	}()
	if panicked == nil {
		t.Error("go-diskfs no longer panics on a huge entry array: update the package comment")
	} else if !strings.Contains(fmt.Sprint(panicked), "makeslice") {
		t.Errorf("go-diskfs panicked, but not in the allocation: %v", panicked)
	}
	_, err = readImage(t, img, 512)
	var pe *Error
	if !errors.As(err, &pe) || !strings.Contains(pe.Msg, "partition entry array of 4294967295 × 2147483648 bytes is larger than") {
		t.Errorf("Read: %v", err)
	}
}

// go-diskfs bug 5 of the platform notes: writing a name of astral-plane characters that fits in
// 36 runes but not in 36 UTF-16 units indexes past the entry and panics. Reading such names
// (TestReadGPTAgainstSgdisk, TestDecodeGPTName) is where this package must not fail.
func TestGoDiskfsAstralNameWritePanics(t *testing.T) {
	img := newImage(t, "w.img", 8<<20)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: 4095, Type: gpt.LinuxFilesystem, Name: strings.Repeat("😀", 19)},
	}}
	panicked := func() (p any) {
		defer func() { p = recover() }()
		_ = table.Write(f, 8<<20)
		return nil
	}()
	if panicked == nil {
		t.Error("go-diskfs no longer panics on a 19-character astral name: update the platform notes")
	}
}
