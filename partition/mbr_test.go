package partition

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// sfdisk script for an MBR disk with 3 primaries and an extended partition holding 3 logicals.
const mbrScript = `label: dos
label-id: 0x12345678
start=2048, size=16M, type=83, bootable
size=8M, type=82
size=16M, type=7
size=64M, type=5
size=16M, type=83
size=8M, type=fd
size=24M, type=e
`

func makeMBRImage(t testing.TB) string {
	t.Helper()
	img := newImage(t, "mbr.img", 128<<20)
	runIn(t, mbrScript, "sfdisk", "-q", img)
	st := sfdiskDump(t, img)
	at := map[int]int64{}
	for _, p := range st.PartitionTable.Partitions {
		at[nodeNumber(t, p.Node)] = p.Start * 512
	}
	run(t, "mkfs.ext2", "-F", "-q", "-E", fmt.Sprintf("offset=%d", at[1]), "-L", "boot", img, "16M")
	swap := newImage(t, "swap", 8<<20)
	run(t, "mkswap", "-L", "swap1", swap)
	ddInto(t, img, at[2], swap)
	ntfs := newImage(t, "ntfs", 16<<20)
	run(t, "mkntfs", "-F", "-f", "-q", "-L", "Données", "-s", "512", ntfs)
	ddInto(t, img, at[3], ntfs)
	run(t, "mkfs.ext3", "-F", "-q", "-E", fmt.Sprintf("offset=%d", at[5]), "-L", "home", img, "16M")
	fat := newImage(t, "fat", 24<<20)
	run(t, "mkfs.vfat", "-F", "16", "-n", "DATA", fat)
	ddInto(t, img, at[7], fat)
	return img
}

func TestReadMBRAgainstSfdisk(t *testing.T) {
	img := makeMBRImage(t)
	d, err := readImage(t, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Partitions) != 7 {
		t.Fatalf("%d partitions", len(d.Partitions))
	}
	compareMBR(t, d, img)
	if d.BootCode != nil || d.Bootloader != "" || len(d.Warnings) != 0 {
		t.Errorf("boot code %d bytes, loader %q, warnings %q", len(d.BootCode), d.Bootloader, d.Warnings)
	}
	for n, want := range map[int]string{1: "Linux", 2: "Linux swap", 3: "NTFS/exFAT", 4: "Extended", 6: "Linux RAID", 7: "FAT16"} {
		if p := partitionByNumber(d, n); p.TypeName != want {
			t.Errorf("partition %d type name %q, want %q", n, p.TypeName, want)
		}
	}
	// The first EBR, at the extended partition's start, is in a gap (so a capture keeps it).
	if ext := partitionByNumber(d, 4); !inGaps(d.Gaps(), ext.Start) {
		t.Errorf("first EBR at %d not in the gaps %v", ext.Start, d.Gaps())
	}
}

// TestReadMBRType0AgainstSfdisk: an entry of type 0 with a size is a partition for sfdisk (and the
// kernel), so numbering and gaps must count it.
func TestReadMBRType0AgainstSfdisk(t *testing.T) {
	img := newImage(t, "zero.img", 8<<20)
	runIn(t, "label: dos\nstart=2048, size=1M, type=0\nstart=4096, size=1M, type=83\n", "sfdisk", "-q", img)
	d, err := readImage(t, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	compareMBR(t, d, img)
}

// compareMBR checks a read MBR disk against sfdisk --json and each data partition's filesystem
// against blkid.
func compareMBR(t *testing.T, d *Disk, img string) {
	t.Helper()
	pt := sfdiskDump(t, img).PartitionTable
	if d.Table != TableMBR || pt.Label != "dos" {
		t.Fatalf("table %s, sfdisk says %s", d.Table, pt.Label)
	}
	if got := fmt.Sprintf("0x%08x", d.Signature); got != pt.ID {
		t.Errorf("disk signature %s, sfdisk says %s", got, pt.ID)
	}
	if len(d.Partitions) != len(pt.Partitions) {
		t.Fatalf("%d partitions, sfdisk lists %d", len(d.Partitions), len(pt.Partitions))
	}
	var data []Extent
	for i, sp := range pt.Partitions {
		n := nodeNumber(t, sp.Node)
		p := d.Partitions[i] // primaries in slot order, then logicals in chain order, as sfdisk lists them
		typ, err := strconv.ParseUint(sp.Type, 16, 8)
		if err != nil {
			t.Fatal(err)
		}
		if p.Number != n || p.Start != sp.Start*512 || p.Size != sp.Size*512 || p.Type != fmt.Sprintf("0x%02x", typ) || p.Active != sp.Bootable {
			t.Errorf("partition %+v, sfdisk says %+v", p, sp)
		}
		wantKind := KindPrimary
		switch {
		case n > 4:
			wantKind = KindLogical
		case typ == 5:
			wantKind = KindExtended
		}
		if p.Kind != wantKind {
			t.Errorf("partition %d kind %s, want %s", n, p.Kind, wantKind)
		}
		if p.HoldsData() {
			data = append(data, Extent{p.Start, p.Size})
			checkAgainstBlkid(t, fmt.Sprintf("partition %d", n), p.Filesystem, img, p.Start, p.Size)
		} else if p.Filesystem != nil {
			t.Errorf("extended partition with a filesystem: %+v", p.Filesystem)
		}
	}
	if got, want := fmt.Sprint(d.Gaps()), fmt.Sprint(dataGaps(d.Size, data)); got != want {
		t.Errorf("gaps %s, want %s", got, want)
	}
}

func inGaps(gaps []Extent, off int64) bool {
	for _, g := range gaps {
		if off >= g.Start && off < g.End() {
			return true
		}
	}
	return false
}

// TestBootloaderRecognition checks boot code recognition on the real first stages of GRUB 2 and
// SYSLINUX/ISOLINUX written into an sfdisk-made MBR, and on the Windows and LILO messages.
func TestBootloaderRecognition(t *testing.T) {
	img := newImage(t, "boot.img", 16<<20)
	runIn(t, "label: dos\nstart=2048, type=83\n", "sfdisk", "-q", img)
	before := sfdiskDump(t, img)
	for _, c := range []struct{ file, pkg, want string }{
		{"/usr/lib/grub/i386-pc/boot.img", "grub-pc-bin", "grub2"},
		{"/usr/lib/syslinux/mbr/mbr.bin", "syslinux-common", "syslinux"},
		{"/usr/lib/syslinux/mbr/altmbr.bin", "syslinux-common", "syslinux"},
		{"/usr/lib/syslinux/mbr/gptmbr.bin", "syslinux-common", "syslinux"},
		{"/usr/lib/ISOLINUX/isohdpfx.bin", "isolinux", "isolinux"},
	} {
		code := needFile(t, c.file, c.pkg)
		code = code[:min(len(code), 440)]
		// What grub-install and syslinux --install do: only the boot code, the table stays.
		writeAt(t, img, 0, code)
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		if d.Bootloader != c.want {
			t.Errorf("%s: boot loader %q, want %q", c.file, d.Bootloader, c.want)
		}
		if !bytes.Equal(d.BootCode[:len(code)], code) || len(d.BootCode) != 440 {
			t.Errorf("%s: boot code not read back", c.file)
		}
		if after := sfdiskDump(t, img); fmt.Sprint(after) != fmt.Sprint(before) || len(d.Partitions) != 1 {
			t.Errorf("%s: table changed: %+v", c.file, after)
		}
		writeAt(t, img, 0, make([]byte, 440))
	}
	// A GPT disk's protective MBR carries boot code too: SYSLINUX's gptmbr.bin, installed the
	// documented way (dd bs=440 count=1 conv=notrunc).
	gptImg := newImage(t, "gpt.img", 16<<20)
	run(t, "sgdisk", "-o", "-n", "1:2048:0", "-A", "1:set:2", gptImg)
	run(t, "dd", "if=/usr/lib/syslinux/mbr/gptmbr.bin", "of="+gptImg, "bs=440", "count=1", "conv=notrunc", "status=none")
	writeAt(t, gptImg, 440, []byte{0x78, 0x56, 0x34, 0x12})
	if out := run(t, "sgdisk", "-v", gptImg); !strings.Contains(out, "No problems found") {
		t.Fatalf("sgdisk -v after installing gptmbr.bin:\n%s", out)
	}
	d, err := readImage(t, gptImg, 512)
	if err != nil {
		t.Fatal(err)
	}
	gptmbr := needFile(t, "/usr/lib/syslinux/mbr/gptmbr.bin", "syslinux-common")
	if d.Table != TableGPT || d.Bootloader != "syslinux" || !bytes.Equal(d.BootCode[:len(gptmbr)], gptmbr) || d.Signature != 0x12345678 {
		t.Errorf("GPT protective MBR: table %s, loader %q, signature %08x", d.Table, d.Bootloader, d.Signature)
	}

	windows := make([]byte, 440)
	copy(windows[0x163:], "Invalid partition table\x00Error loading operating system\x00Missing operating system")
	lilo := make([]byte, 440)
	copy(lilo[6:], "LILO")
	for name, c := range map[string]struct {
		code []byte
		want string
	}{
		"windows": {windows, "windows"},
		"lilo":    {lilo, "lilo"},
		"zeros":   {make([]byte, 440), ""},
		"other":   {bytes.Repeat([]byte{0x90}, 440), ""},
	} {
		if got := Bootloader(c.code); got != c.want {
			t.Errorf("%s: %q, want %q", name, got, c.want)
		}
	}
}

func TestReadWhatSectorZeroHolds(t *testing.T) {
	t.Run("blank", func(t *testing.T) {
		img := newImage(t, "blank.img", 8<<20)
		d, err := readImage(t, img, 512)
		if err != nil || d.Table != TableNone || len(d.Partitions) != 0 || d.Filesystem != nil {
			t.Fatalf("%+v, %v", d, err)
		}
		if g := d.Gaps(); len(g) != 1 || g[0] != (Extent{0, 8 << 20}) {
			t.Errorf("gaps %v", g)
		}
	})
	t.Run("tiny", func(t *testing.T) {
		d, err := Read(bytes.NewReader(make([]byte, 100)), 100, 512)
		if err != nil || d.Table != TableNone {
			t.Fatalf("%+v, %v", d, err)
		}
	})
	for _, c := range []struct {
		name string
		mkfs []string
		typ  string
	}{
		{"superfloppy vfat", []string{"mkfs.vfat", "-I", "-n", "STICK"}, "vfat"},
		{"superfloppy ntfs", []string{"mkntfs", "-F", "-f", "-q", "-L", "whole"}, "ntfs"},
		{"superfloppy exfat", []string{"mkfs.exfat", "-L", "EXSTICK"}, "exfat"},
		// dosfstools can also write a fake MBR entry from sector 0 over the whole disk into the
		// boot sector, for BIOSes that insist on a table.
		{"superfloppy vfat with fake MBR", []string{"mkfs.vfat", "-I", "--mbr=y", "-n", "FAKEMBR"}, "vfat"},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := newImage(t, "sf.img", 32<<20)
			run(t, c.mkfs[0], append(c.mkfs[1:], img)...)
			if b := readFileAt(t, img, 510, 2); b[0] != 0x55 || b[1] != 0xAA {
				t.Fatalf("%s wrote no 0x55AA: the test proves nothing", c.mkfs[0])
			}
			d, err := readImage(t, img, 512)
			if err != nil {
				t.Fatal(err)
			}
			if d.Table != TableNone || len(d.Partitions) != 0 {
				t.Errorf("table %s with %d partitions", d.Table, len(d.Partitions))
			}
			// blkid also refuses the boot sector as a partition table for FAT and NTFS; for
			// exFAT it reports an empty "dos" table beside the filesystem (sfdisk agrees: the
			// sector's table area is zero). Either way the disk holds one volume.
			if kv := blkidProbe(t, img, 0, 32<<20); c.typ != "exfat" && kv["PTTYPE"] != "" {
				t.Errorf("blkid PTTYPE %q", kv["PTTYPE"])
			}
			checkAgainstBlkid(t, "whole disk", d.Filesystem, img, 0, 32<<20)
		})
	}
	t.Run("whole-disk ext4 under boot code", func(t *testing.T) {
		// An ext4 made on the whole disk, then GRUB's boot.img installed in sector 0 the way
		// grub-bios-setup does it (boot code and 0x55AA from boot.img, the table area kept):
		// 0x55AA, an empty table, and the superblock at 1024.
		img := newImage(t, "ext.img", 16<<20)
		run(t, "mkfs.ext4", "-F", "-q", "-L", "whole", img)
		boot := needFile(t, "/usr/lib/grub/i386-pc/boot.img", "grub-pc-bin")
		writeAt(t, img, 0, boot[:440])
		writeAt(t, img, 510, boot[510:512])
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		if d.Table != TableNone {
			t.Errorf("table %s", d.Table)
		}
		checkAgainstBlkid(t, "whole disk", d.Filesystem, img, 0, 16<<20)
	})
	t.Run("stale ext4 beside an MBR", func(t *testing.T) {
		// sfdisk in script mode leaves the old ext4 superblock; blkid then sees both. The
		// partitions are what the disk's owner made last.
		img := newImage(t, "stale.img", 32<<20)
		run(t, "mkfs.ext4", "-F", "-q", img)
		runIn(t, "label: dos\nstart=2048, size=8M, type=83\n", "sfdisk", "-q", img)
		if kv := blkidProbe(t, img, 0, 32<<20); kv["TYPE"] != "ext4" || kv["PTTYPE"] != "dos" {
			t.Fatalf("blkid does not see both: %v", kv)
		}
		d, err := readImage(t, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		if d.Table != TableMBR || len(d.Partitions) != 1 {
			t.Errorf("table %s, %d partitions", d.Table, len(d.Partitions))
		}
		wantWarning(t, d, "stale ext4 signature at offset 0")
	})
	t.Run("hybrid ISO", func(t *testing.T) {
		dir := t.TempDir()
		run(t, "mkdir", "-p", dir+"/isolinux")
		run(t, "cp", "/usr/lib/ISOLINUX/isolinux.bin", dir+"/isolinux/")
		efi := dir + "/efi.img"
		if err := os.WriteFile(efi, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(efi, 2<<20); err != nil {
			t.Fatal(err)
		}
		run(t, "mkfs.vfat", efi)
		bios := []string{"-isohybrid-mbr", "/usr/lib/ISOLINUX/isohdpfx.bin", "-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat",
			"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table"}
		for _, c := range []struct {
			name string
			args []string
		}{
			// isohybrid: one MBR partition from 0 over the whole ISO.
			{"BIOS", bios},
			// BIOS and UEFI: a type-0 partition over the ISO and an EFI partition inside it.
			{"BIOS and UEFI", append(append([]string{}, bios...), "-eltorito-alt-boot", "-e", "efi.img", "-no-emul-boot", "-isohybrid-gpt-basdat")},
		} {
			iso := newImage(t, "h.iso", 0)
			run(t, "xorriso", append(append([]string{"-as", "mkisofs", "-quiet", "-V", "CAULDRON_ISO"}, c.args...), "-o", iso, dir)...)
			if st := sfdiskDump(t, iso); len(st.PartitionTable.Partitions) == 0 || st.PartitionTable.Partitions[0].Start != 0 {
				t.Fatalf("%s: xorriso made no hybrid MBR with a partition at 0: %+v", c.name, st)
			}
			d, err := readImage(t, iso, 512)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if d.Table != TableNone || d.Filesystem == nil {
				t.Fatalf("%s: table %s, filesystem %+v", c.name, d.Table, d.Filesystem)
			}
			wantWarning(t, d, "hybrid ISO 9660 image")
			checkAgainstBlkid(t, c.name, d.Filesystem, iso, 0, d.Size)
			if blocks := isoBlocks(t, iso); d.Filesystem.UsedBytes != blocks*2048 {
				t.Errorf("%s: iso used %d bytes, xorriso says %d blocks", c.name, d.Filesystem.UsedBytes, blocks)
			}
		}
	})
	t.Run("stale ISO under a new table", func(t *testing.T) {
		// A USB stick that held a hybrid ISO, repartitioned: sfdisk and sgdisk rewrite the
		// start of the disk but leave the ISO's descriptors at 32 KiB, in the gap before the
		// first partition. blkid then reports both; the new table is what counts.
		dir := t.TempDir()
		if err := os.WriteFile(dir+"/a.txt", []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
		iso := newImage(t, "old.iso", 0)
		run(t, "xorriso", "-as", "mkisofs", "-quiet", "-V", "OLD_ISO", "-o", iso, dir)
		for _, c := range []struct {
			name, pttype string
			table        Table
			write        func(img string)
		}{
			{"sfdisk", "dos", TableMBR, func(img string) {
				runIn(t, "label: dos\nstart=2048, size=8M, type=c\n", "sfdisk", "-q", img)
			}},
			{"sgdisk", "gpt", TableGPT, func(img string) { run(t, "sgdisk", "-n", "1:2048:+8M", img) }},
		} {
			img := newImage(t, "stick.img", 32<<20)
			ddInto(t, img, 0, iso)
			c.write(img)
			if kv := blkidProbe(t, img, 0, 32<<20); kv["TYPE"] != "iso9660" || kv["PTTYPE"] != c.pttype {
				t.Fatalf("%s: blkid does not see both: %v", c.name, kv)
			}
			d, err := readImage(t, img, 512)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if d.Table != c.table || len(d.Partitions) != 1 || d.Partitions[0].Start != 1<<20 || d.Filesystem != nil {
				t.Errorf("%s: %+v", c.name, d)
			}
			wantWarning(t, d, "stale iso9660 signature at offset 0")
		}
	})
	t.Run("bad boot flag", func(t *testing.T) {
		m := newMemDisk(8 << 20)
		m.putMBR(0, tEntry{boot: 0x12, typ: 0x83, start: 2048, count: 100})
		d, err := Read(m, m.size, 512)
		if err != nil || d.Table != TableNone {
			t.Fatalf("%+v, %v", d, err)
		}
		wantWarning(t, d, "entry 1 has boot flag 0x12")
	})
}

// isoBlocks is the size of the ISO's session in 2048-byte blocks, as xorriso reports it.
func isoBlocks(t *testing.T, iso string) int64 {
	t.Helper()
	out := run(t, "xorriso", "-indev", iso, "-toc")
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(line, ","); strings.HasPrefix(line, "ISO session") && len(f) >= 3 {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(f[2]), "s"), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	t.Fatalf("no session size in xorriso -toc:\n%s", out)
	return 0
}

const mib = 2048 // sectors of 512 bytes

func TestReadMBRHandMade(t *testing.T) {
	const size = 100 << 20 // 204800 sectors
	type tc struct {
		name  string
		build func(m *memDisk)
		// either an error at offset, or partitions (number:kind:startLBA:sectors) and warnings
		errAt  int64
		errMsg string
		want   string
		warn   string
	}
	cases := []tc{
		{
			name: "chain with two extended partitions",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0x80, 0x83, 2048, 2048}, tEntry{0, 0x05, 4096, 8192}, tEntry{0, 0x0f, 16384, 4096})
				m.putMBR(4096*512, tEntry{0, 0x83, 1, 1000}, tEntry{0, 0x05, 2048, 4096})
				m.putMBR((4096+2048)*512, tEntry{0, 0x82, 8, 1000})
				m.putMBR(16384*512, tEntry{0, 0x07, 2048, 2048})
			},
			want: "1:primary:2048:2048 2:extended:4096:8192 3:extended:16384:4096 5:logical:4097:1000 6:logical:6152:1000 7:logical:18432:2048",
		},
		{
			name: "type 0 with a size is a partition, as for the kernel",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x00, 2048, 2048}, tEntry{0, 0x83, 0, 0}, tEntry{0, 0x83, 8192, 2048})
			},
			want: "1:primary:2048:2048 3:primary:8192:2048",
		},
		{
			name: "empty extended partition",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
			},
			want: "1:extended:2048:8192",
		},
		{
			name: "extended partition without an EBR",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.write(2048*512, []byte("garbage"))
			},
			want: "1:extended:2048:8192",
			warn: "extended partition 1 has no EBR signature at byte 1048576",
		},
		{
			name: "EBR with entries in slots 3 and 4",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.putMBR(2048*512, tEntry{0, 0x83, 1, 100}, tEntry{}, tEntry{0, 0x83, 200, 100})
			},
			want: "1:extended:2048:8192 5:logical:2049:100",
			warn: "EBR at byte 1048576 has entries in slots 3–4",
		},
		{
			name: "EBR links to itself",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.putMBR(2048*512, tEntry{0, 0x83, 1, 100}, tEntry{0, 0x05, 0, 100})
			},
			errAt: 2048 * 512, errMsg: "EBR chain of extended partition 1 loops back to the EBR at byte 1048576",
		},
		{
			name: "EBR chain loops through two EBRs",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.putMBR(2048*512, tEntry{0, 0x83, 1, 100}, tEntry{0, 0x05, 1000, 200})
				m.putMBR(3048*512, tEntry{0, 0x83, 1, 100}, tEntry{0, 0x05, 0, 200})
			},
			errAt: 2048 * 512, errMsg: "loops back to the EBR at byte 1048576",
		},
		{
			name: "EBR link outside the extended partition",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.putMBR(2048*512, tEntry{0, 0x83, 1, 100}, tEntry{0, 0x05, 9000, 100})
			},
			errAt: 2048 * 512, errMsg: "EBR at byte 1048576 links to the next EBR at byte 5656576, outside extended partition 1 (bytes [1048576, 5242880))",
		},
		{
			name: "logical outside the extended partition",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.putMBR(2048*512, tEntry{0, 0x83, 1, 10000})
			},
			errAt: 2048*512 + 446, errMsg: "logical partition 5 (bytes [1049088, 6169088)) in the EBR at byte 1048576 lies outside extended partition 1",
		},
		{
			name: "logical on its own EBR",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.putMBR(2048*512, tEntry{0, 0x83, 0, 100})
			},
			errAt: 2048*512 + 446, errMsg: "logical partition 5 starts on its own EBR at byte 1048576",
		},
		{
			name: "logical over the next EBR",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.putMBR(2048*512, tEntry{0, 0x83, 1, 3000}, tEntry{0, 0x05, 1000, 200})
				m.putMBR(3048 * 512) // an EBR that ends the chain
			},
			errAt: 2048*512 + 446, errMsg: "partition 5 (bytes [1049088, 2585088)) overlaps the EBR at byte 1560576",
		},
		{
			name: "second EBR without signature",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192})
				m.putMBR(2048*512, tEntry{0, 0x83, 1, 100}, tEntry{0, 0x05, 1000, 200})
			},
			errAt: 3048 * 512, errMsg: "EBR at byte 1560576 (linked from the chain of extended partition 1) has no 0x55AA signature",
		},
		{
			name: "more than 128 logical partitions",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 200 * 130})
				for i := uint32(0); i < 130; i++ {
					m.putMBR(int64(2048+200*i)*512, tEntry{0, 0x83, 1, 100}, tEntry{0, 0x05, 200 * (i + 1), 200})
				}
			},
			errAt: (2048 + 200*128) * 512, errMsg: "EBR chain of extended partition 1 is longer than 128",
		},
		{
			name: "extended partition past the end",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x83, 2048, 100}, tEntry{0, 0x05, 4096, 300000})
			},
			errAt: 446 + 16, errMsg: "extended partition 2 (bytes [2097152, 155697152)) extends past the end of the disk (104857600 bytes)",
		},
		{
			name: "primary past the end",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x83, 2048, 100}, tEntry{}, tEntry{0, 0x07, 200000, 10000})
			},
			errAt: 446 + 32, errMsg: "partition 3 (bytes [102400000, 107520000)) extends past the end of the disk (104857600 bytes)",
		},
		{
			name: "overlapping primaries",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x83, 2048, 4096}, tEntry{0, 0x83, 4096, 4096})
			},
			errAt: 446 + 16, errMsg: "partition 2 (bytes [2097152, 4194304)) overlaps partition 1 (bytes [1048576, 3145728))",
		},
		{
			name: "primary inside the extended partition",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x05, 2048, 8192}, tEntry{0, 0x83, 8192, 100})
			},
			errAt: 446 + 16, errMsg: "partition 2 (bytes [4194304, 4245504)) overlaps the extended partition 1 (bytes [1048576, 5242880))",
		},
		{
			name: "partition over the MBR",
			build: func(m *memDisk) {
				m.putMBR(0, tEntry{0, 0x83, 0, 100})
			},
			errAt: 446, errMsg: "partition 1 (bytes [0, 51200)) overlaps the MBR (sector 0)",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newMemDisk(size)
			c.build(m)
			d, err := Read(m, size, 512)
			if c.errMsg != "" {
				var pe *Error
				if !errors.As(err, &pe) {
					t.Fatalf("got %v, want *Error %q", err, c.errMsg)
				}
				if pe.Offset != c.errAt || !strings.Contains(pe.Msg, c.errMsg) {
					t.Errorf("error %q at %d, want %q at %d", pe.Msg, pe.Offset, c.errMsg, c.errAt)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range d.Partitions {
				got = append(got, fmt.Sprintf("%d:%s:%d:%d", p.Number, p.Kind, p.Start/512, p.Size/512))
			}
			if strings.Join(got, " ") != c.want {
				t.Errorf("partitions %s, want %s", strings.Join(got, " "), c.want)
			}
			if c.warn != "" {
				wantWarning(t, d, c.warn)
			} else if len(d.Warnings) != 0 {
				t.Errorf("warnings %q", d.Warnings)
			}
		})
	}
}

// TestGapsHandMade checks Gaps on a layout whose gaps are known by construction: the MBR and
// alignment, each EBR with the alignment after it, and free space.
func TestGapsHandMade(t *testing.T) {
	m := newMemDisk(64 << 20)
	m.putMBR(0, tEntry{0, 0x83, mib, mib}, tEntry{0, 0x05, 3 * mib, 10 * mib})
	m.putMBR(3*mib*512, tEntry{0, 0x83, mib, 2 * mib}, tEntry{0, 0x05, 3 * mib, 4 * mib})
	m.putMBR(6*mib*512, tEntry{0, 0x83, mib, mib})
	d, err := Read(m, m.size, 512)
	if err != nil {
		t.Fatal(err)
	}
	const M = 1 << 20
	want := []Extent{{0, 1 * M}, {2 * M, 2 * M}, {6 * M, 1 * M}, {8 * M, 56 * M}}
	if got := d.Gaps(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("gaps %v, want %v", got, want)
	}
	// A Disk built by hand with overlapping partitions still reports only uncovered bytes.
	hand := &Disk{Size: 100, Partitions: []Partition{{Start: 10, Size: 50, Kind: KindPrimary}, {Start: 20, Size: 10, Kind: KindLogical}, {Start: 0, Size: 90, Kind: KindExtended}}}
	if got := hand.Gaps(); fmt.Sprint(got) != fmt.Sprint([]Extent{{0, 10}, {60, 40}}) {
		t.Errorf("hand-made gaps %v", got)
	}
}

func TestReadMBR4096(t *testing.T) {
	// An MBR on a 4Kn disk counts in 4096-byte sectors; the table itself is still in the first
	// 512 bytes.
	m := newMemDisk(64 << 20)
	m.putMBR(0, tEntry{0x80, 0x83, 256, 1024}, tEntry{0, 0x05, 2048, 4096})
	m.putMBR(2048*4096, tEntry{0, 0x83, 256, 512})
	d, err := Read(m, m.size, 4096)
	if err != nil {
		t.Fatal(err)
	}
	want := "1:1048576:4194304 2:8388608:16777216 5:9437184:2097152"
	var got []string
	for _, p := range d.Partitions {
		got = append(got, fmt.Sprintf("%d:%d:%d", p.Number, p.Start, p.Size))
	}
	if strings.Join(got, " ") != want {
		t.Errorf("partitions %v, want %s", got, want)
	}
}

func TestReadRejectsBadSectorSize(t *testing.T) {
	for _, lss := range []int{0, 256, 1000, 8192} {
		if _, err := Read(newMemDisk(1<<20), 1<<20, lss); err == nil {
			t.Errorf("sector size %d accepted", lss)
		}
	}
}
