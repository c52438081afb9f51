package windows

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/hivefixture"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

func mustMap(t testing.TB, ids []bcd.Identity, moves []bcd.Move) bcd.DiskMap {
	t.Helper()
	dm, err := bcd.NewDiskMap(ids, moves)
	if err != nil {
		t.Fatal(err)
	}
	return dm
}

func inoculateOK(t *testing.T, o Options) *Report {
	t.Helper()
	r, err := Inoculate(context.Background(), o)
	if err != nil {
		if r != nil {
			t.Log(r.Text())
		}
		t.Fatalf("Inoculate: %v", err)
	}
	if _, err := json.Marshal(r); err != nil {
		t.Fatalf("report does not marshal: %v", err)
	}
	return r
}

// TestInoculateWin7VirtioBlk: Windows 7 x86 (two control sets, CriticalDeviceDatabase) moved to
// a KVM virtio-blk disk that is re-signed with moved partitions: viostor from the w7/x86 folder in
// both control sets, CDDB entries for both virtio-blk IDs, MountedDevices and the BIOS BCD store
// following the new disk, files in place as ntfscat sees them on the unmounted image.
func TestInoculateWin7VirtioBlk(t *testing.T) {
	needTool(t, "hivexget", "ntfscat", "ntfsinfo", "reged")
	v := newVolume(t, 48)
	win7(t, v)
	tree := driverTree(t, map[string][]string{"viostor": {"w7/x86", "w7/amd64", "w10/amd64"}, "vioscsi": {"w7/x86"}})
	origSystem, _ := os.ReadFile(v.path(`Windows\System32\config\SYSTEM`))
	// The corpus hive's C: is on disk 5cbea03e at 1 MiB; the BIOS BCD template names disk
	// ddba6bbb (partitions at 1 and 101 MiB): two disks of the mapping, as two layout plans.
	m := bcd.Mapping{Disks: []bcd.DiskMap{
		mustMap(t, []bcd.Identity{{What: "disk signature", Old: "5cbea03e", New: "0badcafe"}}, []bcd.Move{{OldStart: 1 << 20, NewStart: 2 << 20}}),
		mustMap(t, []bcd.Identity{{What: "disk signature", Old: "ddba6bbb", New: "12345678"}}, []bcd.Move{{OldStart: 1 << 20, NewStart: 4 << 20}, {OldStart: 101 << 20, NewStart: 200 << 20}}),
	}}
	sector := make([]byte, 512)
	copy(sector[3:], "NTFS    ")
	r := inoculateOK(t, Options{Root: v.mnt, Drivers: []string{tree}, Hardware: "kvm-virtio-blk", Mapping: m, BootSector: sector,
		DisableServices: []string{"vmware"}})
	t.Log(r.Text())
	if r.System.Arch != "x86" || r.System.Version.Major != 6 || r.System.Version.Minor != 1 || len(r.System.ControlSets) != 2 {
		t.Fatalf("detected %+v", r.System)
	}
	if r.System.Firmware != FirmwareBIOS || r.System.BitLocker {
		t.Errorf("firmware %s, BitLocker %v", r.System.Firmware, r.System.BitLocker)
	}
	for _, c := range r.Choices {
		if c.Service != "viostor" || !strings.Contains(c.INF, filepath.Join("w7", "x86")) {
			t.Errorf("choice %+v, want viostor from w7/x86", c)
		}
	}
	sys := v.path(`Windows\System32\config\SYSTEM`)
	for _, cs := range []string{"ControlSet001", "ControlSet002"} {
		svc := cs + `\Services\viostor`
		wantValue(t, sys, svc, "Start", "0")
		wantValue(t, sys, svc, "Type", "1")
		wantValue(t, sys, svc, "Group", "SCSI miniport")
		wantValue(t, sys, svc, "ImagePath", `System32\drivers\viostor.sys`)
		for _, id := range []string{`pci#ven_1af4&dev_1001&subsys_00021af4&rev_00`, `pci#ven_1af4&dev_1042&subsys_11001af4&rev_01`} {
			wantValue(t, sys, cs+`\Control\CriticalDeviceDatabase\`+id, "Service", "viostor")
			wantValue(t, sys, cs+`\Control\CriticalDeviceDatabase\`+id, "ClassGUID", "{4D36E97B-E325-11CE-BFC1-08002BE10318}")
		}
		wantValue(t, sys, cs+`\Services\VMTools`, "Start", "4")
		if !regedHas(t, sys, `HKEY_LOCAL_MACHINE\SYSTEM`, `\`+cs+`\Services\viostor`) {
			t.Errorf("reged does not see %s\\Services\\viostor", cs)
		}
	}
	wantValue(t, sys, "Setup", "SetupType", "2")
	wantValue(t, sys, "Setup", "CmdLine", `cmd.exe /c "%SystemRoot%\Cauldron\firstboot.cmd"`)
	wantValue(t, v.path(`Windows\System32\config\SOFTWARE`), `Microsoft\Windows\CurrentVersion\RunOnce`, runOnceName, `cmd.exe /c "%SystemRoot%\Cauldron\firstboot.cmd"`)
	c, _ := hivexget(t, sys, "MountedDevices", `\DosDevices\C:`)
	want := binary.LittleEndian.AppendUint32(nil, 0x0badcafe)
	want = binary.LittleEndian.AppendUint64(want, 2<<20)
	if c != string(want) {
		t.Errorf("MountedDevices C: = % x, want % x", c, want)
	}
	for _, h := range []string{`Windows\System32\config\SYSTEM`, `Windows\System32\config\SOFTWARE`, `Boot\BCD`} {
		checkHive(t, v.path(h))
	}
	if b, _ := os.ReadFile(sys + BackupSuffix); !bytes.Equal(b, origSystem) {
		t.Error("SYSTEM.cauldron-backup is not the original hive")
	}
	st, err := bcd.Open(v.path(`Boot\BCD`))
	if err != nil {
		t.Fatal(err)
	}
	objs, _ := st.Objects()
	devices := 0
	for _, o := range objs {
		for _, e := range o.Elements {
			if e.Device == nil {
				continue
			}
			e.Device.Walk(func(where string, d *bcd.Descriptor) {
				if p := d.Partition; p != nil && p.Style == bcd.StyleMBR {
					devices++
					if p.Signature != 0x12345678 || (p.Offset != 4<<20 && p.Offset != 200<<20) {
						t.Errorf("BCD %s %s: %s", o.GUID, e.Key(), p)
					}
				}
			})
		}
	}
	if devices != 2 {
		t.Errorf("%d MBR device elements in the BCD store, want 2", devices)
	}
	script, err := os.ReadFile(v.path(`Windows\Cauldron\firstboot.cmd`))
	if err != nil || !bytes.Contains(script, []byte(`pnputil -i -a`)) || !bytes.Contains(script, []byte("\r\n")) {
		t.Errorf("first-boot script (Windows 7 pnputil syntax, CRLF): %v\n%s", err, script)
	}

	// A second run finds nothing left to do, and keeps the first run's backups.
	r2 := inoculateOK(t, Options{Root: v.mnt, Drivers: []string{tree}, Hardware: "kvm-virtio-blk", Mapping: m, DisableServices: []string{"vmware"}})
	if len(r2.Registry) != 0 {
		t.Errorf("second run changed the registry again: %+v", r2.Registry)
	}
	if b, _ := os.ReadFile(sys + BackupSuffix); !bytes.Equal(b, origSystem) {
		t.Error("the second run replaced SYSTEM.cauldron-backup")
	}

	v.unmount(t)
	sysFile := run(t, "ntfscat", v.img, "Windows/System32/drivers/viostor.sys")
	if sysFile != "MZ viostor for w7/x86" {
		t.Errorf("ntfscat viostor.sys = %q", sysFile)
	}
	if out := run(t, "ntfsinfo", "-F", "/Windows/Cauldron/Drivers/"+r.FirstBoot.Drivers[0]+"/viostor.inf", v.img); !strings.Contains(out, "Dumping Inode") {
		t.Errorf("ntfsinfo of the staged INF: %s", out)
	}
}

// TestInoculateWin10 covers Windows 10 x64 with its DRIVERS hive and a UEFI BCD on the ESP: first
// an NVMe target (the inbox stornvme, found through the DriverDatabase, whose StartOverride\0=3 in
// the corpus hive is the 0x7B trap), storahci asked for, VMware's services disabled and the GPT
// and MBR identities rewritten; then virtio-scsi from the driver tree, registered in both
// DriverDatabases and staged in the DriverStore.
func TestInoculateWin10(t *testing.T) {
	needTool(t, "hivexget", "ntfscat")
	v := newVolume(t, 64)
	esp := win10(t, v)
	sys := v.path(`Windows\System32\config\SYSTEM`)
	drv := v.path(`Windows\System32\config\DRIVERS`)
	if got, _ := hivexget(t, sys, `ControlSet001\Services\stornvme\StartOverride`, "0"); got != "3" {
		t.Fatalf("fixture: stornvme StartOverride\\0 = %q, want the corpus trap 3", got)
	}
	// The mapping: the UEFI store's GPT disk and partitions, read from it; the hive's MBR disk.
	st, err := bcd.Open(filepath.Join(esp, "EFI", "Microsoft", "Boot", "BCD"))
	if err != nil {
		t.Fatal(err)
	}
	// One identity list per disk (the store names two disks), new GUIDs numbered.
	perDisk := map[string][]bcd.Identity{}
	var disks []string
	seen := map[string]bool{}
	n := 0
	newGUID := func() string { n++; return fmt.Sprintf("%08x-aaaa-4bbb-8ccc-0123456789ab", n) }
	objs, _ := st.Objects()
	for _, o := range objs {
		for _, e := range o.Elements {
			if e.Device == nil {
				continue
			}
			e.Device.Walk(func(_ string, d *bcd.Descriptor) {
				p := d.Partition
				if p == nil || p.Style != bcd.StyleGPT {
					return
				}
				if !seen[p.DiskGUID] {
					seen[p.DiskGUID] = true
					disks = append(disks, p.DiskGUID)
					perDisk[p.DiskGUID] = append(perDisk[p.DiskGUID], bcd.Identity{What: "disk GUID", Old: p.DiskGUID, New: fmt.Sprintf("feedface-0000-4000-8000-%012d", len(disks))})
				}
				if p.PartitionGUID != "" && !seen[p.PartitionGUID] {
					seen[p.PartitionGUID] = true
					perDisk[p.DiskGUID] = append(perDisk[p.DiskGUID], bcd.Identity{What: "partition GUID", Old: p.PartitionGUID, New: newGUID()})
				}
			})
		}
	}
	if len(disks) < 1 {
		t.Fatal("the UEFI store names no GPT disk")
	}
	m := bcd.Mapping{Disks: []bcd.DiskMap{mustMap(t, []bcd.Identity{{What: "disk signature", Old: "df4546ae", New: "c0ffee00"}}, []bcd.Move{{OldStart: 0x1f500000, NewStart: 0x20000000}, {OldStart: 1 << 20, NewStart: 1 << 20}, {OldStart: 0x22e1858000, NewStart: 0x22e1858000}, {OldStart: 0x18e1858000, NewStart: 0x18e1858000}})}}
	for _, d := range disks {
		m.Disks = append(m.Disks, mustMap(t, perDisk[d], nil))
	}

	r := inoculateOK(t, Options{Root: v.mnt, ESP: esp, Hardware: "nvme", EnableInbox: []string{"storahci"}, DisableServices: []string{"vmware"}, Mapping: m})
	t.Log(r.Text())
	if r.System.Firmware != FirmwareUEFI || r.System.Arch != "amd64" || !r.System.FastStartup || len(r.System.PendingReboot) == 0 {
		t.Errorf("detected firmware %s arch %s fast startup %v pending %v", r.System.Firmware, r.System.Arch, r.System.FastStartup, r.System.PendingReboot)
	}
	if len(r.Choices) != 1 || r.Choices[0].Service != "stornvme" || r.Choices[0].Source != "inbox" {
		t.Fatalf("choices %+v", r.Choices)
	}
	for _, cs := range r.System.ControlSets {
		wantValue(t, sys, cs+`\Services\stornvme`, "Start", "0")
		wantValue(t, sys, cs+`\Services\storahci`, "Start", "0")
		if _, ok := hivexget(t, sys, cs+`\Services\stornvme\StartOverride`, "0"); ok {
			t.Errorf("%s: stornvme StartOverride still there", cs)
		}
		wantValue(t, sys, cs+`\Services\VMTools`, "Start", "4")
		wantValue(t, sys, cs+`\Services\pvscsi`, "Start", "4")
	}
	c, _ := hivexget(t, sys, "MountedDevices", `\DosDevices\C:`)
	want := binary.LittleEndian.AppendUint32(nil, 0xc0ffee00)
	want = binary.LittleEndian.AppendUint64(want, 0x20000000)
	if c != string(want) {
		t.Errorf("MountedDevices C: = % x, want % x", c, want)
	}
	if len(r.BCD) != 1 || r.BCD[0].Elements == 0 {
		t.Fatalf("BCD results %+v", r.BCD)
	}
	st, err = bcd.Open(filepath.Join(esp, "EFI", "Microsoft", "Boot", "BCD"))
	if err != nil {
		t.Fatal(err)
	}
	objs, _ = st.Objects()
	for _, o := range objs {
		for _, e := range o.Elements {
			if e.Device == nil {
				continue
			}
			e.Device.Walk(func(where string, d *bcd.Descriptor) {
				if p := d.Partition; p != nil && p.Style == bcd.StyleGPT && !strings.HasPrefix(p.DiskGUID, "FEEDFACE-0000-4000-8000-") {
					t.Errorf("BCD %s %s %s still names disk %s", o.GUID, e.Key(), where, p.DiskGUID)
				}
			})
		}
	}
	checkHive(t, filepath.Join(esp, "EFI", "Microsoft", "Boot", "BCD"))

	// Now virtio-scsi from the driver tree on the same system.
	tree := driverTree(t, map[string][]string{"vioscsi": {"w10/amd64", "w10/x86", "w8/amd64"}, "viostor": {"w10/amd64"}})
	r = inoculateOK(t, Options{Root: v.mnt, ESP: esp, Drivers: []string{tree}, Hardware: "kvm-virtio-scsi"})
	t.Log(r.Text())
	if len(r.Choices) != 2 || r.Choices[0].Service != "vioscsi" || !strings.Contains(r.Choices[0].INF, filepath.Join("w10", "amd64")) {
		t.Fatalf("choices %+v", r.Choices)
	}
	pkgName := r.FirstBoot.Drivers[0]
	if !strings.HasPrefix(pkgName, "vioscsi.inf_amd64_") {
		t.Fatalf("package %s", pkgName)
	}
	oem, _ := hivexget(t, sys, `DriverDatabase\DriverPackages\`+pkgName, "")
	if oem != "oem12.inf" {
		t.Errorf("published name %q, want oem12.inf (oem11 is taken)", oem)
	}
	for _, h := range []string{sys, drv} {
		wantValue(t, h, `DriverDatabase\DriverInfFiles\oem12.inf`, "Active", pkgName)
		if got, ok := hivexget(t, h, `DriverDatabase\DeviceIds\PCI\VEN_1AF4&DEV_1004&SUBSYS_00081AF4&REV_00`, "oem12.inf"); !ok || got != "\x01\xff\x00\x00" {
			t.Errorf("%s DeviceIds: %q %v", filepath.Base(h), got, ok)
		}
		wantValue(t, h, `DriverDatabase\DriverPackages\`+pkgName+`\Configurations\scsi_inst`, "Service", "vioscsi")
		wantValue(t, h, `DriverDatabase\DriverPackages\`+pkgName+`\Descriptors\PCI\VEN_1AF4&DEV_1048&SUBSYS_11001AF4&REV_01`, "Configuration", "scsi_inst")
		checkHive(t, h)
	}
	// hivexregedit (hivex's Perl exporter) reads the new package key of the DRIVERS hive.
	needTool(t, "hivexregedit")
	if out := run(t, "hivexregedit", "--export", drv, `\DriverDatabase\DriverPackages\`+pkgName); !strings.Contains(out, `Configurations\scsi_inst]`) {
		t.Errorf("hivexregedit --export of the package:\n%s", out)
	}
	for _, cs := range r.System.ControlSets {
		wantValue(t, sys, cs+`\Services\vioscsi`, "Start", "0")
		wantValue(t, sys, cs+`\Services\vioscsi`, "Owners", "oem12.inf")
	}
	// Run again: the package keeps its published name and nothing changes.
	again := inoculateOK(t, Options{Root: v.mnt, ESP: esp, Drivers: []string{tree}, Hardware: "kvm-virtio-scsi"})
	if len(again.Registry) != 0 {
		t.Errorf("a second run changed %d registry values, first %+v", len(again.Registry), again.Registry[0])
	}
	for _, f := range again.Files {
		if f.Action != "unchanged" {
			t.Errorf("a second run rewrote %s (%s)", f.Path, f.Action)
		}
	}
	script, _ := os.ReadFile(v.path(`Windows\Cauldron\firstboot.cmd`))
	if !bytes.Contains(script, []byte(`pnputil /add-driver`)) {
		t.Errorf("first-boot script lacks the Windows 10 pnputil syntax:\n%s", script)
	}
	v.unmount(t)
	for _, p := range []string{"Windows/System32/drivers/vioscsi.sys", "Windows/System32/DriverStore/FileRepository/" + pkgName + "/vioscsi.sys"} {
		if got := run(t, "ntfscat", v.img, p); got != "MZ vioscsi for w10/amd64" {
			t.Errorf("ntfscat %s = %q", p, got)
		}
	}
	infText := run(t, "ntfscat", v.img, "Windows/INF/oem12.inf")
	if strings.Contains(infText, "$ARCH$") || len(infText) < 100 {
		t.Errorf("published INF is not the stamped one (%d bytes)", len(infText))
	}
}

// TestInoculateDirtyWithLogs: the dirty corpus SYSTEM hive with its LOG1/LOG2 is replayed first,
// written clean, its logs emptied and kept as backups; its GPT C: (a DMIO:ID: value) follows a
// new partition GUID.
func TestInoculateDirtyWithLogs(t *testing.T) {
	needTool(t, "hivexget")
	v := newVolume(t, 96)
	v.put(t, `Windows\System32\config\SYSTEM`, readCorpus(t, "hives/regipy-SYSTEM_B.xz"))
	v.put(t, `Windows\System32\config\SYSTEM.LOG1`, readCorpus(t, "hives/regipy-SYSTEM_B.LOG1.xz"))
	v.put(t, `Windows\System32\config\SYSTEM.LOG2`, readCorpus(t, "hives/regipy-SYSTEM_B.LOG2.xz"))
	v.put(t, `Windows\System32\config\SOFTWARE`, hivefixture.Software(t, "reg/v2v-win11-software.reg"))
	v.dummyDrivers(t, "storahci", "stornvme")
	// C: of this hive is GPT partition 09931f21-7faf-44a9-81d8-1e73c14b9eaf.
	m := bcd.Mapping{Disks: []bcd.DiskMap{mustMap(t, []bcd.Identity{
		{What: "disk GUID", Old: "11111111-1111-1111-1111-111111111111", New: "22222222-2222-2222-2222-222222222222"},
		{What: "partition GUID", Old: "09931f21-7faf-44a9-81d8-1e73c14b9eaf", New: "abcdef01-2345-4678-9abc-def012345678"}}, nil)}}
	r := inoculateOK(t, Options{Root: v.mnt, Hardware: "ahci", Mapping: m})
	t.Log(r.Text())
	ng, _ := bcd.ParseGUID("abcdef01-2345-4678-9abc-def012345678")
	if c, _ := hivexget(t, v.path(`Windows\System32\config\SYSTEM`), "MountedDevices", `\DosDevices\C:`); c != "DMIO:ID:"+string(ng[:]) {
		t.Errorf("MountedDevices C: = % x", c)
	}
	if len(r.System.HiveLogs) == 0 {
		t.Error("no replay reported")
	}
	sys := v.path(`Windows\System32\config\SYSTEM`)
	checkHive(t, sys)
	for _, cs := range r.System.ControlSets {
		wantValue(t, sys, cs+`\Services\storahci`, "Start", "0")
	}
	for _, l := range []string{"LOG1", "LOG2"} {
		if fi, err := os.Stat(sys + "." + l); err != nil || fi.Size() != 0 {
			t.Errorf("SYSTEM.%s not emptied: %v", l, err)
		}
		if fi, err := os.Stat(sys + "." + l + BackupSuffix); err != nil || fi.Size() == 0 {
			t.Errorf("SYSTEM.%s not kept: %v", l, err)
		}
	}
}

// TestDryRunWritesNothing: a dry run computes the full report (drivers, DriverDatabase,
// identities) and the volume and ESP hash the same before and after.
func TestDryRunWritesNothing(t *testing.T) {
	v := newVolume(t, 64)
	esp := win10(t, v)
	tree := driverTree(t, map[string][]string{"viostor": {"w10/amd64"}})
	before := treeHash(t, v.mnt, esp)
	m := bcd.Mapping{Disks: []bcd.DiskMap{mustMap(t, []bcd.Identity{{What: "disk signature", Old: "df4546ae", New: "c0ffee00"}}, nil)}}
	r := inoculateOK(t, Options{Root: v.mnt, ESP: esp, Drivers: []string{tree}, Hardware: "kvm-virtio-blk", DisableServices: []string{"hyperv"}, Mapping: m, DryRun: true})
	if after := treeHash(t, v.mnt, esp); after != before {
		t.Fatal("the dry run changed the volume")
	}
	if len(r.Registry) < 20 || len(r.Files) < 5 || r.FirstBoot == nil {
		t.Fatalf("dry-run report too thin: %d registry changes, %d files", len(r.Registry), len(r.Files))
	}
	for _, f := range r.Files {
		if f.Done {
			t.Errorf("dry run reports %s done", f.Path)
		}
	}
	if !strings.Contains(r.Text(), "dry run") {
		t.Error("text report does not say dry run")
	}
}

// TestBadInput: every refusal names the problem and leaves the volume as it was.
func TestBadInput(t *testing.T) {
	v := newVolume(t, 64)
	esp := win10(t, v)
	tree := driverTree(t, map[string][]string{"viostor": {"w10/amd64"}})
	x86Only := driverTree(t, map[string][]string{"vioscsi": {"w10/x86"}})
	flatX86 := t.TempDir()
	// A flat folder with an INF whose only models are for x86.
	f86 := filepath.Join(x86Only, "vioscsi", "w10", "x86")
	for _, n := range []string{"vioscsi.inf", "vioscsi.sys", "vioscsi.cat"} {
		b, _ := os.ReadFile(filepath.Join(f86, n))
		os.WriteFile(filepath.Join(flatX86, n), b, 0o644)
	}
	noSys := driverTree(t, map[string][]string{"viostor": {"w10/amd64"}})
	os.Remove(filepath.Join(noSys, "viostor", "w10", "amd64", "viostor.sys"))
	sysPath := v.path(`Windows\System32\config\SYSTEM`)
	good, _ := os.ReadFile(sysPath)
	bitlocker := make([]byte, 512)
	copy(bitlocker[3:], "-FVE-FS-")
	cases := []struct {
		name  string
		setup func()
		undo  func()
		o     Options
		want  string
	}{
		{name: "corrupted hive", setup: func() { os.WriteFile(sysPath, readCorpus(t, "hives/regipy-corrupted_system_hive.xz"), 0o644) },
			undo: func() { os.WriteFile(sysPath, good, 0o644) }, o: Options{Hardware: "nvme"}, want: "SYSTEM hive"},
		{name: "dirty without logs", setup: func() { os.WriteFile(sysPath, readCorpus(t, "hives/regipy-SYSTEM_WIN_10_1709.xz"), 0o644) },
			undo: func() { os.WriteFile(sysPath, good, 0o644) }, o: Options{Hardware: "nvme"}, want: "is dirty"},
		{name: "no driver for the controller", o: Options{Hardware: "kvm-virtio-scsi", Drivers: []string{tree}}, want: "no driver for virtio-scsi"},
		{name: "INF without the architecture (virtio-win layout)", o: Options{Hardware: "kvm-virtio-scsi", Drivers: []string{x86Only}}, want: "only for another architecture: x86"},
		{name: "INF without the architecture (flat)", o: Options{Hardware: "kvm-virtio-scsi", Drivers: []string{flatX86}}, want: "amd64"},
		{name: "driver files missing", o: Options{Hardware: "kvm-virtio-blk", Drivers: []string{noSys}}, want: "files missing beside the INF: viostor.sys"},
		{name: "hibernated", setup: func() { v.put(t, "hiberfil.sys", append([]byte("HIBR"), make([]byte, 4092)...)) },
			undo: func() { os.Remove(v.path("hiberfil.sys")) }, o: Options{Hardware: "nvme"}, want: "hibernated"},
		{name: "BitLocker", o: Options{Hardware: "nvme", BootSector: bitlocker}, want: "BitLocker"},
		{name: "unknown profile", o: Options{Hardware: "floppy"}, want: "unknown hardware profile"},
		{name: "inbox driver not installed", o: Options{Hardware: "nvme", EnableInbox: []string{"nosuchdrv"}}, want: "nosuchdrv is not installed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup()
			}
			if c.undo != nil {
				defer c.undo()
			}
			before := treeHash(t, v.mnt, esp)
			c.o.Root, c.o.ESP = v.mnt, esp
			r, err := Inoculate(context.Background(), c.o)
			if err == nil {
				t.Fatalf("no error; report:\n%s", r.Text())
			}
			t.Logf("error: %v", err)
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
			if strings.Count(err.Error(), "\n") > 3 {
				t.Errorf("error is not one clear message: %q", err)
			}
			if treeHash(t, v.mnt, esp) != before {
				t.Error("the volume changed although Inoculate failed")
			}
		})
	}
}

// TestDetect reads a volume without writing, and finds what the fixtures hold.
func TestDetect(t *testing.T) {
	v := newVolume(t, 64)
	esp := win10(t, v)
	v.put(t, `Windows\System32\config\SOFTWARE`, hivefixture.Software(t, "reg/v2v-win10-software.reg", regfOps(t, `[HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows\DeviceInstall\Restrictions]
"DenyUnspecified"=dword:00000001
`)...))
	before := treeHash(t, v.mnt, esp)
	s, err := Detect(context.Background(), Options{Root: v.mnt, ESP: esp})
	if err != nil {
		t.Fatal(err)
	}
	if treeHash(t, v.mnt, esp) != before {
		t.Fatal("Detect changed the volume")
	}
	if s.Version.Build != 17763 || s.Arch != "amd64" || s.ProductType != "workstation" || s.Firmware != FirmwareUEFI || s.DriversHive == "" {
		t.Errorf("detected %+v", s)
	}
	if len(s.DeviceInstallRestrictions) != 1 || !strings.Contains(s.BitLockerState, "not checked") {
		t.Errorf("restrictions %v, BitLocker %q", s.DeviceInstallRestrictions, s.BitLockerState)
	}
	if !strings.Contains(s.Text(), "Fast Startup on") {
		t.Errorf("text:\n%s", s.Text())
	}
	// Detect reads a dirty hive without logs as it is, and says so (Inoculate refuses it).
	v.put(t, `Windows\System32\config\SYSTEM`, readCorpus(t, "hives/regipy-SYSTEM_WIN_10_1709.xz"))
	s, err = Detect(context.Background(), Options{Root: v.mnt, ESP: esp})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Warnings) == 0 || !strings.Contains(strings.Join(s.Warnings, " "), "dirty") {
		t.Errorf("no warning about the dirty hive: %v", s.Warnings)
	}
}

func regfOps(t testing.TB, text string) []regf.RegOp {
	t.Helper()
	ops, err := regf.ParseReg(strings.NewReader("Windows Registry Editor Version 5.00\n\n"+text), `HKEY_LOCAL_MACHINE\SOFTWARE`)
	if err != nil {
		t.Fatal(err)
	}
	return ops
}

// TestDetectControllers reads a sysfs tree: a virtio-blk disk and an AHCI controller are storage,
// a network card is not.
func TestDetectControllers(t *testing.T) {
	sysfs := t.TempDir()
	dev := func(slot string, attrs map[string]string) {
		d := filepath.Join(sysfs, "bus", "pci", "devices", slot)
		os.MkdirAll(d, 0o755)
		for k, val := range attrs {
			os.WriteFile(filepath.Join(d, k), []byte(val+"\n"), 0o644)
		}
	}
	dev("0000:00:04.0", map[string]string{"vendor": "0x1af4", "device": "0x1001", "subsystem_vendor": "0x1af4", "subsystem_device": "0x0002", "revision": "0x00", "class": "0x010000"})
	dev("0000:00:1f.2", map[string]string{"vendor": "0x8086", "device": "0x2922", "subsystem_vendor": "0x1af4", "subsystem_device": "0x1100", "revision": "0x02", "class": "0x010601"})
	dev("0000:00:03.0", map[string]string{"vendor": "0x1af4", "device": "0x1000", "subsystem_vendor": "0x1af4", "subsystem_device": "0x0001", "revision": "0x00", "class": "0x020000"})
	hv := filepath.Join(sysfs, "bus", "vmbus", "devices", "f8b3781b-1e82-4818-a1c3-63d806ec15bb")
	os.MkdirAll(hv, 0o755)
	os.WriteFile(filepath.Join(hv, "class_id"), []byte("{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}\n"), 0o644)
	cs, err := DetectControllers(sysfs)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 || cs[2].HardwareIDs[0] != `VMBUS\{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}` || cs[2].Also[0] != "vmbus" {
		t.Fatalf("%d controllers: %+v", len(cs), cs)
	}
	cs = cs[:2]
	if len(cs) != 2 {
		t.Fatalf("%d controllers: %+v", len(cs), cs)
	}
	want := []string{`PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00`, `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4`, `PCI\VEN_1AF4&DEV_1001&CC_010000`, `PCI\VEN_1AF4&DEV_1001&CC_0100`}
	if strings.Join(cs[0].HardwareIDs, " ") != strings.Join(want, " ") {
		t.Errorf("hardware IDs %v", cs[0].HardwareIDs)
	}
	if cs[0].CompatibleIDs[len(cs[0].CompatibleIDs)-1] != `PCI\CC_0100` || len(cs[1].Inbox) == 0 || cs[1].Inbox[0].Service != "storahci" {
		t.Errorf("compatible IDs %v, AHCI inbox %v", cs[0].CompatibleIDs, cs[1].Inbox)
	}
	os.WriteFile(filepath.Join(sysfs, "bus", "pci", "devices", "0000:00:1f.2", "class"), []byte("junk"), 0o644)
	if _, err := DetectControllers(sysfs); err == nil || !strings.Contains(err.Error(), "0000:00:1f.2") {
		t.Errorf("bad class attribute: %v", err)
	}
	if _, err := DetectControllers(t.TempDir()); err == nil {
		t.Error("no controllers: no error")
	}
}

// TestResolve guards the path resolution the whole package depends on: exact names
// win, case-insensitive ones are found, ambiguous ones refused, missing parts kept as given.
func TestResolve(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "Windows", "system32", "DRIVERS"), 0o755)
	p, ok, err := resolve(root, `WINDOWS\System32\drivers\x.sys`)
	if err != nil || ok || p != filepath.Join(root, "Windows", "system32", "DRIVERS", "x.sys") {
		t.Errorf("resolve = %s %v %v", p, ok, err)
	}
	os.MkdirAll(filepath.Join(root, "windows"), 0o755)
	if _, _, err := resolve(root, `WINDOWS\System32`); err == nil {
		t.Error("ambiguous Windows/windows not refused")
	}
	if p, ok, _ := resolve(root, `Windows\system32`); !ok || p != filepath.Join(root, "Windows", "system32") {
		t.Errorf("exact match: %s %v", p, ok)
	}
	if _, _, err := resolve(root, `Windows\..\etc`); err == nil {
		t.Error(".. accepted")
	}
}
