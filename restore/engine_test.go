package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	rtarget "github.com/cauldron-dr/cauldron/restore/target"
	"github.com/cauldron-dr/cauldron/restore/write"

	"github.com/cauldron-dr/cauldron/internal/testenv"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

var ctx = context.Background()

func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// sourceDisk makes a 64 MiB GPT disk image with one ext4 partition full of files.
func sourceDisk(t *testing.T, dir string) string {
	t.Helper()
	testenv.NeedTools(t, "sfdisk", "mke2fs", "e2fsck")
	files := filepath.Join(dir, "files")
	os.MkdirAll(filepath.Join(files, "etc"), 0o755)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 40 {
		b := make([]byte, 1000+rng.IntN(200000))
		for j := range b {
			b[j] = byte('a' + rng.IntN(20))
		}
		os.WriteFile(filepath.Join(files, fmt.Sprintf("f%02d.txt", i)), b, 0o644)
	}
	os.WriteFile(filepath.Join(files, "etc", "marker"), []byte("cauldron restore engine test\n"), 0o644)
	img := filepath.Join(dir, "source.img")
	f, _ := os.Create(img)
	f.Truncate(64 << 20)
	f.Close()
	cmd := exec.Command("sfdisk", "--quiet", img)
	cmd.Stdin = strings.NewReader("label: gpt\nstart=2048, size=126976, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v %s", err, out)
	}
	sh(t, "mke2fs", "-q", "-F", "-t", "ext4", "-d", files, "-E", "offset=1048576", img, "63488K")
	return img
}

func newRepo(t *testing.T, dir string) (*tib.Repository, string) {
	t.Helper()
	path := filepath.Join(dir, "repo")
	r, err := tib.Init(ctx, local.New(path), tib.InitOptions{Password: []byte("pw"), ChunkSize: 128 << 10, PackSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return r, path
}

func captured(t *testing.T) (dir string, r *tib.Repository, repoPath, src string, gen *tib.Generation) {
	t.Helper()
	dir = t.TempDir()
	src = sourceDisk(t, dir)
	r, repoPath = newRepo(t, dir)
	gen, err := r.Capture(ctx, tib.CaptureOptions{Machine: "web01", Sources: []string{src}})
	if err != nil {
		t.Fatal(err)
	}
	return dir, r, repoPath, src, gen
}

func equalFiles(t *testing.T, a, b string) {
	t.Helper()
	x, _ := os.ReadFile(a)
	y, _ := os.ReadFile(b)
	if !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ", a, b)
	}
}

func TestRecoverOntoNewImage(t *testing.T) {
	dir, r, repoPath, src, gen := captured(t)
	target := filepath.Join(dir, "target.img")
	var events []Event
	req := Request{Name: "test", Repo: r, RepoPath: repoPath, Machine: "web01", Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: target}}, Freeze: true, Release: tib.ReleaseResume, Inoculate: Inoculation{Skip: true}}
	p, err := Prepare(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if p.Generation != gen.ID.String() || len(p.Disks) != 1 || p.Disks[0].Kind != rtarget.KindImageFile || p.Disks[0].Layout != nil {
		t.Fatalf("plan: %+v", p)
	}
	var text strings.Builder
	p.WriteText(&text)
	if !strings.Contains(text.String(), "disk disk0 → "+target+" (image file): byte for byte") {
		t.Fatalf("dry run:\n%s", text.String())
	}
	if _, err := os.Stat(target); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("Prepare created the target")
	}
	rep, err := Run(ctx, p, RunOptions{Events: func(e Event) { events = append(events, e) }})
	if err != nil {
		t.Fatalf("%v\n%+v", err, rep)
	}
	equalFiles(t, src, target)
	if !rep.OK || rep.Disks[0].Verified == 0 || rep.ID == "" || rep.Runs != 1 {
		t.Fatalf("report: %+v", rep)
	}
	var stages []string
	for _, s := range rep.Stages {
		stages = append(stages, s.Name+":"+s.Status)
	}
	if got := strings.Join(stages, " "); got != "freeze:done check:done restore:done verify:done inoculate:skipped finalize:done release:done" {
		t.Fatalf("stages: %s", got)
	}
	if s, _ := r.Session(ctx, "web01"); s == nil || s.State != tib.SessionActive {
		t.Fatalf("session after a resume release: %+v", s)
	}
	if _, err := os.Stat(target + ".cauldron-journal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("journal left after success")
	}
	ids, _ := r.Reports(ctx)
	if len(ids) != 1 || ids[0].String() != rep.ID {
		t.Fatalf("reports in the repository: %v", ids)
	}
	var sum strings.Builder
	rep.WriteText(&sum)
	if !strings.Contains(sum.String(), "succeeded") || !strings.Contains(sum.String(), "verified by hash") {
		t.Fatalf("summary:\n%s", sum.String())
	}
	// Progress events came with totals.
	sawProgress := false
	for _, e := range events {
		sawProgress = sawProgress || (e.Kind == EventProgress && e.Stage == StageRestore && e.Total > 0)
	}
	if !sawProgress {
		t.Fatal("no restore progress events")
	}

	// Verification catches a changed byte inside restored data.
	f, _ := os.OpenFile(target, os.O_RDWR, 0)
	data, _ := os.ReadFile(filepath.Join(dir, "files", "f00.txt"))
	all, _ := os.ReadFile(target)
	at := bytes.Index(all, data[:4096])
	if at < 0 {
		t.Fatal("file data not found in the target")
	}
	f.WriteAt([]byte{data[100] ^ 0xff}, int64(at+100))
	f.Close()
	tt, err := rtarget.New(target)
	if err != nil {
		t.Fatal(err)
	}
	_, err = write.Verify(ctx, r, write.VerifyOptions{Generation: gen, Disk: "disk0", Target: tt})
	var me *write.MismatchError
	if !errors.As(err, &me) || len(me.Ranges) != 1 || me.Ranges[0][0] > int64(at+100) || me.Ranges[0][1] <= int64(at+100) {
		t.Fatalf("verify of a changed target: %v", err)
	}
}

func TestRecoverResumesAfterInterruption(t *testing.T) {
	dir, r, repoPath, src, _ := captured(t)
	target := filepath.Join(dir, "target.img")
	req := Request{Name: "resume", Repo: r, RepoPath: repoPath, Machine: "web01", Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: target}}, Freeze: true, Inoculate: Inoculation{Skip: true}}
	p, err := Prepare(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(ctx, p, RunOptions{failAfter: "restore:disk0"})
	if err == nil || !strings.Contains(err.Error(), "stopped after restore:disk0") {
		t.Fatalf("interrupted run: %v", err)
	}
	if _, err := os.Stat(target + ".cauldron-journal"); err != nil {
		t.Fatalf("no journal after an interruption: %v", err)
	}
	// The machine stays frozen until the recovery ends: a capture is refused.
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "web01", Sources: []string{src}}); !errors.Is(err, tib.ErrFrozen) {
		t.Fatalf("capture during an interrupted recovery: %v", err)
	}
	// The second run: same request, resumes, ends with the same result, verified.
	p2, err := Prepare(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, p2, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	equalFiles(t, src, target)
	if rep.Runs != 2 || rep.Stages[0].Status != "resumed" || !strings.Contains(rep.Stages[2].Message, "1 disk(s) restored in an earlier run") || rep.Stages[3].Status != "done" || rep.Disks[0].Verified == 0 {
		t.Fatalf("resumed report: %+v", rep.Stages)
	}
	if s, _ := r.Session(ctx, "web01"); s != nil {
		t.Fatalf("session not removed at the end of a failover: %+v", s)
	}

	// A journal of another recovery at the same place is refused, naming it.
	p3, _ := Prepare(ctx, req)
	FileJournal(target+".cauldron-journal").Save(ctx, []byte(`{"fingerprint":"other","plan":{"machine":"db01","generation":"0123456789abcdef"}}`))
	if _, err := Run(ctx, p3, RunOptions{}); err == nil || !strings.Contains(err.Error(), "belongs to another recovery (of db01") {
		t.Fatalf("foreign journal: %v", err)
	}
}

func TestPrepareRefuses(t *testing.T) {
	dir, r, repoPath, _, _ := captured(t)
	small := filepath.Join(dir, "small.img")
	os.WriteFile(small, nil, 0o644)
	os.Truncate(small, 8<<20)
	before, _ := os.ReadFile(small)
	inRepo := filepath.Join(repoPath, "x.img")
	// A USB stick written from the Cauldron ISO: ISO 9660, volume ID CAULDRON.
	stick := filepath.Join(dir, "stick.img")
	pvd := make([]byte, 40<<10)
	copy(pvd[16*2048:], "\x01CD001\x01")
	copy(pvd[16*2048+40:], "CAULDRON                        ")
	os.WriteFile(stick, pvd, 0o644)
	os.Truncate(stick, 128<<20)
	for _, c := range []struct {
		req  Request
		want string
	}{
		{Request{Machine: "nosuch"}, `unknown machine "nosuch"`},
		{Request{Machine: "web01", Generation: "ffffffff"}, `"ffffffff"`},
		{Request{Machine: "web01", Disks: []DiskRequest{{Source: "disk7", Target: small}}}, `has no disk "disk7"`},
		{Request{Machine: "web01", Disks: []DiskRequest{{Source: "disk0", Target: small, Resize: partition.ResizeKeep}}}, "disk0 → " + small},
		{Request{Machine: "web01", Disks: []DiskRequest{{Source: "disk0", Target: inRepo}}}, "must never be written"},
		{Request{Machine: "web01", Disks: []DiskRequest{{Source: "disk0", Target: filepath.Join(dir, "nodir", "x.img")}}}, "does not exist"},
		{Request{Machine: "web01", Disks: []DiskRequest{{Source: "disk0", Target: small}}, Exclude: []string{small}}, "is excluded"},
		{Request{Machine: "web01", Disks: []DiskRequest{{Source: "disk0", Target: stick}}, Candidates: []string{stick, small}}, "holds the boot medium"},
		{Request{Machine: "web01", Candidates: []string{stick}}, "disk0"},
	} {
		c.req.Repo, c.req.RepoPath = r, repoPath
		if c.req.Candidates == nil {
			c.req.Candidates = []string{}
		}
		_, err := Prepare(ctx, c.req)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: got %v, want %q", c.req.Disks, err, c.want)
		}
	}
	after, _ := os.ReadFile(small)
	if !bytes.Equal(before, after) {
		t.Fatal("a refused plan wrote to the target")
	}
}

// TestPlanShowsInoculation: inoculation is part of the plan — the dry run says where it runs,
// for which hardware, with which drivers, on which volumes it looks for which system — and of
// its fingerprint (a journal of an off-target recovery is not resumed on-target).
func TestPlanShowsInoculation(t *testing.T) {
	dir, r, repoPath, _, _ := captured(t)
	prepare := func(in Inoculation) *Plan {
		p, err := Prepare(ctx, Request{Name: "t", Repo: r, RepoPath: repoPath, Machine: "web01", Candidates: []string{},
			Disks: []DiskRequest{{Source: "disk0", Target: filepath.Join(dir, "new.img")}}, Inoculate: in})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	text := func(p *Plan) string {
		var b bytes.Buffer
		p.WriteText(&b)
		return b.String()
	}
	on := prepare(Inoculation{OnTarget: true, Hardware: "nvme", Drivers: []string{"/run/media/drivers"}, DisableServices: []string{"vmware"}})
	for _, want := range []string{"on-target", "hardware nvme", "drivers from /run/media/drivers", "disable services: vmware", "disk0: looks for Linux on partition 1 (ext4)"} {
		if !strings.Contains(text(on), want) {
			t.Errorf("the plan does not say %q:\n%s", want, text(on))
		}
	}
	off := prepare(Inoculation{Hardware: "nvme", Drivers: []string{"/run/media/drivers"}, DisableServices: []string{"vmware"}})
	if !strings.Contains(text(off), "off-target") || off.Fingerprint == on.Fingerprint {
		t.Errorf("off-target: fingerprint %s (on-target %s)\n%s", off.Fingerprint, on.Fingerprint, text(off))
	}
	skipped := prepare(Inoculation{Skip: true, Why: "restore-disk writes the disk as it was captured"})
	if !strings.Contains(text(skipped), "inoculation: skipped (restore-disk writes the disk as it was captured)") {
		t.Errorf("a skipped inoculation does not say why:\n%s", text(skipped))
	}
}

// TestLayoutOnlyPlan: layout apply's way through the engine — a table-only plan needs no
// repository, passes the gate (a target in a protected folder is refused before anything is
// written), writes the table, skips what does not apply and says why, and keeps no journal.
func TestLayoutOnlyPlan(t *testing.T) {
	testenv.NeedTools(t, "sgdisk")
	dir := t.TempDir()
	src := sourceDisk(t, dir)
	layout, err := partition.ReadPath(src)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bigger.img")
	os.WriteFile(out, nil, 0o644)
	os.Truncate(out, 96<<20)
	cur, err := partition.ReadTarget(out)
	if err != nil {
		t.Fatal(err)
	}
	lp, err := partition.Plan(layout, cur, partition.PlanOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lp.Target.Path = out
	guarded := filepath.Join(dir, "guarded")
	os.Mkdir(guarded, 0o755)
	inside := filepath.Join(guarded, "x.img")
	os.WriteFile(inside, make([]byte, 96<<20), 0o644)
	if _, err := Prepare(ctx, Request{Name: "layout apply", LayoutOnly: true, Protect: []string{guarded},
		Disks: []DiskRequest{{Target: inside, Plan: lp}}}); err == nil || !strings.Contains(err.Error(), "protected path") {
		t.Fatalf("a table-only plan onto an image in a protected folder: %v", err)
	} else if ue := (*partition.UnsafeError)(nil); !errors.As(err, &ue) || ue.Target != inside {
		t.Fatalf("the gate's refusal is not reachable through the plan's error: %v", err)
	}
	p, err := Prepare(ctx, Request{Name: "layout apply", LayoutOnly: true, Protect: []string{src},
		Disks: []DiskRequest{{Target: out, Plan: lp}}})
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	p.WriteText(&text)
	if !strings.Contains(text.String(), "partition tables only") || !strings.Contains(text.String(), "inoculation: skipped (only partition tables are written)") {
		t.Errorf("the table-only plan:\n%s", text.String())
	}
	rep, err := Run(ctx, p, RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.LayoutOnly || rep.Disks[0].Table == nil || rep.ID != "" {
		t.Errorf("report: %+v", rep)
	}
	for _, st := range rep.Stages {
		if st.Status == "skipped" && st.Message == "" {
			t.Errorf("stage %s skipped without saying why", st.Name)
		}
	}
	if _, err := os.Stat(out + ".cauldron-journal"); err == nil {
		t.Error("a table-only plan left a journal")
	}
	if o := sh(t, "sgdisk", "-v", out); !strings.Contains(o, "No problems found") {
		t.Fatalf("sgdisk -v:\n%s", o)
	}
	got, err := partition.ReadPath(out)
	if err != nil || len(got.Partitions) != 1 || got.Partitions[0].Start != lp.Layout.Partitions[0].Start {
		t.Fatalf("the written table: %+v, %v", got, err)
	}
}

// TestOneTargetTwoNames: two source disks sent to one disk under two names (its node and a
// symlink to it) are refused while planning, before either is written.
func TestOneTargetTwoNames(t *testing.T) {
	testenv.NeedRoot(t)
	dir := t.TempDir()
	src := sourceDisk(t, dir)
	second := filepath.Join(dir, "second.img")
	sh(t, "cp", "--sparse=always", src, second)
	r, repoPath := newRepo(t, dir)
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "two", Sources: []string{src, second}}); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "target.img")
	os.WriteFile(img, nil, 0o644)
	os.Truncate(img, 64<<20)
	dev := testenv.AttachLoop(t, img)
	alias := filepath.Join(dir, "by-id-alias")
	os.Symlink(dev, alias)
	_, err := Prepare(ctx, Request{Name: "t", Repo: r, RepoPath: repoPath, Machine: "two", Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: dev}, {Source: "disk1", Target: alias}}, Inoculate: Inoculation{Skip: true}})
	if err == nil || !strings.Contains(err.Error(), "both go to one target") {
		t.Fatalf("two disks onto one target by two names: %v", err)
	}
	// A second device node for the same device (another path, the same device number).
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "node")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(st.Rdev)); err != nil {
		t.Fatal(err)
	}
	_, err = Prepare(ctx, Request{Name: "t", Repo: r, RepoPath: repoPath, Machine: "two", Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: dev}, {Source: "disk1", Target: node}}, Inoculate: Inoculation{Skip: true}})
	if err == nil || !strings.Contains(err.Error(), "both go to one target") {
		t.Fatalf("two disks onto one device by two nodes: %v", err)
	}
}

// TestInoculate4096Sectors: a generation of a disk with 4096-byte sectors recovered onto a new
// image is inoculated through a loop device with the same sector size (Target.Attach); with the
// 512-byte loop inoculation used to make, partx found no table and the recovery failed after its
// restore and verify ("/dev/loopNp1 did not appear").
func TestInoculate4096Sectors(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "sfdisk", "partx", "mkfs.ext4")
	dir := t.TempDir()
	src := filepath.Join(dir, "source4k.img")
	os.WriteFile(src, nil, 0o644)
	os.Truncate(src, 64<<20)
	dev := testenv.AttachLoop(t, src, "--sector-size", "4096")
	cmd := exec.Command("sfdisk", "--quiet", dev)
	cmd.Stdin = strings.NewReader("label: gpt\nstart=256, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
	cmd.CombinedOutput() // it cannot make the kernel re-read the table here; partx does
	sh(t, "partx", "-a", dev)
	sh(t, "mkfs.ext4", "-q", "-F", dev+"p1")
	testenv.DetachLoop(dev)
	r, repoPath := newRepo(t, dir)
	if _, err := r.Capture(ctx, tib.CaptureOptions{Machine: "m4k", Sources: []string{src}}); err != nil {
		t.Fatal(err)
	}
	p, err := Prepare(ctx, Request{Name: "t", Repo: r, RepoPath: repoPath, Machine: "m4k", Candidates: []string{},
		Disks: []DiskRequest{{Source: "disk0", Target: filepath.Join(dir, "out.img")}}})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Run(ctx, p, RunOptions{})
	if err != nil {
		t.Fatalf("recovery of a 4096-byte-sector disk with inoculation: %v", err)
	}
	if w := strings.Join(rep.Warnings, "\n"); !strings.Contains(w, "partition 1 (ext4)") {
		t.Fatalf("inoculation did not look into partition 1: %v", rep.Warnings)
	}
}
