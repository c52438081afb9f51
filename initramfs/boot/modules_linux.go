package boot

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// Modules loads kernel modules from /lib/modules/$(uname -r) of the running image: by name (with
// dependencies, through u-root's kmodule) and by modalias (through modules.alias).
type Modules struct {
	prober  *kmodule.Prober
	aliases *AliasTable
	params  map[string]string
	log     func(format string, args ...any)

	mu        sync.Mutex
	tried     map[string]error // module → result of the first attempt
	lastEvent time.Time        // last uevent seen, for Settle
}

// moduleParams are options for modules whose defaults cost boot time for nothing here.
var moduleParams = map[string]string{
	// usb-storage waits delay_use seconds (1 by default) before scanning a new stick for the
	// sake of devices that misreport readiness; the boot environment re-lists disks on demand, so
	// waiting at boot only delays every USB boot.
	"usb_storage": "delay_use=0",
}

// OpenModules prepares module loading for the running kernel. log receives one line per module
// loaded or failed; nil discards.
func OpenModules(log func(string, ...any)) (*Modules, error) {
	if log == nil {
		log = func(string, ...any) {}
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	f, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w (the image has no modules for kernel %s)", err, filepath.Base(dir))
	}
	defer f.Close()
	aliases, err := ParseAliases(f)
	if err != nil {
		return nil, err
	}
	prober, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	return &Modules{prober: prober, aliases: aliases, params: moduleParams, log: log, tried: map[string]error{}}, nil
}

// Load loads a module and its dependencies once; later calls return the first result.
func (m *Modules) Load(name string) error {
	name = strings.ReplaceAll(name, "-", "_")
	m.mu.Lock()
	if err, ok := m.tried[name]; ok {
		m.mu.Unlock()
		return err
	}
	m.tried[name] = nil
	m.mu.Unlock()
	err := m.prober.Probe(name, m.params[name])
	if err != nil {
		m.log("module %s: %v", name, err)
	} else {
		m.log("module %s loaded", name)
	}
	m.mu.Lock()
	m.tried[name] = err
	m.mu.Unlock()
	return err
}

// LoadAlias loads every module whose alias matches modalias and returns how many were new.
func (m *Modules) LoadAlias(modalias string) int {
	n := 0
	for _, mod := range m.aliases.Modules(modalias) {
		m.mu.Lock()
		_, done := m.tried[strings.ReplaceAll(mod, "-", "_")]
		m.mu.Unlock()
		if !done {
			n++
			m.Load(mod)
		}
	}
	return n
}

// Coldplug loads the modules for every device already present (/sys/bus/*/devices/*/modalias)
// and returns how many modules it tried.
func (m *Modules) Coldplug() int {
	paths, _ := filepath.Glob("/sys/bus/*/devices/*/modalias")
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	seen := map[string]bool{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		alias := strings.TrimSpace(string(b))
		if alias == "" || seen[alias] {
			continue
		}
		seen[alias] = true
		wg.Add(1)
		// In parallel: probing a driver (a SATA link, a USB port) waits on hardware, and
		// the drivers of different devices do not wait on each other.
		go func() {
			defer wg.Done()
			k := m.LoadAlias(alias)
			mu.Lock()
			n += k
			mu.Unlock()
		}()
	}
	wg.Wait()
	return n
}

// Hotplug listens for kernel uevents and loads modules for devices that appear (devices found
// by drivers loaded during coldplug, USB sticks plugged in later). It returns when the socket
// cannot be opened; otherwise it runs until the process ends.
func (m *Modules) Hotplug(ready chan<- error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_KOBJECT_UEVENT)
	if err == nil {
		err = unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: 1, Pid: 0})
	}
	if err != nil {
		ready <- fmt.Errorf("uevent socket: %w", err)
		return
	}
	// A large receive buffer: a controller with many ports sends bursts.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	ready <- nil
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if err == unix.EINTR || err == unix.ENOBUFS {
				continue
			}
			m.log("uevent: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		m.mu.Lock()
		m.lastEvent = time.Now()
		m.mu.Unlock()
		ev := parseUevent(buf[:n])
		if ev["ACTION"] == "add" && ev["MODALIAS"] != "" {
			go m.LoadAlias(ev["MODALIAS"])
		}
	}
}

// Settle waits until no uevent has arrived for quiet, or until max has passed.
func (m *Modules) Settle(quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		last := m.lastEvent
		m.mu.Unlock()
		if since := time.Since(last); since >= quiet {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// parseUevent splits a kernel uevent ("ACTION@DEVPATH\0KEY=VALUE\0…") into its keys.
func parseUevent(b []byte) map[string]string {
	ev := map[string]string{}
	for _, f := range bytes.Split(b, []byte{0}) {
		if k, v, ok := strings.Cut(string(f), "="); ok {
			ev[k] = v
		}
	}
	return ev
}
