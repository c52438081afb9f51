package tui

import (
	"fmt"
	"strings"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/restore/kickstart"
)

// Request is what the technician has chosen, as the engine takes it: the same Request a
// kickstart file gives (restore.FromKickstart), built directly.
func (m *Model) Request() restore.Request {
	o := &m.opt
	req := restore.Request{
		Name: "wizard", Repo: m.repo, RepoPath: m.repoDir,
		AutoResize: partition.ResizeProportional, AutoIdentity: partition.IdentityKeep,
		Candidates: m.env.Targets, Scratch: m.env.Scratch,
	}
	if m.gen != nil {
		req.Machine, req.Generation = m.gen.Machine, m.gen.ID.String()
	}
	for _, r := range m.disk.rows {
		req.Disks = append(req.Disks, restore.DiskRequest{Source: r.source, Target: r.target, Resize: r.resize, Identity: r.identity})
	}
	rc := replicationChoices[o.replication]
	req.Freeze, req.Release = rc.freeze, rc.release
	req.Inoculate = m.inoculation()
	return req
}

func (m *Model) inoculation() restore.Inoculation {
	o := &m.opt
	if !o.inoculate {
		return restore.Inoculation{Skip: true, Why: "turned off in the wizard's options"}
	}
	in := restore.Inoculation{Hardware: string(hardwareChoices[o.hardware]), OnTarget: m.env.OnTarget}
	for i, on := range o.driverOn {
		if on {
			in.Drivers = append(in.Drivers, o.drivers[i])
		}
	}
	for i, on := range o.inbox {
		if on {
			in.EnableInbox = append(in.EnableInbox, inboxDrivers[i])
		}
	}
	for i, on := range o.disable {
		if on {
			in.DisableServices = append(in.DisableServices, disableChoices[i])
		}
	}
	return in
}

// Kickstart is the kickstart that reproduces this recovery unattended (Export kickstart). With
// consent it carries the `confirm --destroy-data-on-targets` line, without which an unattended
// run writes nothing.
func (m *Model) Kickstart(consent bool) *kickstart.Kickstart {
	req := m.Request()
	ks := &kickstart.Kickstart{
		File:         "wizard",
		Repository:   m.kickstartRepository(),
		Machine:      kickstart.Machine{Name: req.Machine, Generation: kickstart.GenerationRef{Kind: kickstart.GenerationID, ID: req.Generation}},
		AutoResize:   req.AutoResize,
		AutoIdentity: req.AutoIdentity,
		Target:       kickstart.Target{Kind: kickstart.TargetPhysical},
		OnFailure:    kickstart.EndAction{Action: kickstart.ActionShell},
	}
	if req.Freeze {
		ks.Replication = &kickstart.Replication{Release: kickstart.Release(req.Release)}
	}
	for _, d := range req.Disks {
		ks.Disks = append(ks.Disks, kickstart.Disk{Source: d.Source, Target: kickstart.DiskSelector{By: kickstart.SelectPath, Value: d.Target},
			Resize: d.Resize, Identity: d.Identity})
	}
	in := req.Inoculate
	ks.Inoculate = kickstart.Inoculate{Skip: in.Skip, Drivers: in.Drivers, Hardware: kickstart.Hardware(in.Hardware),
		EnableInbox: in.EnableInbox, DisableServices: in.DisableServices}
	if in.Skip {
		ks.Inoculate.Hardware = kickstart.HardwareDetect
	}
	// The kickstart has no "stay on the result screen": an unattended run with nobody to read
	// the result ends in the shell, which keeps the console.
	switch successChoices[m.opt.onSuccess] {
	case "reboot":
		ks.OnSuccess.Action = kickstart.ActionReboot
	case "poweroff":
		ks.OnSuccess.Action = kickstart.ActionPoweroff
	default:
		ks.OnSuccess.Action = kickstart.ActionShell
	}
	if consent {
		ks.Confirm = &kickstart.Confirm{}
	}
	return ks
}

// kickstartText formats the kickstart with a header and checks that it parses back to the same
// recovery before anyone relies on it.
func (m *Model) kickstartText(consent bool) (string, error) {
	ks := m.Kickstart(consent)
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by the Cauldron recovery wizard on %s.\n", m.now().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(&b, "# Recovers %s from generation %.12s as the wizard did. The password is taken from\n", ks.Machine.Name, ks.Machine.Generation.ID)
	b.WriteString("# $CAULDRON_PASSWORD or asked for; add --password-file to the repository line to run unattended.\n")
	if !consent {
		b.WriteString("# Without a `confirm --destroy-data-on-targets` line an unattended run writes nothing.\n")
	}
	b.WriteString(ks.Format())
	text := b.String()
	back, err := kickstart.Parse("export", strings.NewReader(text))
	if err != nil {
		return "", fmt.Errorf("the exported kickstart does not parse (a bug; nothing written): %w", err)
	}
	if back.Machine.Generation.ID != ks.Machine.Generation.ID || len(back.Disks) != len(ks.Disks) {
		return "", fmt.Errorf("the exported kickstart does not read back as this recovery (a bug; nothing written)")
	}
	return text, nil
}

// kickstartRepository is the repository line of the exported kickstart. Typed secrets (S3 keys,
// an SMB password) are never written: an S3 or SMB repository needs --credentials-file added,
// which the export says.
func (m *Model) kickstartRepository() kickstart.Repository {
	sp := m.repoSpec
	return kickstart.Repository{Location: sp.Location, Endpoint: sp.Endpoint, InsecureTLS: sp.InsecureTLS}
}
