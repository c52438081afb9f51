package kickstart

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/partition"
)

// designExample is the example of ../shared/design.md, word for word.
const designExample = `# web01.ks — recover web01 from last night onto this machine's NVMe disk
repository s3://dr-archive/prod --endpoint https://127.0.0.1:9000 --password-file /run/ks/archive.key
machine web01 --generation latest
freeze-replication
disk disk0 --target /dev/disk/by-id/nvme-SAMSUNG_S64ANS0T --resize proportional
inoculate --drivers /run/media/drivers --enable-inbox storahci,stornvme --disable-services vmware
network --hostname web01-dr --ip 10.1.2.3/24 --gateway 10.1.2.1
target physical
on-success reboot
`

func at(line, col int) Pos { return Pos{File: "web01.ks", Line: line, Col: col} }

func TestDesignExample(t *testing.T) {
	ks, err := Parse("web01.ks", strings.NewReader(designExample))
	if err != nil {
		t.Fatal(err)
	}
	want := &Kickstart{
		File: "web01.ks",
		Repository: Repository{Pos: at(2, 1), Location: Location{Kind: LocationS3, Bucket: "dr-archive", Path: "prod"},
			PasswordFile: "/run/ks/archive.key", Endpoint: "https://127.0.0.1:9000"},
		Machine:     Machine{Pos: at(3, 1), Name: "web01", Generation: GenerationRef{Kind: GenerationLatest, Pos: at(3, 28)}},
		Replication: &Replication{Pos: at(4, 1), Release: ReleaseRemove},
		Disks: []Disk{{Pos: at(5, 1), Source: "disk0",
			Target: DiskSelector{By: SelectPath, Value: "/dev/disk/by-id/nvme-SAMSUNG_S64ANS0T"},
			Resize: partition.ResizeProportional, Identity: partition.IdentityKeep}},
		AutoResize:   partition.ResizeProportional,
		AutoIdentity: partition.IdentityKeep,
		Inoculate: Inoculate{Pos: at(6, 1), Drivers: []string{"/run/media/drivers"}, Hardware: HardwareDetect,
			EnableInbox: []string{"storahci", "stornvme"}, DisableServices: []string{"vmware"}},
		Networks: []Network{{Pos: at(7, 1), BootProto: BootProtoStatic, IP: netip.MustParsePrefix("10.1.2.3/24"),
			Gateway: netip.MustParseAddr("10.1.2.1"), Hostname: "web01-dr"}},
		Target:    Target{Pos: at(8, 1), Kind: TargetPhysical},
		OnSuccess: EndAction{Pos: at(9, 1), Action: ActionReboot},
		OnFailure: EndAction{Pos: Pos{File: "web01.ks"}, Action: ActionShell},
	}
	if !reflect.DeepEqual(ks, want) {
		t.Fatalf("got\n%#v\nwant\n%#v", ks, want)
	}
	// The example has no consent line: an unattended run must stop before writing, and say so.
	if err := ks.ConsentError(); !errors.Is(err, ErrNoConsent) || !strings.HasPrefix(err.Error(), "web01.ks: no `confirm --destroy-data-on-targets` line") {
		t.Errorf("ConsentError = %v", err)
	}
	withConsent, err := Parse("web01.ks", strings.NewReader(designExample+"confirm --destroy-data-on-targets\n"))
	if err != nil || withConsent.ConsentError() != nil || withConsent.Confirm.Pos != at(10, 1) {
		t.Errorf("with confirm: %v, %+v", err, withConsent)
	}
}

// clearPos zeroes every Pos in v (a pointer), for comparisons where positions do not matter.
func clearPos(v any) {
	var walk func(r reflect.Value)
	walk = func(r reflect.Value) {
		switch r.Kind() {
		case reflect.Pointer:
			if !r.IsNil() {
				walk(r.Elem())
			}
		case reflect.Struct:
			if r.Type() == reflect.TypeOf(Pos{}) {
				r.Set(reflect.Zero(r.Type()))
				return
			}
			for i := 0; i < r.NumField(); i++ {
				if r.Type().Field(i).IsExported() {
					walk(r.Field(i))
				}
			}
		case reflect.Slice:
			for i := 0; i < r.Len(); i++ {
				walk(r.Index(i))
			}
		}
	}
	walk(reflect.ValueOf(v))
}

const base = "repository /srv/archive\nmachine web01\n"

func mustParse(t *testing.T, src string) *Kickstart {
	t.Helper()
	ks, err := Parse("t.ks", strings.NewReader(src))
	if err != nil {
		t.Fatalf("%s\n%v", src, err)
	}
	return ks
}

// TestCommands covers every command and option with a good value: what each one sets.
func TestCommands(t *testing.T) {
	ts := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, c := range []struct {
		src  string // after base, unless it begins with "repository"
		get  func(*Kickstart) any
		want any
	}{
		// repository
		{"repository /srv/archive/\nmachine m", func(k *Kickstart) any { return k.Repository.Location },
			Location{Kind: LocationPath, Path: "/srv/archive"}},
		{"repository usb:/archive\nmachine m", func(k *Kickstart) any { return k.Repository.Location },
			Location{Kind: LocationUSB, Path: "/archive"}},
		{"repository https://dr.example/repo --insecure-tls\nmachine m", func(k *Kickstart) any { return k.Repository },
			Repository{Location: Location{Kind: LocationHTTP, URL: "https://dr.example/repo"}, InsecureTLS: true}},
		{"repository s3://bucket-1 --endpoint=http://minio:9000\nmachine m", func(k *Kickstart) any { return k.Repository },
			Repository{Location: Location{Kind: LocationS3, Bucket: "bucket-1"}, Endpoint: "http://minio:9000"}},
		{"repository s3://b.c.d/a/b/ --insecure-tls\nmachine m", func(k *Kickstart) any { return k.Repository },
			Repository{Location: Location{Kind: LocationS3, Bucket: "b.c.d", Path: "a/b"}, InsecureTLS: true}},
		{"repository nfs://filer.lan/export/dr\nmachine m", func(k *Kickstart) any { return k.Repository.Location },
			Location{Kind: LocationNFS, URL: "nfs://filer.lan/export/dr"}},
		{"repository smb://10.0.0.5/backup/dr --credentials-file /media/smb.cred\nmachine m", func(k *Kickstart) any { return k.Repository },
			Repository{Location: Location{Kind: LocationSMB, URL: "smb://10.0.0.5/backup/dr"}, CredentialsFile: "/media/smb.cred"}},
		{"repository s3://bkt/p --credentials-file /run/aws\nmachine m", func(k *Kickstart) any { return k.Repository.CredentialsFile }, "/run/aws"},
		{"repository /r --password-file=/run/pw\nmachine m", func(k *Kickstart) any { return k.Repository.PasswordFile }, "/run/pw"},
		{"repository /r --password-env ARCHIVE_PW\nmachine m", func(k *Kickstart) any { return k.Repository.PasswordEnv }, "ARCHIVE_PW"},
		// machine
		{"", func(k *Kickstart) any { return k.Machine }, Machine{Name: "web01", Generation: GenerationRef{Kind: GenerationLatest}}},
		{"repository /r\nmachine 'web 01' --generation LATEST", func(k *Kickstart) any { return k.Machine },
			Machine{Name: "web 01", Generation: GenerationRef{Kind: GenerationLatest}}},
		{"repository /r\nmachine m --generation 3fA9", func(k *Kickstart) any { return k.Machine.Generation },
			GenerationRef{Kind: GenerationID, ID: "3fa9"}},
		{"repository /r\nmachine m --generation 2026-11-21T02:00:00+01:00", func(k *Kickstart) any { return k.Machine.Generation },
			GenerationRef{Kind: GenerationTime, Time: ts("2026-11-21T01:00:00Z")}},
		{"repository /r\nmachine m --generation 2026-11-21T02:00", func(k *Kickstart) any { return k.Machine.Generation },
			GenerationRef{Kind: GenerationTime, Time: ts("2026-11-21T02:00:00Z")}},
		{"repository /r\nmachine m --generation '2026-11-21 02:00:30'", func(k *Kickstart) any { return k.Machine.Generation },
			GenerationRef{Kind: GenerationTime, Time: ts("2026-11-21T02:00:30Z")}},
		{"repository /r\nmachine m --generation 2026-11-21", func(k *Kickstart) any { return k.Machine.Generation },
			GenerationRef{Kind: GenerationTime, Time: ts("2026-11-21T23:59:59.999999999Z")}},
		// freeze-replication
		{"", func(k *Kickstart) any { return k.Replication }, (*Replication)(nil)},
		{"freeze-replication --release resume", func(k *Kickstart) any { return *k.Replication }, Replication{Release: ReleaseResume}},
		{"freeze-replication --release=Remove", func(k *Kickstart) any { return *k.Replication }, Replication{Release: ReleaseRemove}},
		// disk
		{"disk disk1", func(k *Kickstart) any { return k.Disks },
			[]Disk{{Source: "disk1", Resize: partition.ResizeProportional, Identity: partition.IdentityKeep}}},
		{"disk disk0 --target serial:S64ANS0T --resize grow-last --identity renew", func(k *Kickstart) any { return k.Disks[0] },
			Disk{Source: "disk0", Target: DiskSelector{By: SelectSerial, Value: "S64ANS0T"}, Resize: partition.ResizeGrowLast, Identity: partition.IdentityRenew}},
		{"disk disk0 --target wwn:naa.5000c500a1b2c3d4 --resize keep", func(k *Kickstart) any { return k.Disks[0].Target },
			DiskSelector{By: SelectWWN, Value: "naa.5000c500a1b2c3d4"}},
		{"disk disk0 --target size:BIGGEST\ndisk disk1 --target size:smallest", func(k *Kickstart) any { return []DiskSelector{k.Disks[0].Target, k.Disks[1].Target} },
			[]DiskSelector{{By: SelectBiggest}, {By: SelectSmallest}}},
		{"disk disk0 --target size:450G-520GB", func(k *Kickstart) any { return k.Disks[0].Target },
			DiskSelector{By: SelectSize, Min: 450 << 30, Max: 520e9}},
		{"disk disk0 --target /var/tmp/../tmp/out.img", func(k *Kickstart) any { return k.Disks[0].Target },
			DiskSelector{By: SelectPath, Value: "/var/tmp/out.img"}},
		{"disk disk0 --size 1.5T\ntarget vm --output-dir /x", func(k *Kickstart) any { return k.Disks[0].Size }, int64(3 << 39)},
		// freeze-replication --release resume renews identities unless told otherwise.
		{"freeze-replication --release resume\ndisk disk0\ndisk disk1 --identity keep", func(k *Kickstart) any {
			return []partition.IdentityMode{k.AutoIdentity, k.Disks[0].Identity, k.Disks[1].Identity}
		}, []partition.IdentityMode{partition.IdentityRenew, partition.IdentityRenew, partition.IdentityKeep}},
		// ignoredisk
		{"ignoredisk --drives=sdb,/dev/disk/by-id/usb-X,serial:AB1,wwn:eui.1", func(k *Kickstart) any { return k.IgnoreDisk.Drives },
			[]DiskSelector{{By: SelectPath, Value: "/dev/sdb"}, {By: SelectPath, Value: "/dev/disk/by-id/usb-X"},
				{By: SelectSerial, Value: "AB1"}, {By: SelectWWN, Value: "eui.1"}}},
		// inoculate
		{"", func(k *Kickstart) any { return k.Inoculate }, Inoculate{Hardware: HardwareDetect}},
		{"inoculate --skip", func(k *Kickstart) any { return k.Inoculate }, Inoculate{Skip: true, Hardware: HardwareDetect}},
		{"inoculate --drivers /a --drivers=/b/ --hardware VMware-PVSCSI --enable-inbox StorAHCI,pvscsi,storahci --disable-services xen,hyperv,vmware",
			func(k *Kickstart) any { return k.Inoculate },
			Inoculate{Drivers: []string{"/a", "/b"}, Hardware: HardwareVMwarePVSCSI, EnableInbox: []string{"storahci", "pvscsi"},
				DisableServices: []string{"xen", "hyperv", "vmware"}}},
		{"inoculate --hardware kvm-virtio-scsi", func(k *Kickstart) any { return k.Inoculate.Hardware }, HardwareVirtioSCSI},
		// network
		{"network --hostname web01-dr", func(k *Kickstart) any { return k.Networks }, []Network{{Hostname: "web01-dr"}}},
		{"network --device 52-54-00-AB-CD-EF --bootproto dhcp --nameserver 10.0.0.53,10.0.0.54 --nameserver=2001:db8::53 --activate",
			func(k *Kickstart) any { return k.Networks[0] },
			Network{Device: "52:54:00:ab:cd:ef", BootProto: BootProtoDHCP, Activate: true,
				Nameservers: []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("10.0.0.54"), netip.MustParseAddr("2001:db8::53")}}},
		{"network --device enp1s0 --bootproto static --ip 2001:db8::5/64 --gateway 2001:db8::1\nnetwork --device enp2s0 --ip 192.168.9.9/32 --gateway 10.0.0.1",
			func(k *Kickstart) any { return k.Networks },
			[]Network{{Device: "enp1s0", BootProto: BootProtoStatic, IP: netip.MustParsePrefix("2001:db8::5/64"), Gateway: netip.MustParseAddr("2001:db8::1")},
				{Device: "enp2s0", BootProto: BootProtoStatic, IP: netip.MustParsePrefix("192.168.9.9/32"), Gateway: netip.MustParseAddr("10.0.0.1")}}},
		// target
		{"", func(k *Kickstart) any { return k.Target }, Target{Kind: TargetPhysical}},
		{"target PHYSICAL", func(k *Kickstart) any { return k.Target }, Target{Kind: TargetPhysical}},
		{"target vm --output-dir /out", func(k *Kickstart) any { return k.Target },
			Target{Kind: TargetVM, Format: FormatRaw, Name: "web01", OutputDir: "/out"}},
		{"target vm --hypervisor libvirt --uri qemu:///system --name web01-dr --cpus 4 --memory 8G --output-dir /var/lib/libvirt/images",
			func(k *Kickstart) any { return k.Target },
			Target{Kind: TargetVM, Hypervisor: HypervisorLibvirt, URI: "qemu:///system", Format: FormatQCOW2, Name: "web01-dr",
				CPUs: 4, Memory: 8 << 30, OutputDir: "/var/lib/libvirt/images"}},
		{"target vm --hypervisor vsphere --output-dir /out", func(k *Kickstart) any { return k.Target.Format }, FormatVMDK},
		{"target vm --hypervisor libvirt --format raw --output-dir /out", func(k *Kickstart) any { return k.Target.Format }, FormatRaw},
		{"target vm --format vhdx --output-dir /out\ndisk disk0 --target /out/a.vhdx", func(k *Kickstart) any { return k.Target.Format }, FormatVHDX},
		// on-success, on-failure
		{"", func(k *Kickstart) any { return []Action{k.OnSuccess.Action, k.OnFailure.Action} }, []Action{ActionReboot, ActionShell}},
		{"on-success poweroff\non-failure poweroff", func(k *Kickstart) any { return []Action{k.OnSuccess.Action, k.OnFailure.Action} },
			[]Action{ActionPoweroff, ActionPoweroff}},
		{"on-success shell", func(k *Kickstart) any { return k.OnSuccess.Action }, ActionShell},
		// confirm
		{"", func(k *Kickstart) any { return k.Confirm }, (*Confirm)(nil)},
		{"confirm --destroy-data-on-targets", func(k *Kickstart) any { return *k.Confirm }, Confirm{}},
		// report
		{"report --to /mnt/reports\nreport --to=usb:/cauldron", func(k *Kickstart) any { return k.Reports },
			[]Report{{To: Location{Kind: LocationPath, Path: "/mnt/reports"}}, {To: Location{Kind: LocationUSB, Path: "/cauldron"}}}},
	} {
		src := c.src
		if !strings.HasPrefix(src, "repository") {
			src = base + src
		}
		ks := mustParse(t, src)
		clearPos(ks)
		if got := c.get(ks); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s\n got %#v\nwant %#v", src, got, c.want)
		}
	}
}

// TestPositions: each command keeps where it was written, for the engine's messages.
func TestPositions(t *testing.T) {
	ks := mustParse(t, "# x\n\nrepository /r\n  machine m --generation=abcd\ndisk disk0\n\tnetwork --hostname h\nreport --to /x\n")
	for _, c := range []struct {
		got  Pos
		want string
	}{
		{ks.Repository.Pos, "t.ks:3:1"}, {ks.Machine.Pos, "t.ks:4:3"}, {ks.Machine.Generation.Pos, "t.ks:4:26"},
		{ks.Disks[0].Pos, "t.ks:5:1"}, {ks.Networks[0].Pos, "t.ks:6:2"}, {ks.Reports[0].Pos, "t.ks:7:1"},
		{ks.Target.Pos, "t.ks"}, {ks.OnSuccess.Pos, "t.ks"},
	} {
		if c.got.String() != c.want {
			t.Errorf("position %v, want %s", c.got, c.want)
		}
	}
	if ks.Target.Pos.IsValid() || !ks.Disks[0].Pos.IsValid() {
		t.Error("IsValid wrong")
	}
}
