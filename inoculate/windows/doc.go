// Package windows makes a restored Windows installation boot on hardware it was not installed on,
// by editing its system volume offline ("inoculation").
//
// Windows moved to another storage controller stops at boot with 0x7B INACCESSIBLE_BOOT_DEVICE
// unless the controller's driver is installed and set to start at boot in every control set
// Windows may boot (the current one and LastKnownGood), Windows 8 and later also find it in
// their DriverDatabase, and no StartOverride value turns the boot start back off. Windows restored
// onto a re-signed or repartitioned disk loses its C: drive (SYSTEM\MountedDevices) or its boot
// loader (the BCD's device elements) unless those name the new disk and partitions.
//
// Detect reads what is there without changing anything: version, edition, build and architecture
// (SOFTWARE and SYSTEM hives), the control sets, the firmware the system boots with, hibernation
// and Fast Startup, BitLocker (from the volume's boot sector, which a mounted volume hides),
// pending reboots and Group Policy device-installation restrictions.
//
// Inoculate does the work: it chooses the driver of each target storage controller (a named
// hardware profile, or the controllers of the machine it runs on, read from sysfs) among the INF
// files of the driver folders given (package inf) or the drivers Windows already has, copies the
// driver files into the volume, adds the service to every control set, binds the device at first
// boot (CriticalDeviceDatabase up to Windows 7, DriverDatabase from Windows 8, in SYSTEM and in the
// separate DRIVERS hive), enables the inbox drivers the controller needs (Start=0, StartOverride
// removed), optionally disables the source hypervisor's services, queues a first-boot pnputil
// install that cannot loop, and rewrites MountedDevices and the BCD stores (package bcd) for new
// disk identities. Every hive is opened, its logs replayed if it is dirty, edited in memory and
// checked (package regf) before anything is written; every file is written atomically and the
// originals are kept as FILE.cauldron-backup. A Report lists every change, as JSON and as text;
// DryRun computes it all and writes nothing.
//
// The system volume is expected mounted read-write through ntfs-3g, which is case-sensitive while
// Windows is not: every path inside the volume is resolved case-insensitively.
//
// It is hand-written because no kept library does offline Windows inoculation in Go; virt-v2v
// (OCaml, libguestfs) is the closest tool and was read only to understand the problem: it edits
// only the current control set, ignores StartOverride and never fixes MountedDevices or the BCD.
// No code was taken from it.
package windows
