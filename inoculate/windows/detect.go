package windows

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/inoculate/inf"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// Paths of what inoculation reads and writes, relative to the system volume's root (resolved
// case-insensitively).
const (
	systemHivePath   = `Windows\System32\config\SYSTEM`
	softwareHivePath = `Windows\System32\config\SOFTWARE`
	driversHivePath  = `Windows\System32\config\DRIVERS`
	biosBCDPath      = `Boot\BCD`
	uefiBCDPath      = `EFI\Microsoft\Boot\BCD`
	hiberfilPath     = `hiberfil.sys`
)

// Firmware values.
const (
	FirmwareBIOS    = "bios"
	FirmwareUEFI    = "uefi"
	FirmwareUnknown = "unknown"
)

// System is what Detect found.
type System struct {
	Root             string         `json:"root"`
	ESP              string         `json:"esp,omitempty"`
	ProductName      string         `json:"productName"`
	EditionID        string         `json:"editionId,omitempty"`
	InstallationType string         `json:"installationType,omitempty"`
	DisplayVersion   string         `json:"displayVersion,omitempty"`
	Version          inf.WinVersion `json:"version"`
	UBR              uint32         `json:"ubr,omitempty"`
	Arch             string         `json:"arch"`        // amd64, x86, arm64
	ArchSource       string         `json:"archSource"`  // where Arch was read
	ProductType      string         `json:"productType"` // workstation, server, domain controller
	productType      int

	ControlSets   []string `json:"controlSets"`
	Current       int      `json:"current"` // Select\Current …
	Default       int      `json:"default"`
	LastKnownGood int      `json:"lastKnownGood"`
	Failed        int      `json:"failed"`

	Firmware       string   `json:"firmware"`
	FirmwareSource string   `json:"firmwareSource"`
	BCDStores      []string `json:"bcdStores,omitempty"` // host paths
	DriversHive    string   `json:"driversHive,omitempty"`

	Hibernated     bool   `json:"hibernated"`
	HiberfilState  string `json:"hiberfilState"` // absent, in use (hibr), not in use …
	FastStartup    bool   `json:"fastStartup"`   // HiberbootEnabled=1
	BitLocker      bool   `json:"bitLocker"`
	BitLockerState string `json:"bitLockerState"`

	PendingReboot []string `json:"pendingReboot,omitempty"`
	// DeviceInstallRestrictions are the Group Policy device-installation restrictions in force.
	DeviceInstallRestrictions []string `json:"deviceInstallRestrictions,omitempty"`
	// SetupInProgress says Windows setup (OOBE, sysprep specialize) is pending: SYSTEM\Setup.
	SetupInProgress bool     `json:"setupInProgress,omitempty"`
	HiveLogs        []string `json:"hiveLogs,omitempty"` // hives that were dirty and replayed
	Warnings        []string `json:"warnings,omitempty"`

	denyIDs     []string
	denyClasses []string
	denyAll     bool
}

// windows8 is the first version with a DriverDatabase (and StartOverride); older ones bind boot
// devices through the CriticalDeviceDatabase.
var windows8 = v62

// Name is a short name for reports: the product name, with the build Windows 11 is told by
// (its registry still says "Windows 10").
func (s *System) Name() string {
	n := s.ProductName
	if s.Version.Major == 10 && s.Version.Build >= 22000 && strings.Contains(n, "Windows 10") && s.productType == inf.ProductWorkstation {
		n = strings.Replace(n, "Windows 10", "Windows 11", 1)
	}
	return fmt.Sprintf("%s (%s, build %d, %s)", n, s.Version, s.Version.Build, s.Arch)
}

// target is the inf package's view of the system.
func (s *System) target() inf.Target {
	return inf.Target{Arch: s.Arch, Version: s.Version, ProductType: s.productType}
}

// Detect reads the installation at o.Root (and o.ESP, o.BootSector, o.Firmware) without writing
// anything. A dirty hive is read with its logs replayed in memory; one whose logs are missing is
// read as it is, with a warning (Inoculate refuses it).
func Detect(ctx context.Context, o Options) (*System, error) {
	s, _, err := detect(ctx, o, false)
	return s, err
}

// hives are the hives inoculation edits; drivers is nil when the system has no DRIVERS hive.
type hives struct {
	system, software, drivers *hiveFile
}

func (h hives) all() []*hiveFile {
	out := []*hiveFile{h.system, h.software}
	if h.drivers != nil {
		out = append(out, h.drivers)
	}
	return out
}

// detect opens the hives (strictly for editing, or leniently for reading) and fills System.
func detect(ctx context.Context, o Options, strict bool) (*System, hives, error) {
	var hv hives
	if o.Root == "" {
		return nil, hv, errors.New("no Windows volume given (Root)")
	}
	if fi, err := os.Stat(o.Root); err != nil || !fi.IsDir() {
		return nil, hv, fmt.Errorf("the Windows volume %s is not a mounted folder: %v", o.Root, err)
	}
	s := &System{Root: o.Root, ESP: o.ESP}
	if _, ok := exists(o.Root, "Windows"); !ok {
		return nil, hv, fmt.Errorf("%s holds no Windows folder: not a Windows system volume (is it mounted?)", o.Root)
	}
	open := func(rel, name string) (*hiveFile, error) {
		hf, err := openHive(o.Root, rel, name)
		if err == nil || strict {
			return hf, err
		}
		// Lenient reading for Detect: a dirty hive without logs is read as it is.
		path, ok, rerr := resolve(o.Root, rel)
		if rerr != nil || !ok {
			return nil, err
		}
		b, rerr := os.ReadFile(path)
		if rerr != nil {
			return nil, rerr
		}
		h, perr := regf.Parse(b)
		if perr != nil {
			return nil, fmt.Errorf("%s hive %s: %w", name, path, perr)
		}
		s.Warnings = append(s.Warnings, err.Error())
		return &hiveFile{name: name, rel: rel, path: path, orig: b, h: h}, nil
	}
	var err error
	if hv.system, err = open(systemHivePath, "SYSTEM"); err != nil {
		return nil, hv, err
	}
	if hv.software, err = open(softwareHivePath, "SOFTWARE"); err != nil {
		return nil, hv, err
	}
	if _, ok := exists(o.Root, driversHivePath); ok {
		if hv.drivers, err = open(driversHivePath, "DRIVERS"); err != nil {
			return nil, hv, err
		}
		s.DriversHive = hv.drivers.path
	}
	for _, hf := range hv.all() {
		if hf.replayed > 0 {
			s.HiveLogs = append(s.HiveLogs, fmt.Sprintf("%s was dirty: %d log entries or pages replayed from its transaction logs", hf.rel, hf.replayed))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, hv, err
	}
	if err := s.readSystem(hv.system); err != nil {
		return nil, hv, err
	}
	if err := s.readSoftware(hv.software); err != nil {
		return nil, hv, err
	}
	s.readFirmware(o)
	if err := s.readHibernation(o.Root); err != nil {
		return nil, hv, err
	}
	s.readBitLocker(o.BootSector)
	s.readPending(o.Root, hv)
	s.readRestrictions(hv.software)
	return s, hv, nil
}

func dword(hf *hiveFile, key, name string) (uint32, bool) {
	t, d, ok := hf.get(key, name)
	if !ok || (t != regf.RegDword && t != regf.RegBinary) || len(d) != 4 {
		return 0, false
	}
	return binary.LittleEndian.Uint32(d), true
}

func str(hf *hiveFile, key, name string) (string, bool) {
	t, d, ok := hf.get(key, name)
	if !ok || (t != regf.RegSz && t != regf.RegExpandSz && t != regf.RegMultiSz) {
		return "", false
	}
	return regString(d), true
}

// currentSet is the control set Select\Current names, the one Windows reads for settings.
func (s *System) currentSet() string {
	name := fmt.Sprintf("ControlSet%03d", s.Current)
	for _, cs := range s.ControlSets {
		if strings.EqualFold(cs, name) {
			return cs
		}
	}
	return s.ControlSets[0]
}

func (s *System) readSystem(hf *hiveFile) error {
	cs, err := controlSets(hf.h)
	if err != nil {
		return fmt.Errorf("%s: %w", hf.path, err)
	}
	s.ControlSets = cs
	sel := map[string]*int{"Current": &s.Current, "Default": &s.Default, "LastKnownGood": &s.LastKnownGood, "Failed": &s.Failed}
	for name, dst := range sel {
		if v, ok := dword(hf, "Select", name); ok {
			*dst = int(v)
		}
	}
	if s.Current == 0 {
		s.Warnings = append(s.Warnings, "SYSTEM has no Select\\Current: the first control set is read as the current one")
	}
	have := map[string]bool{}
	for _, c := range cs {
		have[strings.ToLower(c)] = true
	}
	for _, n := range []struct {
		what string
		v    int
	}{{"Current", s.Current}, {"Default", s.Default}, {"LastKnownGood", s.LastKnownGood}} {
		if n.v != 0 && !have[strings.ToLower(fmt.Sprintf("controlset%03d", n.v))] {
			s.Warnings = append(s.Warnings, fmt.Sprintf("Select\\%s names ControlSet%03d, which does not exist", n.what, n.v))
		}
	}
	cur := s.currentSet()
	if v, ok := str(hf, cur+`\Control\Session Manager\Environment`, "PROCESSOR_ARCHITECTURE"); ok {
		switch strings.ToUpper(v) {
		case "AMD64":
			s.Arch = "amd64"
		case "X86":
			s.Arch = "x86"
		case "ARM64":
			s.Arch = "arm64"
		}
		if s.Arch != "" {
			s.ArchSource = "SYSTEM " + cur + `\Control\Session Manager\Environment\PROCESSOR_ARCHITECTURE`
		}
	}
	switch v, _ := str(hf, cur+`\Control\ProductOptions`, "ProductType"); strings.ToLower(v) {
	case "winnt":
		s.productType, s.ProductType = inf.ProductWorkstation, "workstation"
	case "servernt":
		s.productType, s.ProductType = inf.ProductServer, "server"
	case "lanmannt":
		s.productType, s.ProductType = inf.ProductDC, "domain controller"
	}
	if v, ok := dword(hf, cur+`\Control\Session Manager\Power`, "HiberbootEnabled"); ok && v != 0 {
		s.FastStartup = true
	}
	st, _ := dword(hf, "Setup", "SetupType")
	inProgress, _ := dword(hf, "Setup", "SystemSetupInProgress")
	oobe, _ := dword(hf, "Setup", "OOBEInProgress")
	s.SetupInProgress = st != 0 || inProgress != 0 || oobe != 0
	return nil
}

func (s *System) readSoftware(hf *hiveFile) error {
	const cv = `Microsoft\Windows NT\CurrentVersion`
	if !hf.hasKey(cv) {
		return fmt.Errorf("SOFTWARE hive %s has no %s key: cannot tell which Windows this is", hf.path, cv)
	}
	s.ProductName, _ = str(hf, cv, "ProductName")
	s.EditionID, _ = str(hf, cv, "EditionID")
	s.InstallationType, _ = str(hf, cv, "InstallationType")
	s.DisplayVersion, _ = str(hf, cv, "DisplayVersion")
	if s.DisplayVersion == "" {
		s.DisplayVersion, _ = str(hf, cv, "ReleaseId")
	}
	s.UBR, _ = dword(hf, cv, "UBR")
	maj, ok1 := dword(hf, cv, "CurrentMajorVersionNumber")
	min, ok2 := dword(hf, cv, "CurrentMinorVersionNumber")
	if ok1 && ok2 {
		s.Version.Major, s.Version.Minor = int(maj), int(min)
	} else {
		v, _ := str(hf, cv, "CurrentVersion")
		wv, err := inf.ParseWinVersion(v)
		if err != nil {
			return fmt.Errorf("SOFTWARE hive %s: %s\\CurrentVersion %q is not a Windows version", hf.path, cv, v)
		}
		s.Version.Major, s.Version.Minor = wv.Major, wv.Minor
	}
	for _, name := range []string{"CurrentBuildNumber", "CurrentBuild"} {
		if b, ok := str(hf, cv, name); ok {
			if n, err := strconv.Atoi(b); err == nil {
				s.Version.Build = n
				break
			}
		}
	}
	if s.Arch == "" {
		lab, _ := str(hf, cv, "BuildLabEx")
		for _, a := range []struct{ tag, arch string }{{".amd64fre", "amd64"}, {".amd64chk", "amd64"}, {".x86fre", "x86"}, {".x86chk", "x86"}, {".arm64fre", "arm64"}} {
			if strings.Contains(strings.ToLower(lab), a.tag) {
				s.Arch, s.ArchSource = a.arch, "SOFTWARE "+cv+`\BuildLabEx`
				break
			}
		}
	}
	if s.Arch == "" {
		if _, ok := exists(s.Root, `Windows\SysWOW64`); ok {
			s.Arch, s.ArchSource = "amd64", `Windows\SysWOW64 exists`
		} else {
			return fmt.Errorf("cannot tell the architecture of %s: SYSTEM has no PROCESSOR_ARCHITECTURE, SOFTWARE no BuildLabEx and there is no Windows\\SysWOW64", s.Root)
		}
	}
	if s.productType == inf.ProductAny {
		switch strings.ToLower(s.InstallationType) {
		case "client":
			s.productType, s.ProductType = inf.ProductWorkstation, "workstation"
		case "server", "server core":
			s.productType, s.ProductType = inf.ProductServer, "server"
		default:
			s.ProductType = "unknown"
		}
	}
	if s.ProductName == "" {
		s.ProductName = "Windows " + s.Version.String()
	}
	return nil
}

// readFirmware decides BIOS or UEFI: the caller's word (from the target disk's layout) first,
// then which BCD store exists.
func (s *System) readFirmware(o Options) {
	if o.ESP != "" {
		if p, ok := exists(o.ESP, uefiBCDPath); ok {
			s.BCDStores = append(s.BCDStores, p)
		}
	}
	if p, ok := exists(o.Root, biosBCDPath); ok {
		s.BCDStores = append(s.BCDStores, p)
	}
	if p, ok := exists(o.Root, uefiBCDPath); ok {
		s.BCDStores = append(s.BCDStores, p)
	}
	switch f := strings.ToLower(o.Firmware); f {
	case FirmwareBIOS, FirmwareUEFI:
		s.Firmware, s.FirmwareSource = f, "given (the target disk's layout)"
		return
	}
	if o.ESP != "" {
		if _, ok := exists(o.ESP, uefiBCDPath); ok {
			s.Firmware, s.FirmwareSource = FirmwareUEFI, `the ESP holds EFI\Microsoft\Boot\BCD`
			return
		}
	}
	if _, ok := exists(o.Root, biosBCDPath); ok {
		s.Firmware, s.FirmwareSource = FirmwareBIOS, `the system volume holds Boot\BCD`
		return
	}
	if _, ok := exists(o.Root, uefiBCDPath); ok {
		s.Firmware, s.FirmwareSource = FirmwareUEFI, `the volume holds EFI\Microsoft\Boot\BCD`
		return
	}
	s.Firmware, s.FirmwareSource = FirmwareUnknown, "no BCD store found and none given"
}

// readHibernation looks at hiberfil.sys's signature: "hibr" (or "HIBR" from Windows 8's Fast
// Startup) means a hibernation image that Windows will resume, and "rstr" one being restored;
// writing to such a volume loses data or corrupts it when Windows resumes. "wake" or zeros mean
// the image was used up.
func (s *System) readHibernation(root string) error {
	p, ok := exists(root, hiberfilPath)
	if !ok {
		s.HiberfilState = "absent"
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	sig := make([]byte, 4)
	if _, err := io.ReadFull(f, sig); err != nil {
		s.HiberfilState = "empty"
		return nil
	}
	switch strings.ToLower(string(sig)) {
	case "hibr", "rstr":
		s.Hibernated = true
		s.HiberfilState = fmt.Sprintf("in use (signature %q)", sig)
	case "wake":
		s.HiberfilState = `not in use (signature "wake": resumed)`
	default:
		if bytes.Equal(sig, make([]byte, 4)) {
			s.HiberfilState = "not in use (zeroed)"
		} else {
			s.HiberfilState = fmt.Sprintf("not in use (signature %q)", sig)
		}
	}
	return nil
}

// bitLockerSignature is at offset 3 of a BitLocker volume's boot sector, where NTFS has "NTFS    ".
var bitLockerSignature = []byte("-FVE-FS-")

func (s *System) readBitLocker(sector []byte) {
	switch {
	case len(sector) == 0:
		s.BitLockerState = "not checked: the volume's boot sector was not given (a mounted volume hides it)"
	case len(sector) < 11:
		s.BitLockerState = fmt.Sprintf("not checked: the boot sector given is %d bytes", len(sector))
	case bytes.Equal(sector[3:11], bitLockerSignature):
		s.BitLocker, s.BitLockerState = true, `encrypted: the boot sector has "-FVE-FS-" at offset 3`
	default:
		s.BitLockerState = fmt.Sprintf("not encrypted (boot sector OEM ID %q)", strings.TrimRight(string(sector[3:11]), " \x00"))
	}
}

func (s *System) readPending(root string, hv hives) {
	cur := s.currentSet()
	for _, v := range []string{"PendingFileRenameOperations", "PendingFileRenameOperations2"} {
		if t, d, ok := hv.system.get(cur+`\Control\Session Manager`, v); ok && t == regf.RegMultiSz && len(utf16Strings(d)) > 0 {
			s.PendingReboot = append(s.PendingReboot, fmt.Sprintf("SYSTEM %s\\Control\\Session Manager\\%s: %d file operations wait for a reboot", cur, v, len(utf16Strings(d))/2))
		}
	}
	for _, k := range []string{`Microsoft\Windows\CurrentVersion\Component Based Servicing\RebootPending`, `Microsoft\Windows\CurrentVersion\WindowsUpdate\Auto Update\RebootRequired`} {
		if hv.software.hasKey(k) {
			s.PendingReboot = append(s.PendingReboot, "SOFTWARE "+k+" exists")
		}
	}
	if _, ok := exists(root, `Windows\WinSxS\pending.xml`); ok {
		s.PendingReboot = append(s.PendingReboot, `Windows\WinSxS\pending.xml: servicing operations wait for a reboot`)
	}
}

// readRestrictions reads the Group Policy device-installation restrictions
// (Policies\Microsoft\Windows\DeviceInstall\Restrictions) that could stop Windows installing
// the new controller's driver at first boot.
func (s *System) readRestrictions(hf *hiveFile) {
	const key = `Policies\Microsoft\Windows\DeviceInstall\Restrictions`
	if !hf.hasKey(key) {
		return
	}
	on := func(name string) bool { v, ok := dword(hf, key, name); return ok && v != 0 }
	list := func(sub string) []string {
		k, err := hf.h.Lookup(key + `\` + sub)
		if err != nil {
			return nil
		}
		vals, _ := k.Values()
		var out []string
		for _, v := range vals {
			if d, err := v.Data(); err == nil && (v.Type() == regf.RegSz || v.Type() == regf.RegExpandSz) {
				out = append(out, regString(d))
			}
		}
		return out
	}
	if on("DenyUnspecified") {
		s.denyAll = true
		s.DeviceInstallRestrictions = append(s.DeviceInstallRestrictions, "DenyUnspecified=1: only devices an Allow policy names may be installed")
	}
	if on("DenyDeviceIDs") {
		s.denyIDs = list("DenyDeviceIDs")
		s.DeviceInstallRestrictions = append(s.DeviceInstallRestrictions, "DenyDeviceIDs=1: "+strings.Join(s.denyIDs, ", "))
	}
	if on("DenyDeviceClasses") {
		s.denyClasses = list("DenyDeviceClasses")
		s.DeviceInstallRestrictions = append(s.DeviceInstallRestrictions, "DenyDeviceClasses=1: "+strings.Join(s.denyClasses, ", "))
	}
	if on("DenyRemovableDevices") {
		s.DeviceInstallRestrictions = append(s.DeviceInstallRestrictions, "DenyRemovableDevices=1")
	}
}

// refusal says why a system must not be edited, or "".
func (s *System) refusal() string {
	switch {
	case s.BitLocker:
		return "the volume is BitLocker-encrypted (boot sector signature -FVE-FS-): its files cannot be read or changed without unlocking it, which this tool does not do"
	case s.Hibernated:
		return "Windows is hibernated or was shut down with Fast Startup: hiberfil.sys holds a memory image (" + s.HiberfilState + ") that Windows will resume, overwriting any change made now and possibly corrupting NTFS; boot Windows and shut it down fully (shutdown /s /t 0, or disable Fast Startup) first"
	}
	return ""
}
