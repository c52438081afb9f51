// Package boot is the boot-time side of Cauldron's boot environment: what `cauldron boot` does
// when u-root's init starts it as uinit on the machine being recovered.
//
// It loads kernel modules for the hardware present (coldplug by modalias, then hot-plugged
// devices from kernel uevents — u-root's init does neither), prints what it found so a technician
// sees at once whether the machine is usable, brings up the network as the kernel command line
// asks, fetches the kickstart if one is named, and starts the recovery. It never returns: u-root's
// init runs a shell and then exits when uinit ends, and an init that exits panics the kernel, so
// every failure ends in a menu (shell, reboot, power off) instead.
//
// Console contract, matched by the QEMU boot tests and by technicians' scripts:
//
//	cauldron: disk NAME SIZE MODEL serial=SERIAL bus=BUS driver=DRIVER
//	cauldron: cdrom NAME MODEL bus=BUS driver=DRIVER
//	cauldron: nic NAME MAC link=up|down driver=DRIVER
//	cauldron: ready uptime=SECONDSs
//
// DHCP uses u-root's dhclient package. The modalias matching, the uevent listener and the module
// loader are written here because no kept Go library does modalias coldplug (u-root's init loads
// a fixed module list; systemd-udevd and busybox mdev are C), and u-root's kmodule, which did the
// loading at first, builds a new zstd decoder for every compressed module (see Modules).
package boot
