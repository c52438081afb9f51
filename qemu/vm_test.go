package qemu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The storage modules guestinit loads to see a disk on every Bus.
var storageModules = []string{
	"virtio_pci", "virtio_blk", "virtio_scsi", "nvme", "ahci", "ata_piix", "sd_mod",
	"megaraid_sas", "sym53c8xx", "xhci_pci", "usb_storage",
}

const bootTimeout = 3 * time.Minute

// TestBootKernelConsole boots a kernel directly on each firmware, talks to it over the serial
// console and lets it power off.
func TestBootKernelConsole(t *testing.T) {
	for _, fw := range []Firmware{BIOS, UEFI} {
		t.Run(fw.String(), func(t *testing.T) {
			Require(t, fw, false)
			t.Parallel()
			k := needKernel(t)
			initrd := guestInitramfs(t, k)
			v := StartT(t, Config{Firmware: fw, Kernel: k.vmlinuz, Initrd: initrd, Append: "console=ttyS0 quiet", NoNetwork: true})
			m, err := v.Expect(`guestinit: ready uptime=([0-9.]+)s`, bootTimeout)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: ready after %.1fs wall, guest uptime %ss", fw, time.Since(v.Started()).Seconds(), m[1])
			if err := v.Send("echo hello from the host\n"); err != nil {
				t.Fatal(err)
			}
			if _, err := v.Expect(`^guestinit: echo hello from the host$`, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := v.Send("poweroff\n"); err != nil {
				t.Fatal(err)
			}
			if err := v.Wait(time.Minute); err != nil {
				t.Fatalf("QEMU did not end cleanly after the guest powered off: %v", err)
			}
			log, err := os.ReadFile(v.LogPath())
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(string(log), "# ") || !strings.Contains(string(log), "guestinit: ready") {
				t.Fatalf("console log lacks the command or the output:\n%.300s", log)
			}
		})
	}
}

// TestDisksOnEveryBus attaches one disk per Bus, each with its own serial, and checks that the
// guest's kernel finds every one under that serial. It runs on q35, where IDE needs the added
// PIIX controller; the media tests cover the pc machine.
func TestDisksOnEveryBus(t *testing.T) {
	Require(t, BIOS, false)
	t.Parallel()
	k := needKernel(t)
	initrd := guestInitramfs(t, k, storageModules...)
	var disks []Disk
	want := map[string]Bus{}
	for i, b := range Buses {
		s := fmt.Sprintf("SN%d-%s", i, strings.ToUpper(string(b)))
		disks = append(disks, Disk{Bus: b, Size: int64(i+1) << 20, Serial: s})
		want[s] = b
	}
	v := StartT(t, Config{Machine: "q35", Kernel: k.vmlinuz, Initrd: initrd, NoNetwork: true,
		Append: fmt.Sprintf("console=ttyS0 quiet guestinit.disks=%d", len(disks)), Disks: disks})
	if _, err := v.Expect(`guestinit: ready uptime=`, bootTimeout); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, line := range strings.Split(v.Output(), "\n") {
		var name, serial string
		if n, _ := fmt.Sscanf(line, "guestinit: disk %s serial=%s", &name, &serial); n == 2 {
			seen[serial] = name
		}
	}
	for s, b := range want {
		if seen[s] == "" {
			t.Errorf("the guest did not find the %s disk with serial %s (found %v)", b, s, seen)
		}
	}
}

// TestPXE boots the kernel and initramfs through QEMU's iPXE ROM: over TFTP on BIOS, over HTTP
// from loopback (10.0.2.2 in the guest) on UEFI.
func TestPXE(t *testing.T) {
	for _, tc := range []struct {
		fw   Firmware
		http bool
	}{{BIOS, false}, {UEFI, true}} {
		t.Run(fmt.Sprintf("%s-http=%v", tc.fw, tc.http), func(t *testing.T) {
			Require(t, tc.fw, true)
			t.Parallel()
			k := needKernel(t)
			initrd := guestInitramfs(t, k)
			dir := t.TempDir()
			for src, dst := range map[string]string{k.vmlinuz: "vmlinuz", initrd: "initrd.img"} {
				if err := os.Symlink(src, filepath.Join(dir, dst)); err != nil {
					t.Fatal(err)
				}
			}
			// initrd= on the command line: a kernel started through its EFI stub finds the initrd
			// iPXE loaded by that name.
			script := "#!ipxe\nkernel vmlinuz initrd=initrd.img console=ttyS0 quiet\ninitrd initrd.img\nboot\n"
			if err := os.WriteFile(filepath.Join(dir, "boot.ipxe"), []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			v := StartT(t, Config{Firmware: tc.fw, PXE: &PXE{Dir: dir, BootFile: "boot.ipxe", HTTP: tc.http}})
			if _, err := v.Expect(`guestinit: ready uptime=`, bootTimeout); err != nil {
				t.Fatal(err)
			}
			if tc.http {
				reqs := strings.Join(v.HTTPRequests(), "; ")
				for _, want := range []string{"GET /boot.ipxe 200", "GET /vmlinuz 200", "GET /initrd.img 200"} {
					if !strings.Contains(reqs, want) {
						t.Errorf("HTTP server did not answer %q (answered: %s)", want, reqs)
					}
				}
			}
		})
	}
}

// TestKernelPanicFailsFast: a kernel with no root to mount panics, and Expect says so at once.
func TestKernelPanicFailsFast(t *testing.T) {
	Require(t, BIOS, false)
	t.Parallel()
	k := needKernel(t)
	v := StartT(t, Config{Kernel: k.vmlinuz, Append: "console=ttyS0 root=/dev/nothing panic=0", NoNetwork: true})
	_, err := v.Expect(`guestinit: ready`, bootTimeout)
	if err == nil || !strings.Contains(err.Error(), "Kernel panic - not syncing") {
		t.Fatalf("err %v, want the panic", err)
	}
	if d := time.Since(v.Started()); d > 2*time.Minute {
		t.Fatalf("took %v", d)
	}
}

// TestEarlyExit: QEMU refusing its command line ends Expect at once with QEMU's own message.
func TestEarlyExit(t *testing.T) {
	Require(t, BIOS, false)
	k := needKernel(t)
	v := StartT(t, Config{Kernel: k.vmlinuz, ExtraArgs: []string{"-device", "no-such-device"}})
	start := time.Now()
	_, err := v.Expect(`never`, time.Minute)
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "no-such-device") {
		t.Fatalf("err %v", err)
	}
	if time.Since(start) > 30*time.Second {
		t.Fatal("waited for the timeout")
	}
}

// TestCloseLeavesNothing: after Close, QEMU is gone and the VM's folder removed; the log stays
// only when asked.
func TestCloseLeavesNothing(t *testing.T) {
	Require(t, BIOS, false)
	k := needKernel(t)
	for _, keep := range []bool{false, true} {
		v, err := Start(t.Context(), Config{Name: "close", Kernel: k.vmlinuz, Append: "console=ttyS0", NoNetwork: true,
			LogDir: t.TempDir(), Disks: []Disk{{Size: 1 << 20}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Expect(`Linux version`, bootTimeout); err != nil {
			v.Close(false)
			t.Fatal(err)
		}
		pid := v.cmd.Process.Pid
		if err := v.Close(keep); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("QEMU (pid %d) still there after Close: %v", pid, err)
		}
		if _, err := os.Stat(v.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("VM folder %s still there: %v", v.dir, err)
		}
		_, err = os.Stat(v.LogPath())
		if keep != (err == nil) {
			t.Errorf("keep=%v, log stat: %v", keep, err)
		}
		if err := v.Close(keep); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
}

// TestQuit ends a running VM through QMP.
func TestQuit(t *testing.T) {
	Require(t, BIOS, false)
	t.Parallel()
	k := needKernel(t)
	v := StartT(t, Config{Kernel: k.vmlinuz, Append: "console=ttyS0", NoNetwork: true})
	if _, err := v.Expect(`Linux version`, bootTimeout); err != nil {
		t.Fatal(err)
	}
	if err := v.Quit(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-v.Exited():
	default:
		t.Fatal("QEMU still running after Quit")
	}
}
