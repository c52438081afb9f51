package qemu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Firmware is the machine's firmware.
type Firmware int

const (
	// BIOS is SeaBIOS, QEMU's default firmware.
	BIOS Firmware = iota
	// UEFI is OVMF without Secure Boot.
	UEFI
	// SecureBoot is OVMF built with Secure Boot and SMM, started with Microsoft's keys enrolled
	// (Debian's OVMF_VARS_4M.ms.fd), so only signed loaders (shim, then GRUB and the kernel) boot.
	SecureBoot
)

func (f Firmware) String() string {
	switch f {
	case BIOS:
		return "bios"
	case UEFI:
		return "uefi"
	case SecureBoot:
		return "uefi-secureboot"
	}
	return fmt.Sprintf("Firmware(%d)", int(f))
}

// Bus is the controller a disk is attached to.
type Bus string

// The controllers a disk can sit on; the comment names the Linux driver that must find it.
const (
	Virtio  Bus = "virtio"  // virtio-blk-pci (virtio_blk)
	SATA    Bus = "sata"    // ich9-ahci + ide-hd (ahci)
	NVMe    Bus = "nvme"    // nvme (nvme)
	SCSI    Bus = "scsi"    // virtio-scsi-pci + scsi-hd (virtio_scsi, sd_mod)
	MegaSAS Bus = "megasas" // LSI MegaRAID SAS 1078 + scsi-hd (megaraid_sas)
	LSI     Bus = "lsi"     // LSI 53C895A + scsi-hd (sym53c8xx)
	IDE     Bus = "ide"     // PIIX IDE + ide-hd (ata_piix); on q35 a piix3-ide is added
	USB     Bus = "usb"     // qemu-xhci + usb-storage (xhci_pci, usb_storage)
)

// Buses lists every Bus, in the order their controllers appear on the command line.
// (QEMU's LSI SAS 1068, mptsas1068, is left out: Linux's mptsas driver brings its host up there
// but never reports a disk behind it.)
var Buses = []Bus{Virtio, SATA, NVMe, SCSI, MegaSAS, LSI, IDE, USB}

// maxPerBus is how many disks one controller of the bus takes (one controller per bus is made).
var maxPerBus = map[Bus]int{
	Virtio: 28, SATA: 6, NVMe: 16, SCSI: 64, MegaSAS: 64, LSI: 7, IDE: 4, USB: 8,
}

// Disk is a disk attached to the VM.
type Disk struct {
	// Path is the image file. Empty: a new sparse raw image of Size bytes is made in the VM's
	// temporary folder and removed with it.
	Path string
	// Size of a new image, in bytes (used only when Path is empty).
	Size int64
	// Format is "raw" (default) or "qcow2".
	Format string
	// Bus is the controller; default Virtio.
	Bus Bus
	// Serial is the serial number the guest sees: up to 20 letters, digits, '.', '_' or '-'.
	// Empty: a unique one is made up (NVMe requires one).
	Serial string
	// Boot makes the disk the boot device (bootindex 0, firmware tries nothing else).
	Boot bool
	// Snapshot sends the guest's writes to a temporary overlay, so the image stays as it was and
	// several VMs may boot the same image at once.
	Snapshot bool
	// ReadOnly attaches the image read-only.
	ReadOnly bool
}

// Forward is a TCP port forward from loopback on the host into the guest.
type Forward struct {
	// GuestPort is the guest's TCP port.
	GuestPort int
	// HostPort is the port on 127.0.0.1; 0 picks a free one (see VM.HostPort).
	HostPort int
}

// NIC is a network card on QEMU's user-mode network (10.0.2.0/24 inside QEMU, the host's loopback
// at 10.0.2.2, DHCP and DNS from QEMU itself): nothing leaves the QEMU process but the forwards.
type NIC struct {
	// Model is a QEMU NIC device: virtio-net-pci (default), e1000, e1000e, rtl8139, vmxnet3.
	Model string
	// MAC, as 52:54:00:xx:xx:xx; empty lets QEMU choose.
	MAC string
	// Forwards are TCP ports forwarded from 127.0.0.1 on the host into the guest.
	Forwards []Forward
}

var nicModels = map[string]bool{"virtio-net-pci": true, "e1000": true, "e1000e": true, "rtl8139": true, "vmxnet3": true}

// PXE boots from the network through the iPXE option ROM QEMU ships for its NICs (Debian's
// ipxe-qemu), which takes its address from QEMU's DHCP and loads BootFile from Dir.
type PXE struct {
	// Dir is the folder served to the guest.
	Dir string
	// BootFile is the path inside Dir that iPXE loads first (an iPXE script such as boot.ipxe, or
	// pxelinux.0).
	BootFile string
	// HTTP serves Dir over HTTP on 127.0.0.1 (the guest reaches it at 10.0.2.2) and hands iPXE an
	// http:// URL; otherwise QEMU's built-in TFTP server serves it.
	HTTP bool
}

// Config describes a VM. Exactly one boot source must be set: Kernel, CDROM, USB, PXE, or a Disk
// with Boot.
type Config struct {
	// Name identifies the VM in errors and log file names; default "vm".
	Name string
	// QEMU is the emulator binary; default $CAULDRON_QEMU, else qemu-system-x86_64 from PATH.
	QEMU string
	// Firmware; default BIOS.
	Firmware Firmware
	// Machine is QEMU's machine type; default "pc" (i440FX, PIIX IDE) for BIOS and "q35" for UEFI.
	// Secure Boot needs q35 (SMM).
	Machine string

	// Kernel, Initrd and Append boot a kernel directly (-kernel, -initrd, -append).
	Kernel, Initrd, Append string
	// CDROM is an ISO image attached as a CD-ROM and booted.
	CDROM string
	// USB is a raw image (an isohybrid ISO, say) attached as a USB stick and booted; the guest's
	// writes go to a temporary overlay.
	USB string
	// PXE boots from the network through the first NIC.
	PXE *PXE

	// Disks are attached in order, grouped by controller.
	Disks []Disk

	// MemoryMiB; default 1024.
	MemoryMiB int
	// CPUs; default 1.
	CPUs int
	// NICs; empty means one virtio-net-pci NIC, unless NoNetwork.
	NICs []NIC
	// NoNetwork gives the VM no NIC at all.
	NoNetwork bool
	// HTTPDir, when set, is served over HTTP on 127.0.0.1 for the VM's lifetime; the guest
	// reaches it at VM.GuestURL (http://10.0.2.2:PORT/). PXE with HTTP serves PXE.Dir instead.
	HTTPDir string
	// AllowReboot lets a guest reboot; by default a reboot (or triple fault) ends QEMU, so a
	// crashing guest cannot loop until the timeout.
	AllowReboot bool
	// VGA is the display adapter QEMU emulates (no window is shown); default "std", "none" for none.
	VGA string
	// ExtraArgs are appended to QEMU's command line as they are.
	ExtraArgs []string

	// Timeout bounds the VM's whole life: QEMU is killed after it. Default 10 minutes.
	Timeout time.Duration
	// LogDir is where the console log is written; default $CAULDRON_QEMU_LOGDIR, else
	// $TMPDIR/cauldron-qemu-logs.
	LogDir string
	// KVM uses KVM instead of TCG; default true only when CAULDRON_QEMU_KVM=1.
	KVM bool
	// CPU is the -cpu model under TCG; default $CAULDRON_QEMU_CPU, else QEMU's own (qemu64,
	// which has no RDRAND: the guest kernel's random pool then takes a second or more to be
	// ready, as on no real x86-64 machine of the last decade; tests keep that harder case).
	CPU string
	// FirmwareFiles overrides where OVMF's code and variable store are found (UEFI, SecureBoot).
	FirmwareFiles *FirmwareFiles

	usbBoot bool // withDefaults turned USB into Disks[0]
}

// Defaults for Config fields left empty.
const (
	DefaultMemoryMiB = 1024
	DefaultTimeout   = 10 * time.Minute
)

// withDefaults returns a copy of c with empty fields filled in.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "vm"
	}
	if c.QEMU == "" {
		c.QEMU = os.Getenv("CAULDRON_QEMU")
	}
	if c.QEMU == "" {
		c.QEMU = "qemu-system-x86_64"
	}
	if c.Machine == "" {
		if c.Firmware == BIOS {
			c.Machine = "pc"
		} else {
			c.Machine = "q35"
		}
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if len(c.NICs) == 0 && !c.NoNetwork {
		c.NICs = []NIC{{}}
	} else {
		c.NICs = append([]NIC(nil), c.NICs...)
	}
	for i := range c.NICs {
		if c.NICs[i].Model == "" {
			c.NICs[i].Model = "virtio-net-pci"
		}
	}
	if c.VGA == "" {
		c.VGA = "std"
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.LogDir == "" {
		c.LogDir = os.Getenv("CAULDRON_QEMU_LOGDIR")
	}
	if c.LogDir == "" {
		c.LogDir = filepath.Join(os.TempDir(), "cauldron-qemu-logs")
	}
	if !c.KVM && os.Getenv("CAULDRON_QEMU_KVM") == "1" {
		c.KVM = true
	}
	if c.CPU == "" {
		c.CPU = os.Getenv("CAULDRON_QEMU_CPU")
	}
	// The USB convenience field becomes a boot disk like any other, with an overlay so that
	// parallel VMs can share the image (QEMU locks images opened for writing).
	disks := make([]Disk, 0, len(c.Disks)+1)
	if c.USB != "" {
		disks = append(disks, Disk{Path: c.USB, Bus: USB, Boot: true, Snapshot: true, Serial: "CAULDRON-USB"})
	}
	disks = append(disks, c.Disks...)
	used := map[string]bool{}
	for _, d := range disks {
		used[d.Serial] = true
	}
	for i := range disks {
		d := &disks[i]
		if d.Bus == "" {
			d.Bus = Virtio
		}
		if d.Format == "" {
			d.Format = "raw"
		}
		if d.Serial == "" {
			for n := i; ; n++ {
				s := fmt.Sprintf("QM-%s-%d", d.Bus, n)
				if !used[s] {
					d.Serial, used[s] = s, true
					break
				}
			}
		}
	}
	c.Disks = disks
	c.usbBoot = c.USB != ""
	c.USB = ""
	return c
}

var (
	serialRE = regexp.MustCompile(`^[A-Za-z0-9._-]{1,20}$`)
	macRE    = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
)

// ErrConfig is wrapped by every error about a Config.
var ErrConfig = errors.New("qemu: bad config")

func configErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// validate checks a Config that went through withDefaults, without touching the file system
// beyond checking that named files exist.
func (c *Config) validate() error {
	if !nameRE.MatchString(c.Name) {
		return configErr("name %q: use 1 to 64 letters, digits, '.', '_' or '-'", c.Name)
	}
	if c.Firmware < BIOS || c.Firmware > SecureBoot {
		return configErr("unknown firmware %d", int(c.Firmware))
	}
	if c.Firmware == SecureBoot && c.Machine != "q35" {
		return configErr("Secure Boot needs machine q35 (SMM), not %q", c.Machine)
	}
	var sources []string
	if c.Kernel != "" {
		sources = append(sources, "Kernel")
	}
	if c.CDROM != "" {
		sources = append(sources, "CDROM")
	}
	if c.PXE != nil {
		sources = append(sources, "PXE")
	}
	for i, d := range c.Disks {
		if d.Boot {
			if i == 0 && c.usbBoot {
				sources = append(sources, "USB")
			} else {
				sources = append(sources, "a Disk with Boot")
			}
		}
	}
	switch len(sources) {
	case 0:
		return configErr("no boot source: set Kernel, CDROM, USB, PXE or a Disk with Boot")
	case 1:
	default:
		return configErr("more than one boot source (%s): choose one", strings.Join(sources, ", "))
	}
	if c.Kernel == "" && (c.Initrd != "" || c.Append != "") {
		return configErr("Initrd and Append need Kernel")
	}
	for _, f := range []struct{ what, path string }{{"kernel", c.Kernel}, {"initrd", c.Initrd}, {"CD-ROM image", c.CDROM}} {
		if f.path != "" {
			if err := regularFile(f.path); err != nil {
				return configErr("%s: %v", f.what, err)
			}
		}
	}
	if strings.Contains(c.CDROM, ",") {
		return configErr("CD-ROM image %q: QEMU's option syntax cannot carry a ','", c.CDROM)
	}
	if c.PXE != nil {
		if c.NoNetwork {
			return configErr("PXE needs a NIC, but NoNetwork is set")
		}
		if c.PXE.BootFile == "" || filepath.IsAbs(c.PXE.BootFile) || strings.Contains(c.PXE.BootFile, "..") || strings.ContainsAny(c.PXE.BootFile, ", ") {
			return configErr("PXE boot file %q: give a relative path inside PXE.Dir, without '..', ',' or spaces", c.PXE.BootFile)
		}
		if st, err := os.Stat(c.PXE.Dir); err != nil || !st.IsDir() {
			return configErr("PXE folder %q is not a folder", c.PXE.Dir)
		}
		if strings.Contains(c.PXE.Dir, ",") {
			return configErr("PXE folder %q: QEMU's option syntax cannot carry a ','", c.PXE.Dir)
		}
		if err := regularFile(filepath.Join(c.PXE.Dir, c.PXE.BootFile)); err != nil {
			return configErr("PXE boot file: %v", err)
		}
	}
	if c.HTTPDir != "" {
		if st, err := os.Stat(c.HTTPDir); err != nil || !st.IsDir() {
			return configErr("HTTPDir %q is not a folder", c.HTTPDir)
		}
		if c.PXE != nil && c.PXE.HTTP {
			return configErr("HTTPDir and PXE over HTTP both want the HTTP server: put the files in PXE.Dir")
		}
	}
	if c.NoNetwork && len(c.NICs) > 0 {
		return configErr("NoNetwork and NICs: choose one")
	}
	if c.MemoryMiB < 128 {
		return configErr("memory %d MiB: give at least 128", c.MemoryMiB)
	}
	if c.CPUs < 1 || c.CPUs > 16 {
		return configErr("%d CPUs: give 1 to 16", c.CPUs)
	}
	if c.Timeout < 0 {
		return configErr("negative timeout %v", c.Timeout)
	}
	perBus := map[Bus]int{}
	serials := map[string]int{}
	for i, d := range c.Disks {
		if _, ok := maxPerBus[d.Bus]; !ok {
			return configErr("disk %d: unknown bus %q (one of %v)", i, d.Bus, Buses)
		}
		perBus[d.Bus]++
		if perBus[d.Bus] > maxPerBus[d.Bus] {
			return configErr("more than %d disks on bus %s", maxPerBus[d.Bus], d.Bus)
		}
		if !serialRE.MatchString(d.Serial) {
			return configErr("disk %d: serial %q: use 1 to 20 letters, digits, '.', '_' or '-'", i, d.Serial)
		}
		if j, dup := serials[d.Serial]; dup {
			return configErr("disks %d and %d have the same serial %q", j, i, d.Serial)
		}
		serials[d.Serial] = i
		if d.Format != "raw" && d.Format != "qcow2" {
			return configErr("disk %d: format %q: raw or qcow2", i, d.Format)
		}
		switch {
		case d.Path == "" && d.Size <= 0:
			return configErr("disk %d: give Path or a Size above 0", i)
		case d.Path == "" && d.Format != "raw":
			return configErr("disk %d: a new image (no Path) is always raw", i)
		case d.Path != "":
			if err := regularFile(d.Path); err != nil {
				return configErr("disk %d: %v", i, err)
			}
			if strings.Contains(d.Path, ",") {
				return configErr("disk %d: path %q: QEMU's option syntax cannot carry a ','", i, d.Path)
			}
		}
		if d.ReadOnly && d.Snapshot {
			return configErr("disk %d: ReadOnly and Snapshot: choose one", i)
		}
	}
	ideSlots := 4
	if c.CDROM != "" && c.Machine == "pc" {
		ideSlots = 3 // the CD-ROM takes the secondary master
	}
	if perBus[IDE] > ideSlots {
		return configErr("%d IDE disks: this machine has room for %d", perBus[IDE], ideSlots)
	}
	if c.Machine != "pc" && c.Machine != "q35" && perBus[IDE] > 0 {
		return configErr("IDE disks are only set up on machines pc and q35, not %q", c.Machine)
	}
	for i, n := range c.NICs {
		if !nicModels[n.Model] {
			return configErr("NIC %d: model %q: one of virtio-net-pci, e1000, e1000e, rtl8139, vmxnet3", i, n.Model)
		}
		if n.MAC != "" && !macRE.MatchString(n.MAC) {
			return configErr("NIC %d: MAC %q: write it as 52:54:00:12:34:56", i, n.MAC)
		}
		for _, f := range n.Forwards {
			if f.GuestPort < 1 || f.GuestPort > 65535 || f.HostPort < 0 || f.HostPort > 65535 {
				return configErr("NIC %d: forward %d->%d: ports are 1 to 65535 (host port 0 = pick one)", i, f.HostPort, f.GuestPort)
			}
		}
	}
	return nil
}

func regularFile(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", p)
	}
	return nil
}

// runtimePaths are what Start prepares before building the command line: they differ per VM.
type runtimePaths struct {
	Firmware  FirmwareFiles  // resolved firmware files; Vars is the VM's own writable copy
	QMP       string         // QMP socket
	Disks     []string       // the image of each Disk (made up ones included)
	HTTPPort  int            // the loopback HTTP server's port, 0 if none
	HostPorts map[[2]int]int // (NIC index, guest port) -> host port
}

// cmdline builds QEMU's arguments (without the binary) for a Config that went through
// withDefaults and validate.
func (c *Config) cmdline(rt runtimePaths) ([]string, error) {
	a := []string{"-name", c.Name, "-nodefaults", "-no-user-config"}
	machine := c.Machine
	if c.Firmware == SecureBoot {
		// OVMF's Secure Boot build keeps its variables in SMM, out of the guest's reach; without
		// SMM it refuses to start, and the flash must be marked secure so only SMM writes it.
		machine += ",smm=on"
		a = append(a, "-global", "driver=cfi.pflash01,property=secure,value=on")
		// S3 resume is not supported with SMM in OVMF; disabling it avoids a firmware assert.
		a = append(a, "-global", "ICH9-LPC.disable_s3=1")
	}
	a = append(a, "-machine", machine)
	if c.KVM {
		a = append(a, "-accel", "kvm", "-cpu", "host")
	} else {
		a = append(a, "-accel", "tcg")
		if c.CPU != "" {
			a = append(a, "-cpu", c.CPU)
		}
	}
	a = append(a, "-m", fmt.Sprint(c.MemoryMiB), "-smp", fmt.Sprint(c.CPUs))
	a = append(a, "-display", "none", "-vga", c.VGA)
	a = append(a, "-serial", "stdio", "-monitor", "none")
	if rt.QMP != "" {
		a = append(a, "-qmp", "unix:"+rt.QMP+",server=on,wait=off")
	}
	if !c.AllowReboot {
		a = append(a, "-no-reboot")
	}
	// strict: the firmware tries only the device marked bootindex=0, so a broken medium fails at
	// once instead of falling through to a slow network boot.
	a = append(a, "-boot", "strict=on")

	switch c.Firmware {
	case UEFI, SecureBoot:
		if rt.Firmware.Code == "" || rt.Firmware.Vars == "" {
			return nil, fmt.Errorf("qemu: %s needs OVMF code and variable files", c.Firmware)
		}
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+rt.Firmware.Code,
			"-drive", "if=pflash,format=raw,unit=1,file="+rt.Firmware.Vars)
	}

	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			a = append(a, "-append", c.Append)
		}
	}

	if c.CDROM != "" {
		bus := "ide.1,unit=0" // pc: the PIIX secondary master, where -cdrom goes
		if c.Machine != "pc" {
			bus = "ide.2" // q35: a port of the built-in ICH9 AHCI, where -cdrom goes
		}
		a = append(a, "-drive", "if=none,id=cd0,media=cdrom,readonly=on,file="+c.CDROM,
			"-device", "ide-cd,bus="+bus+",drive=cd0,bootindex=0")
	}

	if len(rt.Disks) != len(c.Disks) {
		return nil, fmt.Errorf("qemu: %d disk images for %d disks", len(rt.Disks), len(c.Disks))
	}
	a = append(a, c.diskArgs(rt.Disks)...)

	for i, n := range c.NICs {
		netdev := fmt.Sprintf("user,id=net%d", i)
		dev := fmt.Sprintf("%s,netdev=net%d", n.Model, i)
		if n.MAC != "" {
			dev += ",mac=" + n.MAC
		}
		if i == 0 && c.PXE != nil {
			if c.PXE.HTTP {
				if rt.HTTPPort == 0 {
					return nil, errors.New("qemu: PXE over HTTP without an HTTP server")
				}
				netdev += fmt.Sprintf(",bootfile=http://%s:%d/%s", GuestHostIP, rt.HTTPPort, c.PXE.BootFile)
			} else {
				netdev += ",tftp=" + c.PXE.Dir + ",bootfile=" + c.PXE.BootFile
			}
			dev += ",bootindex=0"
		} else {
			// No option ROM on NICs that do not boot: loading iPXE costs seconds under TCG.
			dev += ",romfile="
		}
		for _, f := range n.Forwards {
			hp := f.HostPort
			if hp == 0 {
				hp = rt.HostPorts[[2]int{i, f.GuestPort}]
			}
			if hp == 0 {
				return nil, fmt.Errorf("qemu: no host port chosen for guest port %d", f.GuestPort)
			}
			// Bound to loopback: a forward must never open a port to the outside.
			netdev += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", hp, f.GuestPort)
		}
		a = append(a, "-netdev", netdev, "-device", dev)
	}
	a = append(a, c.ExtraArgs...)
	return a, nil
}

// diskArgs attaches the disks: one controller per bus in use, disks in order on it.
func (c *Config) diskArgs(paths []string) []string {
	var a []string
	used := map[Bus]bool{}
	for _, d := range c.Disks {
		used[d.Bus] = true
	}
	// Controllers first.
	for _, b := range Buses {
		if !used[b] {
			continue
		}
		switch b {
		case SATA:
			a = append(a, "-device", "ich9-ahci,id=sata0")
		case SCSI:
			a = append(a, "-device", "virtio-scsi-pci,id=scsi0")
		case MegaSAS:
			a = append(a, "-device", "megasas,id=megasas0")
		case LSI:
			a = append(a, "-device", "lsi53c895a,id=lsi0")
		case IDE:
			if c.Machine != "pc" {
				a = append(a, "-device", "piix3-ide,id=pide")
			}
		case USB:
			a = append(a, "-device", "qemu-xhci,id=xhci0,p2=8,p3=8")
		}
	}
	// IDE slots: on pc the built-in PIIX (ide.0, ide.1), where the CD-ROM has the secondary
	// master; on q35 the added piix3-ide (pide.0, pide.1).
	var ideSlots []string
	if c.Machine == "pc" {
		ideSlots = []string{"ide.0,unit=0", "ide.0,unit=1", "ide.1,unit=0", "ide.1,unit=1"}
		if c.CDROM != "" {
			ideSlots = []string{"ide.0,unit=0", "ide.0,unit=1", "ide.1,unit=1"}
		}
	} else {
		ideSlots = []string{"pide.0,unit=0", "pide.0,unit=1", "pide.1,unit=0", "pide.1,unit=1"}
	}
	n := map[Bus]int{}
	for i, d := range c.Disks {
		id := fmt.Sprintf("disk%d", i)
		drive := fmt.Sprintf("if=none,id=%s,format=%s,file=%s", id, d.Format, paths[i])
		if d.Snapshot {
			drive += ",snapshot=on"
		}
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		k := n[d.Bus]
		n[d.Bus]++
		var dev string
		switch d.Bus {
		case Virtio:
			dev = "virtio-blk-pci"
		case SATA:
			dev = fmt.Sprintf("ide-hd,bus=sata0.%d", k)
		case NVMe:
			dev = "nvme"
		case SCSI:
			dev = fmt.Sprintf("scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=%d", k)
		case MegaSAS:
			dev = fmt.Sprintf("scsi-hd,bus=megasas0.0,scsi-id=%d", k)
		case LSI:
			dev = fmt.Sprintf("scsi-hd,bus=lsi0.0,scsi-id=%d", k)
		case IDE:
			dev = "ide-hd,bus=" + ideSlots[k]
		case USB:
			dev = "usb-storage,bus=xhci0.0"
		}
		dev += ",drive=" + id + ",serial=" + d.Serial
		if d.Boot {
			dev += ",bootindex=0"
		}
		a = append(a, "-drive", drive, "-device", dev)
	}
	return a
}

// GuestHostIP is where a guest on QEMU's user-mode network reaches the host's loopback.
const GuestHostIP = "10.0.2.2"

// freePort asks the kernel for a free TCP port on loopback. The port is released before QEMU
// binds it, so another process could take it in between; QEMU then fails to start with a clear
// message rather than forwarding somewhere else.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
