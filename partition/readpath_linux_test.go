package partition

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeSysfs writes files (path relative to root → content) under a temporary sysfs root.
func fakeSysfs(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// The attribute layouts below are those of the kernel's SCSI disk, NVMe and virtio-blk drivers.
func TestSysfsIdentity(t *testing.T) {
	root := fakeSysfs(t, map[string]string{
		"class/block/sda/device/model":      "QEMU HARDDISK   \n",
		"class/block/sda/device/vpd_pg80":   "\x00\x80\x00\x0aQM00001   ",
		"class/block/sda/device/wwid":       "t10.ATA     QEMU HARDDISK                           QM00001\n",
		"class/block/nvme0n1/device/model":  "Samsung SSD 980 1TB                     \n",
		"class/block/nvme0n1/device/serial": "S64ANS0T123456X     \n",
		"class/block/nvme0n1/wwid":          "eui.002538b111b2c3d4\n",
		"class/block/vda/serial":            "cauldron-vda\n",
		"class/block/sdb/device/vpd_pg80":   "\x00\x83\x00\x04junk", // another page: not a serial
	})
	for _, c := range []struct{ name, model, serial, wwn string }{
		{"sda", "QEMU HARDDISK", "QM00001", "t10.ATA     QEMU HARDDISK                           QM00001"},
		{"nvme0n1", "Samsung SSD 980 1TB", "S64ANS0T123456X", "eui.002538b111b2c3d4"},
		{"vda", "", "cauldron-vda", ""},
		{"sdb", "", "", ""},
		{"missing", "", "", ""},
	} {
		m, s, w := sysfsIdentity(root, c.name)
		if m != c.model || s != c.serial || w != c.wwn {
			t.Errorf("%s: %q %q %q, want %q %q %q", c.name, m, s, w, c.model, c.serial, c.wwn)
		}
	}
}

// TestReadPathBlockDevice reads an MBR through a loop device, with sysfs pointed at a fake tree
// that gives the device an identity: the device is found by its device number, as for a disk
// opened through /dev/disk/by-id.
func TestReadPathBlockDevice(t *testing.T) {
	img := newImage(t, "disk.img", 16<<20)
	runIn(t, "label: dos\nlabel-id: 0xcafe0001\nstart=2048, type=83\n", "sfdisk", "-q", img)
	dev := losetup(t, img, 512)
	var st syscall.Stat_t
	if err := syscall.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	if got := blockDeviceName(mustStat(t, dev), dev); got != filepath.Base(dev) {
		t.Errorf("block device name %q, want %q", got, filepath.Base(dev))
	}
	link := filepath.Join(t.TempDir(), "by-id-link")
	if err := os.Symlink(dev, link); err != nil {
		t.Fatal(err)
	}
	root := fakeSysfs(t, map[string]string{
		"class/block/fakedisk/device/model":  "FAKE MODEL\n",
		"class/block/fakedisk/device/serial": "SER123\n",
		"class/block/fakedisk/device/wwid":   "naa.5000c500a1b2c3d4\n",
	})
	if err := os.MkdirAll(filepath.Join(root, "dev", "block"), 0o755); err != nil {
		t.Fatal(err)
	}
	majmin := fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	if err := os.Symlink("../../devices/virtual/block/fakedisk", filepath.Join(root, "dev", "block", majmin)); err != nil {
		t.Fatal(err)
	}
	old := sysfsRoot
	sysfsRoot = root
	t.Cleanup(func() { sysfsRoot = old })

	d, err := ReadPath(link)
	if err != nil {
		t.Fatal(err)
	}
	if d.Model != "FAKE MODEL" || d.Serial != "SER123" || d.WWN != "naa.5000c500a1b2c3d4" {
		t.Errorf("identity %q %q %q", d.Model, d.Serial, d.WWN)
	}
	if d.Table != TableMBR || d.Signature != 0xcafe0001 || len(d.Partitions) != 1 || d.Size != 16<<20 ||
		d.LogicalSectorSize != 512 || d.PhysicalSectorSize < 512 {
		t.Errorf("read %+v", d)
	}
}

func mustStat(t *testing.T, p string) os.FileInfo {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}

func TestReadPathRefuses(t *testing.T) {
	for _, p := range []string{"/dev/null", t.TempDir(), filepath.Join(t.TempDir(), "missing")} {
		if d, err := ReadPath(p); err == nil {
			t.Errorf("ReadPath(%s) = %+v", p, d)
		}
	}
	// A damaged image names itself in the error.
	img := newImage(t, "bad.img", 8<<20)
	m := newMemDisk(8 << 20)
	m.putMBR(0, tEntry{0, 0x83, 2048, 1 << 20})
	sec := make([]byte, 512)
	if _, err := m.ReadAt(sec, 0); err != nil {
		t.Fatal(err)
	}
	writeAt(t, img, 0, sec)
	if _, err := ReadPath(img); err == nil || !strings.Contains(err.Error(), img) || !strings.Contains(err.Error(), "past the end of the disk") {
		t.Errorf("ReadPath on a bad image: %v", err)
	}
}

func TestImageSectorSize(t *testing.T) {
	for _, lss := range []int64{512, 4096} {
		g := tGPT{lss: lss, size: 16 << 20, diskGUID: testDiskGUID, parts: []tGPTPart{{typ: linuxFS, guid: testEFIGUID, first: 1 << 20 / uint64(lss), last: 2<<20/uint64(lss) - 1}}}
		img := writeGPTFile(t, g)
		d, err := ReadPath(img)
		if err != nil {
			t.Fatal(err)
		}
		if int64(d.LogicalSectorSize) != lss || len(d.Partitions) != 1 || d.Partitions[0].Start != 1<<20 {
			t.Errorf("lss %d: read %+v", lss, d)
		}
		// With the primary header destroyed, the backup still tells the sector size.
		writeAt(t, img, lss, make([]byte, 8))
		d, err = ReadPath(img)
		if err != nil {
			t.Fatal(err)
		}
		if int64(d.LogicalSectorSize) != lss || len(d.Warnings) == 0 {
			t.Errorf("lss %d, primary destroyed: read %+v", lss, d)
		}
	}
}
