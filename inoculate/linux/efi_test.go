package linux

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/u-root/u-root/pkg/efivarfs"
)

// unhex decodes hex with spaces, newlines and "//" comments.
func unhex(t *testing.T, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for _, line := range strings.Split(s, "\n") {
		line, _, _ = strings.Cut(line, "//")
		clean.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The byte vector below was written out by hand from the UEFI specification 2.10 (§3.1.3
// EFI_LOAD_OPTION, §10.3.5.1 Hard Drive Media Device Path, §10.3.5.4 File Path Media Device
// Path, §10.3.1 End of Hardware Device Path), not produced by the code under test.
const shimOption = `
01 00 00 00                      // Attributes: LOAD_OPTION_ACTIVE
62 00                            // FilePathListLength: 42 + 52 + 4 = 98
64 00 65 00 62 00 69 00 61 00 6e 00 00 00   // Description "debian\0", UCS-2
04 01 2a 00                      // Media, Hard Drive, length 42
01 00 00 00                      // PartitionNumber 1
00 08 00 00 00 00 00 00          // PartitionStart 0x800
00 00 10 00 00 00 00 00          // PartitionSize 0x100000
c4 a2 b0 e3 2d 1f 5b 4c 9a 8e 01 23 45 67 89 ab   // GUID e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab, mixed-endian
02                               // MBRType: GPT
02                               // SignatureType: GUID
04 04 34 00                      // Media, File Path, length 4 + 24*2 = 52
5c 00 45 00 46 00 49 00 5c 00 64 00 65 00 62 00 69 00 61 00 6e 00 5c 00   // \EFI\debian\
73 00 68 00 69 00 6d 00 78 00 36 00 34 00 2e 00 65 00 66 00 69 00 00 00   // shimx64.efi\0
7f ff 04 00                      // End Entire Device Path
`

func TestLoadOptionKnownVector(t *testing.T) {
	want := unhex(t, shimOption)
	g, err := GUIDToBytes("e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab")
	if err != nil {
		t.Fatal(err)
	}
	opt := LoadOption{
		Attributes:  LoadOptionActive,
		Description: "debian",
		Path: DevicePath{
			HardDrive: &HardDrive{PartitionNumber: 1, PartitionStart: 0x800, PartitionSize: 0x100000, Signature: g, PartitionFormat: PartFormatGPT, SignatureType: SigTypeGUID},
			File:      `\EFI\debian\shimx64.efi`,
		},
	}
	got, err := opt.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encoded\n%x\nwant\n%x", got, want)
	}
	back, err := ParseLoadOption(want)
	if err != nil {
		t.Fatal(err)
	}
	// efibootmgr -v prints this entry as: Boot0000* debian	HD(1,GPT,e3b0a2c4-…,0x800,0x100000)/File(\EFI\debian\shimx64.efi)
	if s := back.String(); s != "* debian\tHD(1,GPT,e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab,0x800,0x100000)/File(\\EFI\\debian\\shimx64.efi)" {
		t.Errorf("String: %q", s)
	}
	if !equalPath(back.Path, opt.Path) || back.Description != "debian" || back.Attributes != 1 || back.OptionalData != nil {
		t.Errorf("parsed %+v", back)
	}
	// Optional data after the path is kept.
	withData := append(append([]byte(nil), want...), 0xde, 0xad)
	back, err = ParseLoadOption(withData)
	if err != nil || !bytes.Equal(back.OptionalData, []byte{0xde, 0xad}) {
		t.Errorf("optional data: %v %x", err, back.OptionalData)
	}
	// Truncations are errors, not panics.
	for i := 0; i < len(want); i++ {
		if _, err := ParseLoadOption(want[:i]); err == nil {
			t.Errorf("a load option cut to %d bytes parsed", i)
		}
	}
}

func TestLoadOptionMBR(t *testing.T) {
	hd, err := ESPPartition{Number: 2, Start: 2048, Size: 204800, MBRSignature: "cafe0001"}.hardDrive()
	if err != nil {
		t.Fatal(err)
	}
	b, err := DevicePath{HardDrive: hd, File: `\EFI\BOOT\BOOTX64.EFI`}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	// The MBR signature sits little-endian in the first 4 signature bytes (offset 4+20), the rest zero.
	if !bytes.Equal(b[24:40], []byte{0x01, 0x00, 0xfe, 0xca, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) || b[40] != PartFormatMBR || b[41] != SigTypeMBR {
		t.Errorf("MBR hard drive node %x", b[:42])
	}
	p, err := ParseDevicePath(b)
	if err != nil || p.String() != `HD(2,MBR,0xcafe0001,0x800,0x32000)/File(\EFI\BOOT\BOOTX64.EFI)` {
		t.Errorf("%v %q", err, p.String())
	}
	if _, err := (ESPPartition{Number: 1, Size: 10}).hardDrive(); err == nil {
		t.Error("an ESP without GUID or signature accepted")
	}
	if _, err := (LoadOption{Description: "😀"}).MarshalBinary(); err == nil {
		t.Error("a description outside UCS-2 accepted")
	}
}

// GUIDToBytes must store GUIDs as GPT does. Judged by the EFI system partition type GUID, whose
// on-disk bytes the UEFI specification lists, and by sgdisk: a partition GUID set with sgdisk -u
// must read back from the partition entry as GUIDToBytes writes it.
func TestGUIDBytesAgainstSgdisk(t *testing.T) {
	esp, _ := GUIDToBytes("C12A7328-F81F-11D2-BA4B-00A0C93EC93B")
	if !bytes.Equal(esp[:], []byte{0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b}) {
		t.Errorf("ESP type GUID bytes %x", esp)
	}
	if GUIDFromBytes(esp) != "c12a7328-f81f-11d2-ba4b-00a0c93ec93b" {
		t.Errorf("round trip %s", GUIDFromBytes(esp))
	}
	testenv.NeedTools(t, "sgdisk")
	sgdisk, _ := exec.LookPath("sgdisk")
	img := filepath.Join(t.TempDir(), "gpt.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 8<<20); err != nil {
		t.Fatal(err)
	}
	const guid = "e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab"
	if out, err := exec.Command(sgdisk, "-n", "1:2048:+1M", "-t", "1:ef00", "-u", "1:"+guid, img).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	entry := b[2*512 : 2*512+128] // the first partition entry, LBA 2
	want, _ := GUIDToBytes(guid)
	if !bytes.Equal(entry[16:32], want[:]) || !bytes.Equal(entry[0:16], esp[:]) {
		t.Errorf("sgdisk wrote unique GUID %x, type %x; GUIDToBytes gives %x, %x", entry[16:32], entry[0:16], want, esp)
	}
}

func TestBootEntryInFolder(t *testing.T) {
	dir := t.TempDir()
	vars, isFS, err := openVars(dir)
	if err != nil || isFS {
		t.Fatalf("openVars(%s) = %v, %v", dir, isFS, err)
	}
	// An existing firmware entry (Boot0000) and BootOrder 0000,0002 before us.
	other := LoadOption{Attributes: 1, Description: "UEFI QEMU DVD-ROM", Path: DevicePath{Other: []RawNode{{Type: 2, SubType: 1, Data: []byte{0xd0, 0x41, 0x03, 0x0a, 0, 0, 0, 0}}}}}
	ob, _ := other.MarshalBinary()
	if err := vars.Set(efivarfs.VariableDescriptor{Name: "Boot0000", GUID: EFIGlobalVariable}, bootVarAttrs, ob); err != nil {
		t.Fatal(err)
	}
	if err := vars.Set(efivarfs.VariableDescriptor{Name: "Boot0001", GUID: EFIGlobalVariable}, bootVarAttrs, ob); err != nil {
		t.Fatal(err)
	}
	if err := vars.Set(efivarfs.VariableDescriptor{Name: "BootOrder", GUID: EFIGlobalVariable}, bootVarAttrs, []byte{0, 0, 2, 0}); err != nil {
		t.Fatal(err)
	}
	hd, _ := ESPPartition{Number: 1, Start: 2048, Size: 1048576, GUID: "e3b0a2c4-1f2d-4c5b-9a8e-0123456789ab"}.hardDrive()
	dp := DevicePath{HardDrive: hd, File: `\EFI\debian\shimx64.efi`}
	be, err := writeBootEntry(vars, false, "debian", dp)
	if err != nil {
		t.Fatal(err)
	}
	if be.Variable != "Boot0002" || be.Reused || !be.Verified || strings.Join(be.BootOrder, ",") != "0002,0000" {
		t.Errorf("first entry: %+v", be)
	}
	// The file is in efivarfs' layout: 4 bytes of attributes, then the load option.
	raw, err := os.ReadFile(filepath.Join(dir, "Boot0002-8be4df61-93ca-11d2-aa0d-00e098032b8c"))
	if err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint32(raw) != 7 || !bytes.Equal(raw[4:], unhex(t, shimOption)) {
		t.Errorf("Boot0002 file %x", raw)
	}
	// Again: the same entry is reused, BootOrder not duplicated.
	be, err = writeBootEntry(vars, false, "debian", dp)
	if err != nil || be.Variable != "Boot0002" || !be.Reused || strings.Join(be.BootOrder, ",") != "0002,0000" {
		t.Errorf("second run: %+v %v", be, err)
	}
	// The default location must be a real efivarfs.
	if _, err := os.Stat(DefaultEFIVars); err != nil {
		if _, _, err := openVars(""); err == nil || !strings.Contains(err.Error(), "efivarfs is not mounted") {
			t.Errorf("openVars without efivarfs: %v", err)
		}
	}
}
