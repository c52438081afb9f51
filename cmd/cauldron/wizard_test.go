package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/internal/testenv"
)

// The wizard end to end: the built binary in a tmux pane (Debian's tmux package), driven with
// send-keys and read with capture-pane, against a real repository and image-file targets.

// tmuxPane is one tmux server (its own socket: other tmux servers are never touched) running
// one command in a pane.
type tmuxPane struct {
	t      *testing.T
	socket string
}

func startTmux(t *testing.T, dir, name, command string) *tmuxPane {
	t.Helper()
	p := &tmuxPane{t: t, socket: filepath.Join(dir, name+".tmux")}
	// The pane's shell keeps the screen after the wizard ends, with its exit status.
	script := command + `; echo "WIZARD-EXIT=$?"; sleep 600`
	p.tmux("new-session", "-d", "-s", "wiz", "-x", "100", "-y", "30", "sh", "-c", script)
	t.Cleanup(func() { exec.Command("tmux", "-S", p.socket, "kill-server").Run() })
	return p
}

func (p *tmuxPane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.socket}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (p *tmuxPane) screen() string { return p.tmux("capture-pane", "-p", "-t", "wiz") }

// keys sends key names as tmux knows them (Enter, Down, C-c, ...).
func (p *tmuxPane) keys(k ...string) { p.tmux(append([]string{"send-keys", "-t", "wiz"}, k...)...) }

// typeText sends text literally.
func (p *tmuxPane) typeText(s string) { p.tmux("send-keys", "-t", "wiz", "-l", s) }

// waitFor waits until the screen shows every text, and returns the screen.
func (p *tmuxPane) waitFor(texts ...string) string {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := p.screen()
		all := true
		for _, x := range texts {
			all = all && strings.Contains(s, x)
		}
		if all {
			return s
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the screen never showed %q:\n%s", texts, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wizardFixture is a repository with one generation of a GPT/ext4 disk, and a blank target of
// the same size.
func wizardFixture(t *testing.T) (dir, repo, disk, target string) {
	testenv.NeedTools(t, "tmux", "sgdisk", "mkfs.ext4")
	dir = t.TempDir()
	repo = filepath.Join(dir, "repo")
	env := []string{"CAULDRON_PASSWORD=wizard-pw", "CAULDRON_REPOSITORY=" + repo}
	disk = makeDisk(t, dir, 16, 9)
	ok(t, env, "init")
	ok(t, env, "capture", "--machine", "web01", disk)
	fi, err := os.Stat(disk)
	if err != nil {
		t.Fatal(err)
	}
	target = filepath.Join(dir, "target.img")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(target, fi.Size()); err != nil {
		t.Fatal(err)
	}
	return dir, repo, disk, target
}

// wizardCommand is the shell command that runs the wizard in the pane: no password in the
// environment (the wizard asks), no media search outside the test's folder.
func wizardCommand(prefix, repo, target, dir string) string {
	return prefix + " env -u CAULDRON_PASSWORD -u CAULDRON_REPOSITORY " + bin + " wizard --repo " + repo +
		" --targets " + target + " --media " + dir + " --export-dir " + dir
}

func TestWizardTmuxRecovery(t *testing.T) {
	dir, repo, disk, target := wizardFixture(t)
	start := time.Now()
	p := startTmux(t, dir, "recovery", wizardCommand("TERM=vt100", repo, target, dir))
	s := p.waitFor("step 1 of 8: Network", "network is managed by the host")
	for _, r := range s {
		if r >= 0x80 {
			t.Fatalf("TERM=vt100 got non-ASCII output:\n%s", s)
		}
	}
	p.keys("Enter")
	p.waitFor("step 2 of 8: Archive", repo+"  (repository, given on the command line)")
	p.keys("Enter")
	p.waitFor("Password for " + repo)
	p.typeText("wizard-pw")
	p.keys("Enter")
	p.waitFor("step 3 of 8: Machine", "web01")
	p.keys("Enter")
	p.waitFor("step 3 of 8: Generation", "full", "ext4")
	p.keys("Enter")
	p.waitFor("step 4 of 8: Disk mapping", "same size", "<- disk0")
	p.keys("Enter")
	p.waitFor("step 5 of 8: Options", "[x] inoculate the restored system")
	// Inoculation looks into the restored volumes (mounting changes an ext4 superblock): off,
	// so that the restored image can be compared byte for byte, as `recover` tests do with
	// `inoculate --skip`.
	p.keys("Space")
	p.waitFor("[ ] inoculate the restored system")
	p.keys("Enter")
	p.waitFor("step 6 of 8: Summary", "inoculation: skipped", "Everything on these disks will be overwritten:", target+" (for disk0)", "Type ERASE")
	// A single key or a lower-case word does not start it.
	p.typeText("y")
	p.keys("Enter")
	p.waitFor("Type ERASE (capital letters) to start; nothing has been written.")
	p.typeText("ERASE")
	p.keys("Enter")
	s = p.waitFor("step 8 of 8: Result", "The recovery succeeded.")
	if !strings.Contains(s, "verified by hash") {
		t.Fatalf("result screen:\n%s", s)
	}
	p.keys("Down", "Enter") // Leave the wizard
	s = p.waitFor("WIZARD-EXIT=0")
	if !strings.Contains(s, "succeeded") {
		t.Fatalf("the report is not left on the terminal:\n%s", s)
	}
	a, _ := os.ReadFile(disk)
	b, _ := os.ReadFile(target)
	if !bytes.Equal(a, b) {
		t.Fatal("the restored image differs from the source")
	}
	t.Logf("whole recovery through tmux in %.1f s", time.Since(start).Seconds())
}

// TestWizardTmuxCancel leaves the wizard at the typed confirmation: nothing is written. The
// pane has the serial console's troubles: a 0x0 window and standard output a pipe.
func TestWizardTmuxCancel(t *testing.T) {
	dir, repo, _, target := wizardFixture(t)
	before, _ := os.ReadFile(target)
	p := startTmux(t, dir, "cancel", "stty rows 0 cols 0; TERM=linux "+wizardCommand("", repo, target, dir)+" | cat")
	s := p.waitFor("step 1 of 8: Network")
	// The 0x0 window was set to 80x24 and the look is plain: an 80-column ASCII rule.
	if !strings.Contains(s, "\n"+strings.Repeat("-", 80)+"\n") || strings.Contains(s, strings.Repeat("-", 81)) {
		t.Fatalf("not drawn at 80 columns in ASCII:\n%s", s)
	}
	p.keys("Enter")
	p.waitFor("step 2 of 8: Archive")
	p.keys("Enter")
	p.waitFor("Password for")
	p.typeText("wizard-pw")
	p.keys("Enter")
	// Keys typed while the wizard is busy (opening, planning) are dropped: wait for each screen.
	for _, next := range []string{"step 3 of 8: Machine", "step 3 of 8: Generation", "step 4 of 8: Disk mapping", "step 5 of 8: Options"} {
		p.waitFor(next)
		p.keys("Enter")
	}
	p.waitFor("step 6 of 8: Summary", "Type ERASE")
	p.typeText("ERAS")
	p.keys("C-c")
	p.waitFor("Leave the wizard?")
	p.keys("y")
	p.waitFor("WIZARD-EXIT=0")
	after, _ := os.ReadFile(target)
	if !bytes.Equal(before, after) {
		t.Fatal("leaving at the confirmation wrote the target")
	}
}

// TestWizardTmuxBadPassword types a wrong password, is asked again, then gets in; in the colour
// look (TERM=xterm-256color).
func TestWizardTmuxBadPassword(t *testing.T) {
	dir, repo, _, target := wizardFixture(t)
	p := startTmux(t, dir, "password", wizardCommand("TERM=xterm-256color", repo, target, dir))
	// The colour look draws its rules with box-drawing characters (the plain look with '-'); the
	// host's own NICs (none inside make test's loopback-only namespace) do not matter here.
	p.waitFor("step 1 of 8: Network", "────")
	p.keys("Enter")
	p.waitFor("step 2 of 8: Archive")
	p.keys("Enter")
	p.waitFor("Password for " + repo)
	p.typeText("not-the-password")
	p.keys("Enter")
	s := p.waitFor("Wrong password for " + repo + ": type it again.")
	if !strings.Contains(s, "step 2 of 8: Archive") {
		t.Fatalf("left the archive screen on a wrong password:\n%s", s)
	}
	p.typeText("wizard-pw")
	p.keys("Enter")
	p.waitFor("step 3 of 8: Machine", "web01")
	p.keys("C-c")
	p.waitFor("Leave the wizard?")
	p.keys("y")
	p.waitFor("WIZARD-EXIT=0")
}

// TestWizardBootNetworkList lists this machine's interfaces through the boot environment's
// helpers, as the wizard's network screen does there (nothing is configured here: that would
// change the host's network).
func TestWizardBootNetworkList(t *testing.T) {
	nics, err := (&bootNetwork{}).Interfaces(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir("/sys/class/net")
	for _, n := range nics {
		found := false
		for _, e := range ents {
			found = found || e.Name() == n.Name
		}
		if !found || n.Name == "lo" {
			t.Errorf("interface %+v is not a NIC of /sys/class/net", n)
		}
	}
	if (&bootNetwork{}).Managed() != "" {
		t.Error("the boot network says it is managed elsewhere")
	}
}
