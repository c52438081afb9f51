package kickstart

import (
	"reflect"
	"strings"
	"testing"
)

// roundTrip checks that Format writes what Parse reads back as the same kickstart.
func roundTrip(t *testing.T, ks *Kickstart) {
	t.Helper()
	text := ks.Format()
	again, err := Parse(ks.File, strings.NewReader(text))
	if err != nil {
		t.Fatalf("Format wrote what Parse refuses:\n%s\n%v", text, err)
	}
	a, b := *ks, *again
	clearPos(&a)
	clearPos(&b)
	if !reflect.DeepEqual(&a, &b) {
		t.Fatalf("Format then Parse changed the kickstart:\n%s\n got %#v\nwant %#v", text, &b, &a)
	}
	if text2 := again.Format(); text2 != text {
		t.Fatalf("Format is not stable:\n%s\nthen\n%s", text, text2)
	}
}

func TestFormat(t *testing.T) {
	ks := mustParse(t, designExample)
	want := `repository s3://dr-archive/prod --password-file /run/ks/archive.key --endpoint https://127.0.0.1:9000
machine web01 --generation latest
freeze-replication --release remove
disk disk0 --target /dev/disk/by-id/nvme-SAMSUNG_S64ANS0T --resize proportional --identity keep
inoculate --drivers /run/media/drivers --hardware detect --enable-inbox storahci,stornvme --disable-services vmware
network --bootproto static --ip 10.1.2.3/24 --gateway 10.1.2.1 --hostname web01-dr
target physical
on-success reboot
on-failure shell
`
	if got := ks.Format(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	roundTrip(t, ks)

	full := mustParse(t, `repository "/srv/my archive" --password-env PW
machine '-odd name-' --generation 2026-11-21
freeze-replication --release resume
disk disk0 --target "serial:S N#1" --identity keep
disk disk1 --target size:1000000B-2T --resize grow-last
disk disk2 --target /out/d2.img
ignoredisk --drives sdz,wwn:naa.1
inoculate --drivers '/media/it'"'"'s' --hardware hyperv
network --device 52:54:00:12:34:56 --bootproto dhcp --nameserver 1.1.1.1,9.9.9.9 --activate
network --device eth1 --ip fd00::2/64 --gateway fd00::1 --hostname h.example
on-success shell
on-failure poweroff
confirm --destroy-data-on-targets
report --to usb:/reports
report --to /var/log/cauldron
`)
	roundTrip(t, full)
	if !strings.Contains(full.Format(), "machine '-odd name-' --generation 2026-11-21T23:59:59.999999999Z\n") {
		t.Errorf("machine line:\n%s", full.Format())
	}
	roundTrip(t, mustParse(t, base+"inoculate --skip\n"))
	roundTrip(t, mustParse(t, base+`target vm --hypervisor libvirt --uri qemu+ssh://root@kvm1/system --name 'web01 copy' --cpus 2 --memory 3000M --output-dir /images
disk disk0 --size 10G
disk disk1 --target /images/other.qcow2 --size 1000000000
`))
}
