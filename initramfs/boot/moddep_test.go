package boot

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseModuleDeps(t *testing.T) {
	d, err := ParseModuleDeps(strings.NewReader(`kernel/drivers/ata/ata_piix.ko.zst: kernel/drivers/ata/libata.ko.zst kernel/drivers/scsi/scsi_mod.ko.zst kernel/drivers/scsi/scsi_common.ko.zst
kernel/drivers/ata/libata.ko.zst: kernel/drivers/scsi/scsi_mod.ko.zst kernel/drivers/scsi/scsi_common.ko.zst
kernel/drivers/scsi/scsi_mod.ko.zst: kernel/drivers/scsi/scsi_common.ko.zst
kernel/drivers/scsi/scsi_common.ko.zst:
kernel/drivers/usb/storage/usb-storage.ko:
`))
	if err != nil {
		t.Fatal(err)
	}
	if f, ok := d.File("ata-piix"); !ok || f != "kernel/drivers/ata/ata_piix.ko.zst" {
		t.Errorf("File(ata-piix) = %q %v", f, ok)
	}
	if f, ok := d.File("usb_storage"); !ok || f != "kernel/drivers/usb/storage/usb-storage.ko" {
		t.Errorf("File(usb_storage) = %q %v", f, ok)
	}
	if got, want := d.Deps("ata_piix"), []string{"libata", "scsi_mod", "scsi_common"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Deps(ata_piix) = %v, want %v", got, want)
	}
	if got := d.Deps("scsi_common"); len(got) != 0 {
		t.Errorf("Deps(scsi_common) = %v", got)
	}
	if err := d.AddBuiltin(strings.NewReader("kernel/fs/ext4/ext4.ko\nkernel/drivers/block/virtio_blk.ko\n")); err != nil {
		t.Fatal(err)
	}
	if !d.Builtin("virtio-blk") || d.Builtin("libata") {
		t.Error("Builtin")
	}
	if _, err := ParseModuleDeps(strings.NewReader("kernel/a.ko.zst kernel/b.ko.zst\n")); err == nil || !strings.Contains(err.Error(), "modules.dep:1") {
		t.Errorf("a line without a colon: %v", err)
	}
}

func TestCmdlineModuleParams(t *testing.T) {
	got := CmdlineModuleParams(`BOOT_IMAGE=/vmlinuz console=ttyS0 usb-storage.delay_use=2 nvme_core.io_timeout=60 ` +
		`usb_storage.quirks=0781:5580:u dyndbg.x "foo.bar=a b" cauldron.ks=usb:/x.ks ip=dhcp .bad=1 a/b.c=1 quiet`)
	want := map[string]string{
		"usb_storage": "delay_use=2 quirks=0781:5580:u",
		"nvme_core":   "io_timeout=60",
		"dyndbg":      "x",
		"foo":         `bar="a b"`,
		"cauldron":    "ks=usb:/x.ks",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}
}

func TestSoftdeps(t *testing.T) {
	d, _ := ParseModuleDeps(strings.NewReader(""))
	err := d.AddSoftdeps(strings.NewReader("# Soft dependencies\nsoftdep crc_t10dif pre: crct10dif\nsoftdep btrfs pre: sha256 pre: crypto-crc32c post: foo\nsoftdep uhci-hcd pre: ehci_pci\n"))
	if err != nil {
		t.Fatal(err)
	}
	for mod, want := range map[string][]string{"crc_t10dif": {"crct10dif"}, "btrfs": {"sha256", "crypto-crc32c"}, "uhci_hcd": {"ehci_pci"}, "ext4": nil} {
		if got := d.SoftPre(mod); !reflect.DeepEqual(got, want) {
			t.Errorf("SoftPre(%s) = %v, want %v", mod, got, want)
		}
	}
	if err := d.AddSoftdeps(strings.NewReader("alias x y\n")); err == nil || !strings.Contains(err.Error(), "modules.softdep:1") {
		t.Errorf("a bad line: %v", err)
	}
}
