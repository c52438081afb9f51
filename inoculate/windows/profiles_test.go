package windows

import (
	"context"
	"strings"
	"testing"
)

// TestEveryProfileDryRun runs every hardware profile against the Windows 7 and Windows 10
// volumes (with the virtio drivers at hand) and checks which driver each controller gets:
// Windows' own where the system has one (intelide for Hyper-V's Intel IDE, as Windows' own
// device database says), the driver folder's otherwise.
func TestEveryProfileDryRun(t *testing.T) {
	want := map[string]map[string][]string{
		"win7": {
			"kvm-virtio-blk": {"viostor", "viostor"}, "kvm-virtio-scsi": {"vioscsi", "vioscsi"},
			"ahci": {"msahci"}, "hyperv": {"storvsc", "storvsc", "intelide"},
		},
		"win10": {
			"kvm-virtio-blk": {"viostor", "viostor"}, "kvm-virtio-scsi": {"vioscsi", "vioscsi"},
			"ahci": {"storahci"}, "nvme": {"stornvme"}, "vmware-pvscsi": {"pvscsi"}, "hyperv": {"storvsc", "storvsc", "intelide"},
		},
	}
	for _, sysName := range []string{"win7", "win10"} {
		v := newVolume(t, 64)
		esp := ""
		tree := ""
		if sysName == "win7" {
			win7(t, v)
			tree = driverTree(t, map[string][]string{"viostor": {"w7/x86"}, "vioscsi": {"w7/x86"}})
		} else {
			esp = win10(t, v)
			tree = driverTree(t, map[string][]string{"viostor": {"w10/amd64"}, "vioscsi": {"w10/amd64"}})
		}
		for profile, services := range want[sysName] {
			r, err := Inoculate(context.Background(), Options{Root: v.mnt, ESP: esp, Drivers: []string{tree}, Hardware: profile, DryRun: true})
			if err != nil {
				t.Errorf("%s %s: %v", sysName, profile, err)
				continue
			}
			// The CriticalDeviceDatabase gets only IDs naming the device itself: a vendor or class
			// entry would send other devices to this driver at boot.
			for _, c := range r.Registry {
				if i := strings.Index(strings.ToLower(c.Key), `criticaldevicedatabase\`); i >= 0 {
					id := strings.ToLower(c.Key[i+len(`criticaldevicedatabase\`):])
					if strings.HasPrefix(id, "pci#") && !strings.Contains(id, "&dev_") {
						t.Errorf("%s %s: CriticalDeviceDatabase entry %s names no device", sysName, profile, id)
					}
				}
			}
			var got []string
			for _, c := range r.Choices {
				got = append(got, c.Service)
			}
			if len(got) != len(services) {
				t.Errorf("%s %s: drivers %v, want %v", sysName, profile, got, services)
				continue
			}
			for i := range got {
				if got[i] != services[i] {
					t.Errorf("%s %s: drivers %v, want %v", sysName, profile, got, services)
					break
				}
			}
		}
	}
}
