package linux

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/qemu"
	"github.com/u-root/u-root/pkg/efivarfs"
	"golang.org/x/sys/unix"
)

// The boot entry code against real firmware: this package's test binary is the init of a small
// initramfs booted with the source machine's Debian kernel under OVMF. On the first boot it
// writes a boot entry through the kernel's efivarfs (writeBootEntry, as Inoculate does) and
// reboots; on the second boot it reads the entry back from the firmware's NVRAM and decodes it.
// So the entry is judged by what OVMF kept across a reboot, not by what the kernel cached.

const guestEnv = "CAULDRON_EFI_GUEST"

// guestEntry is the entry the guest writes.
var guestESP = ESPPartition{Number: 1, Start: 2048, Size: 204800, GUID: "e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab"}

const guestDesc = "cauldron-test"

func TestMain(m *testing.M) {
	if os.Getpid() == 1 && os.Getenv(guestEnv) == "1" {
		guestMain()
	}
	os.Exit(m.Run())
}

// guestMain runs as init inside the VM and never returns.
func guestMain() {
	say := func(format string, a ...any) { fmt.Printf("CAULDRON-EFI "+format+"\n", a...) }
	if err := guestWork(say); err != nil {
		say("error: %v", err)
	}
	unix.Sync()
	unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}

func guestWork(say func(string, ...any)) error {
	if err := unix.Mount("sysfs", "/sys", "sysfs", 0, ""); err != nil {
		return fmt.Errorf("mounting /sys: %w", err)
	}
	f, err := os.Open("/efivarfs.ko")
	if err != nil {
		return err
	}
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
		return fmt.Errorf("loading efivarfs.ko: %w", err)
	}
	f.Close()
	if err := unix.Mount("efivarfs", DefaultEFIVars, "efivarfs", 0, ""); err != nil {
		return fmt.Errorf("mounting efivarfs: %w", err)
	}
	vars, isFS, err := openVars("") // the default location, which must be a real efivarfs
	if err != nil {
		return err
	}
	hd, err := guestESP.hardDrive()
	if err != nil {
		return err
	}
	dp := DevicePath{HardDrive: hd, File: `\EFI\debian\shimx64.efi`}
	list, err := vars.List()
	if err != nil {
		return err
	}
	for _, v := range list {
		if !bootVarRE.MatchString(v.Name) || v.GUID != EFIGlobalVariable {
			continue
		}
		_, b, err := vars.Get(v)
		if err != nil {
			continue
		}
		if o, err := ParseLoadOption(b); err == nil && o.Description == guestDesc {
			_, order, _ := vars.Get(efivarfsDesc("BootOrder"))
			first := ""
			if len(order) >= 2 {
				first = fmt.Sprintf("%02X%02X", order[1], order[0])
			}
			say("second boot: found %s %s first=%s same=%v", v.Name, o.Path, first, equalPath(o.Path, dp))
			return nil
		}
	}
	be, err := writeBootEntry(vars, isFS, guestDesc, dp)
	if err != nil {
		return err
	}
	say("first boot: wrote %s %s verified=%v efivarfs=%v order=%s", be.Variable, be.Path, be.Verified, be.EFIVarFS, strings.Join(be.BootOrder, ","))
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

func efivarfsDesc(name string) efivarfs.VariableDescriptor {
	return efivarfs.VariableDescriptor{Name: name, GUID: EFIGlobalVariable}
}

func TestBootEntryInOVMF(t *testing.T) {
	if !testing.Short() {
		qemu.Require(t, qemu.UEFI, false)
	}
	src := sourceImage(t)
	testenv.NeedTools(t, "cpio")
	work := t.TempDir()
	stage := filepath.Join(work, "stage")
	for _, d := range []string{"dev", "sys", "proc"} {
		if err := os.MkdirAll(filepath.Join(stage, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "mknod", filepath.Join(stage, "dev/console"), "c", "5", "1")

	// The kernel and efivarfs.ko from the source machine, read-only.
	loop := strings.TrimSpace(run(t, "losetup", "--find", "--show", "-r", src))
	t.Cleanup(func() { exec.Command("partx", "-d", loop).Run(); exec.Command("losetup", "-d", loop).Run() })
	exec.Command("partx", "-d", loop).Run()
	run(t, "partx", "-a", loop)
	time.Sleep(200 * time.Millisecond)
	mnt := t.TempDir()
	run(t, "mount", "-o", "ro,noload", loop+"p1", mnt)
	kernels, _ := filepath.Glob(filepath.Join(mnt, "boot/vmlinuz-*"))
	mods, _ := filepath.Glob(filepath.Join(mnt, "usr/lib/modules/*/kernel/fs/efivarfs/efivarfs.ko*"))
	if len(kernels) != 1 || len(mods) != 1 || strings.HasSuffix(mods[0], "z") {
		run(t, "umount", mnt)
		t.Fatalf("want one kernel and an uncompressed efivarfs.ko, found %v %v", kernels, mods)
	}
	kernel := filepath.Join(work, "vmlinuz")
	run(t, "cp", kernels[0], kernel)
	run(t, "cp", mods[0], filepath.Join(stage, "efivarfs.ko"))
	run(t, "umount", mnt)

	// This package's tests as init: static, so the initramfs needs nothing else.
	build := exec.Command("go", "test", "-c", "-o", filepath.Join(stage, "init"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go test -c: %v\n%s", err, out)
	}
	initrd := filepath.Join(work, "initrd.cpio")
	cmd := exec.Command("sh", "-c", "find . | cpio -o -H newc --quiet > "+initrd)
	cmd.Dir = stage
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cpio: %v\n%s", err, out)
	}

	start := time.Now()
	vm := qemu.StartT(t, qemu.Config{
		Name: "efi-nvram", Firmware: qemu.UEFI, Kernel: kernel, Initrd: initrd,
		Append:    "console=ttyS0 panic=-1 " + guestEnv + "=1",
		NoNetwork: true, VGA: "none", AllowReboot: true, Timeout: 8 * time.Minute,
	})
	if err := vm.Console().FailOn(`CAULDRON-EFI error: .*|Kernel panic`); err != nil {
		t.Fatal(err)
	}
	m, err := vm.Expect(`CAULDRON-EFI first boot: wrote (Boot[0-9A-F]{4}) (\S+) verified=true efivarfs=true order=(\S+)`, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first boot (%.1f s): %s %s, BootOrder %s", time.Since(start).Seconds(), m[1], m[2], m[3])
	want := `HD(1,GPT,e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab,0x800,0x32000)/File(\EFI\debian\shimx64.efi)`
	if m[2] != want || !strings.HasPrefix(m[3], m[1][4:]) {
		t.Errorf("first boot wrote %s %s order %s; want path %s first", m[1], m[2], m[3], want)
	}
	m2, err := vm.Expect(`CAULDRON-EFI second boot: found (Boot[0-9A-F]{4}) (\S+) first=(\S*) same=(\w+)`, 5*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second boot (%.1f s): %v", time.Since(start).Seconds(), m2[1:])
	if m2[1] != m[1] || m2[2] != want || m2[3] != m[1][4:] || m2[4] != "true" {
		t.Errorf("after the reboot the firmware holds %v, want %s %s first", m2[1:], m[1], want)
	}
}
