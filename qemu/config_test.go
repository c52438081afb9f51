package qemu

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// files makes empty files in a temporary folder and returns their paths by name.
func files(t *testing.T, names ...string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	m := map[string]string{"dir": dir}
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		m[n] = p
	}
	return m
}

// build runs a Config through defaults, validation and command-line construction the way Start
// does, with fixed runtime paths.
func build(t *testing.T, c Config, rt runtimePaths) ([]string, error) {
	t.Helper()
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if rt.Disks == nil {
		for i, d := range c.Disks {
			p := d.Path
			if p == "" {
				p = filepath.Join("/vm", "disk"+string(rune('0'+i))+".img")
			}
			rt.Disks = append(rt.Disks, p)
		}
	}
	return c.cmdline(rt)
}

// pairs returns the values following each occurrence of flag.
func pairs(args []string, flag string) []string {
	var v []string
	for i := 0; i+1 < len(args); i++ {
		if args[i] == flag {
			v = append(v, args[i+1])
		}
	}
	return v
}

func mustContain(t *testing.T, list []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(list, w) {
			t.Errorf("missing %q in\n  %s", w, strings.Join(list, "\n  "))
		}
	}
}

func TestCmdlineKernelBIOS(t *testing.T) {
	t.Setenv("CAULDRON_QEMU_KVM", "")
	f := files(t, "vmlinuz", "initrd.img")
	args, err := build(t, Config{Name: "k", Kernel: f["vmlinuz"], Initrd: f["initrd.img"], Append: "console=ttyS0 quiet"}, runtimePaths{QMP: "/vm/qmp.sock"})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-machine"), "pc")
	mustContain(t, pairs(args, "-accel"), "tcg")
	mustContain(t, pairs(args, "-kernel"), f["vmlinuz"])
	mustContain(t, pairs(args, "-initrd"), f["initrd.img"])
	mustContain(t, pairs(args, "-append"), "console=ttyS0 quiet")
	mustContain(t, pairs(args, "-serial"), "stdio")
	mustContain(t, pairs(args, "-m"), "1024")
	mustContain(t, pairs(args, "-qmp"), "unix:/vm/qmp.sock,server=on,wait=off")
	mustContain(t, args, "-no-reboot", "-nodefaults")
	if fl := pairs(args, "-drive"); len(fl) != 0 {
		t.Errorf("BIOS kernel boot has drives: %q", fl)
	}
	// One NIC by default, with no option ROM since it does not boot.
	mustContain(t, pairs(args, "-netdev"), "user,id=net0")
	mustContain(t, pairs(args, "-device"), "virtio-net-pci,netdev=net0,romfile=")
}

func TestCmdlineCPUModel(t *testing.T) {
	t.Setenv("CAULDRON_QEMU_KVM", "")
	t.Setenv("CAULDRON_QEMU_CPU", "")
	f := files(t, "vmlinuz")
	args, err := build(t, Config{Kernel: f["vmlinuz"]}, runtimePaths{QMP: "/q"})
	if err != nil {
		t.Fatal(err)
	}
	if c := pairs(args, "-cpu"); len(c) != 0 {
		t.Errorf("-cpu without asking: %q", c)
	}
	t.Setenv("CAULDRON_QEMU_CPU", "qemu64,+rdrand")
	if args, err = build(t, Config{Kernel: f["vmlinuz"]}, runtimePaths{QMP: "/q"}); err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-cpu"), "qemu64,+rdrand")
	if args, err = build(t, Config{Kernel: f["vmlinuz"], CPU: "max"}, runtimePaths{QMP: "/q"}); err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-cpu"), "max")
}

func TestCmdlineKVMOnlyWhenAsked(t *testing.T) {
	f := files(t, "vmlinuz")
	t.Setenv("CAULDRON_QEMU_KVM", "1")
	args, err := build(t, Config{Kernel: f["vmlinuz"]}, runtimePaths{})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-accel"), "kvm")
}

func TestCmdlineUEFICDROM(t *testing.T) {
	t.Setenv("CAULDRON_QEMU_KVM", "")
	f := files(t, "cauldron.iso")
	rt := runtimePaths{Firmware: FirmwareFiles{Code: "/fw/CODE.fd", Vars: "/vm/VARS.fd"}}
	args, err := build(t, Config{Firmware: UEFI, CDROM: f["cauldron.iso"], MemoryMiB: 2048, CPUs: 2}, rt)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-machine"), "q35")
	mustContain(t, pairs(args, "-drive"),
		"if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd",
		"if=pflash,format=raw,unit=1,file=/vm/VARS.fd",
		"if=none,id=cd0,media=cdrom,readonly=on,file="+f["cauldron.iso"])
	mustContain(t, pairs(args, "-device"), "ide-cd,bus=ide.2,drive=cd0,bootindex=0")
	mustContain(t, pairs(args, "-m"), "2048")
	mustContain(t, pairs(args, "-smp"), "2")
	if slices.Contains(args, "driver=cfi.pflash01,property=secure,value=on") {
		t.Error("plain UEFI got the Secure Boot flash property")
	}
	// Without UEFI firmware files the command line cannot be built.
	if _, err := build(t, Config{Firmware: UEFI, CDROM: f["cauldron.iso"]}, runtimePaths{}); err == nil {
		t.Error("UEFI without firmware files accepted")
	}
}

func TestCmdlineSecureBoot(t *testing.T) {
	f := files(t, "cauldron.iso")
	rt := runtimePaths{Firmware: FirmwareFiles{Code: "/fw/CODE.secboot.fd", Vars: "/vm/VARS.fd"}}
	args, err := build(t, Config{Firmware: SecureBoot, CDROM: f["cauldron.iso"]}, rt)
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-machine"), "q35,smm=on")
	mustContain(t, pairs(args, "-global"), "driver=cfi.pflash01,property=secure,value=on", "ICH9-LPC.disable_s3=1")
	if _, err := build(t, Config{Firmware: SecureBoot, Machine: "pc", CDROM: f["cauldron.iso"]}, rt); !errors.Is(err, ErrConfig) {
		t.Errorf("Secure Boot on pc: %v", err)
	}
}

func TestCmdlineBIOSCDROMOnPIIX(t *testing.T) {
	f := files(t, "cauldron.iso")
	args, err := build(t, Config{CDROM: f["cauldron.iso"], Disks: []Disk{{Bus: IDE, Size: 1 << 20, Serial: "I1"}}}, runtimePaths{})
	if err != nil {
		t.Fatal(err)
	}
	devs := pairs(args, "-device")
	mustContain(t, devs, "ide-cd,bus=ide.1,unit=0,drive=cd0,bootindex=0", "ide-hd,bus=ide.0,unit=0,drive=disk0,serial=I1")
	if slices.ContainsFunc(devs, func(s string) bool { return strings.HasPrefix(s, "piix3-ide") }) {
		t.Error("pc got a second IDE controller")
	}
}

func TestCmdlineEveryBus(t *testing.T) {
	f := files(t, "cauldron.iso", "existing.qcow2")
	var disks []Disk
	for _, b := range Buses {
		disks = append(disks, Disk{Bus: b, Size: 64 << 20, Serial: "S-" + string(b)})
	}
	disks = append(disks,
		Disk{Bus: SATA, Path: f["existing.qcow2"], Format: "qcow2", Serial: "S-sata2", ReadOnly: true},
		Disk{Bus: SCSI, Size: 1 << 20, Serial: "S-scsi2", Snapshot: true})
	c := Config{Firmware: UEFI, CDROM: f["cauldron.iso"], Disks: disks}
	rt := runtimePaths{Firmware: FirmwareFiles{Code: "/c", Vars: "/v"}}
	args, err := build(t, c, rt)
	if err != nil {
		t.Fatal(err)
	}
	devs := pairs(args, "-device")
	mustContain(t, devs,
		"ich9-ahci,id=sata0", "virtio-scsi-pci,id=scsi0", "megasas,id=megasas0", "lsi53c895a,id=lsi0",
		"piix3-ide,id=pide", "qemu-xhci,id=xhci0,p2=8,p3=8",
		"virtio-blk-pci,drive=disk0,serial=S-virtio",
		"ide-hd,bus=sata0.0,drive=disk1,serial=S-sata",
		"nvme,drive=disk2,serial=S-nvme",
		"scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=0,drive=disk3,serial=S-scsi",
		"scsi-hd,bus=megasas0.0,scsi-id=0,drive=disk4,serial=S-megasas",
		"scsi-hd,bus=lsi0.0,scsi-id=0,drive=disk5,serial=S-lsi",
		"ide-hd,bus=pide.0,unit=0,drive=disk6,serial=S-ide",
		"usb-storage,bus=xhci0.0,drive=disk7,serial=S-usb",
		"ide-hd,bus=sata0.1,drive=disk8,serial=S-sata2",
		"scsi-hd,bus=scsi0.0,channel=0,scsi-id=0,lun=1,drive=disk9,serial=S-scsi2")
	drives := pairs(args, "-drive")
	mustContain(t, drives,
		"if=none,id=disk0,format=raw,file=/vm/disk0.img",
		"if=none,id=disk8,format=qcow2,file="+f["existing.qcow2"]+",readonly=on")
	if !slices.ContainsFunc(drives, func(s string) bool {
		return strings.HasPrefix(s, "if=none,id=disk9,") && strings.HasSuffix(s, ",snapshot=on")
	}) {
		t.Errorf("no snapshot drive in %q", drives)
	}
	// Controllers come before the disks that sit on them.
	ahci := slices.Index(args, "ich9-ahci,id=sata0")
	disk := slices.Index(args, "ide-hd,bus=sata0.0,drive=disk1,serial=S-sata")
	if ahci < 0 || disk < ahci {
		t.Errorf("AHCI at %d, its disk at %d", ahci, disk)
	}
}

func TestCmdlineUSBBoot(t *testing.T) {
	f := files(t, "stick.img")
	args, err := build(t, Config{USB: f["stick.img"], Disks: []Disk{{Size: 1 << 20}}}, runtimePaths{})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-device"), "usb-storage,bus=xhci0.0,drive=disk0,serial=CAULDRON-USB,bootindex=0")
	mustContain(t, pairs(args, "-drive"), "if=none,id=disk0,format=raw,file="+f["stick.img"]+",snapshot=on")
	// The extra disk got a made-up serial that differs from the stick's.
	if !slices.ContainsFunc(pairs(args, "-device"), func(s string) bool { return strings.HasPrefix(s, "virtio-blk-pci,drive=disk1,serial=QM-virtio-") }) {
		t.Errorf("extra disk: %q", pairs(args, "-device"))
	}
}

func TestCmdlinePXE(t *testing.T) {
	f := files(t, "pxe/boot.ipxe")
	pxeDir := filepath.Dir(f["pxe/boot.ipxe"])
	args, err := build(t, Config{PXE: &PXE{Dir: pxeDir, BootFile: "boot.ipxe"}, NICs: []NIC{{}, {Model: "e1000", MAC: "52:54:00:12:34:56"}}}, runtimePaths{})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-netdev"), "user,id=net0,tftp="+pxeDir+",bootfile=boot.ipxe", "user,id=net1")
	mustContain(t, pairs(args, "-device"), "virtio-net-pci,netdev=net0,bootindex=0", "e1000,netdev=net1,mac=52:54:00:12:34:56,romfile=")

	args, err = build(t, Config{PXE: &PXE{Dir: pxeDir, BootFile: "boot.ipxe", HTTP: true}}, runtimePaths{HTTPPort: 8123})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-netdev"), "user,id=net0,bootfile=http://10.0.2.2:8123/boot.ipxe")
}

func TestCmdlineForwardsBindLoopback(t *testing.T) {
	f := files(t, "vmlinuz")
	c := Config{Kernel: f["vmlinuz"], NICs: []NIC{{Model: "e1000", Forwards: []Forward{{GuestPort: 22, HostPort: 2222}, {GuestPort: 80}}}}}
	args, err := build(t, c, runtimePaths{HostPorts: map[[2]int]int{{0, 80}: 40080}})
	if err != nil {
		t.Fatal(err)
	}
	mustContain(t, pairs(args, "-netdev"), "user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22,hostfwd=tcp:127.0.0.1:40080-:80")
	if _, err := build(t, c, runtimePaths{}); err == nil {
		t.Error("a forward without a chosen host port was accepted")
	}
}

func TestCmdlineNoNetworkAndExtras(t *testing.T) {
	f := files(t, "vmlinuz")
	args, err := build(t, Config{Kernel: f["vmlinuz"], NoNetwork: true, AllowReboot: true, VGA: "none", ExtraArgs: []string{"-rtc", "base=utc"}}, runtimePaths{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs(args, "-netdev")) != 0 || slices.Contains(args, "-no-reboot") {
		t.Errorf("args %q", args)
	}
	mustContain(t, pairs(args, "-vga"), "none")
	if !slices.Equal(args[len(args)-2:], []string{"-rtc", "base=utc"}) {
		t.Errorf("extra args not last: %q", args)
	}
}

func TestConfigErrors(t *testing.T) {
	f := files(t, "vmlinuz", "a.iso", "pxe/boot.ipxe", "d.img")
	pxeDir := filepath.Dir(f["pxe/boot.ipxe"])
	cases := []struct {
		name string
		c    Config
		want string
	}{
		{"no boot source", Config{}, "no boot source"},
		{"two boot sources", Config{Kernel: f["vmlinuz"], CDROM: f["a.iso"]}, "more than one boot source (Kernel, CDROM)"},
		{"usb and disk boot", Config{USB: f["d.img"], Disks: []Disk{{Path: f["d.img"], Boot: true, Serial: "X"}}}, "(USB, a Disk with Boot)"},
		{"append without kernel", Config{CDROM: f["a.iso"], Append: "quiet"}, "need Kernel"},
		{"missing kernel", Config{Kernel: f["dir"] + "/nope"}, "no such file"},
		{"kernel is a folder", Config{Kernel: f["dir"]}, "not a regular file"},
		{"bad bus", Config{Kernel: f["vmlinuz"], Disks: []Disk{{Bus: "floppy", Size: 1}}}, `unknown bus "floppy"`},
		{"long serial", Config{Kernel: f["vmlinuz"], Disks: []Disk{{Size: 1, Serial: strings.Repeat("x", 21)}}}, "1 to 20"},
		{"serial with space", Config{Kernel: f["vmlinuz"], Disks: []Disk{{Size: 1, Serial: "a b"}}}, "1 to 20"},
		{"duplicate serial", Config{Kernel: f["vmlinuz"], Disks: []Disk{{Size: 1, Serial: "A"}, {Bus: NVMe, Size: 1, Serial: "A"}}}, "same serial"},
		{"no size", Config{Kernel: f["vmlinuz"], Disks: []Disk{{}}}, "Size above 0"},
		{"new qcow2", Config{Kernel: f["vmlinuz"], Disks: []Disk{{Size: 1, Format: "qcow2"}}}, "always raw"},
		{"bad format", Config{Kernel: f["vmlinuz"], Disks: []Disk{{Path: f["d.img"], Format: "vmdk"}}}, "raw or qcow2"},
		{"too many SATA", Config{Kernel: f["vmlinuz"], Disks: slices.Repeat([]Disk{{Bus: SATA, Size: 1}}, 7)}, "more than 6 disks on bus sata"},
		{"too many IDE with CD", Config{CDROM: f["a.iso"], Disks: slices.Repeat([]Disk{{Bus: IDE, Size: 1}}, 4)}, "room for 3"},
		{"pxe without nic", Config{PXE: &PXE{Dir: pxeDir, BootFile: "boot.ipxe"}, NoNetwork: true}, "needs a NIC"},
		{"nics and no network", Config{Kernel: f["vmlinuz"], NoNetwork: true, NICs: []NIC{{}}}, "choose one"},
		{"pxe missing file", Config{PXE: &PXE{Dir: pxeDir, BootFile: "nope.ipxe"}}, "no such file"},
		{"pxe escaping file", Config{PXE: &PXE{Dir: pxeDir, BootFile: "../boot.ipxe"}}, "relative path"},
		{"bad nic", Config{Kernel: f["vmlinuz"], NICs: []NIC{{Model: "ne2k_isa"}}}, `model "ne2k_isa"`},
		{"bad mac", Config{Kernel: f["vmlinuz"], NICs: []NIC{{MAC: "52-54-00-12-34-56"}}}, "MAC"},
		{"bad forward", Config{Kernel: f["vmlinuz"], NICs: []NIC{{Forwards: []Forward{{GuestPort: 0}}}}}, "ports are 1 to 65535"},
		{"little memory", Config{Kernel: f["vmlinuz"], MemoryMiB: 64}, "at least 128"},
		{"bad name", Config{Name: "a/b", Kernel: f["vmlinuz"]}, "name"},
		{"ro snapshot", Config{Kernel: f["vmlinuz"], Disks: []Disk{{Path: f["d.img"], ReadOnly: true, Snapshot: true}}}, "choose one"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.c.withDefaults()
			err := c.validate()
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one with %q", err, tc.want)
			}
		})
	}
}

func TestFindFirmwareEnvOverride(t *testing.T) {
	f := files(t, "CODE.fd", "VARS.fd")
	t.Setenv("CAULDRON_OVMF_CODE", f["CODE.fd"])
	t.Setenv("CAULDRON_OVMF_VARS", f["VARS.fd"])
	ff, err := FindFirmware(UEFI)
	if err != nil || ff.Code != f["CODE.fd"] || ff.Vars != f["VARS.fd"] {
		t.Fatalf("%+v %v", ff, err)
	}
	t.Setenv("CAULDRON_OVMF_VARS", f["dir"]+"/missing.fd")
	if _, err := FindFirmware(UEFI); !errors.Is(err, ErrMissing) {
		t.Fatalf("err %v, want ErrMissing", err)
	}
	if ff, err := FindFirmware(BIOS); err != nil || ff != (FirmwareFiles{}) {
		t.Fatalf("BIOS: %+v %v", ff, err)
	}
}

func TestCmdlineQuoted(t *testing.T) {
	v := &VM{args: []string{"qemu-system-x86_64", "-append", "console=ttyS0 quiet", "-name", "a", "-x", "it's"}}
	want := `qemu-system-x86_64 -append 'console=ttyS0 quiet' -name a -x 'it'\''s'`
	if got := v.CmdlineQuoted(); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

func TestSanitizeName(t *testing.T) {
	if got := sanitizeName("TestBoot/UEFI CD#01"); got != "TestBoot_UEFI_CD_01" {
		t.Fatal(got)
	}
}

func TestHTTPServerOnLoopback(t *testing.T) {
	f := files(t, "pxe/boot.ipxe")
	if err := os.WriteFile(f["pxe/boot.ipxe"], []byte("#!ipxe\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := &VM{}
	if v.GuestURL("x") != "" {
		t.Fatal("GuestURL without a server")
	}
	if err := v.serveHTTP(filepath.Dir(f["pxe/boot.ipxe"])); err != nil {
		t.Fatal(err)
	}
	defer v.cleanupFiles(false)
	if want := fmt.Sprintf("http://10.0.2.2:%d/boot.ipxe", v.httpPort); v.GuestURL("/boot.ipxe") != want {
		t.Fatalf("GuestURL %q, want %q", v.GuestURL("/boot.ipxe"), want)
	}
	for _, p := range []string{"boot.ipxe", "missing"} {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/%s", v.httpPort, p))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if p == "boot.ipxe" && string(body) != "#!ipxe\n" {
			t.Fatalf("body %q", body)
		}
	}
	if got := strings.Join(v.HTTPRequests(), "; "); got != "GET /boot.ipxe 200; GET /missing 404" {
		t.Fatalf("requests %q", got)
	}
}

func TestCmdlineBootDisk(t *testing.T) {
	f := files(t, "system.qcow2")
	args, err := build(t, Config{Firmware: UEFI, Disks: []Disk{
		{Bus: SATA, Size: 1 << 20, Serial: "DATA"},
		{Bus: NVMe, Path: f["system.qcow2"], Format: "qcow2", Serial: "SYSTEM", Boot: true},
	}}, runtimePaths{Firmware: FirmwareFiles{Code: "/c", Vars: "/v"}})
	if err != nil {
		t.Fatal(err)
	}
	devs := pairs(args, "-device")
	mustContain(t, devs, "nvme,drive=disk1,serial=SYSTEM,bootindex=0", "ide-hd,bus=sata0.0,drive=disk0,serial=DATA")
	if n := strings.Count(strings.Join(args, " "), "bootindex="); n != 1 {
		t.Errorf("%d devices with a bootindex, want 1", n)
	}
}
