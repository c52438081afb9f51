package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// VM is a running QEMU.
type VM struct {
	cfg     Config
	args    []string // full command line, binary first
	dir     string   // the VM's temporary folder (variable store, QMP socket, new disks)
	logPath string
	log     *os.File
	cmd     *exec.Cmd
	stdin   *os.File
	stderr  *tailBuffer
	console *Console
	started time.Time

	http      *http.Server
	httpPort  int
	httpMu    sync.Mutex
	httpLog   []string
	hostPorts map[[2]int]int

	exited  chan struct{} // closed when QEMU has exited
	exitErr error         // QEMU's exit status, valid after exited
	cancel  context.CancelFunc
	closeMu sync.Mutex
	closed  bool
}

// Start boots a VM. QEMU is killed when ctx ends or Config.Timeout passes; Close must be called
// in every case to remove the VM's temporary files.
func Start(ctx context.Context, c Config) (*VM, error) {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	bin, err := FindQEMU(c.QEMU)
	if err != nil {
		return nil, err
	}
	var fw FirmwareFiles
	if c.Firmware != BIOS {
		if c.FirmwareFiles != nil {
			fw = *c.FirmwareFiles
			if err := fw.check(); err != nil {
				return nil, fmt.Errorf("%w: firmware: %v", ErrMissing, err)
			}
		} else if fw, err = FindFirmware(c.Firmware); err != nil {
			return nil, err
		}
	}
	if c.PXE != nil {
		if _, err := FindPXEROM(c.NICs[0].Model); err != nil {
			return nil, err
		}
	}

	v := &VM{cfg: c, exited: make(chan struct{}), stderr: &tailBuffer{max: 64 << 10}}
	ok := false
	defer func() {
		if !ok {
			v.cleanupFiles(false)
		}
	}()
	// Under /tmp, not TMPDIR: the QMP socket path must stay below the 108-byte limit of
	// unix socket addresses.
	if v.dir, err = os.MkdirTemp("/tmp", "cauldron-qemu-"+c.Name+"-"); err != nil {
		return nil, err
	}
	rt := runtimePaths{QMP: filepath.Join(v.dir, "qmp.sock"), HostPorts: map[[2]int]int{}}
	if c.Firmware != BIOS {
		rt.Firmware = FirmwareFiles{Code: fw.Code, Vars: filepath.Join(v.dir, "OVMF_VARS.fd")}
		if err := copyFile(rt.Firmware.Vars, fw.Vars); err != nil {
			return nil, fmt.Errorf("qemu: copying OVMF's variable store: %w", err)
		}
	}
	for i, d := range c.Disks {
		p := d.Path
		if p == "" {
			p = filepath.Join(v.dir, fmt.Sprintf("disk%d-%s.img", i, d.Bus))
			if err := makeSparse(p, d.Size); err != nil {
				return nil, fmt.Errorf("qemu: disk %d: %w", i, err)
			}
		}
		rt.Disks = append(rt.Disks, p)
	}
	for i, n := range c.NICs {
		for _, f := range n.Forwards {
			if f.HostPort == 0 {
				if rt.HostPorts[[2]int{i, f.GuestPort}], err = freePort(); err != nil {
					return nil, fmt.Errorf("qemu: choosing a host port: %w", err)
				}
			} else {
				rt.HostPorts[[2]int{i, f.GuestPort}] = f.HostPort
			}
		}
	}
	v.hostPorts = rt.HostPorts
	if dir := c.HTTPDir; dir != "" || c.PXE != nil && c.PXE.HTTP {
		if dir == "" {
			dir = c.PXE.Dir
		}
		if err := v.serveHTTP(dir); err != nil {
			return nil, err
		}
		rt.HTTPPort = v.httpPort
	}
	args, err := c.cmdline(rt)
	if err != nil {
		return nil, err
	}
	v.args = append([]string{bin}, args...)

	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("qemu: log folder: %w", err)
	}
	if v.log, err = os.CreateTemp(c.LogDir, c.Name+"-"+time.Now().UTC().Format("20060102T150405")+"-*.log"); err != nil {
		return nil, fmt.Errorf("qemu: log file: %w", err)
	}
	v.logPath = v.log.Name()
	fmt.Fprintf(v.log, "# %s\n", v.CmdlineQuoted())

	// The serial console is QEMU's stdio. Plain pipes (not a terminal) keep QEMU from touching
	// terminal modes, and *os.File ends mean exec starts no copying goroutines of its own.
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	ctx, v.cancel = context.WithTimeout(ctx, c.Timeout)
	v.cmd = exec.CommandContext(ctx, bin, args...)
	v.cmd.Stdin, v.cmd.Stdout, v.cmd.Stderr = inR, outW, v.stderr
	// Its own process group, so a Ctrl-C meant for go test does not hit QEMU before the
	// cleanup, and so that QEMU dies with the test binary when it is killed.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	v.cmd.WaitDelay = 5 * time.Second
	v.started = time.Now()
	if err := v.cmd.Start(); err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		v.cancel()
		return nil, fmt.Errorf("qemu: starting %s: %w", bin, err)
	}
	inR.Close()
	outW.Close()
	v.stdin = inW
	go func() {
		err := v.cmd.Wait()
		v.exitErr = err
		close(v.exited)
	}()
	v.console = NewConsole(outR, v.log, func() error {
		<-v.exited
		outR.Close()
		return v.exitReason()
	})
	// A kernel panic never ends well: fail the waiting Expect at once.
	_ = v.console.FailOn(`Kernel panic - not syncing`)
	ok = true
	return v, nil
}

// exitReason describes how QEMU ended, with the last lines it wrote to stderr.
func (v *VM) exitReason() error {
	msg := "QEMU exited"
	if v.exitErr != nil {
		msg += ": " + v.exitErr.Error()
	} else {
		msg += " with status 0"
	}
	if s := strings.TrimSpace(v.stderr.String()); s != "" {
		msg += "; stderr: " + s
	}
	return errors.New(msg)
}

func makeSparse(p string, size int64) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// serveHTTP serves dir on a free loopback port for the VM's lifetime.
func (v *VM) serveHTTP(dir string) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("qemu: HTTP server: %w", err)
	}
	v.httpPort = l.Addr().(*net.TCPAddr).Port
	files := http.FileServer(http.Dir(dir))
	v.http = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &statusRecorder{ResponseWriter: w, status: 200}
			files.ServeHTTP(rec, r)
			v.httpMu.Lock()
			v.httpLog = append(v.httpLog, fmt.Sprintf("%s %s %d", r.Method, r.URL.Path, rec.status))
			v.httpMu.Unlock()
		}),
		ReadHeaderTimeout: 30 * time.Second,
	}
	go func() { _ = v.http.Serve(l) }()
	return nil
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(s int) {
	r.status = s
	r.ResponseWriter.WriteHeader(s)
}

// HTTPRequests lists the requests the VM's HTTP server answered, as "GET /path 200".
func (v *VM) HTTPRequests() []string {
	v.httpMu.Lock()
	defer v.httpMu.Unlock()
	return append([]string(nil), v.httpLog...)
}

// GuestURL is the URL under which the guest finds path on the VM's HTTP server (Config.HTTPDir
// or PXE over HTTP); "" if the VM has none.
func (v *VM) GuestURL(path string) string {
	if v.http == nil {
		return ""
	}
	return fmt.Sprintf("http://%s:%d/%s", GuestHostIP, v.httpPort, strings.TrimPrefix(path, "/"))
}

// HostPort returns the host port on 127.0.0.1 forwarded to guestPort on the first NIC, or 0.
func (v *VM) HostPort(guestPort int) int {
	return v.hostPorts[[2]int{0, guestPort}]
}

// Console returns the VM's serial console.
func (v *VM) Console() *Console { return v.console }

// Expect is Console().Expect.
func (v *VM) Expect(pattern string, timeout time.Duration) ([]string, error) {
	m, err := v.console.Expect(pattern, timeout)
	return m, v.wrap(err)
}

// ExpectPartial is Console().ExpectPartial.
func (v *VM) ExpectPartial(pattern string, timeout time.Duration) ([]string, error) {
	m, err := v.console.ExpectPartial(pattern, timeout)
	return m, v.wrap(err)
}

func (v *VM) wrap(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("VM %s (%.1fs after start, console log %s): %w", v.cfg.Name, time.Since(v.started).Seconds(), v.logPath, err)
}

// Send types s on the serial console.
func (v *VM) Send(s string) error {
	if _, err := v.stdin.WriteString(s); err != nil {
		return fmt.Errorf("qemu: VM %s: sending to the console: %w", v.cfg.Name, err)
	}
	return nil
}

// Output is Console().Output.
func (v *VM) Output() string { return v.console.Output() }

// Tail is Console().Tail.
func (v *VM) Tail(n int) string { return v.console.Tail(n) }

// LogPath is the file holding the raw console output (first line: the QEMU command).
func (v *VM) LogPath() string { return v.logPath }

// Started is when QEMU was started, for wall-clock measurements.
func (v *VM) Started() time.Time { return v.started }

// Name is the VM's name.
func (v *VM) Name() string { return v.cfg.Name }

// Cmdline is QEMU's command line, binary first.
func (v *VM) Cmdline() []string { return append([]string(nil), v.args...) }

// CmdlineQuoted is the command line quoted for a shell, to reproduce a failed boot by hand.
func (v *VM) CmdlineQuoted() string {
	q := make([]string, len(v.args))
	for i, a := range v.args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\*?;&|<>()[]{}`!#~") {
			q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			q[i] = a
		}
	}
	return strings.Join(q, " ")
}

// Exited is closed when QEMU has exited.
func (v *VM) Exited() <-chan struct{} { return v.exited }

// Wait waits up to timeout (<= 0: DefaultExpectTimeout) for QEMU to exit by itself (the guest
// powered off, say) and returns its exit error.
func (v *VM) Wait(timeout time.Duration) error {
	if timeout <= 0 {
		timeout = DefaultExpectTimeout
	}
	select {
	case <-v.exited:
		return v.exitErr
	case <-time.After(timeout):
		return v.wrap(fmt.Errorf("%w after %v waiting for QEMU to exit; last console lines:\n%s", ErrTimeout, timeout, v.console.Tail(20)))
	}
}

// Kill kills QEMU at once and waits for it to be gone.
func (v *VM) Kill() error {
	select {
	case <-v.exited:
		return nil
	default:
	}
	if err := v.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("qemu: killing VM %s: %w", v.cfg.Name, err)
	}
	select {
	case <-v.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("qemu: VM %s did not die within 10s of SIGKILL", v.cfg.Name)
	}
}

// Quit ends QEMU through QMP, as pulling the plug, and waits for it to exit; it kills QEMU if
// that takes longer than 5 seconds.
func (v *VM) Quit() error {
	if err := v.qmp("quit"); err != nil {
		select {
		case <-v.exited:
			return nil
		default:
		}
		return errors.Join(fmt.Errorf("qemu: VM %s: %w", v.cfg.Name, err), v.Kill())
	}
	select {
	case <-v.exited:
		return nil
	case <-time.After(5 * time.Second):
		return v.Kill()
	}
}

// PowerButton presses the ACPI power button. The guest decides what to do with it; use Wait to
// see QEMU exit when it powers off.
func (v *VM) PowerButton() error {
	if err := v.qmp("system_powerdown"); err != nil {
		return fmt.Errorf("qemu: VM %s: %w", v.cfg.Name, err)
	}
	return nil
}

// Monitor runs a human monitor command (as typed at QEMU's monitor: "info registers", "info
// irq") through QMP and returns its output, for tests that look into a guest that went quiet.
func (v *VM) Monitor(command string) (string, error) {
	args, _ := json.Marshal(map[string]string{"command-line": command})
	var out string
	err := v.qmpCall("human-monitor-command", args, func(ret json.RawMessage) error {
		return json.Unmarshal(ret, &out)
	})
	if err != nil {
		return "", fmt.Errorf("qemu: VM %s: %w", v.cfg.Name, err)
	}
	return out, nil
}

// qmp runs one QMP command without arguments.
func (v *VM) qmp(command string) error {
	return v.qmpCall(command, nil, nil)
}

// qmpCall runs one QMP command with arguments (nil for none) and hands its return value to ret
// (when not nil).
func (v *VM) qmpCall(command string, args json.RawMessage, ret func(json.RawMessage) error) error {
	conn, err := net.DialTimeout("unix", filepath.Join(v.dir, "qmp.sock"), 5*time.Second)
	if err != nil {
		return fmt.Errorf("QMP: %w", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	// The greeting, then capabilities negotiation, then the command. Asynchronous events may
	// come in between; they carry "event" and are skipped.
	if _, err := r.ReadBytes('\n'); err != nil {
		return fmt.Errorf("QMP greeting: %w", err)
	}
	for _, cmd := range []string{"qmp_capabilities", command} {
		req := fmt.Sprintf(`{"execute":%q}`, cmd)
		if cmd == command && args != nil {
			req = fmt.Sprintf(`{"execute":%q,"arguments":%s}`, cmd, args)
		}
		if _, err := fmt.Fprintln(conn, req); err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, err)
		}
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				if cmd == "quit" {
					return nil // QEMU may close the socket before answering
				}
				return fmt.Errorf("QMP %s: %w", cmd, err)
			}
			var reply struct {
				Event  string          `json:"event"`
				Return json.RawMessage `json:"return"`
				Error  *struct {
					Class, Desc string
				} `json:"error"`
			}
			if err := json.Unmarshal(line, &reply); err != nil {
				return fmt.Errorf("QMP %s: bad reply %q: %w", cmd, line, err)
			}
			if reply.Event != "" {
				continue
			}
			if reply.Error != nil {
				return fmt.Errorf("QMP %s: %s: %s", cmd, reply.Error.Class, reply.Error.Desc)
			}
			if cmd == command && ret != nil {
				return ret(reply.Return)
			}
			break
		}
	}
	return nil
}

// Close kills QEMU if it still runs, stops the HTTP server and removes the VM's temporary files;
// the console log is removed too unless keepLog. It is safe to call more than once.
func (v *VM) Close(keepLog bool) error {
	v.closeMu.Lock()
	defer v.closeMu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	err := v.Kill()
	v.cancel()
	select {
	case <-v.console.Done():
	case <-time.After(15 * time.Second):
		err = errors.Join(err, fmt.Errorf("qemu: VM %s: console still open 15s after QEMU was killed", v.cfg.Name))
	}
	v.stdin.Close()
	return errors.Join(err, v.cleanupFiles(keepLog))
}

func (v *VM) cleanupFiles(keepLog bool) error {
	var errs []error
	if v.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		errs = append(errs, v.http.Shutdown(ctx))
		cancel()
	}
	if v.log != nil {
		errs = append(errs, v.log.Close())
		if !keepLog {
			errs = append(errs, os.Remove(v.logPath))
		}
	}
	if v.dir != "" {
		errs = append(errs, os.RemoveAll(v.dir))
	}
	return errors.Join(errs...)
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
