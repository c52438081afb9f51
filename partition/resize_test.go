package partition

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// TestResizeFilesystem grows and shrinks volumes in image files with ResizeFilesystem, judged by
// each filesystem's own checker and its own report of its size.
func TestResizeFilesystem(t *testing.T) {
	if os.Geteuid() != 0 {
		if strictEnv() {
			t.Fatal("growing xfs and btrfs needs a mount: run as root")
		}
		t.Skip("growing xfs and btrfs needs a mount (root)")
	}
	field := func(out, name string) int64 {
		for _, l := range strings.Split(out, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), name); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(v), "=:")), 10, 64)
				if err == nil {
					return n
				}
			}
		}
		t.Fatalf("no %q in\n%s", name, out)
		return 0
	}
	for _, c := range []struct {
		fs            string
		mkfs          []string
		size, newSize int64
		sizeOf        func(t *testing.T, img string) int64
	}{
		{"ext4", []string{"mkfs.ext4", "-q", "-F", "-b", "4096"}, 64 * MiB, 160 * MiB, func(t *testing.T, img string) int64 {
			run(t, "e2fsck", "-fn", img)
			out := run(t, "dumpe2fs", "-h", img)
			return field(out, "Block count:") * field(out, "Block size:")
		}},
		{"ext4", []string{"mkfs.ext4", "-q", "-F", "-b", "4096"}, 160 * MiB, 96 * MiB, func(t *testing.T, img string) int64 {
			run(t, "e2fsck", "-fn", img)
			out := run(t, "dumpe2fs", "-h", img)
			return field(out, "Block count:") * field(out, "Block size:")
		}},
		{"xfs", []string{"mkfs.xfs", "-q", "-f"}, 320 * MiB, 512 * MiB, func(t *testing.T, img string) int64 {
			run(t, "xfs_repair", "-n", img)
			out := run(t, "xfs_db", "-r", "-c", "sb 0", "-c", "p dblocks", "-c", "p blocksize", img)
			return field(out, "dblocks") * field(out, "blocksize")
		}},
		{"btrfs", []string{"mkfs.btrfs", "-q", "-f"}, 160 * MiB, 256 * MiB, func(t *testing.T, img string) int64 {
			run(t, "btrfs", "check", "--readonly", img)
			return field(run(t, "btrfs", "inspect-internal", "dump-super", img), "total_bytes")
		}},
		{"swap", []string{"mkswap", "-L", "sw", "-U", "0e5c2d3b-8f9a-4b1c-9d2e-3f4a5b6c7d8e"}, 64 * MiB, 32 * MiB, func(t *testing.T, img string) int64 {
			out := run(t, "blkid", "-p", "-o", "export", img)
			if !strings.Contains(out, "LABEL=sw") || !strings.Contains(out, "UUID=0e5c2d3b-8f9a-4b1c-9d2e-3f4a5b6c7d8e") {
				t.Errorf("mkswap lost the label or UUID:\n%s", out)
			}
			b := readFileAt(t, img, 1024+4, 4)
			return (int64(b[0]) | int64(b[1])<<8 | int64(b[2])<<16 | int64(b[3])<<24 + 1) * 4096
		}},
	} {
		t.Run(c.fs+" "+strconv.FormatInt(c.size>>20, 10)+"→"+strconv.FormatInt(c.newSize>>20, 10)+"MiB", func(t *testing.T) {
			needTool(t, c.mkfs[0])
			img := newImage(t, "vol.img", c.size)
			run(t, c.mkfs[0], append(c.mkfs[1:], img)...)
			if c.newSize > c.size {
				if err := os.Truncate(img, c.newSize); err != nil {
					t.Fatal(err)
				}
			}
			label, uuid := "", ""
			if c.fs == "swap" {
				label, uuid = "sw", "0e5c2d3b-8f9a-4b1c-9d2e-3f4a5b6c7d8e"
			}
			if err := ResizeFilesystem(img, c.fs, c.newSize, label, uuid); err != nil {
				t.Fatal(err)
			}
			if got := c.sizeOf(t, img); got != c.newSize {
				t.Errorf("%s is %d bytes after resizing to %d", c.fs, got, c.newSize)
			}
		})
	}
	if err := ResizeFilesystem("/nonexistent", "exfat", MiB, "", ""); err == nil || !strings.Contains(err.Error(), "cannot resize exfat") {
		t.Errorf("exfat: %v", err)
	}
}
