package partition

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// The writer does not use go-diskfs; these tests prove the go-diskfs v1.9.4 bugs that made it so
// (platform notes, bugs 4 and 5) and that this package's writer gets the same disks right. If one
// starts failing after an upgrade, the bug is gone: update the notes and write_table.go's comment.

// Bug 4: on a disk over 2 TiB go-diskfs writes 0x7FFFFFFF into the protective MBR's size field;
// UEFI says 0xFFFFFFFF ("the disk is bigger than this field can say").
func TestWriteProtectiveMBROver2TiB(t *testing.T) {
	const size = 3 << 40 // sparse
	img := newImage(t, "big.img", size)
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	table := &gpt.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, ProtectiveMBR: true, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: 4095, Type: gpt.LinuxFilesystem},
	}}
	if err := table.Write(f, size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if got := binary.LittleEndian.Uint32(readFileAt(t, img, 446+12, 4)); got != 0x7FFFFFFF {
		t.Errorf("go-diskfs now writes %#x as the protective MBR size: bug 4 is fixed, update the notes", got)
	}

	src := windowsGPT(8*GiB, 512)
	p, err := Plan(src, target(size, 512), PlanOptions{Resize: ResizeGrowLast})
	if err != nil {
		t.Fatal(err)
	}
	ours := newImage(t, "ours.img", size)
	if _, err := Apply(ours, p, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint32(readFileAt(t, ours, 446+12, 4)); got != 0xFFFFFFFF {
		t.Errorf("protective MBR size %#x on a 3 TiB disk, want 0xFFFFFFFF", got)
	}
	if out := run(t, "sgdisk", "-v", ours); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v on a 3 TiB GPT:\n%s", out)
	}
	compareSfdisk(t, ours, p.Layout)
}

// Bug 5: go-diskfs panics on a name of astral-plane characters longer than 36 UTF-16 units
// (TestGoDiskfsAstralNameWritePanics). The writer cuts such a name at a character boundary.
func TestWriteAstralName(t *testing.T) {
	src := windowsGPT(8*GiB, 512)
	src.Partitions[2].Name = strings.Repeat("😀", 19) // 38 UTF-16 units
	p, err := Plan(src, target(8*GiB, 512), PlanOptions{Resize: ResizeKeep})
	if err != nil {
		t.Fatal(err)
	}
	img := newImage(t, "astral.img", 8*GiB)
	if _, err := Apply(img, p, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	st := sfdiskDump(t, img)
	for _, sp := range st.PartitionTable.Partitions {
		if nodeNumber(t, sp.Node) == 3 && sp.Name != strings.Repeat("😀", 18) {
			t.Errorf("sfdisk reads the name as %q, want 18 whole characters", sp.Name)
		}
	}
	if out := run(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
}
