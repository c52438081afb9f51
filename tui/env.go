package tui

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cauldron-dr/cauldron/internal/mountinfo"

	"github.com/cauldron-dr/cauldron/restore"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
)

// Env is what the wizard needs from the place it runs in: the boot environment and an ordinary
// host fill it differently. Zero fields have working defaults for a host.
type Env struct {
	// Network configures the boot environment's network; nil means the network belongs to the
	// host (HostNetwork is used to show it).
	Network Network
	// Repo is a repository to offer first (cauldron wizard --repo): a directory or a network
	// location; RepoSpec says how to reach it (S3 endpoint, credentials file, TLS check).
	Repo     string
	RepoSpec archive.Spec
	// Password, when set, is tried before asking (--password-file, $CAULDRON_PASSWORD).
	Password []byte
	// Archives finds candidate repository directories on attached media; nil: FindArchives
	// under MediaRoots.
	Archives func(ctx context.Context) ([]Archive, error)
	// MediaRoots are the folders under which attached media are mounted; nil: /media, /mnt,
	// /run/media and /run/cauldron.
	MediaRoots []string
	// Targets are the disks (or image files) that may be recovered onto; nil means this
	// machine's disks (restore.SystemDisks).
	Targets []string
	// Controllers describes the storage controllers found (for the inoculation options), e.g.
	// "ahci (sda)"; nil: none shown.
	Controllers func() []string
	// DriverFolders are folders of driver packages found on attached media; nil: none.
	DriverFolders func() []string
	// Actions are the end actions the result screen offers, in order: "reboot", "poweroff",
	// "shell", "quit". Empty: quit only (an ordinary host).
	Actions []string
	// ExportDir is where "Export kickstart" and "Save report" propose to write; "" = the
	// working directory.
	ExportDir string
	// Scratch is passed to the request (where shrinking volumes are rebuilt).
	Scratch string
	// OnTarget: the wizard runs on the machine being recovered (the boot environment); the plan's
	// inoculation says so (restore.Inoculation.OnTarget).
	OnTarget bool
	// Inoculate replaces the inoculation the plan says (restore.RunOptions.Inoculate; tests);
	// nil: the plan's.
	Inoculate func(ctx context.Context, p *restore.Plan, emit func(restore.Event)) (*restore.InoculationResult, error)
	// Run runs a plan; nil: restore.Run. Tests replace it to hold a run open.
	Run func(ctx context.Context, p *restore.Plan, o restore.RunOptions) (*restore.Report, error)
	// Open opens a repository wherever sp says it is (a directory, HTTP(S), S3, an NFS or SMB
	// share) and returns it with its directory on this machine ("" over HTTP and S3); nil:
	// archive.Open then tib.Open.
	Open func(ctx context.Context, sp archive.Spec, password []byte) (*tib.Repository, string, error)
}

// Archive is a place that may hold a repository.
type Archive struct {
	Path string
	// Note says what it is ("USB stick sdb1", "mounted at /mnt"), shown beside the path.
	Note string
	// Repository is true when Path holds a repository (its config file).
	Repository bool
}

// Network is the boot environment's network, as the wizard uses it. The boot environment
// implements it with its own helpers (initramfs/boot); HostNetwork is the read-only host one.
type Network interface {
	// Interfaces lists the network interfaces with their link state and addresses.
	Interfaces(ctx context.Context) ([]NIC, error)
	// Configure sets up one interface (DHCP or static) and says what it got.
	Configure(ctx context.Context, c NetConfig) (string, error)
	// Managed returns, when the network is not the wizard's to change, why (shown instead of
	// the DHCP and static actions); "" when Configure works.
	Managed() string
}

// NIC is one network interface.
type NIC struct {
	Name   string
	MAC    string
	Driver string
	Link   bool
	Addrs  []string // CIDR addresses it has now
}

// NetConfig is what the technician chose for one interface.
type NetConfig struct {
	Device  string
	DHCP    bool
	Address netip.Prefix // static only
	Gateway netip.Addr   // static only; may be invalid (none)
	DNS     []netip.Addr
}

// HostNetwork shows an ordinary host's interfaces and changes nothing: the host's own network
// manager owns them.
type HostNetwork struct{}

// Interfaces lists the host's interfaces other than loopback.
func (HostNetwork) Interfaces(ctx context.Context) ([]NIC, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []NIC
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 {
			continue
		}
		n := NIC{Name: i.Name, MAC: i.HardwareAddr.String(), Link: i.Flags&net.FlagRunning != 0}
		if addrs, err := i.Addrs(); err == nil {
			for _, a := range addrs {
				n.Addrs = append(n.Addrs, a.String())
			}
		}
		out = append(out, n)
	}
	return out, nil
}

// Configure refuses: the host manages its network.
func (HostNetwork) Configure(ctx context.Context, c NetConfig) (string, error) {
	return "", errors.New("the network is managed by the host")
}

// Managed says why nothing can be changed here.
func (HostNetwork) Managed() string {
	return "The network is managed by the host: this is not the boot environment, so the wizard changes nothing here."
}

// Result is how the wizard ended.
type Result struct {
	// Action is what the technician chose last: "reboot", "poweroff", "shell" or "quit".
	Action string
	// Plan and Report are the recovery's, when one ran (Report also when it failed).
	Plan   *restore.Plan
	Report *restore.Report
	// RunErr is the recovery's error (nil when it succeeded or none ran).
	RunErr error
	// Kickstart is the text of the last exported kickstart, if any.
	Kickstart string
}

// PanicError is returned by Run when the wizard panicked: it was caught, logged (Log) and the
// terminal restored; the caller offers a shell.
type PanicError struct {
	Value any
	Stack string
	Log   string // the file the stack was written to, "" if it could not be written
}

func (e *PanicError) Error() string {
	s := fmt.Sprintf("the wizard failed with an internal error: %v", e.Value)
	if e.Log != "" {
		s += " (details in " + e.Log + ")"
	}
	return s
}

// DefaultMediaRoots are where attached media are mounted: by desktop hosts, by hand, and by the
// boot environment.
var DefaultMediaRoots = []string{"/media", "/mnt", "/run/media", "/run/cauldron"}

// FindArchives looks for repositories on the filesystems mounted at or under roots (and one
// level of folders inside each), and in the roots' own folders: a directory with a repository
// config file. Mount points without one are listed too, so that the technician sees the stick
// was found.
func FindArchives(ctx context.Context, roots []string) ([]Archive, error) {
	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, err
	}
	var out []Archive
	seen := map[string]bool{}
	add := func(a Archive) {
		if !seen[a.Path] {
			seen[a.Path] = true
			out = append(out, a)
		}
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		dev, mp := f[0], mountinfo.Unescape(f[1])
		under := false
		for _, r := range roots {
			under = under || mp == r || strings.HasPrefix(mp, r+"/")
		}
		if !under {
			continue
		}
		note := fmt.Sprintf("%s (%s)", filepath.Base(dev), f[2])
		found := false
		for _, dir := range append([]string{mp}, subdirs(mp)...) {
			if IsRepository(dir) {
				add(Archive{Path: dir, Note: note, Repository: true})
				found = true
			}
		}
		if !found {
			add(Archive{Path: mp, Note: note + ", no repository at its top"})
		}
	}
	// Repositories in plain folders under the roots (a backup disk mounted elsewhere and linked
	// here, or a folder of the host's own disk).
	for _, r := range roots {
		for _, dir := range append([]string{r}, subdirs(r)...) {
			if IsRepository(dir) {
				add(Archive{Path: dir, Note: "folder", Repository: true})
			}
		}
	}
	return out, nil
}

// IsRepository reports whether dir holds a local repository (its config file).
func IsRepository(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, "config"))
	return err == nil && fi.Mode().IsRegular()
}

func subdirs(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(out)
	return out
}

// openArchive is the default Env.Open.
func openArchive(ctx context.Context, sp archive.Spec, password []byte) (*tib.Repository, string, error) {
	r, o, err := archive.OpenRepository(ctx, sp, func() ([]byte, error) { return password, nil })
	if err != nil {
		return nil, "", err
	}
	return r, o.Dir, nil
}
