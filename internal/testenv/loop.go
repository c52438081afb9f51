package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Loop devices are shared by every test process on the machine, and go test runs several
// packages at once: a device a test detached early may already stand for another test's image
// when the first test's cleanup detaches it again by name, pulling that disk away mid-test (seen
// as a 0-byte device, or a table read from nothing). AttachLoop and DetachLoop detach a device
// only while it still stands for the image (and offset) it was attached to.

type loopID struct{ backing, offset string }

var attached sync.Map // device → loopID

// AttachLoop attaches img to a free loop device (losetup --find --show, with args such as
// --offset, --sizelimit or --sector-size before img) and detaches it when the test ends.
func AttachLoop(t testing.TB, img string, args ...string) string {
	t.Helper()
	NeedTools(t, "losetup")
	out, err := exec.Command("losetup", append(append([]string{"--find", "--show"}, args...), img)...).CombinedOutput()
	if err != nil {
		SkipOrFail(t, "losetup %s: %v: %s", img, err, strings.TrimSpace(string(out)))
	}
	dev := strings.TrimSpace(string(out))
	if id, ok := loopIdentity(dev); ok {
		attached.Store(dev, id)
	}
	t.Cleanup(func() { DetachLoop(dev) })
	return dev
}

// DetachLoop detaches a device AttachLoop attached, now, if it still stands for the same image
// at the same offset; a second call, or one for a device reused since, does nothing.
func DetachLoop(dev string) {
	v, ok := attached.LoadAndDelete(dev)
	if !ok {
		return
	}
	if now, ok := loopIdentity(dev); !ok || now != v.(loopID) {
		return
	}
	exec.Command("partx", "-d", dev).Run() // partitions added through BLKPG outlive the loop otherwise
	exec.Command("losetup", "--detach", dev).Run()
}

func loopIdentity(dev string) (loopID, bool) {
	sys := filepath.Join("/sys/block", filepath.Base(dev), "loop")
	b, err := os.ReadFile(filepath.Join(sys, "backing_file"))
	if err != nil {
		return loopID{}, false
	}
	o, _ := os.ReadFile(filepath.Join(sys, "offset"))
	return loopID{strings.TrimSpace(string(b)), strings.TrimSpace(string(o))}, true
}
