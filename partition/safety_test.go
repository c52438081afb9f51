package partition

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The refusals that need real devices and mounts are in TestApplyRefuses (write_test.go), which
// also checks that a refused target keeps every byte.

// TestCheckTargetStacked checks the refusal of a disk with something stacked on a partition (an
// active LVM volume group, dm-crypt or MD) and nothing mounted. This machine's kernel has no
// device-mapper, so sysfs is faked around a real loop device: the loop device's number leads to
// a disk whose partition has dm-0 among its holders, as the kernel lays it out.
func TestCheckTargetStacked(t *testing.T) {
	dev := losetup(t, newImage(t, "stacked.img", 8<<20), 512)
	num, err := devNumber(dev)
	if err != nil {
		t.Fatal(err)
	}
	root := fakeSysfs(t, map[string]string{
		"devices/virtual/block/fake/dev":             num + "\n",
		"devices/virtual/block/fake/fake1/dev":       "259:77\n",
		"devices/virtual/block/fake/fake1/partition": "1\n",
		"devices/virtual/block/dm-0/dev":             "253:0\n",
	})
	for link, to := range map[string]string{
		"dev/block/" + num: "../../devices/virtual/block/fake",
		"devices/virtual/block/fake/fake1/holders/dm-0": "../../../dm-0",
	} {
		p := filepath.Join(root, link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(to, p); err != nil {
			t.Fatal(err)
		}
	}
	old := sysfsRoot
	sysfsRoot = root
	t.Cleanup(func() { sysfsRoot = old })
	if err := CheckTarget(dev, nil); err == nil || !strings.Contains(err.Error(), "dm-0 is stacked on it") {
		t.Errorf("CheckTarget with dm-0 on partition 1: %v", err)
	}
	// Without the holder the same disk is a valid target: the refusal above is the holder's.
	if err := os.Remove(filepath.Join(root, "devices/virtual/block/fake/fake1/holders/dm-0")); err != nil {
		t.Fatal(err)
	}
	if err := CheckTarget(dev, nil); err != nil {
		t.Errorf("CheckTarget without the holder: %v", err)
	}
}

func TestInProtected(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(repo, link); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		file    string
		protect []string
		want    bool
	}{
		{filepath.Join(repo, "x.img"), []string{repo}, true},
		{filepath.Join(repo, "sub", "x.img"), []string{link}, true}, // protected through a symlink
		{repo, []string{repo}, true},
		{repo + "2/x.img", []string{repo}, false}, // a sibling with the same prefix
		{filepath.Join(dir, "x.img"), []string{repo}, false},
		{filepath.Join(dir, "x.img"), nil, false},
	} {
		if _, got := inProtected(c.file, c.protect); got != c.want {
			t.Errorf("inProtected(%s, %v) = %v", c.file, c.protect, got)
		}
	}
}
