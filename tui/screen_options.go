package tui

import (
	"fmt"
	"strings"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/restore/kickstart"
	"github.com/cauldron-dr/cauldron/tib"
)

// Screen 5, options: inoculation (driver folders found on attached media, the hardware to
// prepare for, inbox drivers to enable, other hypervisors' services to disable), the replication
// session, the target kind and what happens after a success.

type optionsScreen struct {
	loaded      bool
	sel         int
	inoculate   bool
	hardware    int
	drivers     []string
	driverOn    []bool
	inbox       []bool
	disable     []bool
	replication int
	onSuccess   int
	controllers []string
}

var hardwareChoices = []kickstart.Hardware{kickstart.HardwareDetect, kickstart.HardwareAHCI, kickstart.HardwareNVMe,
	kickstart.HardwareVirtioBlk, kickstart.HardwareVirtioSCSI, kickstart.HardwareVMwarePVSCSI, kickstart.HardwareHyperV}

// inboxDrivers are Windows' own storage drivers that are often disabled on a machine that never
// had the controller (StartOverride, Start=4): enabling them is what a new controller needs.
var inboxDrivers = []string{"storahci", "stornvme", "iaStorV", "LSI_SAS", "megasas"}

var disableChoices = []string{"vmware", "hyperv", "xen"}

var replicationChoices = []struct {
	label   string
	freeze  bool
	release tib.ReleaseMode
}{
	{"leave the replication session as it is", false, ""},
	{"freeze it, then remove it (failover: this machine replaces the original)", true, tib.ReleaseRemove},
	{"freeze it, then resume it (a copy beside the running original)", true, tib.ReleaseResume},
}

var successChoices = []string{"stay on the result screen", "reboot", "poweroff"}

type optRow struct {
	kind string // inoculate, hardware, driver, inbox, disable, replication, success
	i    int
}

func newOptions() optionsScreen {
	return optionsScreen{inoculate: true, inbox: make([]bool, len(inboxDrivers)), disable: make([]bool, len(disableChoices))}
}

func (m *Model) loadOptions() {
	s := &m.opt
	if s.loaded {
		return
	}
	s.loaded = true
	if m.env.DriverFolders != nil {
		s.drivers = m.env.DriverFolders()
		s.driverOn = make([]bool, len(s.drivers))
	}
	if m.env.Controllers != nil {
		s.controllers = m.env.Controllers()
	}
}

func (m *Model) optRows() []optRow {
	s := &m.opt
	rows := []optRow{{kind: "inoculate"}}
	if s.inoculate {
		rows = append(rows, optRow{kind: "hardware"})
		for i := range s.drivers {
			rows = append(rows, optRow{"driver", i})
		}
		for i := range inboxDrivers {
			rows = append(rows, optRow{"inbox", i})
		}
		for i := range disableChoices {
			rows = append(rows, optRow{"disable", i})
		}
	}
	return append(rows, optRow{kind: "replication"}, optRow{kind: "success"})
}

func (m *Model) updateOptions(msg tea.Msg) tea.Cmd {
	m.loadOptions()
	k, ok := msg.(tea.KeyPressMsg)
	if !ok {
		return nil
	}
	s := &m.opt
	rows := m.optRows()
	switch {
	case m.isKey(k, keys.Up):
		s.sel = max(s.sel-1, 0)
	case m.isKey(k, keys.Down), m.isKey(k, keys.Tab):
		s.sel = min(s.sel+1, len(rows)-1)
	case m.isKey(k, keys.ShiftTab):
		s.sel = max(s.sel-1, 0)
	case m.isKey(k, keys.Space), m.isKey(k, keys.Right):
		m.changeOption(rows[s.sel], +1)
	case m.isKey(k, keys.Left):
		m.changeOption(rows[s.sel], -1)
	case m.isKey(k, keys.Enter):
		return m.goTo(scrSummary)
	case m.isKey(k, keys.Back):
		return m.back()
	}
	s.sel = min(s.sel, len(m.optRows())-1)
	return nil
}

func (m *Model) changeOption(r optRow, dir int) {
	s := &m.opt
	cycle := func(i, n int) int { return (i + dir + n) % n }
	switch r.kind {
	case "inoculate":
		s.inoculate = !s.inoculate
	case "hardware":
		s.hardware = cycle(s.hardware, len(hardwareChoices))
	case "driver":
		s.driverOn[r.i] = !s.driverOn[r.i]
	case "inbox":
		s.inbox[r.i] = !s.inbox[r.i]
	case "disable":
		s.disable[r.i] = !s.disable[r.i]
	case "replication":
		s.replication = cycle(s.replication, len(replicationChoices))
	case "success":
		s.onSuccess = cycle(s.onSuccess, len(successChoices))
	}
}

func (m *Model) viewOptions() (string, string) {
	m.loadOptions()
	s, t := &m.opt, m.theme
	var lines []string
	sel := -1
	rows := m.optRows()
	for i, r := range rows {
		var l string
		switch r.kind {
		case "inoculate":
			lines = append(lines, "Inoculation (make the restored system boot on this hardware):")
			l = t.check(s.inoculate) + " inoculate the restored system"
		case "hardware":
			l = fmt.Sprintf("    prepare for: < %s >", hardwareChoices[s.hardware])
			if len(s.controllers) > 0 {
				l += "   found: " + strings.Join(s.controllers, ", ")
			}
		case "driver":
			if r.i == 0 {
				lines = append(lines, "      driver folders found on attached media:")
			}
			l = "      " + t.check(s.driverOn[r.i]) + " " + s.drivers[r.i]
		case "inbox":
			if r.i == 0 {
				if len(s.drivers) == 0 {
					lines = append(lines, "      driver folders: none found on attached media")
				}
				lines = append(lines, "      Windows inbox drivers to enable:")
			}
			l = "      " + t.check(s.inbox[r.i]) + " " + inboxDrivers[r.i]
		case "disable":
			if r.i == 0 {
				lines = append(lines, "      other hypervisors' services to disable:")
			}
			l = "      " + t.check(s.disable[r.i]) + " " + disableChoices[r.i]
		case "replication":
			lines = append(lines, "", "Replication of the machine during the recovery:")
			l = "< " + replicationChoices[s.replication].label + " >"
		case "success":
			lines = append(lines, "", "Target: this machine's disks (physical).  "+t.Dim("Hypervisor VM: not available in this build."), "", "After a successful recovery:")
			l = "< " + successChoices[s.onSuccess] + " >"
			if s.onSuccess > 0 && !contains(m.env.Actions, successChoices[s.onSuccess]) {
				l += t.Dim("  (not done here; kept for an exported kickstart)")
			}
		}
		if i == s.sel {
			sel = len(lines)
		}
		lines = append(lines, t.row(i == s.sel, l))
	}
	n := m.bodyHeight()
	start := listWindow(sel, len(lines), n)
	return strings.Join(lines[start:min(len(lines), start+n)], "\n"), "up/down move  space/left/right change  enter continue  esc back"
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
