package partition

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The round trips below write planned tables onto loop devices that hold leftovers of an older
// layout, and let sgdisk, sfdisk, wipefs and blkid judge the result. Decoy loop devices filled
// with random bytes are attached during every write and must be untouched afterwards.

// decoys attaches n loop devices with random content and returns a check that fails the test
// when any byte of them changed.
func decoys(t *testing.T, n int) func() {
	t.Helper()
	type decoy struct {
		dev  string
		hash [32]byte
	}
	var ds []decoy
	for i := 0; i < n; i++ {
		img := newImage(t, fmt.Sprintf("decoy%d.img", i), 4<<20)
		b := make([]byte, 4<<20)
		r := rand.New(rand.NewPCG(uint64(i), 99))
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		if err := os.WriteFile(img, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, decoy{losetup(t, img, 512), sha256.Sum256(b)})
	}
	return func() {
		t.Helper()
		for _, d := range ds {
			f, err := os.Open(d.dev)
			if err != nil {
				t.Fatal(err)
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.Sum(nil), d.hash[:]) {
				t.Errorf("decoy %s was modified", d.dev)
			}
		}
	}
}

// sourceLayout makes a source disk with sfdisk (an independent tool), puts boot code into it and
// reads it back as the model a capture would store, with filesystems and used bytes as a capture
// would have found them.
func sourceLayout(t *testing.T, table Table, lss int) (*Disk, map[int]int64) {
	t.Helper()
	img := newImage(t, "source.img", 64<<20)
	var script string
	if table == TableGPT {
		script = "label: gpt\nlabel-id: 6E2B5A38-9D38-4C1B-8F2F-1C6A0A3B9E01\n" +
			"start=1MiB, size=8MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"EFI system\", uuid=0B2C1F60-6F7E-4D1A-9E0D-3C3A0F0C0001\n" +
			"size=16MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"root\", uuid=0B2C1F60-6F7E-4D1A-9E0D-3C3A0F0C0002, attrs=\"LegacyBIOSBootable\"\n" +
			"type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"h\u00f6me \U0001F3E0\", uuid=0B2C1F60-6F7E-4D1A-9E0D-3C3A0F0C0003\n"
	} else {
		script = "label: dos\nlabel-id: 0x5eed1234\n" +
			"start=1MiB, size=8MiB, type=83, bootable\n" +
			"start=9MiB, size=54MiB, type=f\n" +
			"start=10MiB, size=16MiB, type=83\n" +
			"start=27MiB, size=8MiB, type=82\n" +
			"start=36MiB, type=83\n"
	}
	// sfdisk 2.38 has no --sector-size for images: a 4096-byte source is made through a loop
	// device with that sector size.
	on := img
	if lss != 512 {
		on = losetup(t, img, lss)
	}
	runIn(t, script, "sfdisk", "-q", on)
	code := make([]byte, mbrBootCodeLen)
	for i := range code {
		code[i] = byte(i*7 + 1)
	}
	writeAt(t, img, 0, code)
	d, err := readImage(t, img, lss)
	if err != nil {
		t.Fatal(err)
	}
	used := map[int]int64{}
	for i := range d.Partitions {
		p := &d.Partitions[i]
		switch {
		case p.Kind == KindExtended:
		case p.Type == "0x82":
			p.Filesystem = fsOf("swap")
			used[p.Number] = 4096
		case p.Number == 1 && table == TableGPT:
			p.Filesystem = fsOf("vfat")
		default:
			p.Filesystem = fsOf("ext4")
			used[p.Number] = 2 << 20
		}
	}
	return d, used
}

// junkTarget makes a target image that looks used: an old GPT whose partitions hold ext4, swap
// and FAT signatures at starts the new layout does not use, and returns it with the old extents.
func junkTarget(t *testing.T, size int64) (string, []Extent) {
	t.Helper()
	img := newImage(t, "target.img", size)
	runIn(t, "label: gpt\nstart=3MiB, size=10MiB\nstart=17MiB, size=5MiB\nstart=30MiB\n", "sfdisk", "-q", img)
	old := []Extent{{3 << 20, 10 << 20}, {17 << 20, 5 << 20}, {30 << 20, size - 30<<20 - 1<<20}}
	run(t, "mkfs.ext4", "-q", "-F", "-E", fmt.Sprintf("offset=%d", old[0].Start), img, "10M")
	swap := newImage(t, "swap.img", 5<<20)
	run(t, "mkswap", "-q", swap)
	ddInto(t, img, old[1].Start, swap)
	run(t, "mkfs.vfat", "--offset", strconv.FormatInt(old[2].Start/512, 10), img, strconv.FormatInt(old[2].Size/1024, 10))
	for _, c := range []struct {
		e    Extent
		want string
	}{{old[0], "ext4"}, {old[1], "swap"}, {old[2], "vfat"}} {
		if got := blkidProbe(t, img, c.e.Start, c.e.Size)["TYPE"]; got != c.want {
			t.Fatalf("junk target: blkid finds %q at byte %d, want %q: the leftovers the test must see wiped are missing", got, c.e.Start, c.want)
		}
	}
	return img, old
}

// wipefsSignatures lists what `wipefs --no-act` finds on a device.
func wipefsSignatures(t *testing.T, dev string) []string {
	t.Helper()
	out := run(t, "wipefs", "--no-act", "--json", dev)
	if strings.TrimSpace(out) == "" {
		return nil
	}
	var w struct {
		Signatures []struct {
			Type   string `json:"type"`
			Offset string `json:"offset"`
		} `json:"signatures"`
	}
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatalf("wipefs --json %s: %v\n%s", dev, err, out)
	}
	var s []string
	for _, x := range w.Signatures {
		s = append(s, x.Type+"@"+x.Offset)
	}
	return s
}

func hexByte(t *testing.T, s string) uint64 {
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 8)
	if err != nil {
		t.Fatalf("type %q: %v", s, err)
	}
	return v
}

// compareSfdisk checks sfdisk's view of dev against the planned layout.
func compareSfdisk(t *testing.T, dev string, want *Disk) {
	t.Helper()
	st := sfdiskDump(t, dev)
	pt := st.PartitionTable
	ss := int64(pt.SectorSize)
	if ss != int64(want.LogicalSectorSize) {
		t.Errorf("sfdisk: sector size %d, want %d", ss, want.LogicalSectorSize)
	}
	switch want.Table {
	case TableGPT:
		if pt.Label != "gpt" || !strings.EqualFold(pt.ID, want.DiskGUID) || pt.FirstLBA != want.FirstUsableLBA || pt.LastLBA != want.LastUsableLBA {
			t.Errorf("sfdisk: %s %s usable %d–%d, want gpt %s %d–%d", pt.Label, pt.ID, pt.FirstLBA, pt.LastLBA, want.DiskGUID, want.FirstUsableLBA, want.LastUsableLBA)
		}
	case TableMBR:
		if pt.Label != "dos" || pt.ID != fmt.Sprintf("0x%08x", want.Signature) {
			t.Errorf("sfdisk: %s %s, want dos 0x%08x", pt.Label, pt.ID, want.Signature)
		}
	}
	if len(pt.Partitions) != len(want.Partitions) {
		t.Fatalf("sfdisk lists %d partitions, the plan has %d", len(pt.Partitions), len(want.Partitions))
	}
	for _, sp := range pt.Partitions {
		n := nodeNumber(t, sp.Node)
		p := partitionByNumber(want, n)
		if p == nil {
			t.Errorf("sfdisk lists partition %d, the plan has none", n)
			continue
		}
		if sp.Start*ss != p.Start || sp.Size*ss != p.Size {
			t.Errorf("partition %d: sfdisk [%d,+%d), plan [%d,+%d)", n, sp.Start*ss, sp.Size*ss, p.Start, p.Size)
		}
		switch want.Table {
		case TableGPT:
			if !strings.EqualFold(sp.Type, p.Type) || !strings.EqualFold(sp.UUID, p.GUID) || sp.Name != p.Name {
				t.Errorf("partition %d: sfdisk %s %s %q, plan %s %s %q", n, sp.Type, sp.UUID, sp.Name, p.Type, p.GUID, p.Name)
			}
		case TableMBR:
			if hexByte(t, sp.Type) != hexByte(t, p.Type) || sp.Bootable != p.Active {
				t.Errorf("partition %d: sfdisk type %s bootable %v, plan %s %v", n, sp.Type, sp.Bootable, p.Type, p.Active)
			}
		}
	}
}

func blockSize64(t *testing.T, node string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(run(t, "blockdev", "--getsize64", node)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestApplyRoundTrip(t *testing.T) {
	for _, tool := range []string{"sgdisk", "sfdisk", "wipefs", "blkid", "mkfs.ext4", "mkswap", "mkfs.vfat", "blockdev"} {
		needTool(t, tool)
	}
	checkDecoys := decoys(t, 2)
	defer checkDecoys()
	type tc struct {
		table    Table
		srcLSS   int
		tgtLSS   int
		tgtSize  int64
		resize   ResizeMode
		identity IdentityMode
	}
	var cases []tc
	for _, table := range []Table{TableGPT, TableMBR} {
		for _, tgtLSS := range []int{512, 4096} {
			for _, size := range []int64{64 << 20, 96 << 20, 48 << 20} {
				cases = append(cases, tc{table, 512, tgtLSS, size, ResizeProportional, IdentityKeep})
			}
		}
		cases = append(cases, tc{table, 512, 512, 80 << 20, ResizeGrowLast, IdentityRenew})
		cases = append(cases, tc{table, 4096, 512, 64 << 20, ResizeKeep, IdentityKeep})
	}
	for _, c := range cases {
		name := fmt.Sprintf("%s-%d-to-%d-%dMiB-%s-%s", c.table, c.srcLSS, c.tgtLSS, c.tgtSize>>20, c.resize, c.identity)
		t.Run(name, func(t *testing.T) {
			src, used := sourceLayout(t, c.table, c.srcLSS)
			img, old := junkTarget(t, c.tgtSize)
			dev := losetup(t, img, c.tgtLSS)
			if c.tgtLSS == 512 {
				// The kernel knows the old partitions (stale nodes): Apply must replace them.
				run(t, "partx", "-a", dev)
				if _, err := os.Stat(dev + "p3"); err != nil {
					t.Fatalf("partx -a created no nodes: %v", err)
				}
			}
			tgt, err := ReadTarget(dev)
			if err != nil {
				t.Fatal(err)
			}
			plan, err := Plan(src, tgt, PlanOptions{Resize: c.resize, Identity: c.identity, Used: used})
			if err != nil {
				t.Fatal(err)
			}
			res, err := Apply(dev, plan, ApplyOptions{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { exec.Command("partx", "-d", dev).Run() })
			want := plan.Layout

			// sgdisk and sfdisk judge the table.
			if c.table == TableGPT {
				if out := run(t, "sgdisk", "-v", dev); !strings.Contains(out, "No problems found") {
					t.Errorf("sgdisk -v:\n%s", out)
				}
			} else {
				run(t, "sfdisk", "--verify", dev)
			}
			compareSfdisk(t, dev, want)

			// The boot code and signature of the source are on the target.
			sec0 := readFileAt(t, img, 0, 512)
			if !bytes.Equal(sec0[:mbrBootCodeLen], src.BootCode) {
				t.Error("the source's boot code was not written")
			}

			// wipefs sees the new table and nothing else, on the disk and on every partition.
			for _, s := range wipefsSignatures(t, dev) {
				if typ, _, _ := strings.Cut(s, "@"); typ != "gpt" && typ != "PMBR" && typ != "dos" {
					t.Errorf("wipefs finds a leftover %s on %s", s, dev)
				}
			}
			if len(res.Nodes) != len(want.Partitions) || res.Reread == "" {
				t.Fatalf("nodes %v via %q for %d partitions", res.Nodes, res.Reread, len(want.Partitions))
			}
			for i, node := range res.Nodes {
				p := want.Partitions[i]
				_, n := kernelExtent(p, int64(c.tgtLSS))
				if got := blockSize64(t, node); got != n {
					t.Errorf("%s (partition %d) has %d bytes, want %d", node, p.Number, got, n)
				}
				if p.HoldsData() {
					if s := wipefsSignatures(t, node); len(s) > 0 {
						t.Errorf("wipefs finds leftovers on %s: %v", node, s)
					}
				}
			}
			for _, e := range old {
				if kv := blkidProbe(t, img, e.Start, min(e.Size, c.tgtSize-e.Start)); kv["TYPE"] != "" {
					t.Errorf("blkid still finds %s at the old partition start %d", kv["TYPE"], e.Start)
				}
			}
			// Identities as planned, old → new recorded.
			for _, id := range plan.Identities {
				if (c.identity == IdentityKeep) != (id.Old == id.New) {
					t.Errorf("identity %+v under %s", id, c.identity)
				}
			}
		})
	}
}

// TestApplyImageFile writes to an image file (no root needed) and checks it with sgdisk.
func TestApplyImageFile(t *testing.T) {
	src, used := sourceLayout(t, TableGPT, 512)
	img := newImage(t, "target.img", 80<<20)
	tgt, err := ReadTarget(img)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(src, tgt, PlanOptions{Used: used})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(img, plan, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "sgdisk", "-v", img); !strings.Contains(out, "No problems found") {
		t.Errorf("sgdisk -v:\n%s", out)
	}
	compareSfdisk(t, img, plan.Layout)
}

// TestApplyRefuses checks every refusal, and that a refused target keeps every byte.
func TestApplyRefuses(t *testing.T) {
	needTool(t, "mkfs.ext4")
	checkDecoys := decoys(t, 1)
	defer checkDecoys()
	src, used := sourceLayout(t, TableGPT, 512)
	planFor := func(path string) *LayoutPlan {
		d, err := ReadTarget(path)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Plan(src, d, PlanOptions{Used: used})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	hash := func(path string) [32]byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	refused := func(what, target string, plan *LayoutPlan, opts ApplyOptions, want string, files ...string) {
		t.Helper()
		before := map[string][32]byte{}
		for _, f := range files {
			before[f] = hash(f)
		}
		_, err := Apply(target, plan, opts)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: Apply(%s) = %v, want an error saying %q", what, target, err, want)
		}
		for _, f := range files {
			if hash(f) != before[f] {
				t.Errorf("%s: %s changed although the write was refused", what, f)
			}
		}
	}

	// A disk with a mounted filesystem.
	mountedImg := newImage(t, "mounted.img", 64<<20)
	run(t, "mkfs.ext4", "-q", "-F", mountedImg)
	mdev := losetup(t, mountedImg, 512)
	mnt := t.TempDir()
	run(t, "mount", mdev, mnt)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	refused("mounted", mdev, planFor(mdev), ApplyOptions{}, "is mounted on "+mnt, mountedImg)
	// The disk holding a protected path (a repository on that mounted filesystem).
	repo := filepath.Join(mnt, "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	refused("repository disk", mdev, planFor(mdev), ApplyOptions{Protect: []string{repo}}, "holds the protected path "+repo, mountedImg)

	// A protected device given by path (the boot medium).
	bootImg := newImage(t, "boot.img", 64<<20)
	bdev := losetup(t, bootImg, 512)
	refused("boot medium", bdev, planFor(bdev), ApplyOptions{Protect: []string{bdev}}, "holds the protected path", bootImg)
	// An image attached to a loop device.
	refused("attached image", bootImg, planFor(bootImg), ApplyOptions{}, "is attached to "+bdev, bootImg)

	// A partition instead of a disk.
	partImg := newImage(t, "part.img", 64<<20)
	runIn(t, "label: gpt\nstart=1MiB\n", "sfdisk", "-q", partImg)
	pdev := losetup(t, partImg, 512)
	run(t, "partx", "-a", pdev)
	t.Cleanup(func() { exec.Command("partx", "-d", pdev).Run() })
	refused("partition", pdev+"p1", planFor(pdev), ApplyOptions{}, "not a whole disk", partImg)

	// An image inside the repository directory.
	repoDir := t.TempDir()
	inRepo := filepath.Join(repoDir, "data.img")
	if err := os.WriteFile(inRepo, make([]byte, 64<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	refused("inside the repository", inRepo, planFor(inRepo), ApplyOptions{Protect: []string{repoDir}}, "lies in the protected path", inRepo)
	// A loop device backed by that image.
	repoLoop := losetup(t, inRepo, 512)
	refused("loop device on the repository", repoLoop, planFor(repoLoop), ApplyOptions{Protect: []string{repoDir}}, "in the protected path "+repoDir, inRepo)

	// A disk the plan does not name: another size, or another serial.
	other := newImage(t, "other.img", 72<<20)
	p64 := planFor(inRepo)
	refused("other disk", other, p64, ApplyOptions{}, "the plan is for a disk of 67108864 bytes", other)
	ser := planFor(bdev)
	ser.Target.Serial = "NOT-THIS-DISK"
	refused("other serial", bdev, ser, ApplyOptions{}, "serial", bootImg)
	// Not a disk.
	refused("directory", repoDir, p64, ApplyOptions{}, "neither a block device nor a regular file")

	// A plan whose checks failed.
	small := newImage(t, "small.img", 16<<20)
	sd, _ := ReadTarget(small)
	failed, err := Plan(src, sd, PlanOptions{Resize: ResizeKeep})
	if err == nil {
		t.Fatal("a 64 MiB layout kept on 16 MiB was planned")
	}
	refused("failed plan", small, failed, ApplyOptions{}, "cannot be applied", small)

	// The disk holding the running system: CheckTarget only, never Apply.
	rootDev, err := devNumber("/")
	if err != nil {
		t.Fatal(err)
	}
	disks, _ := disksUnder("/")
	for d := range disks {
		sys, err := filepath.EvalSymlinks(filepath.Join(sysfsRoot, "dev", "block", d))
		if err != nil {
			continue
		}
		node := filepath.Join("/dev", filepath.Base(sys))
		if _, err := os.Stat(node); err != nil {
			continue
		}
		if err := CheckTarget(node, nil); err == nil {
			t.Errorf("CheckTarget accepts %s, the disk under / (%s)", node, rootDev)
		}
	}
}

func TestWipeExtents(t *testing.T) {
	const size = 10 << 30
	w := wipeExtents(size, []Extent{{MiB, 300 << 30}, {5 * GiB, 3 * MiB / 2}, {size - 1000, 1000}})
	covered := func(off, n int64) bool {
		var got int64
		for _, e := range w {
			got += max(0, min(e.End(), off+n)-max(e.Start, off))
		}
		return got == n
	}
	for _, c := range []struct{ off, n int64 }{
		{0, MiB}, {size - MiB, MiB}, // disk ends
		{MiB, MiB}, {MiB + 64<<20, 4096}, // partition start and btrfs mirror (the 256 GiB one is past the disk)
		{5 * GiB, 3 * MiB / 2}, // a small partition entirely
	} {
		if !covered(c.off, c.n) {
			t.Errorf("[%d,+%d) not wiped: %v", c.off, c.n, w)
		}
	}
	var total int64
	for i, e := range w {
		if e.Size > wipeSpan || e.Start < 0 || e.End() > size || (i > 0 && e.Start < w[i-1].End()) {
			t.Errorf("bad wipe extent %v", e)
		}
		total += e.Size
	}
	if total > 8*MiB {
		t.Errorf("wipes %d bytes: more than the signatures need", total)
	}
}

// TestApplyWipesContainers leaves a LUKS2 header and an LVM physical volume label in old
// partitions of the target (and the target's old GPT, whose backup lies at the disk's end): after
// an MBR is applied, blkid finds none of them and wipefs only the new table.
func TestApplyWipesContainers(t *testing.T) {
	for _, tool := range []string{"cryptsetup", "pvcreate", "sfdisk", "wipefs", "blkid"} {
		needTool(t, tool)
	}
	checkDecoys := decoys(t, 1)
	defer checkDecoys()
	img := newImage(t, "target.img", 64<<20)
	runIn(t, "label: gpt\nstart=2MiB, size=20MiB\nstart=24MiB, size=8MiB\n", "sfdisk", "-q", img)
	luks := newImage(t, "luks.img", 20<<20)
	luksFormat("luks2")(t, luks)
	ddInto(t, img, 2<<20, luks)
	pv := newImage(t, "pv.img", 8<<20)
	pvDev := losetup(t, pv, 512)
	cmd := exec.Command("pvcreate", "-q", "-ff", "-y", "--norestorefile", pvDev)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("pvcreate: %v\n%s", err, out)
	}
	ddInto(t, img, 24<<20, pv)
	old := map[int64]string{2 << 20: "luks", 24 << 20: "lvm2"}
	for off, want := range old {
		if got := blkidProbe(t, img, off, 8<<20)["TYPE"]; got != want {
			t.Fatalf("blkid finds %q at %d before the write, want %q", got, off, want)
		}
	}
	// The new layout starts its partitions elsewhere (1 MiB, and logicals), so only the wipe
	// can remove the old headers.
	src, used := sourceLayout(t, TableMBR, 512)
	dev := losetup(t, img, 512)
	tgt, err := ReadTarget(dev)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := Plan(src, tgt, PlanOptions{Used: used})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(dev, plan, ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("partx", "-d", dev).Run() })
	for off := range old {
		if kv := blkidProbe(t, img, off, 8<<20); kv["TYPE"] != "" {
			t.Errorf("blkid still finds %s at %d", kv["TYPE"], off)
		}
	}
	for _, s := range wipefsSignatures(t, dev) {
		if typ, _, _ := strings.Cut(s, "@"); typ != "dos" {
			t.Errorf("wipefs finds %s besides the new MBR (the old backup GPT at the end?)", s)
		}
	}
	compareSfdisk(t, dev, plan.Layout)
}
