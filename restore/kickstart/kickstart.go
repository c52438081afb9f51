package kickstart

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
)

// Pos is a place in a kickstart file. Line and Col count from 1; Col counts characters (not
// bytes), as an editor shows them. A zero Line means "the file as a whole": a command that is
// missing, or, on a command's Pos, that the command was absent and its defaults apply.
type Pos struct {
	File string `json:"file"`
	Line int    `json:"line"`
	Col  int    `json:"col"`
}

// String gives FILE:LINE:COLUMN, or FILE alone for a position that is no place in the file.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// IsValid reports whether p is a place in the file.
func (p Pos) IsValid() bool { return p.Line > 0 }

// Kickstart is a parsed, validated kickstart: plain data, every default filled in. The recovery
// engine checks it against the repository and the machine's disks and turns it into a plan.
type Kickstart struct {
	File       string     `json:"file"`
	Repository Repository `json:"repository"`
	Machine    Machine    `json:"machine"`
	// Replication is nil when the kickstart has no freeze-replication: the machine's replication
	// session is left as it is (a recovery from archive beside a running original).
	Replication *Replication `json:"freezeReplication,omitempty"`
	// Disks are the source disks named by disk commands, in file order. Source disks of the
	// generation that no disk command names are mapped automatically (WWN, serial, then size)
	// with AutoResize and AutoIdentity.
	Disks        []Disk                 `json:"disks,omitempty"`
	AutoResize   partition.ResizeMode   `json:"autoResize"`
	AutoIdentity partition.IdentityMode `json:"autoIdentity"`
	IgnoreDisk   *IgnoreDisk            `json:"ignoreDisk,omitempty"`
	Inoculate    Inoculate              `json:"inoculate"`
	Networks     []Network              `json:"networks,omitempty"`
	Target       Target                 `json:"target"`
	OnSuccess    EndAction              `json:"onSuccess"`
	OnFailure    EndAction              `json:"onFailure"`
	// Confirm is the technician's written consent to overwrite the target disks; without it an
	// unattended recovery stops before writing (see ConsentError).
	Confirm *Confirm `json:"confirm,omitempty"`
	Reports []Report `json:"reports,omitempty"`
}

// ConsentError says why an unattended recovery must not write, or returns nil when the
// kickstart carries the consent.
func (k *Kickstart) ConsentError() error {
	if k.Confirm != nil {
		return nil
	}
	return fmt.Errorf("%s: %w", k.File, ErrNoConsent)
}

// ErrNoConsent is returned (wrapped) by ConsentError.
var ErrNoConsent = errors.New("no `confirm --destroy-data-on-targets` line: an unattended recovery writes nothing without it (add the line, or run the recovery attended and type the confirmation)")

// Repository is the repository command: where the archive is and how to open it.
type Repository struct {
	Pos      Pos      `json:"pos"`
	Location Location `json:"location"` // a local path, usb:/PATH, http(s)://, s3://, nfs:// or smb://
	// PasswordFile and PasswordEnv name where the password is (at most one is set); with
	// neither, the engine uses $CAULDRON_PASSWORD and, attended, asks.
	PasswordFile string `json:"passwordFile,omitempty"`
	PasswordEnv  string `json:"passwordEnv,omitempty"`
	Endpoint     string `json:"endpoint,omitempty"` // s3 only: the server's http(s) URL
	InsecureTLS  bool   `json:"insecureTLS,omitempty"`
	// CredentialsFile holds the access keys of an s3:// repository (an AWS shared-credentials
	// file) or the user name and password of an smb:// share (username=, password=, domain=
	// lines, as mount.cifs reads them).
	CredentialsFile string `json:"credentialsFile,omitempty"`
}

// Spec is how to reach the repository, as archive.Open takes it.
func (r Repository) Spec() archive.Spec {
	return archive.Spec{Location: r.Location, Endpoint: r.Endpoint, InsecureTLS: r.InsecureTLS, CredentialsFile: r.CredentialsFile}
}

// Password is where its password comes from.
func (r Repository) Password() archive.PasswordSource {
	return archive.PasswordSource{File: r.PasswordFile, Env: r.PasswordEnv}
}

// Machine is the machine command: whose disks to bring back, and from when.
type Machine struct {
	Pos        Pos           `json:"pos"`
	Name       string        `json:"name"`
	Generation GenerationRef `json:"generation"`
}

// GenerationKind says how a generation is chosen (as the repository resolves it).
type GenerationKind = tib.GenerationKind

const (
	GenerationLatest = tib.GenerationLatest // the machine's newest generation
	GenerationID     = tib.GenerationID     // a unique prefix of a generation ID
	GenerationTime   = tib.GenerationTime   // the newest generation taken at or before a time
)

// GenerationRef chooses a generation of the machine.
type GenerationRef struct {
	Kind GenerationKind `json:"kind"`
	ID   string         `json:"id,omitempty"`  // lower-case hex, 4 to 64 digits
	Time time.Time      `json:"time,omitzero"` // UTC
	Pos  Pos            `json:"pos"`           // of the --generation value; Line 0 when defaulted
}

// Release says what happens to the machine's replication session when the recovery ends.
type Release string

const (
	// ReleaseRemove ends the session: production failover, the recovered machine replaces the
	// original and capture of the original stops for good.
	ReleaseRemove Release = "remove"
	// ReleaseResume lets capture of the original go on: copy-and-recover, the recovered machine
	// runs beside the original (with renewed identities).
	ReleaseResume Release = "resume"
)

// Replication is the freeze-replication command.
type Replication struct {
	Pos     Pos     `json:"pos"`
	Release Release `json:"release"`
}

// SelectBy says how a target disk is chosen.
type SelectBy string

const (
	SelectAuto     SelectBy = ""         // automatic mapping (WWN, serial, then size)
	SelectPath     SelectBy = "path"     // an absolute path: a device (/dev/…) or an image file
	SelectSerial   SelectBy = "serial"   // the disk with this serial number
	SelectWWN      SelectBy = "wwn"      // the disk with this WWN (as sysfs' wwid shows it)
	SelectBiggest  SelectBy = "biggest"  // the biggest disk
	SelectSmallest SelectBy = "smallest" // the smallest disk
	SelectSize     SelectBy = "size"     // the one disk whose size is within [Min, Max]
)

// DiskSelector picks a disk of the target machine.
type DiskSelector struct {
	By    SelectBy `json:"by,omitempty"`
	Value string   `json:"value,omitempty"` // the path, serial or WWN
	Min   int64    `json:"min,omitempty"`   // SelectSize: bytes, inclusive
	Max   int64    `json:"max,omitempty"`
}

// String writes s as the kickstart does (empty for automatic).
func (s DiskSelector) String() string {
	switch s.By {
	case SelectPath:
		return s.Value
	case SelectSerial, SelectWWN:
		return string(s.By) + ":" + s.Value
	case SelectBiggest, SelectSmallest:
		return "size:" + string(s.By)
	case SelectSize:
		return "size:" + formatSize(s.Min) + "-" + formatSize(s.Max)
	}
	return ""
}

// Disk is one disk command: a source disk of the generation and where it goes.
type Disk struct {
	Pos      Pos                    `json:"pos"`
	Source   string                 `json:"source"` // its name in the generation: disk0, disk1, …
	Target   DiskSelector           `json:"target"`
	Resize   partition.ResizeMode   `json:"resize"`
	Identity partition.IdentityMode `json:"identity"`
	// Size is, for target vm, the size of the disk image to create; 0 means the source's size.
	Size int64 `json:"size,omitempty"`
}

// IgnoreDisk is the ignoredisk command: disks never to touch, whatever the mapping finds.
type IgnoreDisk struct {
	Pos    Pos            `json:"pos"`
	Drives []DiskSelector `json:"drives"` // by path, serial or WWN
}

// Hardware names the storage controller inoculation prepares the restored system for.
type Hardware string

const (
	HardwareDetect       Hardware = "detect" // what the boot environment sees on the target
	HardwareVirtioBlk    Hardware = "kvm-virtio-blk"
	HardwareVirtioSCSI   Hardware = "kvm-virtio-scsi"
	HardwareVMwarePVSCSI Hardware = "vmware-pvscsi"
	HardwareHyperV       Hardware = "hyperv"
	HardwareAHCI         Hardware = "ahci"
	HardwareNVMe         Hardware = "nvme"
)

// Inoculate is the inoculate command (defaults when the kickstart has none: Pos is zero).
type Inoculate struct {
	Pos             Pos      `json:"pos"`
	Skip            bool     `json:"skip,omitempty"`
	Drivers         []string `json:"drivers,omitempty"` // absolute directories of driver packages
	Hardware        Hardware `json:"hardware"`
	EnableInbox     []string `json:"enableInbox,omitempty"`     // Windows inbox drivers' service names
	DisableServices []string `json:"disableServices,omitempty"` // vmware, hyperv, xen
}

// BootProto is how a restored system's interface gets its address.
type BootProto string

const (
	BootProtoUnchanged BootProto = "" // keep what the restored system had
	BootProtoDHCP      BootProto = "dhcp"
	BootProtoStatic    BootProto = "static"
)

// Network is one network command. It configures the restored system (written during
// inoculation); with Activate it also configures the boot environment before the repository is
// opened.
type Network struct {
	Pos         Pos          `json:"pos"`
	Device      string       `json:"device,omitempty"` // an interface name or a MAC address; "" = the only one
	BootProto   BootProto    `json:"bootproto,omitempty"`
	IP          netip.Prefix `json:"ip,omitzero"` // address and prefix length
	Gateway     netip.Addr   `json:"gateway,omitzero"`
	Nameservers []netip.Addr `json:"nameservers,omitempty"`
	Hostname    string       `json:"hostname,omitempty"`
	Activate    bool         `json:"activate,omitempty"`
}

// TargetKind is what the recovery produces.
type TargetKind string

const (
	TargetPhysical TargetKind = "physical" // the disks of the machine (or image files) written directly
	TargetVM       TargetKind = "vm"       // disk images for a virtual machine
)

// Hypervisor is where a vm target is registered.
type Hypervisor string

const (
	HypervisorNone    Hypervisor = ""
	HypervisorLibvirt Hypervisor = "libvirt"
	HypervisorVSphere Hypervisor = "vsphere"
)

// DiskFormat is a vm target's disk image format.
type DiskFormat string

const (
	FormatRaw   DiskFormat = "raw"
	FormatQCOW2 DiskFormat = "qcow2"
	FormatVMDK  DiskFormat = "vmdk"
	FormatVHDX  DiskFormat = "vhdx"
)

// Target is the target command (physical when the kickstart has none).
type Target struct {
	Pos        Pos        `json:"pos"`
	Kind       TargetKind `json:"kind"`
	Hypervisor Hypervisor `json:"hypervisor,omitempty"`
	URI        string     `json:"uri,omitempty"`    // the hypervisor's connection URI
	Format     DiskFormat `json:"format,omitempty"` // vm: filled in from the hypervisor when not given
	Name       string     `json:"name,omitempty"`   // vm: the VM's name; defaults to the machine's
	CPUs       int        `json:"cpus,omitempty"`
	Memory     int64      `json:"memory,omitempty"` // bytes, a whole number of MiB
	OutputDir  string     `json:"outputDir,omitempty"`
}

// Action is what the boot environment does when an unattended recovery ends.
type Action string

const (
	ActionReboot   Action = "reboot"
	ActionPoweroff Action = "poweroff"
	ActionShell    Action = "shell"
)

// EndAction is on-success or on-failure (Pos is zero when defaulted).
type EndAction struct {
	Pos    Pos    `json:"pos"`
	Action Action `json:"action"`
}

// Confirm is the confirm command.
type Confirm struct {
	Pos Pos `json:"pos"`
}

// Report is one report command: another place the report and the log are copied to.
type Report struct {
	Pos Pos      `json:"pos"`
	To  Location `json:"to"` // an absolute path or usb:/PATH
}
