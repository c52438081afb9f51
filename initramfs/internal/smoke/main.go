// Command smoke stands in for cauldron in the initramfs package's test image (TestBootSmoke): it
// proves u-root's init started it with "boot", that the /usr image mounts as the boot program
// mounts it, that the host tools in it find their libraries and the ELF interpreter, and that kmod
// loads the compressed modules by name and by alias; then it powers the machine off.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/cauldron-dr/cauldron/initramfs/boot"
)

func main() {
	fmt.Printf("SMOKE uinit args=%q\n", os.Args[1:])
	// The tools live in the /usr image, which the boot program mounts as this does.
	mods, err := boot.OpenModules(nil)
	if err != nil {
		fmt.Printf("SMOKE FAIL modules: %v\n", err)
	}
	if ok, err := boot.MountUsr(mods); err != nil || !ok {
		fmt.Printf("SMOKE FAIL /usr image not mounted: %v\n", err)
	}
	if m, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(m), " /usr squashfs ro") {
		fmt.Println("SMOKE OK /usr image mounted")
	} else {
		fmt.Printf("SMOKE FAIL no squashfs on /usr:\n%s\n", m)
	}
	for _, c := range [][]string{
		{"/usr/bin/ntfs-3g", "--version"}, {"/usr/sbin/mkfs.ext4", "-V"}, {"/usr/sbin/lvm", "version"},
		{"/usr/sbin/cryptsetup", "--version"}, {"/usr/sbin/sgdisk", "--version"},
		{"/usr/sbin/mkfs.xfs", "-V"}, {"/usr/bin/btrfs", "--version"}, {"/usr/sbin/blkid", "-V"},
		{"/sbin/modprobe", "ext4"}, {"/sbin/modprobe", "fs-vfat"}, {"/sbin/modprobe", "virtio_blk"},
	} {
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if _, exit := err.(*exec.ExitError); (err != nil && !exit) || strings.Contains(string(out), "error while loading shared libraries") {
			fmt.Printf("SMOKE FAIL %s: %v: %s\n", strings.Join(c, " "), err, out)
		} else {
			fmt.Printf("SMOKE OK %s\n", strings.Join(c, " "))
		}
	}
	fs, _ := os.ReadFile("/proc/filesystems")
	for _, want := range []string{"ext4", "vfat"} {
		if strings.Contains(string(fs), "\t"+want+"\n") {
			fmt.Printf("SMOKE OK filesystem %s\n", want)
		} else {
			fmt.Printf("SMOKE FAIL filesystem %s not registered\n", want)
		}
	}
	fmt.Println("SMOKE DONE")
	// init copies uinit's output to the consoles through a pipe: give it the time to pass the
	// last line on before the power goes.
	time.Sleep(500 * time.Millisecond)
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
