package linux

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// UEFI load options (UEFI Specification 2.10, §3.1.3 "Load Options") and the few device path
// nodes a disk boot entry needs (§10.3). Written from the specification; efibootmgr's text form
// (HD(…)/File(…)) is used for String so that entries read the way technicians know them.

// LoadOptionActive is LOAD_OPTION_ACTIVE: the firmware tries the entry.
const LoadOptionActive = 0x00000001

// Device path node types and subtypes used here.
const (
	dpTypeMedia    = 0x04
	dpSubHardDrive = 0x01
	dpSubFilePath  = 0x04
	dpTypeEnd      = 0x7f
	dpSubEndEntire = 0xff
)

// Hard drive media device path values.
const (
	PartFormatMBR = 0x01 // MBRType: PC-AT MBR
	PartFormatGPT = 0x02 // MBRType: GUID partition table
	SigTypeNone   = 0x00
	SigTypeMBR    = 0x01 // Signature holds the 32-bit MBR disk signature in its first 4 bytes
	SigTypeGUID   = 0x02 // Signature holds the GPT partition's unique GUID
)

// HardDrive is the hard drive media device path node: the partition the file lives on.
type HardDrive struct {
	PartitionNumber uint32   // 1-based
	PartitionStart  uint64   // in logical blocks
	PartitionSize   uint64   // in logical blocks
	Signature       [16]byte // as stored: a GUID in its mixed-endian on-disk form
	PartitionFormat uint8    // PartFormatMBR or PartFormatGPT
	SignatureType   uint8    // SigTypeNone, SigTypeMBR or SigTypeGUID
}

// DevicePath is a list of nodes; a load option's path is the nodes of one instance, ended by an
// End Entire node that Marshal adds and Parse removes.
type DevicePath struct {
	HardDrive *HardDrive // nil: no partition node
	File      string     // \EFI\debian\shimx64.efi; "" for none
	// Other holds nodes of other types, as read, so that a parsed path that is not ours is kept
	// (Type, SubType, data without the 4-byte header).
	Other []RawNode
}

// RawNode is a device path node this package does not interpret.
type RawNode struct {
	Type, SubType uint8
	Data          []byte
}

// LoadOption is an EFI_LOAD_OPTION, the content of a Boot#### variable.
type LoadOption struct {
	Attributes   uint32
	Description  string
	Path         DevicePath
	OptionalData []byte
}

// GUIDToBytes turns a GUID in its text form into its on-disk (mixed-endian) form: the first three
// fields little-endian, the last two as written.
func GUIDToBytes(s string) ([16]byte, error) {
	var out [16]byte
	h := strings.ReplaceAll(s, "-", "")
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' || len(h) != 32 {
		return out, fmt.Errorf("GUID %q: want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", s)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return out, fmt.Errorf("GUID %q: %v", s, err)
	}
	out[0], out[1], out[2], out[3] = b[3], b[2], b[1], b[0]
	out[4], out[5] = b[5], b[4]
	out[6], out[7] = b[7], b[6]
	copy(out[8:], b[8:])
	return out, nil
}

// GUIDFromBytes is GUIDToBytes' inverse, in lower case.
func GUIDFromBytes(b [16]byte) string {
	return fmt.Sprintf("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15])
}

func ucs2(s string) ([]byte, error) {
	var out []byte
	for _, r := range s {
		if r == 0 {
			return nil, errors.New("NUL character in an EFI string")
		}
		if r > 0xffff {
			// UCS-2: no surrogate pairs.
			return nil, fmt.Errorf("character %U outside UCS-2 in an EFI string", r)
		}
		out = binary.LittleEndian.AppendUint16(out, uint16(r))
	}
	return binary.LittleEndian.AppendUint16(out, 0), nil
}

// fromUCS2 reads a NUL-terminated UCS-2 string; it returns the string and the bytes used.
func fromUCS2(b []byte) (string, int, error) {
	var u []uint16
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			return string(utf16.Decode(u)), i + 2, nil
		}
		u = append(u, c)
	}
	return "", 0, errors.New("EFI string without its terminating NUL")
}

func node(t, st uint8, data []byte) []byte {
	n := []byte{t, st, 0, 0}
	binary.LittleEndian.PutUint16(n[2:], uint16(4+len(data)))
	return append(n, data...)
}

// MarshalBinary encodes the device path, End Entire node included.
func (p DevicePath) MarshalBinary() ([]byte, error) {
	var out []byte
	if hd := p.HardDrive; hd != nil {
		d := make([]byte, 38)
		binary.LittleEndian.PutUint32(d[0:], hd.PartitionNumber)
		binary.LittleEndian.PutUint64(d[4:], hd.PartitionStart)
		binary.LittleEndian.PutUint64(d[12:], hd.PartitionSize)
		copy(d[20:36], hd.Signature[:])
		d[36], d[37] = hd.PartitionFormat, hd.SignatureType
		out = append(out, node(dpTypeMedia, dpSubHardDrive, d)...)
	}
	for _, o := range p.Other {
		if len(o.Data) > 0xffff-4 {
			return nil, errors.New("device path node too long")
		}
		out = append(out, node(o.Type, o.SubType, o.Data)...)
	}
	if p.File != "" {
		f, err := ucs2(p.File)
		if err != nil {
			return nil, err
		}
		if len(f) > 0xffff-4 {
			return nil, errors.New("file path too long")
		}
		out = append(out, node(dpTypeMedia, dpSubFilePath, f)...)
	}
	return append(out, node(dpTypeEnd, dpSubEndEntire, nil)...), nil
}

// ParseDevicePath decodes the first instance of a device path list.
func ParseDevicePath(b []byte) (DevicePath, error) {
	var p DevicePath
	for off := 0; ; {
		if off+4 > len(b) {
			return p, errors.New("device path ends without an End node")
		}
		t, st := b[off], b[off+1]
		n := int(binary.LittleEndian.Uint16(b[off+2:]))
		if n < 4 || off+n > len(b) {
			return p, fmt.Errorf("device path node at %d: length %d runs past the path (%d bytes)", off, n, len(b))
		}
		data := b[off+4 : off+n]
		off += n
		switch {
		case t == dpTypeEnd:
			return p, nil
		case t == dpTypeMedia && st == dpSubHardDrive:
			if len(data) != 38 {
				return p, fmt.Errorf("hard drive node of %d bytes, want 42", n)
			}
			hd := &HardDrive{
				PartitionNumber: binary.LittleEndian.Uint32(data[0:]),
				PartitionStart:  binary.LittleEndian.Uint64(data[4:]),
				PartitionSize:   binary.LittleEndian.Uint64(data[12:]),
				PartitionFormat: data[36],
				SignatureType:   data[37],
			}
			copy(hd.Signature[:], data[20:36])
			p.HardDrive = hd
		case t == dpTypeMedia && st == dpSubFilePath:
			s, _, err := fromUCS2(data)
			if err != nil {
				return p, fmt.Errorf("file path node: %w", err)
			}
			p.File += s
		default:
			p.Other = append(p.Other, RawNode{Type: t, SubType: st, Data: append([]byte(nil), data...)})
		}
	}
}

// String renders the path the way efibootmgr -v does.
func (p DevicePath) String() string {
	var parts []string
	if hd := p.HardDrive; hd != nil {
		var sig string
		switch hd.SignatureType {
		case SigTypeGUID:
			sig = "GPT," + GUIDFromBytes(hd.Signature)
		case SigTypeMBR:
			sig = fmt.Sprintf("MBR,0x%x", binary.LittleEndian.Uint32(hd.Signature[:4]))
		default:
			sig = fmt.Sprintf("%d,0x0", hd.SignatureType)
		}
		parts = append(parts, fmt.Sprintf("HD(%d,%s,0x%x,0x%x)", hd.PartitionNumber, sig, hd.PartitionStart, hd.PartitionSize))
	}
	for _, o := range p.Other {
		parts = append(parts, fmt.Sprintf("Path(%d,%d,%x)", o.Type, o.SubType, o.Data))
	}
	if p.File != "" {
		parts = append(parts, "File("+p.File+")")
	}
	return strings.Join(parts, "/")
}

// MarshalBinary encodes the load option.
func (o LoadOption) MarshalBinary() ([]byte, error) {
	path, err := o.Path.MarshalBinary()
	if err != nil {
		return nil, err
	}
	desc, err := ucs2(o.Description)
	if err != nil {
		return nil, err
	}
	if len(path) > 0xffff {
		return nil, errors.New("device path too long for a load option")
	}
	out := binary.LittleEndian.AppendUint32(nil, o.Attributes)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(path)))
	out = append(out, desc...)
	out = append(out, path...)
	return append(out, o.OptionalData...), nil
}

// ParseLoadOption decodes an EFI_LOAD_OPTION.
func ParseLoadOption(b []byte) (*LoadOption, error) {
	if len(b) < 6 {
		return nil, fmt.Errorf("load option of %d bytes: too short", len(b))
	}
	o := &LoadOption{Attributes: binary.LittleEndian.Uint32(b)}
	pl := int(binary.LittleEndian.Uint16(b[4:]))
	desc, n, err := fromUCS2(b[6:])
	if err != nil {
		return nil, fmt.Errorf("load option description: %w", err)
	}
	o.Description = desc
	start := 6 + n
	if start+pl > len(b) {
		return nil, fmt.Errorf("load option: device path of %d bytes runs past its %d bytes", pl, len(b))
	}
	if o.Path, err = ParseDevicePath(b[start : start+pl]); err != nil {
		return nil, err
	}
	if rest := b[start+pl:]; len(rest) > 0 {
		o.OptionalData = append([]byte(nil), rest...)
	}
	return o, nil
}

// String renders the option as efibootmgr -v does, without the Boot#### name.
func (o LoadOption) String() string {
	active := " "
	if o.Attributes&LoadOptionActive != 0 {
		active = "*"
	}
	return fmt.Sprintf("%s %s\t%s", active, o.Description, o.Path)
}

// equalPath reports whether two device paths name the same partition and file (the file path
// compared without regard to case, as FAT does).
func equalPath(a, b DevicePath) bool {
	if (a.HardDrive == nil) != (b.HardDrive == nil) || !strings.EqualFold(a.File, b.File) || len(a.Other) != len(b.Other) {
		return false
	}
	if a.HardDrive != nil && *a.HardDrive != *b.HardDrive {
		return false
	}
	for i := range a.Other {
		if a.Other[i].Type != b.Other[i].Type || a.Other[i].SubType != b.Other[i].SubType || !bytes.Equal(a.Other[i].Data, b.Other[i].Data) {
			return false
		}
	}
	return true
}
