package boot

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/partition"
)

// Disk is a block device the technician may restore onto (or read from), as sysfs describes it.
type Disk struct {
	Name      string // kernel name: sda, nvme0n1, vda
	Size      int64  // bytes
	Model     string
	Serial    string
	WWN       string
	Bus       string // virtio, virtio-scsi, sata, nvme, scsi, usb, mmc, xen, hyperv, other
	Driver    string // the controller's driver: ahci, nvme, virtio_blk, megaraid_sas, …
	Removable bool
	ReadOnly  bool
	Optical   bool // sr*: a CD/DVD drive (the boot medium, often)
}

// NIC is a network interface with hardware behind it.
type NIC struct {
	Name   string
	MAC    string
	Driver string
	Link   bool // carrier present (only meaningful once the interface is up)
	Speed  int  // Mb/s when known
}

// skipped block devices: not disks a technician restores onto.
var virtualBlock = []string{"loop", "ram", "zram", "dm-", "md", "nbd", "fd"}

// ListDisks reads sysroot/block (sysroot is /sys on a live system) and returns the disks sorted
// by kernel name, optical drives included and marked.
func ListDisks(sysroot string) ([]Disk, error) {
	ents, err := os.ReadDir(filepath.Join(sysroot, "block"))
	if err != nil {
		return nil, fmt.Errorf("listing disks: %w", err)
	}
	var out []Disk
	for _, e := range ents {
		name := e.Name()
		if hasAnyPrefix(name, virtualBlock) {
			continue
		}
		dir := filepath.Join(sysroot, "block", name)
		d := Disk{Name: name, Optical: strings.HasPrefix(name, "sr")}
		if n, err := strconv.ParseInt(readAttr(dir, "size"), 10, 64); err == nil {
			d.Size = n * 512 // sysfs counts 512-byte units whatever the sector size
		}
		d.Removable = readAttr(dir, "removable") == "1"
		d.ReadOnly = readAttr(dir, "ro") == "1"
		vendor := readAttr(dir, "device/vendor")
		if strings.HasPrefix(vendor, "0x") {
			vendor = "" // a virtio device's PCI vendor number, not a name
		}
		d.Model = strings.Join(strings.Fields(vendor+" "+readAttr(dir, "device/model")), " ")
		d.Serial = firstNonEmpty(readAttr(dir, "serial"), readAttr(dir, "device/serial"), vpdSerial(dir))
		d.WWN = firstNonEmpty(readAttr(dir, "wwid"), readAttr(dir, "device/wwid"))
		real, _ := filepath.EvalSymlinks(dir)
		d.Bus = busOf(real)
		if d.Serial == "" && d.Bus == "usb" {
			d.Serial = usbSerial(real)
		}
		d.Driver = partition.ControllerDriver(real)
		if d.Model == "" && d.Bus == "virtio" {
			d.Model = "VirtIO block device"
		}
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ListNICs reads sysroot/class/net and returns the interfaces backed by a device (not lo, not
// tunnels or bridges), sorted by name.
func ListNICs(sysroot string) ([]NIC, error) {
	ents, err := os.ReadDir(filepath.Join(sysroot, "class", "net"))
	if err != nil {
		return nil, fmt.Errorf("listing network interfaces: %w", err)
	}
	var out []NIC
	for _, e := range ents {
		dir := filepath.Join(sysroot, "class", "net", e.Name())
		if _, err := os.Stat(filepath.Join(dir, "device")); err != nil {
			continue
		}
		n := NIC{Name: e.Name(), MAC: readAttr(dir, "address"), Link: readAttr(dir, "carrier") == "1"}
		if drv, err := os.Readlink(filepath.Join(dir, "device", "driver")); err == nil {
			n.Driver = filepath.Base(drv)
		}
		if s, err := strconv.Atoi(readAttr(dir, "speed")); err == nil && s > 0 {
			n.Speed = s
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Line is the disk's console line (see the package doc for the contract).
func (d Disk) Line() string {
	if d.Optical {
		return fmt.Sprintf("cauldron: cdrom %s %s bus=%s driver=%s", d.Name, orDash(d.Model), orDash(d.Bus), orDash(d.Driver))
	}
	extra := ""
	if d.Removable {
		extra += " removable"
	}
	if d.ReadOnly {
		extra += " read-only"
	}
	return fmt.Sprintf("cauldron: disk %s %s %s serial=%s bus=%s driver=%s%s",
		d.Name, HumanSize(d.Size), orDash(d.Model), orDash(strings.ReplaceAll(d.Serial, " ", "_")), orDash(d.Bus), orDash(d.Driver), extra)
}

// Line is the NIC's console line.
func (n NIC) Line() string {
	link := "down"
	if n.Link {
		link = "up"
		if n.Speed > 0 {
			link += fmt.Sprintf(" speed=%dMb/s", n.Speed)
		}
	}
	return fmt.Sprintf("cauldron: nic %s %s link=%s driver=%s", n.Name, orDash(n.MAC), link, orDash(n.Driver))
}

// busOf names the bus from the device's sysfs path. Order matters: USB sticks and virtio-scsi
// disks also sit below a SCSI host.
func busOf(path string) string {
	switch {
	case strings.Contains(path, "/usb"):
		return "usb"
	case strings.Contains(path, "/nvme"):
		return "nvme"
	case strings.Contains(path, "/ata"):
		return "sata"
	case strings.Contains(path, "/mmc"):
		return "mmc"
	case strings.Contains(path, "/virtio") && strings.Contains(path, "/host"):
		return "virtio-scsi"
	case strings.Contains(path, "/virtio"):
		return "virtio"
	case strings.Contains(path, "/vbd-"):
		return "xen"
	case strings.Contains(path, "/VMBUS") || strings.Contains(path, "/vmbus"):
		return "hyperv"
	case strings.Contains(path, "/host"):
		return "scsi"
	}
	return "other"
}

// usbSerial is the serial number of the USB device a disk belongs to: USB sticks report it in
// their device descriptor (sysfs' serial beside idVendor, a few levels above the disk), and many
// return no SCSI VPD page.
func usbSerial(path string) string {
	for p := filepath.Dir(path); strings.Contains(p, "/usb"); p = filepath.Dir(p) {
		if _, err := os.Stat(filepath.Join(p, "idVendor")); err == nil {
			return readAttr(p, "serial")
		}
	}
	return ""
}

// PendingUSBStorage counts the USB mass-storage interfaces under sysroot whose disk has not
// appeared yet: a stick is enumerated, bound to usb-storage and scanned in steps that each come
// a little later, so "no uevent for a while" does not mean it is there.
func PendingUSBStorage(sysroot string) int {
	ifaces, _ := filepath.Glob(filepath.Join(sysroot, "bus/usb/devices/*/bInterfaceClass"))
	n := 0
	for _, f := range ifaces {
		if readAttr(filepath.Dir(f), "bInterfaceClass") != "08" {
			continue
		}
		disks, _ := filepath.Glob(filepath.Join(filepath.Dir(f), "host*/target*/*/block/*"))
		if len(disks) == 0 {
			n++
		}
	}
	return n
}

// vpdSerial reads the unit serial number from SCSI VPD page 0x80 (SATA and SCSI disks put it there).
func vpdSerial(dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "device", "vpd_pg80"))
	if err != nil || len(b) < 4 {
		return ""
	}
	n := int(b[2])<<8 | int(b[3])
	if 4+n > len(b) {
		n = len(b) - 4
	}
	return strings.TrimSpace(strings.Trim(string(b[4:4+n]), "\x00"))
}

func readAttr(dir, name string) string {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.Trim(string(b), "\x00"))
}

// HumanSize formats bytes in binary units with one decimal (10.0GiB).
func HumanSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB"}
	f := float64(n)
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.1f%s", f, units[i])
}

func hasAnyPrefix(s string, ps []string) bool {
	for _, p := range ps {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
