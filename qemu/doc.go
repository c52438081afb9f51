// Package qemu boots a machine image in qemu-system-x86_64 for the project's integration tests and
// benchmarks, and watches its serial console expect-style.
//
// A Config names the firmware (SeaBIOS, OVMF, or OVMF with Secure Boot enforced and Microsoft's
// keys enrolled), one boot source (kernel+initrd, an ISO as CD-ROM, a raw image as USB stick, PXE
// through QEMU's iPXE ROM over user-mode TFTP or over an HTTP server on loopback, or a disk), extra
// disks on chosen controllers (virtio-blk, AHCI, NVMe, virtio-scsi, MegaRAID SAS, LSI 53C895A,
// PIIX IDE, USB), each with a serial number, memory, CPUs and user-mode NICs. Start runs QEMU under TCG; KVM is
// used only when CAULDRON_QEMU_KVM=1 asks for it, because nested KVM cannot boot Linux on the
// project's machines (../shared/notes/platform.md).
//
// The serial console goes to a log file and into a Console, whose Expect waits for a regular
// expression with a bounded timeout and returns its submatches; a timeout or QEMU exiting early
// gives an error that carries the last console lines. StartT ties a VM to a test: QEMU is killed
// and temporary files removed in t.Cleanup, and the log is kept (path and tail logged) only when
// the test failed. Require makes a test skip when QEMU or OVMF is missing, and fail instead in CI
// (CI=true) or wherever CAULDRON_CORPUS is set.
//
// Environment: CAULDRON_QEMU (emulator binary), CAULDRON_QEMU_KVM=1 (use KVM),
// CAULDRON_QEMU_LOGDIR (console logs), CAULDRON_QEMU_VERBOSE=1 (echo the console to the test
// log), CAULDRON_OVMF_CODE / CAULDRON_OVMF_VARS and CAULDRON_OVMF_SECBOOT_CODE /
// CAULDRON_OVMF_SECBOOT_VARS (firmware files).
//
// Why not github.com/hugelgupf/vmtest/qemu, which u-root already brings into the module graph:
// it was read and weighed. It starts QEMU and hands out a Netflix/go-expect console on a
// pseudo-terminal, but its Expect returns the text consumed rather than submatches, a timeout or
// an exited QEMU comes back without the console's last lines, it keeps no log file, its console
// must be drained by Wait, and it has no notion of per-VM OVMF variable stores, Secure Boot, USB or
// PXE boot, disk serial numbers or storage controllers. What would have been left to use of it is
// exec.Command, at the price of two new modules (go-expect and creack/pty); so the process
// handling, console matching and command-line construction here are written by hand, over a plain
// pipe (QEMU's serial on stdio needs no terminal) and QMP for power control.
package qemu
