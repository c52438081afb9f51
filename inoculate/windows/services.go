package windows

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// ServiceChange is what happened to one service across the control sets.
type ServiceChange struct {
	Name        string   `json:"name"`
	Action      string   `json:"action"` // installed, enabled, disabled
	ControlSets []string `json:"controlSets"`
	Why         string   `json:"why"`
}

// hypervisorServices are the guest services and drivers of each hypervisor, which
// --disable-services stops (Start=4) when a machine leaves that hypervisor. Where the names come
// from: VMware, the services VMware Tools installs as they appear in the corpus Windows 7 and
// Windows 10 hives (VMware guests); Hyper-V, the integration services and VMBus drivers of the
// same Windows 10 hive (Windows ships them); Xen, the services the Xen Project's Windows PV
// drivers add (their INFs' AddService lines: xenbus, xenfilt, xenvbd, xendisk, xenvif, xennet,
// xeniface) and the XenServer guest agent.
var hypervisorServices = map[string][]string{
	"vmware": {"VMTools", "VGAuthService", "vmci", "vsock", "vmhgfs", "vmmouse", "VMUsbMouse", "vm3dmp", "vm3dmp-debug",
		"vm3dmp-stats", "vm3dmp_loader", "VMMemCtl", "VMRawDsk", "vmvss", "vmxnet3ndis6", "vmdebug", "VMUpgradeHelper", "pvscsi"},
	"hyperv": {"vmicguestinterface", "vmicheartbeat", "vmickvpexchange", "vmicrdv", "vmicshutdown", "vmictimesync", "vmicvmsession",
		"vmicvss", "storvsc", "netvsc", "VMBusHID", "hyperkbd", "HyperVideo", "vmgid", "vmbus"},
	"xen": {"xenbus", "xenfilt", "xenvbd", "xendisk", "xenvif", "xennet", "xeniface", "xenagent", "XenSvc"},
}

// Hypervisors returns the names --disable-services knows.
func Hypervisors() []string {
	var out []string
	for k := range hypervisorServices {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// imagePathRel turns a service's ImagePath into a path inside the volume: \SystemRoot\x,
// %SystemRoot%\x and relative paths are below the Windows folder; \??\C:\x is on the volume.
func imagePathRel(img, svc string) string {
	if img == "" {
		return `Windows\System32\drivers\` + svc + ".sys"
	}
	l := strings.ToLower(img)
	switch {
	case strings.HasPrefix(l, `\systemroot\`):
		return `Windows\` + img[len(`\systemroot\`):]
	case strings.HasPrefix(l, `%systemroot%\`):
		return `Windows\` + img[len(`%systemroot%\`):]
	case strings.HasPrefix(l, `\??\`) && len(img) > 7 && img[5] == ':':
		return img[7:]
	case len(img) > 3 && img[1] == ':' && img[2] == '\\':
		return img[3:]
	case strings.HasPrefix(img, `\`):
		return strings.TrimLeft(img, `\`) // from the root of the boot volume
	}
	return `Windows\` + img
}

// enableInbox sets an inbox driver to boot start in every control set and removes the
// StartOverride that would undo it. The driver's file must be on the volume.
func enableInbox(hf *hiveFile, s *System, svc, why string) (*ServiceChange, error) {
	sc := &ServiceChange{Name: svc, Action: "enabled", Why: why}
	var missing []string
	for _, cs := range s.ControlSets {
		key := cs + `\Services\` + svc
		if !hf.hasKey(key) {
			missing = append(missing, cs)
			continue
		}
		img, _ := str(hf, key, "ImagePath")
		if _, ok := exists(s.Root, imagePathRel(img, svc)); !ok {
			return nil, fmt.Errorf("inbox driver %s: its file %s (ImagePath of %s) is not on the volume", svc, imagePathRel(img, svc), key)
		}
		if err := hf.setDword(key, "Start", 0, why+": boot start"); err != nil {
			return nil, err
		}
		if err := hf.deleteKey(key+`\StartOverride`, "StartOverride\\0=3 would turn the boot start back into demand start: the classic 0x7B after a disk moves"); err != nil {
			return nil, err
		}
		sc.ControlSets = append(sc.ControlSets, cs)
	}
	if len(sc.ControlSets) == 0 {
		return nil, fmt.Errorf("inbox driver %s is not installed on this Windows (%s): no control set has Services\\%s", svc, s.Name(), svc)
	}
	if len(missing) > 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("inbox driver %s is missing from %s: Windows booting those control sets cannot use it", svc, strings.Join(missing, ", ")))
	}
	return sc, nil
}

// disableServices sets the named hypervisors' services to Start=4 in every control set and takes
// them out of the class filter lists: a disabled filter driver still listed in a class's
// UpperFilters/LowerFilters makes every device of that class fail to start, the boot disk
// included.
func disableServices(hf *hiveFile, s *System, hypervisors []string, keep map[string]bool) ([]ServiceChange, error) {
	var out []ServiceChange
	for _, hvName := range hypervisors {
		names, ok := hypervisorServices[strings.ToLower(strings.TrimSpace(hvName))]
		if !ok {
			return nil, fmt.Errorf("--disable-services: unknown hypervisor %q (known: %s)", hvName, strings.Join(Hypervisors(), ", "))
		}
		for _, svc := range names {
			if keep[strings.ToLower(svc)] {
				s.Warnings = append(s.Warnings, fmt.Sprintf("%s is a %s service but the target's controller needs it: left enabled", svc, hvName))
				continue
			}
			sc := ServiceChange{Name: svc, Action: "disabled", Why: "a " + hvName + " guest service, disabled on request (--disable-services)"}
			for _, cs := range s.ControlSets {
				key := cs + `\Services\` + svc
				if !hf.hasKey(key) {
					continue
				}
				if err := hf.setDword(key, "Start", 4, sc.Why); err != nil {
					return nil, err
				}
				if err := hf.deleteKey(key+`\StartOverride`, "a StartOverride could start the disabled service again"); err != nil {
					return nil, err
				}
				if err := removeFilter(hf, cs, svc); err != nil {
					return nil, err
				}
				sc.ControlSets = append(sc.ControlSets, cs)
			}
			if len(sc.ControlSets) > 0 {
				out = append(out, sc)
			}
		}
	}
	return out, nil
}

func removeFilter(hf *hiveFile, cs, svc string) error {
	k, err := hf.h.Lookup(cs + `\Control\Class`)
	if err != nil {
		return nil
	}
	classes, err := k.Subkeys()
	if err != nil {
		return err
	}
	for _, c := range classes {
		key := cs + `\Control\Class\` + c.Name()
		for _, v := range []string{"UpperFilters", "LowerFilters"} {
			t, d, ok := hf.get(key, v)
			if !ok || t != regf.RegMultiSz {
				continue
			}
			list := utf16Strings(d)
			var kept []string
			for _, f := range list {
				if !strings.EqualFold(f, svc) {
					kept = append(kept, f)
				}
			}
			if len(kept) == len(list) {
				continue
			}
			if err := hf.setMulti(key, v, kept, fmt.Sprintf("%s is disabled: a class filter that does not start makes the class's devices fail", svc)); err != nil {
				return err
			}
		}
	}
	return nil
}
