package boot

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseCmdline(t *testing.T) {
	c, err := ParseCmdline(`BOOT_IMAGE=/vmlinuz console=ttyS0,115200 quiet cauldron.ks=http://10.0.2.2:8080/web01.ks ip=dhcp "cauldron.shell"` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Kickstart != "http://10.0.2.2:8080/web01.ks" || !c.Shell || !c.DHCP() || c.Static != nil {
		t.Fatalf("got %+v", c)
	}
	c, err = ParseCmdline("ip=10.1.2.3::10.1.2.1:255.255.255.0:web01-dr:eth1:none")
	if err != nil {
		t.Fatal(err)
	}
	want := &StaticIP{Address: net.IPv4(10, 1, 2, 3).To4(), Mask: net.CIDRMask(24, 32), Gateway: net.IPv4(10, 1, 2, 1).To4(), Hostname: "web01-dr", Device: "eth1"}
	if !reflect.DeepEqual(c.Static, want) || c.DHCP() {
		t.Fatalf("static: got %+v", c.Static)
	}
	c, err = ParseCmdline("ip=10.1.2.3::10.1.2.1:24::eth0:none:10.1.2.53:10.9.9.9")
	if err != nil {
		t.Fatal(err)
	}
	if got := resolvConf(c.Static.DNS); got != "nameserver 10.1.2.53\nnameserver 10.9.9.9\n" || resolvList(c.Static.DNS) != "10.1.2.53,10.9.9.9" {
		t.Fatalf("name servers: %+v → %q", c.Static, got)
	}
	if c, _ := ParseCmdline("ip=10.1.2.3::10.1.2.1:24::eth0:none::10.9.9.9"); len(c.Static.DNS) != 1 || !c.Static.DNS[0].Equal(net.IPv4(10, 9, 9, 9)) {
		t.Fatalf("second name server only: %+v", c.Static)
	}
	if c, _ := ParseCmdline("ip=10.0.0.5:::16"); c.Static == nil || c.Static.Mask.String() != "ffff0000" {
		t.Fatalf("prefix length mask: %+v", c.Static)
	}
	if c, _ := ParseCmdline("quiet cauldron.nonet"); c.DHCP() {
		t.Fatal("cauldron.nonet still asks for DHCP")
	}
	if c, _ := ParseCmdline("ip=off"); c.DHCP() {
		t.Fatal("ip=off asks for DHCP")
	}
	for in, want := range map[string]string{
		"cauldron.ks":                             "cauldron.ks needs a location",
		"cauldron.ks=":                            "cauldron.ks needs a location",
		"cauldron.kickstart=x":                    `unknown option "cauldron.kickstart"`,
		"ip=10.1.2.300::1.2.3.4:24":               `client address "10.1.2.300"`,
		"ip=10.1.2.3::gw:24":                      `gateway "gw"`,
		"ip=10.1.2.3::10.1.2.1:33":                `netmask "33"`,
		"ip=10.1.2.3::10.1.2.1:255.0.255.0":       `netmask "255.0.255.0" is not contiguous`,
		"ip=10.1.2.3":                             "want dhcp or CLIENT",
		"ip=10.1.2.3::10.1.2.1:24::eth0:none:dns": `name server "dns"`,
	} {
		_, err := ParseCmdline(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want error containing %q", in, err, want)
		}
	}
}

func TestGlobMatch(t *testing.T) {
	for _, c := range []struct {
		pattern, s string
		want       bool
	}{
		{"pci:v00001AF4d00001001sv*sd*bc*sc*i*", "pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", true},
		{"pci:v00001AF4d00001001sv*sd*bc*sc*i*", "pci:v00001AF4d00001000sv00001AF4sd00000002bc01sc00i00", false},
		{"pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01", true},
		{"usb:v*p*d*dc*dsc*dp*ic08isc06ip50in*", "usb:v46F4p0001d0000dc00dsc00dp00ic08isc06ip50in00", true},
		{"scsi:t-0x00*", "scsi:t-0x00", true},
		{"scsi:t-0x0[0-5]*", "scsi:t-0x05", true},
		{"scsi:t-0x0[!0-5]*", "scsi:t-0x05", false},
		{"scsi:t-0x0[^0-5]", "scsi:t-0x07", true},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"a*/b", "a/x/b", true}, // unlike path.Match, * crosses slashes
		{"a[b", "a[b", true},    // an unterminated set is literal
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"[]]x", "]x", true},
	} {
		if got := globMatch(c.pattern, c.s); got != c.want {
			t.Errorf("globMatch(%q, %q) = %v, want %v", c.pattern, c.s, got, c.want)
		}
	}
}

func TestAliasTable(t *testing.T) {
	tab, err := ParseAliases(strings.NewReader(`# Aliases extracted from modules themselves.
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias pci:v*d*sv*sd*bc01sc06i01* ahci
alias pci:v00008086d00002922sv*sd*bc*sc*i* ahci
alias scsi:t-0x00* sd_mod
alias scsi:t-0x05* sr_mod
`))
	if err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 5 {
		t.Fatalf("Len %d", tab.Len())
	}
	if got := tab.Modules("pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01"); !reflect.DeepEqual(got, []string{"ahci"}) {
		t.Fatalf("ahci: %v", got)
	}
	if got := tab.Modules("scsi:t-0x05"); !reflect.DeepEqual(got, []string{"sr_mod"}) {
		t.Fatalf("sr: %v", got)
	}
	if got := tab.Modules("platform:serial8250"); got != nil {
		t.Fatalf("nothing should match: %v", got)
	}
	_, err = ParseAliases(strings.NewReader("alias onlytwo\n"))
	if err == nil || !strings.Contains(err.Error(), "modules.alias:1:") {
		t.Fatalf("bad line: %v", err)
	}
}

// fakeSysfs builds the parts of /sys that ListDisks and ListNICs read, with the real layout's
// symlinks from /sys/block and /sys/class/net into /sys/devices.
func fakeSysfs(t *testing.T) string {
	root := t.TempDir()
	write := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	link := func(target, name string) {
		t.Helper()
		os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755)
		if err := os.Symlink(filepath.Join(root, target), filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	drv := func(dev, name string) { link("bus/pci/drivers/"+name, dev+"/driver") }
	os.MkdirAll(filepath.Join(root, "bus/pci/drivers"), 0o755)
	for _, d := range []string{"ahci", "nvme", "virtio-pci", "virtio_blk", "sd", "sr", "xhci_hcd", "usb-storage", "virtio_net", "virtio_scsi"} {
		os.MkdirAll(filepath.Join(root, "bus/pci/drivers", d), 0o755)
	}
	// SATA disk behind AHCI, serial in VPD page 0x80.
	sata := "devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0"
	write(sata+"/block/sda/size", "20971520\n")
	write(sata+"/block/sda/removable", "0\n")
	write(sata+"/vendor", "ATA     \n")
	write(sata+"/model", "QEMU HARDDISK   \n")
	write(sata+"/vpd_pg80", "\x00\x80\x00\x08CLDSATA0")
	link(sata, sata+"/block/sda/device")
	drv(sata, "sd")
	drv("devices/pci0000:00/0000:00:1f.2", "ahci")
	link(sata+"/block/sda", "block/sda")
	// NVMe namespace.
	nv := "devices/pci0000:00/0000:00:05.0/nvme/nvme0"
	write(nv+"/nvme0n1/size", "2097152\n")
	write(nv+"/model", "QEMU NVMe Ctrl\n")
	write(nv+"/serial", "CLDNVME0    \n")
	write(nv+"/nvme0n1/wwid", "nvme.1b36-434c444e564d4530\n")
	link(nv, nv+"/nvme0n1/device")
	drv("devices/pci0000:00/0000:00:05.0", "nvme")
	link(nv+"/nvme0n1", "block/nvme0n1")
	// virtio-blk with its serial attribute on the block device.
	vd := "devices/pci0000:00/0000:00:04.0/virtio1"
	write(vd+"/block/vda/size", "1024\n")
	write(vd+"/block/vda/serial", "CLDVIRT0\n")
	drv(vd, "virtio_blk")
	drv("devices/pci0000:00/0000:00:04.0", "virtio-pci")
	link(vd+"/block/vda", "block/vda")
	// A USB stick behind usb-storage, removable.
	usb := "devices/pci0000:00/0000:00:06.0/usb1/1-1/1-1:1.0/host2/target2:0:0/2:0:0:0"
	write(usb+"/block/sdb/size", "131072\n")
	write(usb+"/block/sdb/removable", "1\n")
	write(usb+"/model", "QEMU HARDDISK\n")
	write(usb+"/vpd_pg80", "\x00\x80\x00\x041-00")
	link(usb, usb+"/block/sdb/device")
	drv(usb, "sd")
	drv("devices/pci0000:00/0000:00:06.0/usb1/1-1/1-1:1.0", "usb-storage")
	link(usb+"/block/sdb", "block/sdb")
	// An optical drive, and devices that are not disks.
	sr := "devices/pci0000:00/0000:00:1f.2/ata2/host1/target1:0:0/1:0:0:0"
	write(sr+"/block/sr0/size", "0\n")
	write(sr+"/model", "QEMU DVD-ROM\n")
	link(sr, sr+"/block/sr0/device")
	link(sr+"/block/sr0", "block/sr0")
	write("devices/virtual/block/loop0/size", "0\n")
	link("devices/virtual/block/loop0", "block/loop0")
	// NICs: one with a device and carrier, lo without a device.
	eth := "devices/pci0000:00/0000:00:03.0/virtio0/net/eth0"
	write(eth+"/address", "52:54:00:12:34:56\n")
	write(eth+"/carrier", "1\n")
	write(eth+"/speed", "-1\n")
	link("devices/pci0000:00/0000:00:03.0/virtio0", eth+"/device")
	drv("devices/pci0000:00/0000:00:03.0/virtio0", "virtio_net")
	link(eth, "class/net/eth0")
	write("devices/virtual/net/lo/address", "00:00:00:00:00:00\n")
	link("devices/virtual/net/lo", "class/net/lo")
	return root
}

func TestListDisks(t *testing.T) {
	disks, err := ListDisks(fakeSysfs(t))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, d := range disks {
		lines = append(lines, d.Line())
	}
	want := []string{
		"cauldron: disk nvme0n1 1.0GiB QEMU NVMe Ctrl serial=CLDNVME0 bus=nvme driver=nvme",
		"cauldron: disk sda 10.0GiB ATA QEMU HARDDISK serial=CLDSATA0 bus=sata driver=ahci",
		"cauldron: disk sdb 64.0MiB QEMU HARDDISK serial=1-00 bus=usb driver=usb-storage removable",
		"cauldron: cdrom sr0 QEMU DVD-ROM bus=sata driver=ahci",
		"cauldron: disk vda 512.0KiB VirtIO block device serial=CLDVIRT0 bus=virtio driver=virtio_blk",
	}
	if !reflect.DeepEqual(lines, want) {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if disks[0].WWN != "nvme.1b36-434c444e564d4530" {
		t.Fatalf("WWN %q", disks[0].WWN)
	}
}

func TestListNICs(t *testing.T) {
	nics, err := ListNICs(fakeSysfs(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(nics) != 1 || nics[0].Line() != "cauldron: nic eth0 52:54:00:12:34:56 link=up driver=virtio_net" {
		t.Fatalf("got %+v", nics)
	}
}

func TestParseUevent(t *testing.T) {
	ev := parseUevent([]byte("add@/devices/pci0000:00/0000:00:04.0\x00ACTION=add\x00DEVPATH=/devices/pci0000:00/0000:00:04.0\x00MODALIAS=pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00\x00SEQNUM=812\x00"))
	if ev["ACTION"] != "add" || !strings.HasPrefix(ev["MODALIAS"], "pci:v00001AF4") || ev["SEQNUM"] != "812" {
		t.Fatalf("got %v", ev)
	}
}

// TestHardwareEvent: Settle waits for devices on buses, not for what the boot program itself
// causes (module loads, the /usr image's loop devices, device-mapper).
func TestHardwareEvent(t *testing.T) {
	for devpath, want := range map[string]bool{
		"/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda": true,
		"/devices/pci0000:00/0000:00:04.0/usb2/2-1":                                 true,
		"/devices/platform/serial8250/tty/ttyS1":                                    true,
		"/devices/virtual/block/loop0":                                              false,
		"/devices/virtual/block/dm-0":                                               false,
		"/module/squashfs":                                                          false,
		"/bus/pci/drivers/ahci":                                                     false,
		"":                                                                          false,
	} {
		if got := hardwareEvent(devpath); got != want {
			t.Errorf("hardwareEvent(%q) = %v, want %v", devpath, got, want)
		}
	}
}

// TestRemovableDisk: USB disks, and disks the kernel flags removable with their partitions, get
// their filesystem driver early; internal disks (an eMMC, a SATA disk) do not.
func TestRemovableDisk(t *testing.T) {
	sys := t.TempDir()
	flag := func(devpath, v string) {
		dir := filepath.Join(sys, devpath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if v != "" {
			os.WriteFile(filepath.Join(dir, "removable"), []byte(v+"\n"), 0o644)
		}
	}
	flag("/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda", "0")
	flag("/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1", "")
	flag("/devices/pci0000:00/0000:00:1e.0/mmc_host/mmc0/mmc0:0001/block/mmcblk0", "0")
	flag("/devices/pci0000:00/0000:00:1e.0/mmc_host/mmc0/mmc0:0001/block/mmcblk0/mmcblk0p1", "")
	flag("/devices/pci0000:00/0000:00:1e.6/mmc_host/mmc1/mmc1:aaaa/block/mmcblk1", "1")
	flag("/devices/pci0000:00/0000:00:1e.6/mmc_host/mmc1/mmc1:aaaa/block/mmcblk1/mmcblk1p1", "")
	for devpath, want := range map[string]bool{
		"/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sdb":      true,
		"/devices/pci0000:00/0000:00:14.0/usb2/2-1/2-1:1.0/host4/target4:0:0/4:0:0:0/block/sdb/sdb1": true,
		"/devices/pci0000:00/0000:00:1e.6/mmc_host/mmc1/mmc1:aaaa/block/mmcblk1":                     true,
		"/devices/pci0000:00/0000:00:1e.6/mmc_host/mmc1/mmc1:aaaa/block/mmcblk1/mmcblk1p1":           true,
		"/devices/pci0000:00/0000:00:1e.0/mmc_host/mmc0/mmc0:0001/block/mmcblk0":                     false,
		"/devices/pci0000:00/0000:00:1e.0/mmc_host/mmc0/mmc0:0001/block/mmcblk0/mmcblk0p1":           false,
		"/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda":                  false,
		"/devices/pci0000:00/0000:00:1f.2/ata1/host0/target0:0:0/0:0:0:0/block/sda/sda1":             false,
		"/devices/virtual/block/loop0": false,
	} {
		if got := removableDisk(sys, devpath); got != want {
			t.Errorf("removableDisk(%s) = %v, want %v", devpath, got, want)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 10 << 30: "10.0GiB", 1536 << 20: "1.5GiB"} {
		if got := HumanSize(n); got != want {
			t.Errorf("HumanSize(%d) = %s, want %s", n, got, want)
		}
	}
}

// The kernel command line comes from a PXE config or a boot menu someone edited; modules.alias
// from the image. Neither may crash the program that must never die.
func FuzzParseCmdline(f *testing.F) {
	f.Add(`console=ttyS0 cauldron.ks=cdrom:/a.ks ip=10.0.0.2::10.0.0.1:255.255.255.0:h:eth0:none "x y"`)
	f.Add("ip=1.2.3.4:::8")
	f.Add("ip=10.0.2.50::10.0.2.2:24:dr:eth0:none:10.0.2.3:10.0.2.4")
	f.Fuzz(func(t *testing.T, s string) { ParseCmdline(s) })
}

func FuzzGlobMatch(f *testing.F) {
	f.Add("pci:v*d*sv*sd*bc01sc06i01*", "pci:v00008086d00002922sv00001AF4sd00001100bc01sc06i01")
	f.Add("a[!b-", "a[!b-")
	f.Fuzz(func(t *testing.T, p, s string) {
		if globMatch(p, s) && !strings.ContainsAny(p, "*?[") && p != s {
			t.Fatalf("literal pattern %q matched %q", p, s)
		}
	})
}
