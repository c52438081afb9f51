package partition

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestMoveBackupGPT(t *testing.T) {
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Fatal("sgdisk is missing: install gdisk (make deps)")
	}
	img := filepath.Join(t.TempDir(), "d.img")
	if out, err := exec.Command("truncate", "-s", "64M", img).CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	if out, err := exec.Command("sgdisk", "-n1:1M:+20M", "-c1:one", "-n2:0:+30M", "-c2:two", img).CombinedOutput(); err != nil {
		t.Fatal(err, string(out))
	}
	before, err := ReadPath(img)
	if err != nil {
		t.Fatal(err)
	}
	// The disk grows to 100 MiB, as when a 64 MiB disk is restored onto a bigger one.
	if err := os.Truncate(img, 100<<20); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if strings.Contains(string(out), "No problems found") {
		t.Fatal("sgdisk -v found no problem before the move: the test proves nothing")
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := MoveBackupGPT(f, 64<<20, 100<<20, 512); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command("sgdisk", "-v", img).CombinedOutput(); err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v after the move:\n%s", out)
	}
	after, err := ReadPath(img)
	if err != nil {
		t.Fatal(err)
	}
	if after.DiskGUID != before.DiskGUID || len(after.Partitions) != 2 {
		t.Fatalf("identity or partitions changed: %+v", after)
	}
	for i := range after.Partitions {
		a, b := after.Partitions[i], before.Partitions[i]
		if a.Start != b.Start || a.Size != b.Size || a.GUID != b.GUID || a.Name != b.Name {
			t.Fatalf("partition %d changed: %+v → %+v", i+1, b, a)
		}
	}
	if after.LastUsableLBA <= before.LastUsableLBA {
		t.Fatalf("last usable LBA %d did not grow from %d", after.LastUsableLBA, before.LastUsableLBA)
	}
}
