package linux

import (
	"strings"
	"testing"
)

func TestRenamerTokens(t *testing.T) {
	rn, err := newRenamer([]Rename{
		{FSUUID, rootUUID, "11111111-2222-4333-8444-555555555555"},
		{FSUUID, "ABCD-1234", "BEEF-0001"},
		{PartUUID, lukPART, "99999999-8888-4777-8666-555544443333"},
		{DiskSignature, "1234abcd", "cafe0001"},
		{Device, "/dev/vda1", "/dev/nvme0n1p1"},
		{Device, "/dev/vda", "/dev/nvme0n1"},
		{Device, "/dev/vda2", "/dev/nvme0n1p2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{
		"UUID=" + rootUUID + " / ext4 defaults 0 1":           "UUID=11111111-2222-4333-8444-555555555555 / ext4 defaults 0 1",
		"UUID=" + strings.ToUpper(rootUUID) + " / ext4":       "UUID=11111111-2222-4333-8444-555555555555 / ext4",
		"search --no-floppy --fs-uuid --set=root " + rootUUID: "search --no-floppy --fs-uuid --set=root 11111111-2222-4333-8444-555555555555",
		"ls /dev/disk/by-uuid/" + rootUUID + "/":              "ls /dev/disk/by-uuid/11111111-2222-4333-8444-555555555555/",
		"UUID=abcd-1234 /boot/efi vfat":                       "UUID=BEEF-0001 /boot/efi vfat",
		"vault PARTUUID=" + lukPART + " none luks":            "vault PARTUUID=99999999-8888-4777-8666-555544443333 none luks",
		"PARTUUID=1234ABCD-03 /srv ext4":                      "PARTUUID=cafe0001-03 /srv ext4",
		"root=PARTUUID=1234abcd-01 ro":                        "root=PARTUUID=cafe0001-01 ro",
		"/dev/vda1 / ext4":                                    "/dev/nvme0n1p1 / ext4",
		"/dev/vda10 /data ext4":                               "/dev/vda10 /data ext4", // not /dev/vda1 followed by 0
		"/dev/vda2 none swap":                                 "/dev/nvme0n1p2 none swap",
		"root=/dev/vda1 resume=/dev/vda2":                     "root=/dev/nvme0n1p1 resume=/dev/nvme0n1p2",
		"install_devices=/dev/vda":                            "install_devices=/dev/nvme0n1",
		"/dev/vdab1 /x":                                       "/dev/vdab1 /x",
		"/mnt/dev/vda1 /x":                                    "/mnt/dev/vda1 /x", // another path that ends like a device
		// An identity inside a longer token is something else.
		"$menuentry_id_option 'gnulinux-simple-" + rootUUID + "' {": "$menuentry_id_option 'gnulinux-simple-11111111-2222-4333-8444-555555555555' {",
		"GRUB_DEFAULT=\"gnulinux-advanced-" + rootUUID + ">x\"":     "GRUB_DEFAULT=\"gnulinux-advanced-11111111-2222-4333-8444-555555555555>x\"",
		"LABEL=EFI-abcd-1234":              "LABEL=EFI-abcd-1234", // a short vfat UUID after '-' is part of something else
		"UUID=x" + rootUUID:                "UUID=x" + rootUUID,
		"UUID=" + rootUUID + "0":           "UUID=" + rootUUID + "0",
		"PARTUUID=1234abcd-0300":           "PARTUUID=1234abcd-0300",
		"1234abcd alone is not a PARTUUID": "1234abcd alone is not a PARTUUID",
	} {
		if got := rn.replace(in); got != want {
			t.Errorf("replace(%q)\n  = %q\nwant %q", in, got, want)
		}
	}
}

// A swap (two filesystems that trade UUIDs) and a chain must rename each occurrence once.
func TestRenamerSwapAndChain(t *testing.T) {
	a, b, c := "aaaaaaaa-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002", "cccccccc-0000-4000-8000-000000000003"
	rn, err := newRenamer([]Rename{{FSUUID, a, b}, {FSUUID, b, a}, {Device, "/dev/sda1", "/dev/sdb1"}, {Device, "/dev/sdb1", "/dev/sdc1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := rn.replace("UUID=" + a + " UUID=" + b + " /dev/sda1 /dev/sdb1"); got != "UUID="+b+" UUID="+a+" /dev/sdb1 /dev/sdc1" {
		t.Errorf("swap/chain: %q", got)
	}
	if _, err := newRenamer([]Rename{{FSUUID, a, b}, {FSUUID, strings.ToUpper(a), c}}); err == nil {
		t.Error("one old UUID with two new ones was accepted")
	}
}

func TestRenameValidate(t *testing.T) {
	for _, r := range []Rename{
		{Kind: "label", Old: "a", New: "b"},
		{Kind: Device, Old: "vda1", New: "/dev/nvme0n1p1"},
		{Kind: DiskSignature, Old: "1234", New: "cafe0001"},
		{Kind: FSUUID, Old: "a b", New: "c"},
	} {
		if _, err := newRenamer([]Rename{r}); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}

func TestRewriteLinesKeepsComments(t *testing.T) {
	rn, _ := newRenamer([]Rename{{Device, "/dev/vda1", "/dev/nvme0n1p1"}})
	text := "# / was on /dev/vda1 during installation\n/dev/vda1 / ext4 defaults 0 1\n"
	got, ch := rn.rewriteLines(text)
	if got != "# / was on /dev/vda1 during installation\n/dev/nvme0n1p1 / ext4 defaults 0 1\n" {
		t.Errorf("got %q", got)
	}
	if len(ch) != 1 || ch[0].Line != 2 || ch[0].Old != "/dev/vda1 / ext4 defaults 0 1" || ch[0].New != "/dev/nvme0n1p1 / ext4 defaults 0 1" {
		t.Errorf("changes %+v", ch)
	}
}

func TestIdentityRename(t *testing.T) {
	// The strings partition.LayoutPlan writes into Identity.What.
	r, ok, err := IdentityRename("partition GUID", "5D4C3B2A-0000-4111-8222-333344445555", "5D4C3B2A-0000-4111-8222-333344449999")
	if err != nil || !ok || r.Kind != PartUUID || r.Old != lukPART || r.New != "5d4c3b2a-0000-4111-8222-333344449999" {
		t.Errorf("partition GUID: %+v %v %v", r, ok, err)
	}
	r, ok, err = IdentityRename("disk signature", "1234abcd", "1234abcd")
	if err != nil || ok {
		t.Errorf("a kept signature needs no rename: %+v %v %v", r, ok, err)
	}
	if _, ok, err := IdentityRename("disk GUID", "x", "y"); ok || err != nil {
		t.Errorf("disk GUID: %v %v", ok, err)
	}
	if _, _, err := IdentityRename("volume serial", "x", "y"); err == nil {
		t.Error("unknown identity accepted")
	}
}

func TestDeviceRenames(t *testing.T) {
	rs, err := DeviceRenames("/dev/vda", "/dev/nvme0n1", []int{1, 2, 5})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, r.Old+">"+r.New)
	}
	if strings.Join(got, " ") != "/dev/vda>/dev/nvme0n1 /dev/vda1>/dev/nvme0n1p1 /dev/vda2>/dev/nvme0n1p2 /dev/vda5>/dev/nvme0n1p5" {
		t.Errorf("got %v", got)
	}
	rn, err := newRenamer(rs)
	if err != nil {
		t.Fatal(err)
	}
	if s := rn.replace("/dev/vda1 / ext4 x-systemd.device-timeout=5,x-systemd.requires=/dev/vda"); s != "/dev/nvme0n1p1 / ext4 x-systemd.device-timeout=5,x-systemd.requires=/dev/nvme0n1" {
		t.Errorf("replace: %q", s)
	}
	if rs, err := DeviceRenames("/dev/mmcblk0", "/dev/sda", []int{1}); err != nil || rs[1].Old != "/dev/mmcblk0p1" || rs[1].New != "/dev/sda1" {
		t.Errorf("mmcblk: %+v %v", rs, err)
	}
	if _, err := DeviceRenames("vda", "/dev/sda", []int{1}); err == nil {
		t.Error("a disk name without /dev/ accepted")
	}
	if _, err := DeviceRenames("/dev/vda", "/dev/sda", []int{0}); err == nil {
		t.Error("partition 0 accepted")
	}
}
