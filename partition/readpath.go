package partition

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/cauldron-dr/cauldron/internal/plainfile"
)

// ReadPath opens a block device or a raw image file read-only and reads its layout.
//
// For a block device the size and the logical and physical sector sizes come from the kernel
// (BLKGETSIZE64, BLKSSZGET, BLKPBSZGET), and Model, Serial and WWN from sysfs where the driver
// provides them. An image file has no sector size of its own: it is taken as 512/512, unless a GPT
// is found with 4096-byte sectors and not with 512-byte ones (an image of a 4Kn disk).
func ReadPath(path string) (*Disk, error) {
	// A named pipe would block the open below for good: only a file or a block device is a disk.
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() && (fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0) {
		return nil, fmt.Errorf("partition: %s is %s, not a disk or an image file", path, plainfile.Describe(fi.Mode()))
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("partition: %w", err)
	}
	switch {
	case fi.Mode().IsRegular():
		size := fi.Size()
		d, err := Read(f, size, imageSectorSize(f, size))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return d, nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		g, err := blockGeometry(f)
		if err != nil {
			return nil, fmt.Errorf("partition: %s: %w", path, err)
		}
		d, err := Read(f, g.size, g.logical)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		d.PhysicalSectorSize = max(g.physical, g.logical)
		if name := blockDeviceName(fi, path); name != "" {
			d.Model, d.Serial, d.WWN = sysfsIdentity(sysfsRoot, name)
		}
		return d, nil
	}
	return nil, fmt.Errorf("partition: %s is neither a block device nor a regular file", path)
}

// geometry is what the kernel says about a block device.
type geometry struct {
	size              int64
	logical, physical int
}

// imageSectorSize guesses the logical sector size of a raw disk image: 4096 when a valid GPT
// header (primary at LBA 1, or backup at the last LBA) exists for 4096-byte sectors and none for
// 512-byte ones, else 512.
func imageSectorSize(r io.ReaderAt, size int64) int {
	if hasGPTHeader(r, size, 512) {
		return 512
	}
	if hasGPTHeader(r, size, 4096) {
		return 4096
	}
	return 512
}

func hasGPTHeader(r io.ReaderAt, size int64, lss int) bool {
	if size < 2*int64(lss) {
		return false
	}
	rd := &reader{r: r, size: size, lss: int64(lss), sectors: uint64(size / int64(lss)), d: &Disk{}}
	if _, err := rd.readGPTHeader(1); err == nil {
		return true
	}
	_, err := rd.readGPTHeader(rd.sectors - 1)
	return err == nil
}

// sysfsRoot is where sysfs is mounted; a variable so that tests can point it at a fake tree.
var sysfsRoot = "/sys"

// sysfsIdentity reads the model, serial and WWN of block device name from sysfs. Drivers publish
// them in different places: SCSI/SATA under device/ (the serial only as VPD page 0x80), NVMe the
// model and serial on the controller (device/) and the WWID on the namespace, virtio-blk the
// serial on the block device itself. Missing attributes are left empty.
func sysfsIdentity(root, name string) (model, serial, wwn string) {
	dir := filepath.Join(root, "class", "block", name)
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil {
			return ""
		}
		return strings.TrimSpace(strings.ToValidUTF8(string(b), ""))
	}
	model = read("device/model")
	serial = read("device/serial")
	if serial == "" {
		serial = read("serial")
	}
	if serial == "" {
		serial = vpdSerial(filepath.Join(dir, "device", "vpd_pg80"))
	}
	wwn = read("device/wwid")
	if wwn == "" {
		wwn = read("wwid")
	}
	return model, serial, wwn
}

// vpdSerial reads the unit serial number from a SCSI VPD page 0x80 (4-byte header, then the
// ASCII serial, length in byte 3).
func vpdSerial(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) < 4 || b[1] != 0x80 {
		return ""
	}
	n := min(int(b[3]), len(b)-4)
	return strings.TrimSpace(strings.ToValidUTF8(string(b[4:4+n]), ""))
}
