package boot

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options are what `cauldron boot` passes in.
type Options struct {
	Version string
	Out     io.Writer // the console (u-root's init copies uinit's output to every console)
	// Recover runs an unattended recovery from a fetched kickstart (the recovery engine, given by
	// the command layer so that this package does not depend on it) and returns what the
	// kickstart says to do afterwards: "reboot", "poweroff" or "shell" ("" = the menu).
	// nil: not available.
	Recover func(ctx context.Context, name string, kickstart []byte, out io.Writer, env Env) (then string, err error)
	// Wizard runs the interactive recovery wizard on the console and returns what to do next:
	// "reboot", "poweroff" or "shell" ("" = the menu). nil: the menu only.
	// media is closed once USB and removable disks are mounted under /run/cauldron/media: the
	// wizard's first screen does not wait for that, its archive screen does.
	Wizard func(ctx context.Context, out io.Writer, media <-chan struct{}) (then string, err error)
}

// Env is what the boot environment offers a recovery it starts.
type Env struct {
	// MountUSB mounts the removable disk that holds path (a repository on a USB drive) read-write
	// and returns path's local path.
	MountUSB func(ctx context.Context, path string) (string, error)
}

// AutoKickstart is the file name looked for at the top of USB disks when the kernel command line
// names no kickstart.
const AutoKickstart = "cauldron.ks"

// Run is the boot environment's main loop. It never returns: every path ends in the menu, whose
// only exits are reboot and power off.
func Run(ctx context.Context, o Options) {
	b := &booter{o: o, out: o.Out}
	for {
		func() {
			defer func() {
				if r := recover(); r != nil {
					b.printf("cauldron: internal error: %v\n%s", r, debug.Stack())
				}
			}()
			if !b.started {
				b.started = true
				b.start(ctx)
			}
			b.menu(ctx)
		}()
	}
}

type booter struct {
	o       Options
	out     io.Writer
	started bool
	cmdline Cmdline
	mods    *Modules
	nics    []NIC
	shown   map[string]bool // disks already listed on the console
	netDone chan struct{}   // closed when the background network setup has finished; nil: none
}

func (b *booter) printf(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }

// start does everything up to "ready": modules, hardware list, then network and kickstart.
func (b *booter) start(ctx context.Context) {
	b.printf("cauldron %s: boot environment starting\n", b.o.Version)
	// /run/cauldron-boot.log has each step's guest uptime: where the boot time goes. (/run
	// is mounted below, so the first stamp is taken now and written then.)
	started := uptime()
	raw, _ := os.ReadFile("/proc/cmdline")
	c, err := ParseCmdline(string(raw))
	if err != nil {
		b.printf("cauldron: %v\n", err)
	}
	b.cmdline = c
	mountEarly()
	logLine("boot program started at " + started + " (process created at " + processStart() + ")")

	type mountResult struct {
		mounted bool
		err     error
	}
	usr := make(chan mountResult, 1)
	mods, err := OpenModules(func(f string, a ...any) { logLine(fmt.Sprintf(f, a...)) })
	if err != nil {
		b.printf("cauldron: %v\n", err)
		ok, err := MountUsr(nil)
		usr <- mountResult{ok, err}
	} else {
		b.mods = mods
		mods.OnBlockDevice(func(name, devpath string) { PrepareRemovable(mods, name, devpath) })
		ready := make(chan error, 1)
		go mods.Hotplug(ready)
		if err := <-ready; err != nil {
			b.printf("cauldron: hot-plug: %v\n", err)
		}
		logLine("module index read")
		n := mods.Coldplug()
		logLine(fmt.Sprintf("coldplug: %d modules loaded", n))
		// The tools' /usr image is mounted while the devices settle (mostly waiting).
		go func() {
			ok, err := MountUsr(mods)
			usr <- mountResult{ok, err}
		}()
		// Drivers loaded by coldplug find devices (disks behind a controller, sticks behind a
		// USB hub) whose own drivers hot-plug loads; wait for that to calm down, longer for
		// USB devices (see Settle). The root hubs' own uevents start the USB wait.
		usbQuiet := time.Duration(0)
		if hubs, _ := filepath.Glob("/sys/bus/usb/devices/usb*"); len(hubs) > 0 {
			usbQuiet = 500 * time.Millisecond
		}
		mods.Settle(300*time.Millisecond, usbQuiet, 6*time.Second)
		for deadline := time.Now().Add(5 * time.Second); PendingUSBStorage("/sys") > 0 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		mods.Settle(200*time.Millisecond, 0, 2*time.Second)
		logLine("devices settled")
	}
	// Every way on (wizard, kickstart, shell) may run the tools.
	// A failure is said on the console and in the boot log (the wizard's screen hides the
	// console line): the recovery then fails at its first tool, naming it.
	if r := <-usr; r.err != nil {
		b.printf("cauldron: the recovery's tools (ntfs-3g, mkfs, lvm, …) are not available: %v\n", r.err)
		logLine("tools: " + r.err.Error())
	} else if r.mounted {
		logLine("tools mounted on /usr")
	}
	mountEFIVars(b.mods)
	b.printf("%s\n", firmwareLine())
	b.listHardware()
	b.printf("cauldron: ready uptime=%ss\n", uptime())

	if len(b.nics) > 0 && (b.cmdline.Static != nil || b.cmdline.DHCP()) {
		if b.cmdline.Kickstart != "" && isURL(b.cmdline.Kickstart) || b.cmdline.Static != nil {
			b.network(ctx) // the kickstart needs it now
		} else {
			// A convenience for the technician: do not hold up the wizard. A kickstart found
			// later on a USB stick waits for it (its archive may be on the network).
			b.netDone = make(chan struct{})
			go func() {
				defer close(b.netDone)
				b.network(ctx)
			}()
		}
	}
	if b.cmdline.Kickstart == "" && !b.cmdline.Shell {
		// A technician's USB stick with a cauldron.ks at its top starts an unattended recovery
		// without editing the boot menu (the kickstart still needs its own confirm line to
		// write anything).
		if dev, ok := b.findAutoKickstart(); ok {
			b.printf("cauldron: found %s on %s\n", AutoKickstart, dev)
			b.cmdline.Kickstart = "usb:/" + AutoKickstart
		}
	}
	if b.cmdline.Kickstart != "" {
		b.kickstart(ctx)
	} else if !b.cmdline.Shell {
		b.wizard(ctx)
	}
	if b.cmdline.Shell {
		b.shell()
	}
}

// wizard runs the recovery wizard and does what it returns.
func (b *booter) wizard(ctx context.Context) {
	if b.o.Wizard == nil {
		return
	}
	// Mounted beside the wizard's start (the log has what was mounted: the console is the
	// wizard's by then).
	media := make(chan struct{})
	go func() {
		defer close(media)
		for _, m := range MountRemovable(b.mods) {
			logLine("removable disk mounted at " + m)
		}
	}()
	then, err := b.o.Wizard(ctx, b.out, media)
	if err != nil {
		b.printf("cauldron: wizard: %v\n", err)
	}
	b.then(then)
}

// then does what a recovery or the wizard asked for at its end.
func (b *booter) then(action string) {
	switch action {
	case "reboot":
		powerDown(b.out, unix.LINUX_REBOOT_CMD_RESTART)
	case "poweroff":
		powerDown(b.out, unix.LINUX_REBOOT_CMD_POWER_OFF)
	case "shell":
		b.shell()
	}
}

// findAutoKickstart looks for AutoKickstart on USB disks. USB sticks appear seconds after the
// controller's driver loads (port reset, enumeration, the SCSI scan), often after "ready": while
// the machine has a USB controller and no USB disk has shown up yet, it keeps looking for a while,
// and lists the disks that appeared meanwhile.
func (b *booter) findAutoKickstart() (string, bool) {
	usbHosts, _ := filepath.Glob("/sys/bus/usb/devices/usb*")
	deadline := time.Now().Add(6 * time.Second)
	for {
		_, dev, err := ReadFromMedia("usb", "/"+AutoKickstart, b.mods)
		if err == nil {
			b.listNewDisks()
			return dev, true
		}
		if len(usbHosts) == 0 || time.Now().After(deadline) || !strings.Contains(err.Error(), "no usb device found") {
			b.listNewDisks()
			return "", false
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// listNewDisks prints the disks that appeared since the hardware was listed.
func (b *booter) listNewDisks() {
	disks, _ := ListDisks("/sys")
	for _, d := range disks {
		if !b.shown[d.Name] {
			b.shown[d.Name] = true
			b.printf("%s (appeared after ready)\n", d.Line())
		}
	}
}

func (b *booter) listHardware() {
	disks, err := ListDisks("/sys")
	if err != nil {
		b.printf("cauldron: %v\n", err)
	}
	if b.shown == nil {
		b.shown = map[string]bool{}
	}
	for _, d := range disks {
		b.shown[d.Name] = true
		b.printf("%s\n", d.Line())
	}
	if len(disks) == 0 {
		b.printf("cauldron: no disks found: the controller's driver may be missing from this image\n")
	}
	nics, err := ListNICs("/sys")
	if err != nil {
		b.printf("cauldron: %v\n", err)
	}
	LinksUp(nics, 500*time.Millisecond)
	nics, _ = ListNICs("/sys")
	b.nics = nics
	for _, n := range nics {
		b.printf("%s\n", n.Line())
	}
	if len(nics) == 0 {
		b.printf("cauldron: no network interfaces found\n")
	}
}

func (b *booter) network(ctx context.Context) {
	lines, err := Configure(ctx, b.cmdline, b.nics)
	for _, l := range lines {
		b.printf("%s\n", l)
	}
	if err != nil {
		b.printf("cauldron: %v\n", err)
	}
}

func (b *booter) kickstart(ctx context.Context) {
	name, data, err := FetchKickstart(ctx, b.cmdline.Kickstart, b.mods, func(f string, a ...any) {
		b.printf("cauldron: kickstart: "+f+"\n", a...)
	})
	if err != nil {
		b.printf("cauldron: kickstart: %v\n", err)
		return
	}
	b.printf("cauldron: kickstart %s (%d bytes)\n", name, len(data))
	if b.o.Recover == nil {
		b.printf("cauldron: this build has no recovery engine; the kickstart was not run\n")
		return
	}
	env := Env{MountUSB: func(_ context.Context, path string) (string, error) {
		local, dev, err := MountMedia("usb", path, b.mods)
		if err == nil {
			b.printf("cauldron: %s from %s mounted at %s\n", path, dev, local)
		}
		return local, err
	}}
	if b.netDone != nil {
		select {
		case <-b.netDone:
		default:
			b.printf("cauldron: waiting for the network before the recovery (its archive may be on it)\n")
			select {
			case <-b.netDone:
			case <-time.After(90 * time.Second):
				b.printf("cauldron: the network is still not configured; going on without waiting\n")
			}
		}
	}
	then, err := b.o.Recover(ctx, name, data, b.out, env)
	if err != nil {
		b.printf("cauldron: recovery failed: %v\n", err)
	} else {
		b.printf("cauldron: recovery finished\n")
	}
	b.then(then)
}

// menu asks the technician what to do, once.
func (b *booter) menu(ctx context.Context) {
	wiz := ""
	if b.o.Wizard != nil {
		wiz = "  w  recovery wizard\n"
	}
	b.printf("\nCauldron recovery environment. Choose:\n%s"+
		"  d  list disks and network interfaces again\n"+
		"  n  bring up the network (DHCP)\n"+
		"  s  shell\n"+
		"  r  reboot\n"+
		"  p  power off\n> ", wiz)
	line, err := readConsoleLine()
	if err != nil {
		// No console to read from (serial without input, or a closed one): stay alive and
		// quiet rather than spin; a technician can still reach the shell over a new console.
		time.Sleep(5 * time.Second)
		return
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "w":
		if b.o.Wizard != nil {
			b.wizard(ctx)
		}
	case "d":
		b.listHardware()
	case "n":
		c := b.cmdline
		c.IP, c.Static, c.NoNet = "dhcp", nil, false
		lines, err := Configure(ctx, c, b.nics)
		for _, l := range lines {
			b.printf("%s\n", l)
		}
		if err != nil {
			b.printf("cauldron: %v\n", err)
		}
	case "s":
		b.shell()
	case "r":
		powerDown(b.out, unix.LINUX_REBOOT_CMD_RESTART)
	case "p":
		powerDown(b.out, unix.LINUX_REBOOT_CMD_POWER_OFF)
	case "":
	default:
		b.printf("cauldron: %q is not a choice\n", strings.TrimSpace(line))
	}
}

// shell runs the image's shell on the console and returns when it exits.
func (b *booter) shell() {
	for _, sh := range []string{"/bin/defaultsh", "/bbin/gosh", "/bin/gosh", "/bin/sh", "/bbin/elvish"} {
		if _, err := os.Stat(sh); err != nil {
			continue
		}
		b.printf("cauldron: starting %s; leave it with exit (or Ctrl-D) to return to the menu\n", sh)
		cmd := exec.Command(sh)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			b.printf("cauldron: shell: %v\n", err)
		}
		return
	}
	b.printf("cauldron: this image has no shell\n")
}

func powerDown(out io.Writer, how int) {
	fmt.Fprintln(out, "cauldron: syncing disks")
	unix.Sync()
	// u-root's init copies this program's output to the consoles through a pipe: let the last
	// lines reach the technician before the machine goes.
	time.Sleep(300 * time.Millisecond)
	if err := unix.Reboot(how); err != nil {
		fmt.Fprintf(out, "cauldron: reboot(2): %v\n", err)
	}
}

// mountEarly mounts what u-root's init leaves out and the boot environment uses.
func mountEarly() {
	_ = os.MkdirAll("/run", 0o755)
	_ = unix.Mount("tmpfs", "/run", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755")
	// Scratch space for volumes that must shrink before they fit (RAM: the boot environment
	// has no disk of its own).
	_ = os.MkdirAll("/run/cauldron/scratch", 0o700)
}

// mountEFIVars mounts efivarfs on UEFI machines (Debian builds it as a module): the firmware line
// reads Secure Boot's state there, and Linux inoculation writes boot entries there.
func mountEFIVars(mods *Modules) {
	if _, err := os.Stat("/sys/firmware/efi"); err != nil {
		return
	}
	if mods != nil {
		mods.Load("efivarfs")
	}
	_ = unix.Mount("efivarfs", "/sys/firmware/efi/efivars", "efivarfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "")
}

// firmwareLine says how the machine booted: UEFI (and whether Secure Boot is on) or BIOS.
func firmwareLine() string {
	if _, err := os.Stat("/sys/firmware/efi"); err != nil {
		return "cauldron: firmware bios"
	}
	sb := "unknown"
	// SecureBoot-<EFI global variable GUID>: 4 bytes of attributes, then 1 when enabled.
	if v, err := os.ReadFile("/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"); err == nil && len(v) >= 5 {
		sb = map[bool]string{true: "on", false: "off"}[v[4] == 1]
	}
	return "cauldron: firmware uefi secure-boot=" + sb
}

// uptime is the first field of /proc/uptime: seconds since the kernel started.
func uptime() string {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	if v, err := strconv.ParseFloat(f[0], 64); err == nil {
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return f[0]
}

// processStart is when init created this process, in seconds of uptime: the time between it and
// the first stamp is the program's own start (loading, the Go runtime, package initialisers).
func processStart() string {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return "?"
	}
	// Fields after the command name, which is in parentheses and may hold spaces; starttime is
	// field 22 of the whole line, in clock ticks (USER_HZ, 100 on Linux).
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 20 {
		return "?"
	}
	ticks, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return "?"
	}
	return strconv.FormatFloat(float64(ticks)/100, 'f', 2, 64)
}

// logLine appends to the boot log in /run (kept off the console, which shows summaries).
func logLine(s string) {
	f, err := os.OpenFile("/run/cauldron-boot.log", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "[%s] %s\n", uptime(), s)
}

func isURL(s string) bool { return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") }
