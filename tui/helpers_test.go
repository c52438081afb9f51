package tui

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
)

var update = flag.Bool("update", false, "rewrite the golden views in testdata/")

// driver runs the wizard's state machine the way tea.Program does, without a terminal: it
// feeds messages to Update, runs the returned commands synchronously and feeds their messages
// back, and delivers what the engine's goroutine sends (Model.send) in order.
type driver struct {
	t     *testing.T
	m     *Model
	queue []tea.Msg
	quit  bool
	clock time.Time
}

var testEpoch = time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC)

func newDriver(t *testing.T, env Env, ascii bool) *driver {
	t.Helper()
	d := &driver{t: t, clock: testEpoch}
	d.m = New(context.Background(), env, ascii)
	d.m.now = func() time.Time { return d.clock }
	d.m.tick = func(time.Duration) tea.Cmd { return nil } // ticks are sent by the tests
	d.m.SetSend(func(msg tea.Msg) { d.queue = append(d.queue, msg) })
	d.m.width, d.m.height = 80, 24
	d.run(d.m.Init())
	return d
}

func (d *driver) run(cmd tea.Cmd) {
	if cmd == nil {
		return
	}
	msg := cmd()
	// What the engine sent while the command ran arrives before the command's own result, as
	// with tea.Program (Send blocks until the event loop takes the message).
	d.flush()
	switch msg := msg.(type) {
	case nil:
	case tea.BatchMsg:
		for _, c := range msg {
			d.run(c)
		}
	case tea.QuitMsg:
		d.quit = true
	default:
		d.send(msg)
	}
}

func (d *driver) flush() {
	for len(d.queue) > 0 {
		msg := d.queue[0]
		d.queue = d.queue[1:]
		d.send(msg)
	}
}

func (d *driver) send(msg tea.Msg) {
	_, cmd := d.m.Update(msg)
	d.run(cmd)
}

// keys presses keys by name: enter, esc, tab, shift+tab, up, down, left, right, pgup, pgdown,
// backspace, space, ctrl+X, f1, or a single character.
func (d *driver) keys(names ...string) {
	d.t.Helper()
	for _, n := range names {
		d.send(keyMsg(n))
	}
}

// typeText types text character by character.
func (d *driver) typeText(s string) {
	for _, r := range s {
		d.send(tea.KeyPressMsg{Code: r, Text: string(r)})
	}
}

func keyMsg(n string) tea.KeyPressMsg {
	named := map[string]rune{"enter": tea.KeyEnter, "esc": tea.KeyEscape, "tab": tea.KeyTab, "up": tea.KeyUp, "down": tea.KeyDown,
		"left": tea.KeyLeft, "right": tea.KeyRight, "pgup": tea.KeyPgUp, "pgdown": tea.KeyPgDown, "backspace": tea.KeyBackspace,
		"f1": tea.KeyF1, "home": tea.KeyHome, "end": tea.KeyEnd}
	switch {
	case n == "space":
		return tea.KeyPressMsg{Code: tea.KeySpace, Text: " "}
	case n == "shift+tab":
		return tea.KeyPressMsg{Code: tea.KeyTab, Mod: tea.ModShift}
	case strings.HasPrefix(n, "ctrl+"):
		return tea.KeyPressMsg{Code: rune(n[5]), Mod: tea.ModCtrl}
	}
	if r, ok := named[n]; ok {
		return tea.KeyPressMsg{Code: r}
	}
	r := []rune(n)
	if len(r) != 1 {
		panic("unknown key " + n)
	}
	return tea.KeyPressMsg{Code: r[0], Text: n}
}

// expectScreen fails unless the wizard shows the screen.
func (d *driver) expectScreen(title string) {
	d.t.Helper()
	if got := d.m.Screen(); got != title {
		d.t.Fatalf("on screen %q, want %q; message %q\n%s", got, title, d.m.message, d.m.Render())
	}
}

func (d *driver) expectView(parts ...string) {
	d.t.Helper()
	v := d.m.Render()
	for _, p := range parts {
		if !strings.Contains(v, p) {
			d.t.Fatalf("the %s screen lacks %q:\n%s", d.m.Screen(), p, v)
		}
	}
}

// fixture is a real repository in a folder of fixed-length name without hyphens (so that golden
// views keep their columns and lines wrap at the same places): machine web01 with two generations (full, then incremental) and db01 with
// one; targets of the same size, a bigger one, and one inside the repository (never allowed).
type fixture struct {
	dir, repo, src, same, bigger, stray string
	password                            []byte
	gens                                []*tib.Generation // web01's, oldest first
	subst                               [][2]string
}

const fixtureSize = 8 << 20

func newFixture(t *testing.T) *fixture {
	t.Helper()
	var rb [4]byte
	rand.Read(rb[:])
	dir := filepath.Join("/tmp", "ctui"+hex.EncodeToString(rb[:]))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fixture{dir: dir, repo: filepath.Join(dir, "repo"), src: filepath.Join(dir, "source.img"),
		same: filepath.Join(dir, "t1.img"), bigger: filepath.Join(dir, "t2.img"), password: []byte("correct horse")}
	// A disk without a partition table: 1 MiB of zeros, 3 MiB of data, zeros to the end.
	img := make([]byte, fixtureSize)
	rng := mrand.New(mrand.NewPCG(7, 11))
	for i := 1 << 20; i < 4<<20; i += 8 {
		v := rng.Uint64()
		for j := 0; j < 8; j++ {
			img[i+j] = byte(v >> (8 * j))
		}
	}
	write(t, f.src, img)
	ctx := context.Background()
	r, err := tib.Init(ctx, local.New(f.repo), tib.InitOptions{Password: f.password})
	if err != nil {
		t.Fatal(err)
	}
	capture := func(machine string) *tib.Generation {
		g, err := r.Capture(ctx, tib.CaptureOptions{Machine: machine, Sources: []string{f.src}})
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	f.gens = append(f.gens, capture("web01"))
	capture("db01")
	// The second generation differs in one MiB: an incremental capture.
	for i := 2 << 20; i < 3<<20; i++ {
		img[i] ^= 0x5a
	}
	write(t, f.src, img)
	time.Sleep(10 * time.Millisecond) // generations are ordered by time
	f.gens = append(f.gens, capture("web01"))
	write(t, f.same, make([]byte, fixtureSize))
	write(t, f.bigger, make([]byte, fixtureSize+4<<20))
	f.stray = filepath.Join(f.repo, "s.img")
	write(t, f.stray, make([]byte, fixtureSize))

	exe, _ := os.Executable()
	host, _ := os.Hostname()
	f.subst = [][2]string{{dir, "/tmp/ctuiXXXXXXXX"}, {exe, "TEST-BINARY"}}
	for i, g := range f.gens {
		f.subst = append(f.subst, [2]string{g.ID.String()[:12], fmt.Sprintf("GENERATION-%d", i+1)})
	}
	if host != "" {
		f.subst = append(f.subst, [2]string{" on host " + host + ";", " on host HOST;"})
	}
	return f
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// env is the wizard's environment for the fixture: its targets, no media search, a fake
// network.
func (f *fixture) env() Env {
	return Env{
		Repo:      f.repo,
		Targets:   []string{f.same, f.bigger, f.stray},
		Archives:  func(ctx context.Context) ([]Archive, error) { return nil, nil },
		Network:   &fakeNetwork{nics: []NIC{{Name: "eth0", MAC: "52:54:00:12:34:56", Driver: "virtio_net", Link: true}, {Name: "eth1", MAC: "52:54:00:12:34:57", Driver: "e1000"}}},
		ExportDir: f.dir,
	}
}

var timeRE = regexp.MustCompile(`\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})?`)

// normalise replaces what differs between runs (folders, IDs, times) with fixed text of the same
// width, so that columns stay where they are.
func (f *fixture) normalise(s string) string {
	for _, r := range f.subst {
		s = strings.ReplaceAll(s, r[0], r[1])
	}
	return timeRE.ReplaceAllStringFunc(s, func(m string) string {
		return "<time>" + strings.Repeat(" ", max(len(m)-6, 0))
	})
}

// golden compares a view with testdata/NAME.golden (rewritten with -update).
func golden(t *testing.T, name, view string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(view), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to write it)", err)
	}
	if string(want) != view {
		t.Errorf("view %s differs from %s (go test -update rewrites it)\n--- got:\n%s\n--- want:\n%s", name, path, view, want)
	}
}

// fakeNetwork records what the network screen asks for.
type fakeNetwork struct {
	nics    []NIC
	managed string
	got     []NetConfig
}

func (n *fakeNetwork) Interfaces(ctx context.Context) ([]NIC, error) { return n.nics, nil }
func (n *fakeNetwork) Managed() string                               { return n.managed }
func (n *fakeNetwork) Configure(ctx context.Context, c NetConfig) (string, error) {
	n.got = append(n.got, c)
	for i := range n.nics {
		if n.nics[i].Name == c.Device {
			if c.DHCP {
				n.nics[i].Addrs = []string{"10.0.2.15/24"}
				return "network " + c.Device + " 10.0.2.15/24 dhcp", nil
			}
			n.nics[i].Addrs = []string{c.Address.String()}
			return "network " + c.Device + " " + c.Address.String() + " static", nil
		}
	}
	return "", fmt.Errorf("no interface %s", c.Device)
}

func TestMain(m *testing.M) {
	// Golden views show times: make them the same in every time zone.
	time.Local = time.UTC
	flag.Parse()
	os.Exit(m.Run())
}
