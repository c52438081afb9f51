package windows

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/inoculate/inf"
)

// PCIDevice is a PCI function's identity, as its configuration space gives it.
type PCIDevice struct {
	Vendor    uint16 `json:"vendor"`
	Device    uint16 `json:"device"`
	SubVendor uint16 `json:"subsystemVendor"`
	SubDevice uint16 `json:"subsystemDevice"`
	Revision  uint8  `json:"revision"`
	Class     uint32 `json:"class"` // base class, subclass, programming interface: 0x010601
	Slot      string `json:"slot,omitempty"`
}

// HardwareIDs are the device's hardware IDs as Windows' PCI bus driver reports them, most
// specific first (Learn, "Identifiers for PCI Devices").
func (d PCIDevice) HardwareIDs() []string {
	v := fmt.Sprintf(`PCI\VEN_%04X&DEV_%04X`, d.Vendor, d.Device)
	sub := fmt.Sprintf("SUBSYS_%04X%04X", d.SubDevice, d.SubVendor)
	return []string{
		fmt.Sprintf("%s&%s&REV_%02X", v, sub, d.Revision),
		v + "&" + sub,
		fmt.Sprintf("%s&CC_%06X", v, d.Class),
		fmt.Sprintf("%s&CC_%04X", v, d.Class>>8),
	}
}

// CompatibleIDs are the device's compatible IDs, most specific first (same page).
func (d PCIDevice) CompatibleIDs() []string {
	v := fmt.Sprintf(`PCI\VEN_%04X&DEV_%04X`, d.Vendor, d.Device)
	return []string{
		fmt.Sprintf("%s&REV_%02X", v, d.Revision),
		v,
		fmt.Sprintf(`PCI\VEN_%04X&CC_%06X`, d.Vendor, d.Class),
		fmt.Sprintf(`PCI\VEN_%04X&CC_%04X`, d.Vendor, d.Class>>8),
		fmt.Sprintf(`PCI\VEN_%04X`, d.Vendor),
		fmt.Sprintf(`PCI\CC_%06X`, d.Class),
		fmt.Sprintf(`PCI\CC_%04X`, d.Class>>8),
	}
}

// InboxDriver is a driver Windows itself ships for a controller, and the Windows versions that
// ship it (Max zero: every later one). It is used when the system's own device database does
// not name a driver for the controller, and only when the service is present on the volume.
type InboxDriver struct {
	Service string         `json:"service"`
	Min     inf.WinVersion `json:"min"`
	Max     inf.WinVersion `json:"max,omitempty"`
}

func (d InboxDriver) applies(v inf.WinVersion) bool {
	return !v.Less(d.Min) && (d.Max == inf.WinVersion{} || !d.Max.Less(v))
}

// Controller is a storage controller of the target machine, named by the IDs Windows matches
// drivers against.
type Controller struct {
	Name          string     `json:"name"`
	HardwareIDs   []string   `json:"hardwareIds"`
	CompatibleIDs []string   `json:"compatibleIds,omitempty"`
	PCI           *PCIDevice `json:"pci,omitempty"`
	// Inbox are Windows' own drivers for the controller (see InboxDriver).
	Inbox []InboxDriver `json:"inbox,omitempty"`
	// Also are inbox services the controller needs at boot besides its own driver: the VMBus
	// driver under Hyper-V's storage driver.
	Also []string `json:"also,omitempty"`
}

// IDs are the hardware IDs then the compatible IDs: the order Windows ranks matches in.
func (c Controller) IDs() []string {
	return append(append([]string(nil), c.HardwareIDs...), c.CompatibleIDs...)
}

func pciController(name string, d PCIDevice, inbox ...InboxDriver) Controller {
	return Controller{Name: name, HardwareIDs: d.HardwareIDs(), CompatibleIDs: d.CompatibleIDs(), PCI: &d, Inbox: inbox}
}

var (
	v61 = inf.WinVersion{Major: 6, Minor: 1}
	v62 = inf.WinVersion{Major: 6, Minor: 2}
	v63 = inf.WinVersion{Major: 6, Minor: 3}
	v60 = inf.WinVersion{Major: 6, Minor: 0}
)

// Hyper-V's VMBus device classes for storage: the synthetic SCSI controller and the accelerated
// IDE controller of generation 1 machines. Both GUIDs are the class IDs the host offers on the
// VMBus (as the Linux hv_storvsc driver's device table lists them); Windows names the devices
// VMBUS\{class}.
const (
	hvSCSIClass = "{ba6163d9-04a1-4d29-b605-72e2ffb1dc7f}"
	hvIDEClass  = "{32412632-86cb-44a2-9b5c-50d1417354f5}"
)

func vmbusController(name, class string) Controller {
	return Controller{Name: name, HardwareIDs: []string{`VMBUS\` + class}, Inbox: []InboxDriver{{Service: "storvsc", Min: v60}}, Also: []string{"vmbus"}}
}

// ideInbox are Windows' drivers for PCI IDE controllers in compatibility mode (class 0101xx).
var ideInbox = []InboxDriver{{Service: "pciide"}, {Service: "intelide"}, {Service: "atapi"}}

// profiles are the virtual and physical controllers a target can be named by. PCI IDs are
// those the emulators present: QEMU's virtio devices (vendor 1AF4; transitional devices 1001
// and 1004 with subsystem 0002/0008, revision 0; modern ones 1042 and 1048 with QEMU's subsystem
// 1AF4:1100, revision 1, per the virtio specification's PCI section), QEMU's ICH9 AHCI (8086:2922)
// and NVMe (1B36:0010) controllers, VMware's PVSCSI (15AD:07C0, revision 2, class 0107 SAS) and
// Hyper-V's PIIX4 IDE controller (8086:7111) of generation 1 machines.
var profiles = map[string][]Controller{
	"kvm-virtio-blk": {
		pciController("virtio-blk (transitional)", PCIDevice{Vendor: 0x1AF4, Device: 0x1001, SubVendor: 0x1AF4, SubDevice: 0x0002, Revision: 0, Class: 0x010000}),
		pciController("virtio-blk (modern)", PCIDevice{Vendor: 0x1AF4, Device: 0x1042, SubVendor: 0x1AF4, SubDevice: 0x1100, Revision: 1, Class: 0x010000}),
	},
	"kvm-virtio-scsi": {
		pciController("virtio-scsi (transitional)", PCIDevice{Vendor: 0x1AF4, Device: 0x1004, SubVendor: 0x1AF4, SubDevice: 0x0008, Revision: 0, Class: 0x010000}),
		pciController("virtio-scsi (modern)", PCIDevice{Vendor: 0x1AF4, Device: 0x1048, SubVendor: 0x1AF4, SubDevice: 0x1100, Revision: 1, Class: 0x010000}),
	},
	"vmware-pvscsi": {
		pciController("VMware PVSCSI", PCIDevice{Vendor: 0x15AD, Device: 0x07C0, SubVendor: 0x15AD, SubDevice: 0x07C0, Revision: 2, Class: 0x010700},
			InboxDriver{Service: "pvscsi"}),
	},
	"hyperv": {
		vmbusController("Hyper-V synthetic SCSI", hvSCSIClass),
		vmbusController("Hyper-V accelerated IDE", hvIDEClass),
		// The subsystem and revision Hyper-V gives its PIIX4 are not published; Windows' own
		// databases bind IDE controllers by the vendor/device and class IDs, which these are.
		pciController("Hyper-V generation 1 IDE (PIIX4)", PCIDevice{Vendor: 0x8086, Device: 0x7111, Class: 0x010180}, ideInbox...),
	},
	"ahci": {
		pciController("AHCI (ICH9)", PCIDevice{Vendor: 0x8086, Device: 0x2922, SubVendor: 0x1AF4, SubDevice: 0x1100, Revision: 2, Class: 0x010601},
			InboxDriver{Service: "storahci", Min: v62}, InboxDriver{Service: "msahci", Min: v60, Max: inf.WinVersion{Major: 6, Minor: 1, Build: 99999}}),
	},
	"nvme": {
		pciController("NVMe", PCIDevice{Vendor: 0x1B36, Device: 0x0010, SubVendor: 0x1AF4, SubDevice: 0x1100, Revision: 2, Class: 0x010802},
			InboxDriver{Service: "stornvme", Min: v61}),
	},
}

// Profiles returns the names of the hardware profiles.
func Profiles() []string {
	var out []string
	for n := range profiles {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Profile returns the controllers of a named hardware profile.
func Profile(name string) ([]Controller, error) {
	c, ok := profiles[strings.ToLower(name)]
	if !ok {
		return nil, fmt.Errorf("unknown hardware profile %q (known: %s, or detect)", name, strings.Join(Profiles(), ", "))
	}
	return append([]Controller(nil), c...), nil
}

// classInbox gives the inbox drivers of a PCI storage controller by class, for controllers read
// from sysfs: AHCI (010601), NVMe (010802), IDE (0101xx).
func classInbox(class uint32) []InboxDriver {
	switch {
	case class == 0x010601:
		return profiles["ahci"][0].Inbox
	case class == 0x010802:
		return profiles["nvme"][0].Inbox
	case class>>8 == 0x0101:
		return ideInbox
	}
	return nil
}

// DetectControllers reads the storage controllers of the machine whose sysfs is at sysfs ("" is
// /sys): PCI functions of base class 01 (mass storage), and Hyper-V VMBus storage devices.
func DetectControllers(sysfs string) ([]Controller, error) {
	if sysfs == "" {
		sysfs = "/sys"
	}
	var out []Controller
	pciDir := filepath.Join(sysfs, "bus", "pci", "devices")
	ents, err := os.ReadDir(pciDir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range ents {
		dir := filepath.Join(pciDir, e.Name())
		class, err := sysfsHex(dir, "class", 24)
		if err != nil {
			return nil, err
		}
		if class>>16 != 0x01 {
			continue
		}
		d := PCIDevice{Class: uint32(class), Slot: e.Name()}
		for _, f := range []struct {
			name string
			dst  *uint16
		}{{"vendor", &d.Vendor}, {"device", &d.Device}, {"subsystem_vendor", &d.SubVendor}, {"subsystem_device", &d.SubDevice}} {
			v, err := sysfsHex(dir, f.name, 16)
			if err != nil {
				return nil, err
			}
			*f.dst = uint16(v)
		}
		rev, err := sysfsHex(dir, "revision", 8)
		if err != nil {
			return nil, err
		}
		d.Revision = uint8(rev)
		out = append(out, pciController(fmt.Sprintf("PCI %s (%04x:%04x class %06x)", e.Name(), d.Vendor, d.Device, d.Class), d, classInbox(d.Class)...))
	}
	vmDir := filepath.Join(sysfs, "bus", "vmbus", "devices")
	vents, err := os.ReadDir(vmDir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range vents {
		b, err := os.ReadFile(filepath.Join(vmDir, e.Name(), "class_id"))
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", filepath.Join(vmDir, e.Name(), "class_id"), err)
		}
		switch class := strings.ToLower(strings.TrimSpace(string(b))); class {
		case hvSCSIClass:
			out = append(out, vmbusController("Hyper-V synthetic SCSI "+e.Name(), class))
		case hvIDEClass:
			out = append(out, vmbusController("Hyper-V accelerated IDE "+e.Name(), class))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no storage controller found under %s (PCI class 01xxxx or Hyper-V VMBus storage)", sysfs)
	}
	return out, nil
}

// sysfsHex reads a sysfs attribute holding a 0x-prefixed hexadecimal number of at most bits bits.
func sysfsHex(dir, name string, bits int) (uint64, error) {
	p := filepath.Join(dir, name)
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", p, err)
	}
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, bits)
	if err != nil || !strings.HasPrefix(s, "0x") {
		return 0, fmt.Errorf("%s: %q is not a %d-bit 0x-prefixed hexadecimal number", p, s, bits)
	}
	return v, nil
}
