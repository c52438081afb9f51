package tib_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/tib"
)

// loop attaches an image file to a loop device and detaches it when the test ends.
func loop(t *testing.T, img string) string {
	t.Helper()
	testenv.NeedTools(t, "losetup")
	out, err := exec.Command("losetup", "-f", "--show", img).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") != "" || os.Getenv("CAULDRON_CORPUS") != "" {
			t.Fatalf("losetup: %v\n%s", err, out)
		}
		t.Skipf("no loop devices here: %s", out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev
}

func TestCaptureAndRestoreBlockDevices(t *testing.T) {
	dir := t.TempDir()
	s := makeSample(t, dir, 11)
	r := newRepo(t, dir, "")
	// Capture from a block device (a loop device over the sample) as from a real disk.
	g := capture(t, r, "m", loop(t, s.path))
	if g.Disks[0].Layout.Table != "gpt" || len(g.Disks[0].Layout.Partitions) != 3 {
		t.Fatalf("layout read from the loop device: %+v", g.Disks[0].Layout)
	}

	// A target that is a loop device over a file of garbage, beside a decoy device that must stay
	// untouched byte for byte.
	fi, _ := os.Stat(s.path)
	garbage := bytes.Repeat([]byte("old disk "), int(fi.Size())/9+1)[:fi.Size()]
	targetImg, decoyImg := filepath.Join(dir, "target.img"), filepath.Join(dir, "decoy.img")
	writeFile(t, targetImg, garbage)
	writeFile(t, decoyImg, garbage)
	dev := loop(t, targetImg)
	loop(t, decoyImg)
	st := restore(t, r, g, dev)
	if st.Zeroed == 0 {
		t.Error("nothing zeroed on a garbage block device")
	}
	exec.Command("losetup", "-d", dev).Run()
	checkRestored(t, s, targetImg, dir)
	if b, _ := os.ReadFile(decoyImg); !bytes.Equal(b, garbage) {
		t.Fatal("the decoy device was written")
	}

	// A device with a mounted filesystem is refused, and nothing is written to it.
	testenv.NeedTools(t, "mkfs.ext4", "mount", "umount")
	busyImg := filepath.Join(dir, "busy.img")
	run(t, "truncate", "-s", "128M", busyImg)
	run(t, "mkfs.ext4", "-q", "-F", busyImg)
	busy := loop(t, busyImg)
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o755)
	run(t, "mount", busy, mnt)
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	before := readRange(t, busyImg, 0, 1024)
	_, err := r.RestoreDisk(ctx, tibRestore(g, busy))
	if err == nil || !strings.Contains(err.Error(), "mounted") {
		t.Fatalf("restore onto a mounted device: %v", err)
	}
	if !bytes.Equal(before, readRange(t, busyImg, 0, 1024)) {
		t.Fatal("the mounted device's first sector was written")
	}
}

func tibRestore(g *tib.Generation, to string) tib.RestoreOptions {
	return tib.RestoreOptions{Generation: g, Disk: "disk0", Target: to}
}
