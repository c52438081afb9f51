// Command guestinit is the init of the small initramfs the qemu package's own boot tests build:
// it loads the kernel modules listed in /modules.list, prints every disk with its serial number
// the way `cauldron boot` does, says it is ready with its uptime, then obeys lines typed on the
// console ("echo TEXT", "poweroff"). It is test scaffolding for the harness, not the boot program.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	_ = os.MkdirAll("/dev", 0o755)
	_ = os.MkdirAll("/proc", 0o755)
	_ = os.MkdirAll("/sys", 0o755)
	_ = unix.Mount("devtmpfs", "/dev", "devtmpfs", 0, "")
	_ = unix.Mount("proc", "/proc", "proc", 0, "")
	_ = unix.Mount("sysfs", "/sys", "sysfs", 0, "")
	fmt.Println("guestinit: start")
	loadModules()
	want := wantedDisks()
	deadline := time.Now().Add(20 * time.Second)
	var disks []string
	for {
		disks = listDisks()
		if len(disks) >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, d := range disks {
		fmt.Println(d)
	}
	fmt.Printf("guestinit: ready uptime=%ss\n", uptime())
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "echo "):
			fmt.Println("guestinit: echo " + strings.TrimPrefix(line, "echo "))
		case line == "poweroff":
			fmt.Println("guestinit: powering off")
			unix.Sync()
			_ = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		}
	}
	// init must never exit: the kernel would panic.
	for {
		time.Sleep(time.Hour)
	}
}

func loadModules() {
	list, err := os.ReadFile("/modules.list")
	if err != nil {
		return
	}
	for _, p := range strings.Fields(string(list)) {
		f, err := os.Open(p)
		if err != nil {
			fmt.Printf("guestinit: module %s: %v\n", p, err)
			continue
		}
		if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
			fmt.Printf("guestinit: module %s: %v\n", p, err)
		}
		f.Close()
	}
}

// wantedDisks reads guestinit.disks=N from the kernel command line: how many disks to wait for.
func wantedDisks() int {
	b, _ := os.ReadFile("/proc/cmdline")
	for _, f := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(f, "guestinit.disks="); ok {
			n, _ := strconv.Atoi(v)
			return n
		}
	}
	return 0
}

func listDisks() []string {
	ents, _ := os.ReadDir("/sys/block")
	var out []string
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "sr") {
			continue
		}
		out = append(out, fmt.Sprintf("guestinit: disk %s serial=%s", n, serial(n)))
	}
	return out
}

// serial finds a disk's serial number where its driver publishes it.
func serial(name string) string {
	dev := filepath.Join("/sys/block", name)
	for _, p := range []string{"serial", "device/serial"} {
		if b, err := os.ReadFile(filepath.Join(dev, p)); err == nil && len(bytes.TrimSpace(b)) > 0 {
			return string(bytes.TrimSpace(b))
		}
	}
	// SCSI and ATA (through libata's SCSI translation): VPD page 0x80, the serial after a
	// 4-byte header.
	if b, err := os.ReadFile(filepath.Join(dev, "device/vpd_pg80")); err == nil && len(b) > 4 {
		return string(bytes.TrimSpace(b[4:]))
	}
	// USB: the serial is the USB device's, some levels up.
	real, err := filepath.EvalSymlinks(filepath.Join(dev, "device"))
	for err == nil && real != "/" && real != "." {
		if b, e := os.ReadFile(filepath.Join(real, "serial")); e == nil {
			return string(bytes.TrimSpace(b))
		}
		real = filepath.Dir(real)
	}
	return "?"
}

func uptime() string {
	b, _ := os.ReadFile("/proc/uptime")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
