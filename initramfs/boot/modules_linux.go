package boot

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// Modules loads kernel modules from /lib/modules/$(uname -r) of the running image: by name (with
// dependencies, from modules.dep) and by modalias (through modules.alias).
//
// The loader is written here rather than taken from u-root's kmodule: kmodule builds a new zstd
// decoder (with its buffers and goroutines, never released) for every .ko.zst it loads, which
// under emulation made loading the boot drivers a large part of the time to "ready". One
// decoder serves every load here, and modules.dep is read once.
type Modules struct {
	dir     string
	deps    *ModuleDeps
	aliases *AliasTable
	params  map[string]string
	log     func(format string, args ...any)
	zstd    *zstd.Decoder

	mu        sync.Mutex
	tried     map[string]error           // top-level module → result of the first attempt (logged once)
	loads     map[string]*moduleLoad     // every module, dependencies included → its one load
	lastEvent time.Time                  // last uevent seen, for Settle
	lastUSB   time.Time                  // last uevent of a device below a USB controller
	onBlock   func(name, devpath string) // called (in its own goroutine) for each block device added
	// Drivers loading for devices (LoadAlias), for Settle: their probes may add devices. The boot
	// program's own loads (filesystems, loop and squashfs for /usr) do not count.
	aliasLoads int
	lastAlias  time.Time
}

// OnBlockDevice sets a function that Hotplug calls, in a goroutine of its own, for every block
// device (disk or partition) the kernel adds, with its name under /dev and its DEVPATH.
func (m *Modules) OnBlockDevice(fn func(name, devpath string)) {
	m.mu.Lock()
	m.onBlock = fn
	m.mu.Unlock()
}

// moduleLoad is one module's load, waited for by everyone who needs it.
type moduleLoad struct {
	done chan struct{}
	err  error
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
	df, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	defer df.Close()
	deps, err := ParseModuleDeps(df)
	if err != nil {
		return nil, err
	}
	if bf, err := os.Open(filepath.Join(dir, "modules.builtin")); err == nil {
		err = deps.AddBuiltin(bf)
		bf.Close()
		if err != nil {
			return nil, fmt.Errorf("modules.builtin: %w", err)
		}
	}
	if sf, err := os.Open(filepath.Join(dir, "modules.softdep")); err == nil {
		err = deps.AddSoftdeps(sf)
		sf.Close()
		if err != nil {
			return nil, err
		}
	}
	// Small, single-threaded decoding: modules are a few hundred KiB, and several loads
	// (different devices' drivers) share the decoder at once.
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(4), zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, err
	}
	params := map[string]string{}
	for k, v := range moduleParams {
		params[k] = v
	}
	if raw, err := os.ReadFile("/proc/cmdline"); err == nil {
		// Options on the kernel command line come after the image's own, so they win.
		for k, v := range CmdlineModuleParams(string(raw)) {
			params[k] = strings.TrimSpace(params[k] + " " + v)
		}
	}
	return &Modules{dir: dir, deps: deps, aliases: aliases, params: params, log: log, zstd: dec,
		tried: map[string]error{}, loads: map[string]*moduleLoad{}}, nil
}

// Load loads a module and its dependencies once; a call while another goroutine loads it waits
// for that load, and later calls return its result.
func (m *Modules) Load(name string) error {
	name = strings.ReplaceAll(name, "-", "_")
	m.mu.Lock()
	_, started := m.tried[name]
	if !started {
		m.tried[name] = nil
	}
	m.mu.Unlock()
	err := m.load(name, nil) // waits for a load under way
	if !started {
		if err != nil {
			m.log("module %s: %v", name, err)
		} else {
			m.log("module %s loaded", name)
		}
		m.mu.Lock()
		m.tried[name] = err
		m.mu.Unlock()
	}
	return err
}

// load loads name after its dependencies; a module another goroutine is loading is waited for.
// chain guards against a dependency loop in a damaged modules.dep.
func (m *Modules) load(name string, chain []string) error {
	if slices.Contains(chain, name) {
		return fmt.Errorf("dependency loop: %s", strings.Join(append(chain, name), " → "))
	}
	m.mu.Lock()
	l, ok := m.loads[name]
	if ok {
		m.mu.Unlock()
		<-l.done
		return l.err
	}
	l = &moduleLoad{done: make(chan struct{})}
	m.loads[name] = l
	m.mu.Unlock()
	defer close(l.done)

	if m.deps.Builtin(name) {
		return nil
	}
	file, ok := m.deps.File(name)
	if !ok {
		l.err = fmt.Errorf("not in this image's modules.dep")
		return l.err
	}
	// Soft dependencies first, and best effort: a missing one only means the kernel asks
	// modprobe for it later.
	for _, p := range m.deps.SoftPre(name) {
		mods := []string{p}
		if _, ok := m.deps.File(p); !ok {
			mods = m.aliases.Modules(p)
		}
		for _, d := range mods {
			if d = strings.ReplaceAll(d, "-", "_"); d != name && !slices.Contains(chain, d) {
				m.load(d, append(chain, name))
			}
		}
	}
	for _, d := range m.deps.Deps(name) {
		if err := m.load(d, append(chain, name)); err != nil {
			l.err = fmt.Errorf("needs %s: %w", d, err)
			return l.err
		}
	}
	start := time.Now()
	l.err = m.insert(filepath.Join(m.dir, file), m.params[name])
	m.log("insert %s: %d ms", name, time.Since(start).Milliseconds())
	return l.err
}

// insert hands one module file to the kernel, decompressing .ko.zst here: Debian 12's kernel
// cannot decompress modules itself (no CONFIG_MODULE_DECOMPRESS).
func (m *Modules) insert(path, params string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if strings.HasSuffix(path, ".zst") {
		if raw, err = m.zstd.DecodeAll(raw, make([]byte, 0, 4*len(raw))); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
	}
	if err := unix.InitModule(raw, params); err != nil && err != unix.EEXIST {
		return err
	}
	return nil
}

// LoadAlias loads every module whose alias matches modalias and returns how many were new.
// Settle waits for these loads: a device's driver still loading may yet find more devices.
func (m *Modules) LoadAlias(modalias string) int {
	n := 0
	for _, mod := range m.aliases.Modules(modalias) {
		m.mu.Lock()
		_, done := m.tried[strings.ReplaceAll(mod, "-", "_")]
		if !done {
			m.aliasLoads++
		}
		m.mu.Unlock()
		if !done {
			n++
			m.Load(mod)
			m.mu.Lock()
			m.aliasLoads--
			m.lastAlias = time.Now()
			m.mu.Unlock()
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
		ev := parseUevent(buf[:n])
		if hardwareEvent(ev["DEVPATH"]) {
			now := time.Now()
			m.mu.Lock()
			m.lastEvent = now
			if strings.Contains(ev["DEVPATH"], "/usb") {
				m.lastUSB = now
			}
			m.mu.Unlock()
		}
		if ev["ACTION"] == "add" && ev["MODALIAS"] != "" {
			go m.LoadAlias(ev["MODALIAS"])
		}
		if ev["ACTION"] == "add" && ev["SUBSYSTEM"] == "block" && ev["DEVNAME"] != "" {
			m.mu.Lock()
			fn := m.onBlock
			m.mu.Unlock()
			if fn != nil {
				go fn(ev["DEVNAME"], ev["DEVPATH"])
			}
		}
	}
}

// Settle waits until no device uevent has arrived for quiet and none from a USB device for
// usbQuiet, and no driver for a device has been loading for quiet, or until max has passed.
// USB enumeration goes in steps (port debounce and reset, descriptors, the driver, the SCSI scan)
// a few hundred milliseconds apart, so a stick still on its way needs the longer wait; other
// controllers' drivers have found their disks when their load returns.
func (m *Modules) Settle(quiet, usbQuiet, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		last, lastUSB, loading, lastAlias := m.lastEvent, m.lastUSB, m.aliasLoads, m.lastAlias
		m.mu.Unlock()
		if time.Since(last) >= quiet && time.Since(lastUSB) >= usbQuiet && loading == 0 && time.Since(lastAlias) >= quiet {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// hardwareEvent reports whether a uevent's DEVPATH is a device on a bus, the kind Settle waits
// to calm down. Modules (/module/…) and virtual devices (/devices/virtual/…: the loop devices
// the /usr image's mount brings, device-mapper, consoles) are the boot program's own doing.
func hardwareEvent(devpath string) bool {
	return strings.HasPrefix(devpath, "/devices/") && !strings.HasPrefix(devpath, "/devices/virtual/")
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
