package restore

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/hivefixture"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
	"github.com/cauldron-dr/cauldron/internal/corpus"
	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/tib"
)

// loopAt attaches [off, off+size) of img to a loop device, detached at cleanup.
func loopAt(t *testing.T, img string, off, size int64) string {
	t.Helper()
	return testenv.AttachLoop(t, img, "--offset", strconv.FormatInt(off, 10), "--sizelimit", strconv.FormatInt(size, 10))
}

// ntfsMount mounts an NTFS device through ntfs-3g and returns the mount point and an unmount.
func ntfsMount(t *testing.T, dev string, force bool) (string, func()) {
	t.Helper()
	dir := t.TempDir()
	args := []string{dev, dir}
	if force {
		args = append([]string{"-o", "force"}, args...)
	}
	sh(t, "ntfs-3g", args...)
	done := false
	un := func() {
		if !done {
			done = true
			sh(t, "umount", dir)
		}
	}
	t.Cleanup(un)
	return dir, un
}

// A recovery of a Windows 7 machine (a real SYSTEM hive, a SOFTWARE hive built from virt-v2v's
// .reg text, a real BIOS BCD store, on an NTFS volume placed where the hive's MountedDevices says
// C: is) onto a bigger disk with renewed identities, inoculated for AHCI by the engine itself:
// msahci starts at boot in every control set, and C: and the BCD name the new disk signature.
func TestRecoverInoculatesWindows(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "sfdisk", "mkntfs", "ntfs-3g", "ntfsresize", "hivexget", "losetup", "partx")
	dir := t.TempDir()
	system, err := os.ReadFile(corpus.File(t, "hives/regipy-SYSTEM.xz"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := regf.Parse(append([]byte(nil), system...))
	if err != nil {
		t.Fatal(err)
	}
	md, err := h.Lookup(`MountedDevices`)
	if err != nil {
		t.Fatal(err)
	}
	c, ok, err := md.Value(`\DosDevices\C:`)
	if err != nil || !ok {
		t.Fatalf("the corpus hive has no C: in MountedDevices: %v", err)
	}
	cData, _ := c.Data()
	sig := binary.LittleEndian.Uint32(cData)
	cOff := int64(binary.LittleEndian.Uint64(cData[4:]))

	// The source disk: the signature and C:'s offset the hive remembers.
	src := filepath.Join(dir, "win7.img")
	os.WriteFile(src, nil, 0o644)
	os.Truncate(src, cOff+96<<20)
	cmd := exec.Command("sfdisk", "--quiet", src)
	cmd.Stdin = strings.NewReader("label: dos\nlabel-id: 0x" + strconv.FormatUint(uint64(sig), 16) + "\n" +
		"start=" + strconv.FormatInt(cOff/512, 10) + ", size=" + strconv.Itoa(96<<20/512) + ", type=7, bootable\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v %s", err, out)
	}
	vol := loopAt(t, src, cOff, 96<<20)
	sh(t, "mkntfs", "-F", "-Q", "-q", "-L", "Windows", "-p", strconv.FormatInt(cOff/512, 10), "-H", "255", "-S", "63", vol)
	root, unmount := ntfsMount(t, vol, false)
	put := func(rel string, data []byte) {
		p := filepath.Join(root, rel)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("Windows/System32/config/SYSTEM", system)
	put("Windows/System32/config/SOFTWARE", hivefixture.Software(t, "reg/v2v-win7-32-software.reg"))
	put("Windows/System32/drivers/msahci.sys", []byte("inbox AHCI driver stand-in"))
	put("Boot/BCD", bcdFor(t, sig, cOff))
	unmount()
	testenv.DetachLoop(vol)

	r, repoPath := newRepo(t, dir)
	if _, err := r.Capture(ctx, captureOf("win7", src)); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "target.img")
	os.WriteFile(target, nil, 0o644)
	os.Truncate(target, cOff+160<<20)
	p, err := Prepare(ctx, Request{Name: "win7", Repo: r, RepoPath: repoPath, Machine: "win7", Candidates: []string{},
		Disks:     []DiskRequest{{Source: "disk0", Target: target, Resize: partition.ResizeGrowLast, Identity: partition.IdentityRenew}},
		Inoculate: Inoculation{Hardware: "ahci"}})
	if err != nil {
		t.Fatal(err)
	}
	var newSig string
	for _, id := range p.Disks[0].Layout.Identities {
		if id.What == "disk signature" {
			newSig = id.New
		}
	}
	rep, err := Run(context.Background(), p, RunOptions{Inoculate: Inoculate})
	if err != nil {
		t.Fatalf("%v\n%+v", err, rep)
	}
	if len(rep.Inoculation) == 0 {
		t.Fatal("the report lists no inoculation changes")
	}
	// The NTFS volume grew, yet its restored bytes were compared with the generation first.
	if rep.Disks[0].Verified == 0 || len(rep.Disks[0].Resized) == 0 || len(rep.Disks[0].Checked) == 0 {
		t.Errorf("verified %d bytes before the grow of %v; checked %v", rep.Disks[0].Verified, rep.Disks[0].Resized, rep.Disks[0].Checked)
	}
	// Judge the result with hivexget and the BCD reader on the restored volume.
	m := p.Disks[0].Layout.Moves[0]
	tv := loopAt(t, target, m.NewStart, m.NewSize)
	troot, _ := ntfsMount(t, tv, true)
	// The report is on the recovered system too.
	copies, _ := filepath.Glob(filepath.Join(troot, "Windows/Cauldron/recovery-*.json"))
	if len(copies) != 1 {
		t.Errorf("report copies on the restored volume: %v", copies)
	} else if b, _ := os.ReadFile(copies[0]); !bytes.Contains(b, []byte(`"machine": "win7"`)) {
		t.Errorf("the copied report does not name the machine:\n%.300s", b)
	}
	hive := filepath.Join(troot, "Windows/System32/config/SYSTEM")
	for _, cs := range []string{"ControlSet001", "ControlSet002"} {
		out, err := exec.Command("hivexget", hive, cs+`\services\msahci`, "Start").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "0" {
			t.Errorf("%s msahci Start: %q %v", cs, out, err)
		}
	}
	th, err := regf.Open(hive)
	if err != nil {
		t.Fatal(err)
	}
	k, _ := th.Lookup(`MountedDevices`)
	v, _, _ := k.Value(`\DosDevices\C:`)
	got, _ := v.Data()
	wantSig, _ := strconv.ParseUint(newSig, 16, 32)
	if binary.LittleEndian.Uint32(got) != uint32(wantSig) || int64(binary.LittleEndian.Uint64(got[4:])) != m.NewStart {
		t.Errorf("C: is % x, want signature %s at %d", got, newSig, m.NewStart)
	}
	store, err := bcd.Open(filepath.Join(troot, "Boot/BCD"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := store.Objects()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, o := range objs {
		for _, e := range o.Elements {
			if e.Device == nil {
				continue
			}
			e.Device.Walk(func(_ string, d *bcd.Descriptor) {
				if d.Partition != nil && d.Partition.Style == bcd.StyleMBR {
					seen++
					if d.Partition.Signature != uint32(wantSig) {
						t.Errorf("%s %s names disk %08x, want %s", o.Name, e.Name, d.Partition.Signature, newSig)
					}
				}
			})
		}
	}
	if seen == 0 {
		t.Error("the BCD store has no MBR partition device element: the check proves nothing")
	}
	if !bytes.Contains([]byte(strings.Join(rep.Inoculation, "\n")), []byte("msahci")) {
		t.Errorf("the report does not mention msahci:\n%s", strings.Join(rep.Inoculation, "\n"))
	}
}

// bcdFor is the corpus BIOS BCD store (windeploy's template) pointed at the test's source disk:
// its MBR partition elements name disk ddba6bbb at 1 MiB; the bcd package rewrites them to name
// sig at off, as the store of the captured machine would.
func bcdFor(t *testing.T, sig uint32, off int64) []byte {
	t.Helper()
	path := corpus.Copy(t, "bcd/windeploy-BCD-bios")
	store, err := bcd.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	dm, err := bcd.NewDiskMap([]bcd.Identity{{What: "disk signature", Old: "ddba6bbb", New: strconv.FormatUint(uint64(sig), 16)}},
		[]bcd.Move{{OldStart: 1 << 20, NewStart: off}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Rewrite(bcd.Mapping{Disks: []bcd.DiskMap{dm}}); err != nil {
		t.Fatal(err)
	}
	if err := store.Save(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func captureOf(machine, src string) tib.CaptureOptions {
	return tib.CaptureOptions{Machine: machine, Sources: []string{src}}
}
