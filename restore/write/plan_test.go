package write_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/restore/write"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib"
)

// Plan-aware restore round trips: a source disk with FAT32, ext4, NTFS and swap volumes (MBR with
// an extended partition and logicals, or GPT; 512- or 4096-byte sectors) is captured, planned onto
// a target of another size or sector size, and restored with the plan. The judges are the tools
// of each format: sfdisk and sgdisk for the table, e2fsck, fsck.vfat and ntfsfix for the volumes,
// debugfs, mtools and ntfscat for the files, and each volume's own size fields read raw.

// rtVolume is one volume of a round-trip source.
type rtVolume struct {
	fs    string // ext4, vfat, ntfs, swap
	size  int64  // partition size
	files map[string][]byte
	label string
	uuid  string
	// extBlock is the ext4 block size (4096 unless a test needs another)
	extBlock int
}

// rtSource is a source disk built for a round trip.
type rtSource struct {
	path  string
	dev   string // loop device (4096-byte sources are captured through it)
	table string
	lss   int
	vols  map[int]*rtVolume // by partition number
	boot  []byte            // MBR: bytes 0–439
	core  []byte            // MBR: bytes from 512 on (a boot loader's stage in the gap)
}

func needRT(t *testing.T) {
	t.Helper()
	testenv.NeedTools(t, "sfdisk", "sgdisk", "losetup", "mkfs.ext4", "e2fsck", "resize2fs", "debugfs", "dumpe2fs", "mkfs.vfat", "fsck.vfat",
		"mcopy", "minfo", "mkntfs", "ntfscp", "ntfscat", "ntfsfix", "ntfsresize", "mkswap", "dd")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" || os.Getenv("CAULDRON_CORPUS") != "" {
			t.Fatal("plan-aware restores need loop devices: run as root")
		}
		t.Skip("plan-aware restores need loop devices (root)")
	}
}

// loopSS attaches a file (or a byte range of it) to a loop device with the given sector size.
func loopSS(t *testing.T, img string, lss int, off, size int64) string {
	t.Helper()
	args := []string{"--sector-size", strconv.Itoa(lss)}
	if size > 0 {
		args = append(args, "--offset", strconv.FormatInt(off, 10), "--sizelimit", strconv.FormatInt(size, 10))
	}
	return testenv.AttachLoop(t, img, args...)
}

func detach(dev string) { testenv.DetachLoop(dev) }

// makeRTSource builds the source: table is "mbr" (p1 FAT32, p2 extended with p5 ext4, p6 NTFS,
// p7 swap) or "gpt" (order given by gptOrder).
func makeRTSource(t *testing.T, dir, table string, lss int, gptOrder []string, seed uint64, extBlock int) *rtSource {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 7))
	sizes := map[string]int64{"vfat": 288 * MiB, "ext4": 128 * MiB, "ntfs": 128 * MiB, "swap": 32 * MiB}
	s := &rtSource{path: filepath.Join(dir, "source.img"), table: table, lss: lss, vols: map[int]*rtVolume{}}
	var script strings.Builder
	pos := int64(MiB)
	unit := int64(lss)
	if table == "mbr" {
		fmt.Fprintf(&script, "label: dos\nlabel-id: 0x1234abcd\n")
		fmt.Fprintf(&script, "start=%d, size=%d, type=c, bootable\n", pos/unit, sizes["vfat"]/unit)
		s.vols[1] = &rtVolume{fs: "vfat", size: sizes["vfat"]}
		pos += sizes["vfat"]
		ext := 2*MiB + sizes["ext4"] + sizes["ntfs"] + sizes["swap"] + MiB
		fmt.Fprintf(&script, "start=%d, size=%d, type=5\n", pos/unit, ext/unit)
		pos += MiB
		for i, fs := range []string{"ext4", "ntfs", "swap"} {
			typ := map[string]string{"ext4": "83", "ntfs": "7", "swap": "82"}[fs]
			fmt.Fprintf(&script, "start=%d, size=%d, type=%s\n", pos/unit, sizes[fs]/unit, typ)
			s.vols[5+i] = &rtVolume{fs: fs, size: sizes[fs]}
			pos += sizes[fs] + MiB
		}
	} else {
		fmt.Fprintf(&script, "label: gpt\n")
		types := map[string]string{"vfat": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "ext4": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
			"ntfs": "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"}
		for i, fs := range gptOrder {
			fmt.Fprintf(&script, "start=%d, size=%d, type=%s\n", pos/unit, sizes[fs]/unit, types[fs])
			s.vols[i+1] = &rtVolume{fs: fs, size: sizes[fs]}
			pos += sizes[fs]
		}
	}
	diskSize := pos + 2*MiB
	run(t, "truncate", "-s", strconv.FormatInt(diskSize, 10), s.path)
	s.dev = loopSS(t, s.path, lss, 0, 0)
	sfdiskScript(t, s.dev, script.String())
	if table == "mbr" {
		// Boot code in sector 0 and a boot loader's next stage in the gap before the first
		// partition (where GRUB embeds core.img): restore must carry both, and nothing else of
		// the gap.
		s.boot = content(rng, 440, false)
		s.core = content(rng, 64<<10, false)
		writeAt(t, s.path, s.boot, 0)
		writeAt(t, s.path, s.core, 512)
	}
	layout, err := partition.ReadPath(s.dev)
	if err != nil {
		t.Fatal(err)
	}
	for n, v := range s.vols {
		p := partitionNumbered(layout, n)
		if p == nil {
			t.Fatalf("sfdisk made no partition %d", n)
		}
		v.extBlock = extBlock
		makeVolume(t, dir, s.path, p.Start, v, lss, n, rng)
	}
	return s
}

func sfdiskScript(t *testing.T, dev, script string) {
	t.Helper()
	cmd := exec.Command("sfdisk", "--no-reread", "--no-tell-kernel", "-q", dev)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk %s: %v\n%s\n%s", dev, err, out, script)
	}
}

func partitionNumbered(d *partition.Disk, n int) *partition.Partition {
	for i := range d.Partitions {
		if d.Partitions[i].Number == n {
			return &d.Partitions[i]
		}
	}
	return nil
}

// makeVolume makes a filesystem in a file of the partition's size, fills it and copies it into
// the disk image at off.
func makeVolume(t *testing.T, dir, img string, off int64, v *rtVolume, lss, n int, rng *rand.Rand) {
	t.Helper()
	f := filepath.Join(dir, fmt.Sprintf("vol%d.img", n))
	run(t, "truncate", "-s", strconv.FormatInt(v.size, 10), f)
	v.files = map[string][]byte{}
	for i := 0; i < 6; i++ {
		v.files[fmt.Sprintf("file%d.bin", i)] = content(rng, 200000+rng.IntN(2000000), i%2 == 0)
	}
	switch v.fs {
	case "ext4":
		tree := filepath.Join(dir, fmt.Sprintf("tree%d", n))
		for name, b := range v.files {
			writeFile(t, filepath.Join(tree, name), b)
		}
		v.label, v.uuid = "root", "0b6c6a0e-1b0c-4b8e-9b2a-1f2e3d4c5b6a"
		run(t, "mkfs.ext4", "-q", "-F", "-b", strconv.Itoa(v.extBlock), "-L", v.label, "-U", v.uuid, "-d", tree, f)
	case "vfat":
		// 4 KiB clusters, so that the volume can move to a disk with 4096-byte sectors.
		run(t, "mkfs.vfat", "-F", "32", "-S", strconv.Itoa(lss), "-s", strconv.Itoa(4096/lss), "-n", "EFI", "-i", "1234ABCD",
			"-h", strconv.FormatInt(off/int64(lss), 10), f)
		for name, b := range v.files {
			src := filepath.Join(dir, name)
			writeFile(t, src, b)
			run(t, "mcopy", "-i", f, src, "::/"+name)
		}
	case "ntfs":
		run(t, "mkntfs", "-q", "-F", "-Q", "-s", strconv.Itoa(lss), "-c", "4096", "-p", strconv.FormatInt(off/int64(lss), 10),
			"-H", "255", "-S", "63", "-L", "DATA", f)
		for name, b := range v.files {
			src := filepath.Join(dir, name)
			writeFile(t, src, b)
			run(t, "ntfscp", "-f", f, src, "/"+name)
		}
	case "swap":
		v.label, v.uuid = "swp", "9e0f4c1a-8d2b-4f3e-a1b2-c3d4e5f60718"
		run(t, "mkswap", "-L", v.label, "-U", v.uuid, f)
		// Paging data that restore must not need to keep.
		writeAt(t, f, content(rng, 4<<20, false), 1<<20)
		v.files = nil
	}
	run(t, "dd", "if="+f, "of="+img, "bs=1M", "seek="+strconv.FormatInt(off, 10), "oflag=seek_bytes", "conv=notrunc,sparse", "status=none")
	os.Remove(f)
}

// newTarget makes a target image full of old bytes (so that nothing relies on zeros) and returns
// it with a device to plan and restore onto (the image itself for 512-byte sectors, else a loop
// device with 4096-byte sectors).
func newTarget(t *testing.T, dir string, size int64, lss int) (img, dev string) {
	t.Helper()
	img = filepath.Join(dir, "target.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	junk := bytes.Repeat([]byte("stale target "), MiB/13+1)[:MiB]
	for off := int64(0); off < size; off += 16 * MiB {
		// Old bytes every 16 MiB and at both ends; sparse between (fast, and still not zeros
		// where tables and boot sectors go).
		f.WriteAt(junk, off)
	}
	f.WriteAt(junk, size-MiB)
	f.Close()
	if lss == 512 {
		return img, img
	}
	return img, loopSS(t, img, lss, 0, 0)
}

type rtCase struct {
	name      string
	table     string
	srcLSS    int
	gptOrder  []string
	tgtSize   int64 // bytes; relative sizes are computed from the source
	tgtLSS    int
	resize    partition.ResizeMode
	wantFS    []string // "5 grow" … in the plan
	scaleSize float64  // target size = source size × scaleSize (when tgtSize is 0)
	// tinyScratch first tries a scratch directory too small for the volumes that shrink.
	tinyScratch bool
}

func TestRestorePlanRoundTrips(t *testing.T) {
	needRT(t)
	for _, c := range []rtCase{
		{name: "MBR 512 bigger proportional", table: "mbr", srcLSS: 512, tgtLSS: 512, scaleSize: 1.5, resize: partition.ResizeProportional,
			wantFS: []string{"5 grow", "6 grow", "7 grow"}},
		{name: "MBR 512 to 4096 smaller proportional", table: "mbr", srcLSS: 512, tgtLSS: 4096, scaleSize: 0.8, resize: partition.ResizeProportional,
			wantFS: []string{"5 shrink", "6 shrink", "7 shrink"}},
		{name: "GPT 4096 to 512 bigger grow-last FAT", table: "gpt", srcLSS: 4096, gptOrder: []string{"ext4", "ntfs", "swap", "vfat"}, tgtLSS: 512, scaleSize: 1.3,
			resize: partition.ResizeGrowLast, wantFS: []string{"4 grow"}},
		{name: "GPT 512 smaller grow-last FAT", table: "gpt", srcLSS: 512, gptOrder: []string{"swap", "ntfs", "ext4", "vfat"}, tgtLSS: 512, scaleSize: 0.97,
			resize: partition.ResizeGrowLast, wantFS: []string{"4 shrink"}},
		{name: "GPT 512 smaller proportional, FAT moved", table: "gpt", srcLSS: 512, gptOrder: []string{"ext4", "vfat", "ntfs", "swap"}, tgtLSS: 512, scaleSize: 0.75,
			resize: partition.ResizeProportional, tinyScratch: true, wantFS: []string{"1 shrink", "3 shrink", "4 shrink"}},
	} {
		t.Run(c.name, func(t *testing.T) { roundTrip(t, c) })
	}
}

func roundTrip(t *testing.T, c rtCase) {
	dir := t.TempDir()
	src := makeRTSource(t, dir, c.table, c.srcLSS, c.gptOrder, uint64(len(c.name)), 4096)
	r := newRepo(t, dir, "")
	g := capture(t, r, "m", src.dev)
	detach(src.dev)
	disk := &g.Disks[0]

	srcSize := disk.Layout.Size
	tgtSize := int64(float64(srcSize)*c.scaleSize) / MiB * MiB
	img, dev := newTarget(t, dir, tgtSize, c.tgtLSS)
	var decoy, decoySum string
	if c.tgtLSS == 4096 {
		// A decoy loop device beside the target, with the same sector size: untouched.
		d := filepath.Join(t.TempDir(), "decoy.img")
		writeFile(t, d, bytes.Repeat([]byte("decoy "), 64*MiB/6+1)[:64*MiB])
		decoy = loopSS(t, d, 4096, 0, 0)
		decoySum = sum(readRange(t, decoy, 0, 64*MiB))
	}
	tgt, err := partition.ReadTarget(dev)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := partition.Plan(&disk.Layout, tgt, partition.PlanOptions{Resize: c.resize, Used: usedOf(disk)})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	var fs []string
	for _, f := range plan.Filesystems {
		fs = append(fs, fmt.Sprintf("%d %s", f.Partition, f.Action))
	}
	if strings.Join(fs, ",") != strings.Join(c.wantFS, ",") {
		t.Fatalf("plan resizes %v, want %v (moves %+v)", fs, c.wantFS, plan.Moves)
	}
	if c.tinyScratch {
		// Rebuilding the shrunk volumes needs their used bytes in the scratch directory: a
		// 1 MiB one is refused before anything is written.
		tiny := t.TempDir()
		run(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", tiny)
		t.Cleanup(func() { exec.Command("umount", tiny).Run() })
		before := fileSum(t, img)
		_, err := write.CheckPlan(ctx, r, g, "disk0", plan, tiny)
		if err == nil || !strings.Contains(err.Error(), "scratch directory") || !strings.Contains(err.Error(), "missing") {
			t.Fatalf("check with a 1 MiB scratch directory: %v", err)
		}
		_, err = restoreTo(r, g, dev, restoreOpts{plan: plan, scratch: tiny})
		if err == nil || !strings.Contains(err.Error(), "scratch directory") {
			t.Fatalf("restore with a 1 MiB scratch directory: %v", err)
		}
		if fileSum(t, img) != before {
			t.Fatal("the target was written though the scratch directory was too small")
		}
	}
	// The scratch directory apart from the target's (a loop device's backing file inside the
	// scratch directory is refused: the scratch must not live on the target).
	scratch := t.TempDir()
	if _, err := write.CheckPlan(ctx, r, g, "disk0", plan, scratch); err != nil {
		t.Fatalf("check: %v", err)
	}
	st, err := restoreTo(r, g, dev, restoreOpts{plan: plan, scratch: scratch, log: func(s string) { t.Log(s) }})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	t.Logf("restored %d bytes, warnings %v", st.Bytes, st.Warnings)
	if src.boot != nil && c.srcLSS != c.tgtLSS && !strings.Contains(strings.Join(st.Warnings, "\n"), "sector size changes") {
		t.Errorf("no warning that BIOS boot code cannot follow a sector size change: %v", st.Warnings)
	}
	if decoy != "" && sum(readRange(t, decoy, 0, 64*MiB)) != decoySum {
		t.Error("the decoy device was written")
	}
	judgeRestored(t, src, img, dev, plan)
}

func usedOf(d *tib.Disk) map[int]int64 {
	used := map[int]int64{}
	for i := range d.Regions {
		if g := &d.Regions[i]; g.Kind == tib.RegionPartition {
			used[g.Partition] = g.UsedBytes()
		}
	}
	return used
}

// judgeRestored checks the target with independent tools.
func judgeRestored(t *testing.T, src *rtSource, img, dev string, plan *partition.LayoutPlan) {
	t.Helper()
	lss := plan.Target.LogicalSectorSize
	// The table: clean, and what the plan says.
	if src.table == "gpt" {
		if o := run(t, "sgdisk", "-v", dev); !strings.Contains(o, "No problems found") {
			t.Errorf("sgdisk -v:\n%s", o)
		}
	} else {
		run(t, "sfdisk", "--verify", dev)
	}
	var dump struct {
		PT struct {
			Label      string `json:"label"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Node  string `json:"node"`
				Start int64  `json:"start"`
				Size  int64  `json:"size"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(run(t, "sfdisk", "--json", dev)), &dump); err != nil {
		t.Fatal(err)
	}
	if dump.PT.SectorSize == 0 {
		dump.PT.SectorSize = 512
	}
	if dump.PT.SectorSize != int64(lss) {
		t.Errorf("sfdisk sees %d-byte sectors, want %d", dump.PT.SectorSize, lss)
	}
	got := map[int][2]int64{}
	for _, p := range dump.PT.Partitions {
		i := len(p.Node)
		for i > 0 && p.Node[i-1] >= '0' && p.Node[i-1] <= '9' {
			i--
		}
		n, _ := strconv.Atoi(p.Node[i:])
		got[n] = [2]int64{p.Start * dump.PT.SectorSize, p.Size * dump.PT.SectorSize}
	}
	for _, m := range plan.Moves {
		g, ok := got[m.Number]
		if m.Kind == partition.KindExtended {
			if !ok || g[0] != m.NewStart {
				t.Errorf("extended partition %d: sfdisk %v, plan start %d", m.Number, g, m.NewStart)
			}
			continue
		}
		if !ok || g != [2]int64{m.NewStart, m.NewSize} {
			t.Errorf("partition %d: sfdisk says [%d,+%d), plan [%d,+%d)", m.Number, g[0], g[1], m.NewStart, m.NewSize)
		}
	}
	if src.boot != nil {
		if !bytes.Equal(readRange(t, img, 0, 440), src.boot) {
			t.Error("the MBR boot code was not restored")
		}
		// The boot loader's stage from 512 on, except what falls into a larger target's
		// sector 0 (the table's sector, which Apply owns).
		from := int64(max(lss, 512))
		if !bytes.Equal(readRange(t, img, from, int64(len(src.core))-(from-512)), src.core[from-512:]) {
			t.Error("the boot loader's stage in the gap before the first partition was not restored")
		}
	}
	// Each volume: checked clean, its size the partition's, its files identical.
	dir := t.TempDir()
	for _, m := range plan.Moves {
		v := src.vols[m.Number]
		if v == nil {
			continue
		}
		pdev := loopSS(t, img, lss, m.NewStart, m.NewSize)
		head := readRange(t, pdev, 0, 4096)
		switch v.fs {
		case "ext4":
			run(t, "e2fsck", "-fn", pdev)
			out := run(t, "dumpe2fs", "-h", pdev)
			// resize2fs leaves out a last block group too small for its own inode table, so
			// the volume ends within one group of the partition's end.
			bc, bs, bpg := dumpField(t, out, "Block count:"), dumpField(t, out, "Block size:"), dumpField(t, out, "Blocks per group:")
			if bc*bs > m.NewSize || m.NewSize-bc*bs >= bpg*bs {
				t.Errorf("partition %d: ext4 of %d×%d bytes, partition %d", m.Number, bc, bs, m.NewSize)
			}
			for name, want := range v.files {
				if got := stdout(t, "debugfs", "-R", "cat /"+name, pdev); sum([]byte(got)) != sum(want) {
					t.Errorf("partition %d: ext4 file %s differs", m.Number, name)
				}
			}
		case "vfat":
			run(t, "fsck.vfat", "-n", pdev)
			bps := int64(binary.LittleEndian.Uint16(head[11:]))
			tot := int64(binary.LittleEndian.Uint32(head[32:]))
			hidden := int64(binary.LittleEndian.Uint32(head[28:]))
			// A rebuilt FAT fills its partition; one kept as mkfs.vfat made it may end a few
			// sectors short of it.
			size := tot * bps
			if resized(plan, m.Number) {
				size = m.NewSize
			}
			if bps != int64(lss) || tot*bps != size || size > m.NewSize || m.NewSize-size >= 64<<10 || hidden != m.NewStart/int64(lss) {
				t.Errorf("partition %d: FAT with %d-byte sectors, %d sectors, hidden %d; want %d, %d bytes, %d", m.Number, bps, tot, hidden, lss, m.NewSize, m.NewStart/int64(lss))
			}
			for name, want := range v.files {
				out := filepath.Join(dir, fmt.Sprintf("fat%d-%s", m.Number, name))
				run(t, "mcopy", "-n", "-i", pdev, "::/"+name, out)
				if b, _ := os.ReadFile(out); !bytes.Equal(b, want) {
					t.Errorf("partition %d: FAT file %s differs", m.Number, name)
				}
			}
		case "ntfs":
			if out, err := exec.Command("ntfsfix", "-n", pdev).CombinedOutput(); err != nil {
				t.Errorf("partition %d: ntfsfix -n: %v\n%s", m.Number, err, out)
			}
			bps := int64(binary.LittleEndian.Uint16(head[11:]))
			tot := int64(binary.LittleEndian.Uint64(head[40:]))
			hidden := int64(binary.LittleEndian.Uint32(head[28:]))
			// NTFS counts the volume without the backup boot sector in its last sector.
			// ntfsresize sizes the volume in whole clusters, the backup boot sector after them.
			cl := bps * int64(head[13])
			if bps != int64(lss) || (tot+1)*bps > m.NewSize || m.NewSize-(tot+1)*bps >= cl || hidden != m.NewStart/int64(lss) {
				t.Errorf("partition %d: NTFS with %d-byte sectors, %d sectors, hidden %d; want %d, %d bytes, %d", m.Number, bps, tot, hidden, lss, m.NewSize, m.NewStart/int64(lss))
			}
			for name, want := range v.files {
				if got := stdout(t, "ntfscat", "--force", pdev, "/"+name); sum([]byte(got)) != sum(want) {
					t.Errorf("partition %d: NTFS file %s differs", m.Number, name)
				}
			}
		case "swap":
			blk := run(t, "blkid", "-p", "-o", "export", pdev)
			if !strings.Contains(blk, "UUID="+v.uuid) || !strings.Contains(blk, "LABEL="+v.label) {
				t.Errorf("partition %d: swap lost its identity:\n%s", m.Number, blk)
			}
			sw := readRange(t, pdev, 0, 4096+1024)
			last := int64(binary.LittleEndian.Uint32(sw[1024+4:]))
			if string(sw[4096-10:4096]) != "SWAPSPACE2" || (last+1)*4096 != m.NewSize {
				t.Errorf("partition %d: swap of %d pages, partition %d bytes", m.Number, last+1, m.NewSize)
			}
		}
		detach(pdev)
	}
}

// fileSum hashes a file without holding it in memory.
func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// stdout runs a command and returns its standard output alone (debugfs and ntfscat write notes
// to standard error).
func stdout(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func resized(p *partition.LayoutPlan, n int) bool {
	for _, f := range p.Filesystems {
		if f.Partition == n {
			return true
		}
	}
	return p.SourceLSS != p.Target.LogicalSectorSize
}

func dumpField(t *testing.T, out, field string) int64 {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, field) {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(l, field)), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %q in dumpe2fs output", field)
	return 0
}

// TestRestorePlanRefusesWhatDoesNotFit: a target too small for the data is refused with the
// volume and the bytes missing, and nothing is written to it.
func TestRestorePlanRefusesWhatDoesNotFit(t *testing.T) {
	needRT(t)
	dir := t.TempDir()
	src := makeRTSource(t, dir, "gpt", 512, []string{"vfat", "ext4", "ntfs", "swap"}, 3, 1024)
	r := newRepo(t, dir, "")
	g := capture(t, r, "m", src.dev)
	detach(src.dev)
	disk := &g.Disks[0]
	img, dev := newTarget(t, dir, 330*MiB, 512)
	before := fileSum(t, img)
	tgt, err := partition.ReadTarget(dev)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := partition.Plan(&disk.Layout, tgt, partition.PlanOptions{Used: usedOf(disk)})
	var pe *partition.PlanError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "more bytes") || !strings.Contains(err.Error(), "partition ") {
		t.Fatalf("plan onto a target too small: %v", err)
	}
	// Restoring with the refused plan anyway is refused too, before anything is written.
	_, err = restoreTo(r, g, dev, restoreOpts{plan: plan, scratch: dir})
	if err == nil || !strings.Contains(err.Error(), "cannot be applied") {
		t.Fatalf("restore with a refused plan: %v", err)
	}
	if fileSum(t, img) != before {
		t.Fatal("the target was written")
	}
	t.Logf("refused: %v", err)

	// A target with 4096-byte sectors is big enough, but the ext4 volume has 1024-byte blocks,
	// which Linux cannot mount there: refused by the check, before anything is written.
	img4, dev4 := newTarget(t, t.TempDir(), 640*MiB, 4096)
	tgt4, err := partition.ReadTarget(dev4)
	if err != nil {
		t.Fatal(err)
	}
	plan4, err := partition.Plan(&disk.Layout, tgt4, partition.PlanOptions{Used: usedOf(disk)})
	if err != nil {
		t.Fatal(err)
	}
	before4 := fileSum(t, img4)
	_, err = restoreTo(r, g, dev4, restoreOpts{plan: plan4, scratch: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "partition 2 (ext4): its 1024-byte blocks are smaller than the target's 4096-byte sectors") {
		t.Fatalf("restore of 1024-byte ext4 blocks onto 4096-byte sectors: %v", err)
	}
	if fileSum(t, img4) != before4 {
		t.Fatal("the 4096-byte target was written")
	}
}
