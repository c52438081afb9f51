package tui

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/restore/kickstart"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/rest"
)

// view is the current screen, normalised, and checked to be plain ASCII in the plain look.
func (d *driver) view(f *fixture) string {
	d.t.Helper()
	v := d.m.Render()
	if d.m.theme.ascii && !isASCII(v) {
		d.t.Fatalf("the plain look has non-ASCII output:\n%s", v)
	}
	if f != nil {
		v = f.normalise(v)
	}
	return v
}

// toArchive goes from the start to the archive screen and opens the fixture's repository.
func toMachines(t *testing.T, f *fixture, env Env) *driver {
	d := newDriver(t, env, true)
	d.keys("enter") // network: continue
	d.expectScreen("Archive")
	d.keys("enter") // the repository given on the command line
	d.expectScreen("Archive")
	d.typeText(string(f.password))
	d.keys("enter")
	d.expectScreen("Machine")
	return d
}

func TestWizardNetworkScreen(t *testing.T) {
	n := &fakeNetwork{nics: []NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", Driver: "virtio_net", Link: true}, {Name: "eth1", MAC: "52:54:00:12:34:57", Driver: "e1000"}}}
	d := newDriver(t, Env{Network: n, Archives: func(context.Context) ([]Archive, error) { return nil, nil }}, true)
	d.expectScreen("Network")
	golden(t, "network", d.view(nil))

	d.keys("d") // DHCP on eth0
	if len(n.got) != 1 || !n.got[0].DHCP || n.got[0].Device != "eth0" {
		t.Fatalf("DHCP request: %+v", n.got)
	}
	d.expectView("10.0.2.15/24", "network eth0 10.0.2.15/24 dhcp")

	d.keys("j", "s") // static on eth1
	d.typeText("10.1.2.3/24")
	d.keys("tab")
	d.typeText("10.9.9.1") // outside the network: refused
	d.keys("enter")
	if len(n.got) != 1 || !strings.Contains(d.m.message, "not in 10.1.2.0/24") {
		t.Fatalf("a gateway outside the network was accepted: %+v %q", n.got, d.m.message)
	}
	golden(t, "network-static", d.view(nil))
	for range len("10.9.9.1") {
		d.keys("backspace")
	}
	d.typeText("10.1.2.1")
	d.keys("tab")
	d.typeText("10.1.2.53, 10.1.2.54")
	d.keys("enter")
	if len(n.got) != 2 {
		t.Fatalf("static address not applied: %+v (%s)", n.got, d.m.message)
	}
	c := n.got[1]
	if c.DHCP || c.Device != "eth1" || c.Address.String() != "10.1.2.3/24" || c.Gateway.String() != "10.1.2.1" || len(c.DNS) != 2 {
		t.Fatalf("static configuration: %+v", c)
	}

	// Esc on the first screen asks before leaving; any key but y stays.
	d.keys("esc")
	d.expectView("Leave the wizard?")
	d.keys("n")
	if d.m.Done() {
		t.Fatal("the wizard left on n")
	}
	d.keys("esc", "y")
	if !d.m.Done() || !d.quit || d.m.Result().Action != "quit" {
		t.Fatalf("esc y did not leave: done %v quit %v %+v", d.m.Done(), d.quit, d.m.Result())
	}
}

func TestWizardNetworkManagedByHost(t *testing.T) {
	n := &fakeNetwork{managed: HostNetwork{}.Managed(), nics: []NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", Link: true, Addrs: []string{"192.0.2.2/24"}}}}
	d := newDriver(t, Env{Network: n}, true)
	d.keys("d")
	d.keys("s")
	if len(n.got) != 0 || d.m.net.form {
		t.Fatalf("the host's network was changed: %+v", n.got)
	}
	d.expectView("The network is managed by the host", "enter continue  r refresh")
	golden(t, "network-host", d.view(nil))
}

func TestWizardArchiveScreen(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "") // the S3 form is filled in from it
	f := newFixture(t)
	env := f.env()
	env.Archives = func(context.Context) ([]Archive, error) {
		return []Archive{{Path: "/media/usb0", Note: "sdb1 (vfat), no repository at its top"}}, nil
	}
	d := newDriver(t, env, true)
	d.keys("enter")
	d.expectScreen("Archive")
	golden(t, "archive", d.view(f))

	// The network row: an empty or schemeless location is refused; s3:// and smb:// ask for
	// their details in a form (Esc leaves it), and the form checks what it is given.
	d.keys("down", "down", "down")
	d.keys("enter")
	if !strings.Contains(d.m.message, "Type a network location") {
		t.Fatalf("empty network row: %q", d.m.message)
	}
	d.typeText("s3://dr-archive/prod")
	d.keys("enter")
	d.expectView("s3://dr-archive/prod", "Endpoint:", "Access key ID:", "Secret access key:", "Skip the certificate check:")
	golden(t, "archive-s3-form", d.view(f))
	d.typeText("minio:9000")
	d.keys("enter", "enter", "enter", "enter")
	if !strings.Contains(d.m.message, "The endpoint is a URL") {
		t.Fatalf("a bad endpoint: %q", d.m.message)
	}
	d.keys("esc")
	if d.m.arch.form != nil {
		t.Fatal("esc left the form open")
	}
	d.keys("ctrl+u")
	d.typeText("smb://filer/backup/dr")
	d.keys("enter")
	d.expectView("User:", "Password:", "Domain:")
	d.keys("esc", "ctrl+u")
	// A typed path: relative refused; vi keys are letters while a field has the cursor.
	d.keys("k")
	if d.m.arch.url.value != "k" {
		t.Fatalf("k in the network field: %q", d.m.arch.url.value)
	}
	d.keys("backspace", "up")
	if d.m.archFocused() == nil {
		t.Fatal("the directory row has no text field")
	}
	d.typeText("jk/repo")
	d.keys("enter")
	if !strings.Contains(d.m.message, "absolute path") {
		t.Fatalf("a relative path: %q", d.m.message)
	}
	d.keys("ctrl+u")
	d.typeText(f.repo)
	d.keys("enter")
	d.expectView("Password for " + f.repo)
	golden(t, "archive-password", d.view(f))

	d.typeText("wrong password")
	d.keys("enter")
	d.expectScreen("Archive")
	if !strings.Contains(d.m.message, "Wrong password") {
		t.Fatalf("wrong password: %q", d.m.message)
	}
	golden(t, "archive-wrong-password", d.view(f))
	d.keys("enter") // an empty password is not tried
	if !strings.Contains(d.m.message, "Type the password") {
		t.Fatalf("empty password: %q", d.m.message)
	}
	d.typeText(string(f.password))
	d.keys("enter")
	d.expectScreen("Machine")
	if d.m.repo == nil || d.m.repoPath != f.repo || d.m.repoDir != f.repo || len(d.m.gens) != 3 {
		t.Fatalf("repository not opened: %v %q %q %d", d.m.repo, d.m.repoPath, d.m.repoDir, len(d.m.gens))
	}

	// A password given to the program is tried first, without asking.
	env.Password = f.password
	d = newDriver(t, env, true)
	d.keys("enter", "enter")
	d.expectScreen("Machine")
}

// TestWizardArchiveOverHTTP opens the fixture's repository through `cauldron serve`'s handler on
// loopback: typed into the network row, with the password asked for, and exported back into
// the kickstart as the same URL.
func TestWizardArchiveOverHTTP(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(rest.NewHandler(local.New(f.repo), rest.HandlerOptions{AppendOnly: true}))
	defer srv.Close()
	env := f.env()
	env.Repo = ""
	d := newDriver(t, env, true)
	d.keys("enter")
	d.expectScreen("Archive")
	for d.m.archFocused() != &d.m.arch.url {
		d.keys("down")
	}
	d.typeText(srv.URL + "/")
	d.keys("enter")
	d.expectView("Password for " + srv.URL + "/")
	d.typeText(string(f.password))
	d.keys("enter")
	d.expectScreen("Machine")
	if d.m.repoPath != srv.URL+"/" || d.m.repoDir != "" || len(d.m.gens) != 3 {
		t.Fatalf("opened %q (dir %q) with %d generations", d.m.repoPath, d.m.repoDir, len(d.m.gens))
	}
	if r := d.m.Request(); r.RepoPath != "" {
		t.Fatalf("an HTTP repository has no local directory to protect, got %q", r.RepoPath)
	}
	loc := d.m.Kickstart(false).Repository.Location
	if loc.Kind != kickstart.LocationHTTP || loc.URL != srv.URL+"/" {
		t.Fatalf("exported repository %+v", loc)
	}

	// Given on the command line (cauldron wizard --repo URL): offered first, as it is.
	env.Repo, env.Password = srv.URL, f.password
	d = newDriver(t, env, true)
	d.keys("enter")
	d.expectView("> " + srv.URL + "  (repository, given on the command line)")
	d.keys("enter")
	d.expectScreen("Machine")
	if d.m.repoPath != srv.URL || d.m.repoDir != "" {
		t.Fatalf("opened %q (dir %q)", d.m.repoPath, d.m.repoDir)
	}
}

func TestWizardMachineAndGeneration(t *testing.T) {
	f := newFixture(t)
	d := toMachines(t, f, f.env())
	golden(t, "machine", d.view(f))
	d.keys("j", "enter") // db01, web01: web01
	d.expectScreen("Generation")
	golden(t, "generation", d.view(f))
	if v := d.view(f); !strings.Contains(v, "GENERATION-2 incremental") || !strings.Contains(v, "GENERATION-1 full") {
		t.Fatalf("timeline:\n%s", v)
	}

	// Back keeps the choice; the older generation (inside the chain) can be chosen.
	d.keys("esc")
	d.expectScreen("Machine")
	d.keys("enter", "j", "enter")
	d.expectScreen("Disk mapping")
	if d.m.gen.ID != f.gens[0].ID {
		t.Fatalf("chose %s, want the older %s", d.m.gen.ID, f.gens[0].ID)
	}
	if req := d.m.Request(); req.Machine != "web01" || req.Generation != f.gens[0].ID.String() {
		t.Fatalf("request: %+v", req)
	}
}

func TestWizardDiskMapping(t *testing.T) {
	f := newFixture(t)
	d := toMachines(t, f, f.env())
	d.keys("j", "enter", "enter")
	d.expectScreen("Disk mapping")
	golden(t, "disks", d.view(f))
	rows := d.m.disk.rows
	if len(rows) != 1 || rows[0].target != f.same {
		t.Fatalf("proposed mapping: %+v, want disk0 -> %s (equal size)", rows, f.same)
	}
	// The image inside the repository is shown and never offered.
	d.expectView("not selectable: it lies in the protected path")
	for range 6 {
		d.keys("l")
		if d.m.disk.rows[0].target == f.stray {
			t.Fatal("a target inside the repository was offered")
		}
	}
	// Cycle to the bigger disk, and back to none: continuing without a target is refused.
	for d.m.disk.rows[0].target != f.bigger {
		d.keys("right")
	}
	d.keys("r", "i")
	if r := d.m.disk.rows[0]; r.resize != partition.ResizeGrowLast || r.identity != partition.IdentityRenew {
		t.Fatalf("resize/identity: %+v", r)
	}
	d.expectView("+4.0 MiB", "resize grow-last; identity renew")
	for d.m.disk.rows[0].target != "" {
		d.keys("h")
	}
	d.keys("enter")
	d.expectScreen("Disk mapping")
	if !strings.Contains(d.m.message, "disk0 has no target") {
		t.Fatalf("no target: %q", d.m.message)
	}
	d.keys("right", "enter")
	d.expectScreen("Options")
	req := d.m.Request()
	if len(req.Disks) != 1 || req.Disks[0].Target != f.same || req.Disks[0].Resize != partition.ResizeGrowLast || req.Disks[0].Identity != partition.IdentityRenew {
		t.Fatalf("request disks: %+v", req.Disks)
	}
}

func TestWizardOptions(t *testing.T) {
	f := newFixture(t)
	env := f.env()
	env.DriverFolders = func() []string { return []string{"/media/usb0/virtio-win/viostor"} }
	env.Controllers = func() []string { return []string{"virtio_blk (vda)"} }
	d := toMachines(t, f, env)
	d.keys("j", "enter", "enter", "enter")
	d.expectScreen("Options")
	golden(t, "options", d.view(f))
	// hardware: detect -> ahci -> nvme; the driver folder; stornvme; vmware; replication; reboot.
	d.keys("j", "right", "right")
	d.keys("j", "space")
	d.keys("j", "j", "space")
	d.keys("j", "j", "j", "j", "space")
	d.keys("j", "j", "j", "right", "right")
	d.keys("j", "right")
	req := d.m.Request()
	in := req.Inoculate
	if in.Skip || in.Hardware != "nvme" || len(in.Drivers) != 1 || in.Drivers[0] != "/media/usb0/virtio-win/viostor" ||
		strings.Join(in.EnableInbox, ",") != "stornvme" || strings.Join(in.DisableServices, ",") != "vmware" {
		t.Fatalf("inoculation: %+v", in)
	}
	if !req.Freeze || req.Release != tib.ReleaseResume {
		t.Fatalf("replication: freeze %v release %q", req.Freeze, req.Release)
	}
	if ks := d.m.Kickstart(false); ks.OnSuccess.Action != kickstart.ActionReboot || ks.Replication == nil || ks.Replication.Release != kickstart.ReleaseResume {
		t.Fatalf("kickstart: %+v", ks)
	}
	golden(t, "options-changed", d.view(f))
	// Inoculation off hides its details and skips it.
	for d.m.opt.sel > 0 {
		d.keys("k")
	}
	d.keys("space")
	if !d.m.Request().Inoculate.Skip {
		t.Fatal("inoculation not skipped")
	}
	d.expectView("< freeze it, then resume it")
}

// toSummary drives the fixture to the summary screen of web01's latest generation.
func toSummary(t *testing.T, f *fixture, env Env) *driver {
	d := toMachines(t, f, env)
	d.keys("j", "enter", "enter", "enter", "enter")
	d.expectScreen("Summary and confirmation")
	if d.m.sum.err != nil {
		t.Fatalf("plan: %v", d.m.sum.err)
	}
	return d
}

func TestWizardSummaryConfirmation(t *testing.T) {
	f := newFixture(t)
	t.Setenv("CAULDRON_PASSWORD", string(f.password)) // for the exported kickstart's run
	d := toSummary(t, f, f.env())
	golden(t, "summary", d.view(f))
	d.expectView("Everything on these disks will be overwritten:", f.same+" (for disk0)\n      image file 8.0 MiB, model -, serial -; now: no partition table")

	// No default and no single key: Enter on an empty field, a lower-case word, y: refused.
	for _, try := range []string{"", "erase", "y", "ERAS"} {
		d.typeText(try)
		d.keys("enter")
		d.expectScreen("Summary and confirmation")
		if !strings.Contains(d.m.message, "Type ERASE") {
			t.Fatalf("%q: %q", try, d.m.message)
		}
	}
	golden(t, "summary-refused", d.view(f))
	if b, _ := os.ReadFile(f.same); !bytes.Equal(b, make([]byte, fixtureSize)) {
		t.Fatal("the target was written before the confirmation")
	}

	// Export kickstart: the dialog proposes ExportDir/web01.ks; with consent.
	d.keys("tab", "enter")
	d.expectView("Export kickstart to: [" + filepath.Join(f.dir, "web01.ks"))
	d.keys("tab", "space")
	golden(t, "summary-export", d.view(f))
	d.keys("enter")
	text, err := os.ReadFile(filepath.Join(f.dir, "web01.ks"))
	if err != nil {
		t.Fatalf("%v (%s)", err, d.m.message)
	}
	ks, err := kickstart.Parse("web01.ks", bytes.NewReader(text))
	if err != nil {
		t.Fatalf("the exported kickstart does not parse: %v\n%s", err, text)
	}
	if ks.Repository.Location.Path != f.repo || ks.Machine.Name != "web01" || ks.Machine.Generation.ID != f.gens[1].ID.String() ||
		len(ks.Disks) != 1 || ks.Disks[0].Target.Value != f.same || ks.ConsentError() != nil {
		t.Fatalf("exported kickstart:\n%s", text)
	}
	// The kickstart gives the same request as the wizard.
	req, err := restore.FromKickstart(context.Background(), ks, restore.KickstartOptions{Candidates: f.env().Targets})
	if err != nil {
		t.Fatal(err)
	}
	want := d.m.Request()
	if req.Machine != want.Machine || req.Generation != want.Generation || req.Disks[0] != want.Disks[0] || req.Freeze != want.Freeze ||
		req.Inoculate.Hardware != want.Inoculate.Hardware || req.Inoculate.Skip != want.Inoculate.Skip {
		t.Fatalf("kickstart request %+v\nwizard request %+v", req, want)
	}
	if d.m.sum.focus != 0 || !strings.Contains(d.m.message, "Kickstart written to") {
		t.Fatalf("after the export: focus %d, %q", d.m.sum.focus, d.m.message)
	}

	// Back to the options and forward again plans again.
	d.keys("esc")
	d.expectScreen("Options")
	d.keys("enter")
	d.expectScreen("Summary and confirmation")
}

func TestWizardWholeRecovery(t *testing.T) {
	f := newFixture(t)
	d := toSummary(t, f, f.env())
	d.typeText(ConfirmWord)
	d.keys("enter")
	d.expectScreen("Result")
	res := d.m.Result()
	if res.RunErr != nil || res.Report == nil || !res.Report.OK {
		t.Fatalf("recovery: %v %+v", res.RunErr, res.Report)
	}
	// The fixture's disk holds no system: inoculation ran (the plan's, no override) and says
	// so, which pushes the report's verification line below the first page.
	d.expectView("The recovery succeeded.", "nothing changed: no Linux or Windows system", "Leave the wizard")
	if dr := res.Report.Disks; len(dr) != 1 || dr[0].Verified == 0 {
		t.Fatalf("the report shows no verification: %+v", dr)
	}
	if !strings.Contains(strings.Join(res.Report.Warnings, "\n"), "inoculation changed nothing") {
		t.Fatalf("the report lacks inoculation's warning: %v", res.Report.Warnings)
	}
	src, _ := os.ReadFile(f.src)
	got, _ := os.ReadFile(f.same)
	if !bytes.Equal(src, got) {
		t.Fatal("the restored image differs from the source")
	}
	// The progress screen saw the engine's events: every stage ended.
	for _, st := range []string{"check", "restore", "verify", "finalize"} {
		if s := d.m.prog.stages[st]; s == nil || s.status != "done" {
			t.Fatalf("stage %s: %+v", st, s)
		}
	}
	// Save the report to a folder, then leave.
	d.keys("enter")
	d.keys("ctrl+u")
	d.typeText(f.dir)
	d.keys("enter")
	saved, _ := filepath.Glob(filepath.Join(f.dir, "cauldron-report-web01-*.txt"))
	if len(saved) != 1 {
		t.Fatalf("report not saved: %v (%s)", saved, d.m.message)
	}
	if b, _ := os.ReadFile(saved[0]); !strings.Contains(string(b), "succeeded") {
		t.Fatalf("saved report:\n%s", b)
	}
	d.keys("j", "enter")
	if !d.quit || d.m.Result().Action != "quit" {
		t.Fatalf("leave: %+v", d.m.Result())
	}
}

func TestWizardOnSuccessCountdown(t *testing.T) {
	f := newFixture(t)
	env := f.env()
	env.Actions = []string{"reboot", "poweroff", "shell"}
	d := toMachines(t, f, env)
	d.keys("j", "enter", "enter", "enter")
	for d.m.optRows()[d.m.opt.sel].kind != "success" {
		d.keys("down")
	}
	d.keys("right") // reboot
	d.keys("enter")
	d.typeText(ConfirmWord)
	d.keys("enter")
	d.expectScreen("Result")
	d.expectView("Reboot in 10 s")
	for range 9 {
		d.send(tickMsg(d.clock))
	}
	if d.quit {
		t.Fatal("rebooted before the countdown ended")
	}
	d.send(tickMsg(d.clock))
	if !d.quit || d.m.Result().Action != "reboot" {
		t.Fatalf("countdown: quit %v %+v", d.quit, d.m.Result())
	}
}

func TestWizardProgressScreen(t *testing.T) {
	f := newFixture(t)
	d := toSummary(t, f, f.env())
	// Put the planned recovery on the progress screen without running it, and feed events.
	d.m.plan = d.m.sum.plan
	d.m.screen = scrProgress
	d.m.enterProgress() // its command (the run) is dropped
	t0 := testEpoch
	ev := func(sec int, e restore.Event) {
		e.Time = t0.Add(time.Duration(sec) * time.Second)
		d.clock = e.Time
		d.send(EventMsg(e))
	}
	ev(0, restore.Event{Stage: "freeze", Kind: restore.EventStart})
	ev(0, restore.Event{Stage: "freeze", Kind: restore.EventSkip})
	ev(0, restore.Event{Stage: "check", Kind: restore.EventStart})
	ev(1, restore.Event{Stage: "check", Kind: restore.EventDone, Message: "1 disk(s) ready"})
	ev(1, restore.Event{Stage: "restore", Kind: restore.EventStart})
	ev(1, restore.Event{Stage: "restore", Kind: restore.EventStart, Disk: "disk0", Message: "→ " + f.same})
	ev(3, restore.Event{Stage: "restore", Kind: restore.EventProgress, Disk: "disk0", Bytes: 2 << 20, Total: 4 << 20, Rate: 1 << 20, ETA: 2 * time.Second})
	d.clock = t0.Add(65 * time.Second)
	d.send(tickMsg(d.clock))
	golden(t, "progress", d.view(f))
	d.expectView("Elapsed 0:01:05", "50.0%", "ETA 0:00:02", "restore    running", "check      done     1 disk(s) ready")

	// Cancel asks first; n goes on.
	d.keys("esc")
	d.expectView("Cancel the recovery?")
	d.keys("n")
	if d.m.prog.cancelling {
		t.Fatal("cancelled on n")
	}
	d.keys("c", "y")
	if !d.m.prog.cancelling {
		t.Fatal("not cancelling after c y")
	}
	golden(t, "progress-cancelling", d.view(f))
}

func TestWizardUnicodeLook(t *testing.T) {
	f := newFixture(t)
	d := toMachines(t, f, f.env())
	d.m.theme = newTheme(false)
	d.keys("j", "enter", "enter")
	v := d.view(f)
	if isASCII(v) || !strings.Contains(v, "▶") || !strings.Contains(v, "\x1b[") {
		t.Fatalf("the colour look is plain:\n%s", v)
	}
	golden(t, "disks-unicode", v)
}

func TestWizardHelpAndResize(t *testing.T) {
	f := newFixture(t)
	d := toMachines(t, f, f.env())
	d.keys("?")
	d.expectView("MACHINE", "ctrl+c", "any key: close the help")
	golden(t, "help-machine", d.view(f))
	d.keys("x")
	d.expectScreen("Machine")
	if d.m.help {
		t.Fatal("help stayed open")
	}
	// While a text field has the cursor, ? is a character (passwords may contain it).
	d2 := newDriver(t, f.env(), true)
	d2.keys("enter", "enter")
	d2.typeText("?")
	if d2.m.help || d2.m.arch.pw.value != "?" {
		t.Fatalf("? in the password field: help %v value %q", d2.m.help, d2.m.arch.pw.value)
	}

	d.send(tea.WindowSizeMsg{Width: 120, Height: 40})
	lines := strings.Split(d.m.Render(), "\n")
	if len(lines) != 40 {
		t.Fatalf("%d lines at height 40", len(lines))
	}
	d.send(tea.WindowSizeMsg{Width: 0, Height: 0}) // a serial console's report: ignored
	if d.m.width != 120 || d.m.height != 40 {
		t.Fatalf("0x0 changed the size to %dx%d", d.m.width, d.m.height)
	}
	d.send(tea.WindowSizeMsg{Width: 60, Height: 15})
	for _, l := range strings.Split(d.m.Render(), "\n") {
		if len([]rune(l)) > 60 {
			t.Fatalf("line wider than 60: %q", l)
		}
	}
	if n := strings.Count(d.m.Render(), "\n") + 1; n != 15 {
		t.Fatalf("%d lines at height 15", n)
	}
}

func TestWizardPanicIsCaught(t *testing.T) {
	// In a command's goroutine.
	d := newDriver(t, Env{Network: panicNetwork{}, Archives: func(context.Context) ([]Archive, error) { return nil, nil }}, true)
	if !d.quit || d.m.panic == nil || !strings.Contains(d.m.panic.Error(), "NIC table exploded") || !strings.Contains(d.m.panic.Stack, "panicNetwork") {
		t.Fatalf("panic in a command: quit %v %+v", d.quit, d.m.panic)
	}
	// In Update.
	m := New(context.Background(), Env{Network: &fakeNetwork{}}, true)
	m.screen = scrNetwork
	m.net.nics = []NIC{{Name: "eth0"}}
	m.env.Network = panicNetwork{}
	_, cmd := m.Update(keyMsg("d"))
	if m.panic == nil || cmd == nil || !strings.Contains(m.panic.Error(), "managed exploded") {
		t.Fatalf("panic in Update not caught: %+v", m.panic)
	}
	if _, ok := cmd().(tea.QuitMsg); !ok {
		t.Fatal("a panic in Update does not quit")
	}
	// The log file.
	pe := &PanicError{Value: "boom", Stack: "stack here"}
	dir := t.TempDir()
	pe.Log = writePanicLog(dir, pe)
	b, err := os.ReadFile(pe.Log)
	if err != nil || !strings.Contains(string(b), "boom") || !strings.Contains(string(b), "stack here") || !strings.Contains(pe.Error(), pe.Log) {
		t.Fatalf("panic log %q: %v %q", pe.Log, err, b)
	}
}

type panicNetwork struct{}

func (panicNetwork) Interfaces(context.Context) ([]NIC, error) { panic("NIC table exploded") }
func (panicNetwork) Configure(context.Context, NetConfig) (string, error) {
	panic("configure exploded")
}
func (panicNetwork) Managed() string { panic("managed exploded") }

func TestWizardPlainTerminal(t *testing.T) {
	for _, c := range []struct {
		term         string
		serial, zero bool
		plain        bool
	}{
		{"dumb", false, false, true}, {"", false, false, true}, {"vt100", false, false, true}, {"vt220", false, false, true},
		{"linux", true, false, true}, {"linux", false, false, false}, {"xterm-256color", false, false, false},
		{"xterm-256color", false, true, true}, {"screen", false, false, false},
	} {
		if got := PlainTerminal(c.term, c.serial, c.zero); got != c.plain {
			t.Errorf("PlainTerminal(%q, serial %v, 0x0 %v) = %v", c.term, c.serial, c.zero, got)
		}
	}
	for dev, want := range map[string]bool{"/dev/ttyS0": true, "/dev/ttyAMA0": true, "/dev/hvc0": true, "/dev/tty1": false, "/dev/pts/3": false} {
		if isSerial(dev) != want {
			t.Errorf("isSerial(%s) != %v", dev, want)
		}
	}
}

// TestWizardCancelWithProgram runs the wizard in a real tea.Program (input from a pipe, no
// terminal) from the summary on: the engine's events arrive through Program.Send from its
// goroutine, the technician cancels during the restore, and running the same plan again
// resumes from the journal and finishes the disk.
func TestWizardCancelWithProgram(t *testing.T) {
	f := newFixture(t)
	started := make(chan struct{})
	env := f.env()
	env.Run = func(ctx context.Context, p *restore.Plan, o restore.RunOptions) (*restore.Report, error) {
		events := o.Events
		once := false
		o.Events = func(e restore.Event) {
			events(e)
			if e.Stage == restore.StageRestore && e.Kind == restore.EventStart && e.Disk == "" && !once {
				// Hold the engine at the start of the restore until the technician cancels.
				once = true
				close(started)
				select {
				case <-ctx.Done():
				case <-time.After(20 * time.Second):
				}
			}
		}
		return restore.Run(ctx, p, o)
	}
	d := toSummary(t, f, env)
	m := d.m
	plan := m.sum.plan

	inR, inW := io.Pipe()
	p := tea.NewProgram(resumed{m}, tea.WithInput(inR), tea.WithOutput(io.Discard), tea.WithWindowSize(80, 24),
		tea.WithoutSignals(), tea.WithContext(context.Background()))
	m.SetSend(p.Send)
	m.tick = func(time.Duration) tea.Cmd { return nil }
	done := make(chan error, 1)
	go func() {
		_, err := p.Run()
		done <- err
	}()
	io.WriteString(inW, ConfirmWord+"\r")
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("the recovery did not start")
	}
	io.WriteString(inW, "c")
	time.Sleep(100 * time.Millisecond) // the prompt, then the answer
	io.WriteString(inW, "y")
	deadline := time.Now().Add(20 * time.Second)
	for {
		p.Send(nil) // wake the loop; reads happen on the event loop only through messages
		if m.screen == scrResult || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	io.WriteString(inW, "j\r") // Leave the wizard
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("program: %v", err)
		}
	case <-time.After(20 * time.Second):
		p.Kill()
		t.Fatal("the wizard did not end")
	}
	inW.Close()
	res := m.Result()
	if !errors.Is(res.RunErr, context.Canceled) || res.Report == nil || res.Report.OK || res.Action != "quit" {
		t.Fatalf("cancelled run: err %v report %+v action %q", res.RunErr, res.Report, res.Action)
	}
	if !strings.Contains(strings.Join(m.res.text, "\n"), "CANCELLED") {
		t.Fatalf("result screen:\n%s", strings.Join(m.res.text, "\n"))
	}
	// The same plan, run again, resumes (the journal) and completes.
	plan2, err := restore.Prepare(context.Background(), m.Request())
	if err != nil {
		t.Fatal(err)
	}
	if plan2.Fingerprint != plan.Fingerprint {
		t.Fatal("the same choices gave another plan fingerprint")
	}
	rep, err := restore.Run(context.Background(), plan2, restore.RunOptions{})
	if err != nil || rep.Runs != 2 {
		t.Fatalf("resume: %v, runs %d", err, rep.Runs)
	}
	src, _ := os.ReadFile(f.src)
	got, _ := os.ReadFile(f.same)
	if !bytes.Equal(src, got) {
		t.Fatal("the resumed recovery's image differs from the source")
	}
}

// resumed is the wizard taken over by a program part-way through: Init starts nothing.
type resumed struct{ *Model }

func (r resumed) Init() tea.Cmd { return nil }

// TestWizardStalePlanDropped: a plan made for earlier choices (the technician went back and
// changed them while the engine was still planning) must never be the one confirmed.
func TestWizardStalePlanDropped(t *testing.T) {
	f := newFixture(t)
	d := toSummary(t, f, f.env())
	first := d.m.enterSummary()
	d.m.opt.replication = 1 // changed while the first plan was being made
	second := d.m.enterSummary()
	d.send(first())
	if !d.m.sum.planning || d.m.sum.plan != nil {
		t.Fatal("the stale plan was taken")
	}
	d.send(second())
	if d.m.sum.plan == nil || !d.m.sum.plan.Freeze {
		t.Fatalf("the current plan: %+v %v", d.m.sum.plan, d.m.sum.err)
	}
	// Without consent the exported kickstart stops an unattended run before writing.
	text, err := d.m.kickstartText(false)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := kickstart.Parse("x.ks", strings.NewReader(text))
	if err != nil || ks.ConsentError() == nil || !strings.Contains(text, "writes nothing") {
		t.Fatalf("kickstart without consent: %v\n%s", err, text)
	}
}

// TestWizardPlanRefused: when the engine refuses the plan, the summary says why and offers no
// confirmation at all.
func TestWizardPlanRefused(t *testing.T) {
	f := newFixture(t)
	d := toMachines(t, f, f.env())
	d.keys("j", "enter", "enter")
	for d.m.disk.rows[0].target != f.bigger {
		d.keys("right")
	}
	// A disk without a partition table goes onto a bigger disk byte for byte, but renewing its
	// identities needs a table to put them in: the engine refuses that plan.
	d.keys("i", "enter", "enter")
	d.expectScreen("Summary and confirmation")
	d.expectView("The recovery is not possible as chosen:", "Go back and change")
	golden(t, "summary-refused-plan", d.view(f))
	d.typeText(ConfirmWord)
	d.keys("enter")
	d.expectScreen("Summary and confirmation")
	if d.m.plan != nil {
		t.Fatal("a refused plan was taken")
	}
	d.keys("esc")
	d.expectScreen("Options")
}

func TestWizardFindArchives(t *testing.T) {
	f := newFixture(t)
	empty := filepath.Join(f.dir, "empty")
	os.Mkdir(empty, 0o755)
	found, err := FindArchives(context.Background(), []string{f.dir, empty})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Path != f.repo || !found[0].Repository {
		t.Fatalf("found %+v, want %s", found, f.repo)
	}
}

// The exported kickstart names a network repository as it was opened (secrets are never in it).
func TestKickstartRepositoryOfNetworkLocations(t *testing.T) {
	for _, c := range []struct {
		loc  string
		sp   archive.Spec
		want string
	}{
		{"s3://dr-archive/prod/site", archive.Spec{Endpoint: "https://minio:9000", InsecureTLS: true, SecretAccessKey: "x"},
			"repository s3://dr-archive/prod/site --endpoint https://minio:9000 --insecure-tls"},
		{"s3://dr-archive", archive.Spec{}, "repository s3://dr-archive"},
		{"smb://filer/backup/dr", archive.Spec{User: "tech", Password: "pw"}, "repository smb://filer/backup/dr"},
		{"nfs://filer/export/dr", archive.Spec{}, "repository nfs://filer/export/dr"},
		{"/mnt/archive", archive.Spec{}, "repository /mnt/archive"},
	} {
		l, err := archive.ParseLocation(c.loc)
		if err != nil {
			t.Fatal(err)
		}
		c.sp.Location = l
		m := &Model{repoSpec: c.sp, repoPath: c.loc}
		ks := &kickstart.Kickstart{Repository: m.kickstartRepository(), Machine: kickstart.Machine{Name: "m"}}
		var line string
		for _, l := range strings.Split(ks.Format(), "\n") {
			if strings.HasPrefix(l, "repository ") {
				line = l
			}
		}
		if line != c.want {
			t.Errorf("%s: %q, want %q", c.sp.Location, line, c.want)
		}
		if strings.Contains(ks.Format(), "pw") || strings.Contains(line, "tech") {
			t.Errorf("%s: a typed secret or user reached the kickstart: %q", c.sp.Location, line)
		}
	}
}
