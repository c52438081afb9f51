package linux

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
)

func TestInoculateDebianBIOS(t *testing.T) {
	root := debianTree(t)
	newRoot := "11111111-2222-4333-8444-555555555555"
	newSwap := "22222222-3333-4444-8555-666666666666"
	o := Options{
		Root:    root,
		Drivers: []string{"nvme", "nvme-core", "sd_mod"},
		Renames: []Rename{
			{FSUUID, rootUUID, newRoot},
			{FSUUID, swapUUID, newSwap},
			{PartUUID, lukPART, "99999999-8888-4777-8666-555544443333"},
			{DiskSignature, "1234abcd", "cafe0001"},
			{Device, "/dev/vda2", "/dev/nvme0n1p2"},
		},
		Firmware: BIOS,
		BootDisk: "/dev/null", // not a block device
	}
	tools := &fakeTools{}
	o.Runner = tools
	if _, err := Inoculate(context.Background(), o); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Fatalf("a boot disk that is no block device: %v", err)
	}
	o.BootDisk = findBlockDevice(t)

	// A dry run writes nothing, runs nothing, and reports everything.
	before := snapshot(t, root)
	o.DryRun = true
	rep, err := Inoculate(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Fatalf("the dry run changed files: %v", d)
	}
	if len(tools.ran) != 0 || tools.prepared != 0 {
		t.Fatalf("the dry run ran %v", tools.ran)
	}
	paths := map[string]FileChange{}
	for _, f := range rep.Files {
		paths[f.Path] = f
		if f.Done {
			t.Errorf("dry run: %s marked done", f.Path)
		}
	}
	for _, p := range []string{"/etc/fstab", "/etc/crypttab", "/etc/default/grub", "/boot/grub/grub.cfg", "/etc/initramfs-tools/modules", "/etc/initramfs-tools/conf.d/zz-cauldron", "/etc/initramfs-tools/conf.d/resume"} {
		if _, ok := paths[p]; !ok {
			t.Errorf("dry run does not report %s (reported: %v)", p, rep.Files)
		}
	}
	if strings.Join(rep.Drivers, ",") != "nvme,nvme_core" {
		t.Errorf("drivers %v (sd_mod is built in)", rep.Drivers)
	}
	if len(rep.Commands) != 2 || strings.Join(rep.Commands[0].Argv, " ") != "/usr/sbin/update-initramfs -u -k 6.1.0-28-amd64" ||
		strings.Join(rep.Commands[1].Argv, " ") != "/usr/sbin/grub-install --target=i386-pc "+o.BootDisk {
		t.Errorf("commands %+v", rep.Commands)
	}
	text := rep.Text()
	for _, want := range []string{"dry run", "grub-pc/install_devices is \"/dev/disk/by-id/virtio-SRC-1\"", "- /dev/vda2       none            swap", "+ /dev/nvme0n1p2       none            swap", "to run", "MODULES=most"} {
		if !strings.Contains(text, want) {
			t.Errorf("dry-run text lacks %q:\n%s", want, text)
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Fatal(err)
	}

	// The real run.
	o.DryRun = false
	rep, err = Inoculate(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.Text())
	}
	if tools.prepared != 1 || tools.undone != 1 {
		t.Errorf("prepared %d, undone %d", tools.prepared, tools.undone)
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	fstab := read("/etc/fstab")
	for _, want := range []string{"UUID=" + newRoot + " /", "/dev/nvme0n1p2       none", "PARTUUID=cafe0001-03 /srv", "/dev/vda10 /data", "# / was on /dev/vda1 during installation"} {
		if !strings.Contains(fstab, want) {
			t.Errorf("fstab lacks %q:\n%s", want, fstab)
		}
	}
	if !strings.Contains(read("/etc/crypttab"), "vault PARTUUID=99999999-8888-4777-8666-555544443333 none") {
		t.Errorf("crypttab:\n%s", read("/etc/crypttab"))
	}
	cfg := read("/boot/grub/grub.cfg")
	if strings.Contains(cfg, rootUUID) || strings.Count(cfg, newRoot) != 3 || !strings.Contains(cfg, "resume=UUID="+newSwap) {
		t.Errorf("grub.cfg:\n%s", cfg)
	}
	if !strings.Contains(read("/etc/default/grub"), `GRUB_CMDLINE_LINUX_DEFAULT="quiet resume=UUID=`+newSwap+`"`) {
		t.Errorf("default grub:\n%s", read("/etc/default/grub"))
	}
	if read("/etc/initramfs-tools/conf.d/resume") != "RESUME=UUID="+newSwap+"\n" {
		t.Errorf("resume: %q", read("/etc/initramfs-tools/conf.d/resume"))
	}
	mods := read("/etc/initramfs-tools/modules")
	if !strings.HasSuffix(mods, "loop\n"+addedByCauldron+"\nnvme\nnvme_core\n") {
		t.Errorf("modules:\n%s", mods)
	}
	if z := read("/etc/initramfs-tools/conf.d/zz-cauldron"); !strings.HasSuffix(z, "\nMODULES=most\n") || !strings.Contains(z, "recovery environment") {
		t.Errorf("zz-cauldron:\n%s", z)
	}
	if read("/etc/initramfs-tools/conf.d/.resume.cauldron-backup") != "RESUME=UUID="+swapUUID+"\n" {
		t.Error("the backup of conf.d/resume is not hidden from mkinitramfs")
	}
	if mode, _, _ := initramfsToolsModules(root); mode != "most" {
		t.Errorf("effective MODULES=%s", mode)
	}
	// Backups hold the files as they were; the new drop-in has none.
	for p, orig := range before {
		if _, ok := paths["/"+p]; ok && paths["/"+p].Action == "modify" {
			if got := read(BackupPath("/" + p)); got != orig {
				t.Errorf("backup of /%s differs from the original", p)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "etc/initramfs-tools/conf.d/zz-cauldron"+BackupSuffix)); err == nil {
		t.Error("a created file got a backup")
	}
	if len(rep.Initramfs) != 1 || strings.Join(rep.Initramfs[0].Drivers, ",") != "nvme,nvme_core" {
		t.Errorf("initramfs check %+v", rep.Initramfs)
	}
	for _, c := range rep.Commands {
		if !c.Done {
			t.Errorf("command not done: %+v", c)
		}
	}

	// A second run onto other hardware: the backups keep the originals, the drivers add up.
	o.Drivers = []string{"ahci"}
	o.Renames = []Rename{{FSUUID, newRoot, rootUUID}}
	rep, err = Inoculate(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if read("/etc/fstab"+BackupSuffix) != before["etc/fstab"] {
		t.Error("the second run overwrote the fstab backup")
	}
	kept := false
	for _, f := range rep.Files {
		if f.Path == "/etc/fstab" && f.BackupKept {
			kept = true
		}
	}
	if !kept || !strings.Contains(rep.Text(), "kept from an earlier run") {
		t.Errorf("second run does not report the kept backup:\n%s", rep.Text())
	}
	if !strings.HasSuffix(read("/etc/initramfs-tools/modules"), "nvme\nnvme_core\nahci\n") {
		t.Errorf("modules after two runs:\n%s", read("/etc/initramfs-tools/modules"))
	}
	if !strings.Contains(read("/etc/fstab"), "UUID="+rootUUID+" /") {
		t.Error("second rename not applied")
	}
}

// findBlockDevice returns some block device of this machine, for a BootDisk that only the fake
// grub-install sees.
func findBlockDevice(t *testing.T) string {
	entries, _ := os.ReadDir("/sys/class/block")
	for _, e := range entries {
		p := "/dev/" + e.Name()
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0 {
			return p
		}
	}
	testenv.SkipOrFail(t, "no block device in /dev")
	return ""
}

func TestInoculateDracutUEFI(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"/etc/os-release":                           "ID=fedora\nVERSION_ID=40\nPRETTY_NAME=\"Fedora Linux 40\"\n",
		"/etc/fstab":                                "UUID=" + rootUUID + " / xfs defaults 0 0\nUUID=" + espUUID + " /boot/efi vfat umask=0077 0 2\n",
		"/usr/bin/dracut":                           "#!/bin/sh\n",
		"/usr/bin/lsinitrd":                         "#!/bin/sh\n",
		"/usr/sbin/grub2-install":                   "#!/bin/sh\n",
		"/usr/lib/grub/x86_64-efi/modinfo.sh":       "#",
		"/boot/grub2/grub.cfg":                      "linux /vmlinuz root=UUID=" + rootUUID + " ro\n",
		"/boot/efi/EFI/fedora/grub.cfg":             "search --no-floppy --fs-uuid --set=dev " + rootUUID + "\n",
		"/etc/dracut.conf.d/01-dist.conf":           "hostonly=\"yes\"\n",
		"/etc/kernel/cmdline":                       "root=UUID=" + rootUUID + " ro\n",
		"/boot/initramfs-6.8.5-301.fc40.x86_64.img": "old",
	}
	for k, v := range kernelFiles("6.8.5-301.fc40.x86_64", "6.8.5-301.fc40.x86_64", debianModules, nil) {
		files[k] = v
	}
	writeTree(t, root, files)
	vars := t.TempDir()
	tools := &fakeTools{}
	o := Options{
		Root: root, Drivers: []string{"ahci"}, Runner: tools, Firmware: UEFI, EFIVars: vars,
		Renames: []Rename{{FSUUID, rootUUID, "11111111-2222-4333-8444-555555555555"}},
	}
	// The ESP is a folder of the root filesystem here while fstab says it is a filesystem of its
	// own: refused, since the loaders would be written where no firmware looks.
	if _, err := Inoculate(context.Background(), o); err == nil || !strings.Contains(err.Error(), "UEFI needs the ESP's partition") {
		t.Fatalf("UEFI without ESP partition: %v", err)
	}
	o.ESPPartition = &ESPPartition{Number: 1, Start: 2048, Size: 1048576, GUID: "e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab"}
	_, err := Inoculate(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "mounts UUID="+espUUID+" on /boot/efi, but it is not mounted") {
		t.Fatalf("unmounted ESP: %v", err)
	}
	// Without the ESP's fstab line the folder is the ESP as far as the work goes.
	if err := os.WriteFile(filepath.Join(root, "etc/fstab"), []byte("UUID="+rootUUID+" / xfs defaults 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rep, err := Inoculate(context.Background(), o)
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.Text())
	}
	conf, _ := os.ReadFile(filepath.Join(root, "etc/dracut.conf.d/cauldron.conf"))
	if !strings.Contains(string(conf), "add_drivers+=\" ahci \"\nhostonly=\"no\"\n") {
		t.Errorf("cauldron.conf:\n%s", conf)
	}
	var argv []string
	for _, c := range tools.ran {
		argv = append(argv, strings.Join(c, " "))
	}
	want := []string{
		"/usr/bin/dracut --force --kver 6.8.5-301.fc40.x86_64 /boot/initramfs-6.8.5-301.fc40.x86_64.img",
		"/usr/bin/lsinitrd /boot/initramfs-6.8.5-301.fc40.x86_64.img",
		"/usr/sbin/grub2-install --target=x86_64-efi --efi-directory=/boot/efi --no-nvram --bootloader-id=fedora",
		"/usr/sbin/grub2-install --target=x86_64-efi --efi-directory=/boot/efi --no-nvram --removable",
	}
	if strings.Join(argv, "\n") != strings.Join(want, "\n") {
		t.Errorf("ran:\n%s\nwant:\n%s", strings.Join(argv, "\n"), strings.Join(want, "\n"))
	}
	for _, p := range []string{"etc/kernel/cmdline", "boot/grub2/grub.cfg", "boot/efi/EFI/fedora/grub.cfg"} {
		b, _ := os.ReadFile(filepath.Join(root, p))
		if !strings.Contains(string(b), "11111111-2222-4333-8444-555555555555") {
			t.Errorf("%s not renamed: %s", p, b)
		}
	}
	be := rep.BootEntry
	if be == nil || !be.Verified || be.Variable != "Boot0000" || be.Description != "fedora" ||
		be.Path != `HD(1,GPT,e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab,0x800,0x100000)/File(\EFI\fedora\grubx64.efi)` {
		t.Errorf("boot entry %+v", be)
	}
	if _, err := os.Stat(filepath.Join(root, "boot/efi/EFI/BOOT/BOOTX64.EFI")); err != nil {
		t.Errorf("fallback loader: %v", err)
	}
	if !strings.Contains(rep.Text(), "read back and verified") {
		t.Errorf("text:\n%s", rep.Text())
	}
}

func TestInoculateMkinitcpio(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"/usr/lib/os-release":       "ID=arch\nPRETTY_NAME=\"Arch Linux\"\n",
		"/lib":                      "->usr/lib",
		"/usr/bin/mkinitcpio":       "#!/bin/sh\n",
		"/usr/bin/lsinitcpio":       "#!/bin/sh\n",
		"/etc/mkinitcpio.conf":      "# vim:set ft=sh\nMODULES=(btrfs \"crc32c\")\nHOOKS=(base udev autodetect)\n",
		"/boot/initramfs-linux.img": "x",
	}
	for k, v := range kernelFiles("6.9.1-arch1-1", "linux", debianModules, nil) {
		files[k] = v
	}
	writeTree(t, root, files)
	rep, err := Inoculate(context.Background(), Options{Root: root, Drivers: []string{"nvme", "virtio_blk"}, Runner: &fakeTools{}})
	if err != nil {
		t.Fatalf("%v\n%s", err, rep.Text())
	}
	b, _ := os.ReadFile(filepath.Join(root, "etc/mkinitcpio.conf"))
	if string(b) != "# vim:set ft=sh\nMODULES=(btrfs crc32c nvme virtio_blk)\nHOOKS=(base udev autodetect)\n" {
		t.Errorf("mkinitcpio.conf:\n%s", b)
	}
	if len(rep.Commands) != 1 || strings.Join(rep.Commands[0].Argv, " ") != "/usr/bin/mkinitcpio -P" {
		t.Errorf("commands %+v", rep.Commands)
	}
}

func TestInoculateBadInput(t *testing.T) {
	ctx := context.Background()
	// The running system itself.
	if _, err := Inoculate(ctx, Options{Root: "/", Drivers: []string{"nvme"}, Runner: &fakeTools{}}); err == nil || !strings.Contains(err.Error(), "the root is /") {
		t.Errorf("root /: %v", err)
	}
	// No Linux.
	empty := t.TempDir()
	if _, err := Inoculate(ctx, Options{Root: empty, Drivers: []string{"nvme"}, Runner: &fakeTools{}}); !errors.Is(err, ErrNoLinux) {
		t.Errorf("no Linux: %v", err)
	}
	// No known initramfs tool.
	root := debianTree(t)
	os.Remove(filepath.Join(root, "usr/sbin/update-initramfs"))
	rep, err := Inoculate(ctx, Options{Root: root, Drivers: []string{"nvme"}, Runner: &fakeTools{}})
	if !errors.Is(err, ErrUnknownInitramfsTool) || len(rep.Files) != 0 {
		t.Errorf("unknown tool: %v", err)
	}
	// A driver the kernel does not have.
	root = debianTree(t)
	before := snapshot(t, root)
	_, err = Inoculate(ctx, Options{Root: root, Drivers: []string{"nvme", "megaraid_sas"}, Runner: &fakeTools{}})
	if !errors.Is(err, ErrMissingDriver) || !strings.Contains(err.Error(), "megaraid_sas") || !strings.Contains(err.Error(), "6.1.0-28-amd64") {
		t.Errorf("missing driver: %v", err)
	}
	if d := diffSnapshots(before, snapshot(t, root)); len(d) > 0 {
		t.Errorf("a refused run changed files: %v", d)
	}
	// A separate /boot that is not mounted.
	root = debianTree(t)
	f, _ := os.OpenFile(filepath.Join(root, "etc/fstab"), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("UUID=" + bootUUID + " /boot ext4 defaults 0 2\n")
	f.Close()
	if _, err := Inoculate(ctx, Options{Root: root, Drivers: []string{"nvme"}, Runner: &fakeTools{}}); err == nil || !strings.Contains(err.Error(), "/boot, but it is not mounted") {
		t.Errorf("unmounted /boot: %v", err)
	}
	// The rebuild failing: the output is in the error and the report, the files written before
	// are reported done, and the chroot is undone.
	root = debianTree(t)
	tools := &fakeTools{fail: "update-initramfs"}
	rep, err = Inoculate(ctx, Options{Root: root, Drivers: []string{"nvme"}, Runner: tools})
	if err == nil || !strings.Contains(err.Error(), "E: something went wrong in update-initramfs") {
		t.Fatalf("failing tool: %v", err)
	}
	if tools.undone != 1 {
		t.Error("chroot not undone after the failure")
	}
	for _, f := range rep.Files {
		if !f.Done {
			t.Errorf("%s written but not reported done", f.Path)
		}
	}
	if !strings.Contains(rep.Text(), "FAILED") || !strings.Contains(rep.Text(), "| E: something went wrong") {
		t.Errorf("report text:\n%s", rep.Text())
	}
	// No BIOS GRUB to install.
	root = debianTree(t)
	os.RemoveAll(filepath.Join(root, "usr/lib/grub/i386-pc"))
	if _, err := Inoculate(ctx, Options{Root: root, Drivers: []string{"nvme"}, Runner: &fakeTools{}, Firmware: BIOS, BootDisk: findBlockDevice(t)}); err == nil || !strings.Contains(err.Error(), "no GRUB for BIOS") {
		t.Errorf("no grub-pc: %v", err)
	}
}

// A symlinked config file is written where it points inside the root, never on the host.
func TestInoculateSymlinkStaysInside(t *testing.T) {
	root := debianTree(t)
	real := filepath.Join(root, "etc/fstab.real")
	if err := os.Rename(filepath.Join(root, "etc/fstab"), real); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/fstab.real", filepath.Join(root, "etc/fstab")); err != nil {
		t.Fatal(err)
	}
	hostFstab, _ := os.ReadFile("/etc/fstab")
	_, err := Inoculate(context.Background(), Options{Root: root, Drivers: []string{"nvme"}, Runner: &fakeTools{},
		Renames: []Rename{{FSUUID, rootUUID, "11111111-2222-4333-8444-555555555555"}}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(real)
	if !strings.Contains(string(b), "11111111-2222-4333-8444-555555555555") {
		t.Errorf("fstab.real not rewritten:\n%s", b)
	}
	if after, _ := os.ReadFile("/etc/fstab"); string(after) != string(hostFstab) {
		t.Fatal("the host's /etc/fstab changed")
	}
	if l, err := os.Readlink(filepath.Join(root, "etc/fstab")); err != nil || l != "/etc/fstab.real" {
		t.Errorf("the symlink was replaced: %q %v", l, err)
	}
}

// On the target machine itself (the boot environment on the recovered machine) a host-only
// initramfs finds the right controller: MODULES=dep is kept and the target's drivers are only
// named; elsewhere (an image for other hardware) it is switched to MODULES=most.
func TestOnTargetKeepsHostOnly(t *testing.T) {
	for _, onTarget := range []bool{true, false} {
		root := debianTree(t)
		o := Options{Root: root, Drivers: []string{"nvme"}, Runner: &fakeTools{}, OnTarget: onTarget,
			Firmware: KeepBootloader}
		rep, err := Inoculate(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		_, zerr := os.Stat(filepath.Join(root, "etc/initramfs-tools/conf.d/zz-cauldron"))
		mods, _ := os.ReadFile(filepath.Join(root, "etc/initramfs-tools/modules"))
		if onTarget != os.IsNotExist(zerr) || !strings.Contains(string(mods), "\nnvme\n") {
			t.Errorf("OnTarget %v: zz-cauldron present %v, modules:\n%s\n%s", onTarget, zerr == nil, mods, rep.Text())
		}
	}
}
