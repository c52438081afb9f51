package bcd

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf16"
)

// Device is a decoded device element: an optional options object (WinRE's ramdisk elements name
// the object holding the ramdisk's SDI device) and the device descriptor.
type Device struct {
	Options    string // GUID of the additional-options object, "" when zero
	Descriptor *Descriptor
}

// Device types (the descriptor's first field).
const (
	DeviceLocal           = 0 // a local device: disk, ramdisk, file, virtual disk (see Local)
	DeviceLegacyPartition = 2
	DeviceSerial          = 3
	DeviceUDP             = 4 // network boot
	DeviceBoot            = 5 // the device the boot manager was loaded from
	DevicePartition       = 6
	DeviceLocate          = 8 // found at boot by looking for a path
)

// Local device types (the first field of a local device's payload).
const (
	LocalDisk        = 0
	LocalFloppy      = 1
	LocalCdRom       = 2
	LocalRamdisk     = 3
	LocalFile        = 5
	LocalVirtualDisk = 6
)

// Partition styles.
const (
	StyleGPT = 0
	StyleMBR = 1
	StyleRaw = 2
)

// descriptorHeader is the size of a descriptor's header: type, flags, size, reserved.
const descriptorHeader = 16

// Descriptor is one device descriptor; nested ones hang below File.Device or Locate.Parent.
type Descriptor struct {
	Offset    int // byte offset in the element's data
	Type      uint32
	Flags     uint32
	Size      uint32
	Partition *Partition // DevicePartition, and the disk of a LocalDisk device
	Local     *Local     // DeviceLocal
	Locate    *Locate    // DeviceLocate
}

// TypeName names the descriptor's device type.
func (d *Descriptor) TypeName() string {
	switch d.Type {
	case DeviceLocal:
		if d.Local != nil {
			return localName(d.Local.Type)
		}
		return "local device"
	case DeviceLegacyPartition:
		return "legacy partition"
	case DeviceSerial:
		return "serial"
	case DeviceUDP:
		return "network (UDP)"
	case DeviceBoot:
		return "boot device"
	case DevicePartition:
		return "partition"
	case DeviceLocate:
		return "locate"
	}
	return fmt.Sprintf("device type %d", d.Type)
}

func localName(t uint32) string {
	switch t {
	case LocalDisk:
		return "disk"
	case LocalFloppy:
		return "floppy"
	case LocalCdRom:
		return "CD-ROM"
	case LocalRamdisk:
		return "ramdisk"
	case LocalFile:
		return "file"
	case LocalVirtualDisk:
		return "virtual disk"
	}
	return fmt.Sprintf("local device type %d", t)
}

// Partition identifies a partition (or, for a LocalDisk device, only a disk).
type Partition struct {
	Style         uint32 // StyleGPT, StyleMBR, StyleRaw
	PartitionGUID string // GPT, upper-case canonical form
	Offset        uint64 // MBR: partition start in bytes
	DiskGUID      string // GPT
	Signature     uint32 // MBR disk signature
	DiskNumber    uint32 // raw
	WholeDisk     bool   // a LocalDisk device: no partition field

	partOff int // offset in the element of the partition field (GUID or u64 start)
	diskOff int // offset of the disk field (GUID or u32 signature)
}

// StyleName is gpt, mbr or raw.
func (p *Partition) StyleName() string {
	switch p.Style {
	case StyleGPT:
		return "gpt"
	case StyleMBR:
		return "mbr"
	case StyleRaw:
		return "raw"
	}
	return fmt.Sprintf("style %d", p.Style)
}

// String describes the partition for reports.
func (p *Partition) String() string {
	switch {
	case p.Style == StyleGPT && p.WholeDisk:
		return "GPT disk " + p.DiskGUID
	case p.Style == StyleGPT:
		return fmt.Sprintf("GPT partition %s on disk %s", p.PartitionGUID, p.DiskGUID)
	case p.Style == StyleMBR && p.WholeDisk:
		return fmt.Sprintf("MBR disk %08x", p.Signature)
	case p.Style == StyleMBR:
		return fmt.Sprintf("MBR partition at byte %d on disk %08x", p.Offset, p.Signature)
	}
	return fmt.Sprintf("raw disk %d", p.DiskNumber)
}

// Local is a local device: a disk, or a ramdisk, file or virtual disk whose image lives in a
// file on another device (File).
type Local struct {
	Type      uint32
	ImageBase uint64 // ramdisk
	ImageSize uint64 // ramdisk
	File      *FilePath
}

// FilePath is a file-path descriptor. Type 5 (the one WinRE's ramdisks use) holds a nested
// device descriptor and a path on it.
type FilePath struct {
	Offset   int
	Version  uint32
	Length   uint32
	PathType uint32
	Device   *Descriptor
	Path     string
}

// Locate is a device found at boot by looking for a path: either the path of an element of the
// same object (ElementType, e.g. 12000002, the application path) or Path, optionally on Parent.
type Locate struct {
	Kind         uint32
	ElementType  uint32
	ParentOffset uint32
	Parent       *Descriptor
	Path         string
}

// DeviceError is a device element that does not decode.
type DeviceError struct {
	Offset int
	Msg    string
}

func (e *DeviceError) Error() string {
	return fmt.Sprintf("device element at byte %d: %s", e.Offset, e.Msg)
}

func derr(off int, format string, args ...any) error {
	return &DeviceError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// maxNesting bounds nested descriptors: real stores nest one level (ramdisk → partition).
const maxNesting = 8

// DecodeDevice decodes a device element's data. Every byte it relies on is bounds-checked; data
// that breaks the layout yields a *DeviceError naming the offset.
func DecodeDevice(b []byte) (*Device, error) {
	if len(b) < 16+descriptorHeader {
		return nil, derr(0, "%d bytes, shorter than the 16-byte options GUID and a 16-byte descriptor header", len(b))
	}
	d := &Device{}
	var zero [16]byte
	if [16]byte(b[:16]) != zero {
		d.Options = "{" + strings.ToLower(formatGUID(b[:16])) + "}"
	}
	desc, err := decodeDescriptor(b, 16, len(b), 0)
	if err != nil {
		return nil, err
	}
	d.Descriptor = desc
	return d, nil
}

// decodeDescriptor reads a descriptor at off that must end by limit.
func decodeDescriptor(b []byte, off, limit, depth int) (*Descriptor, error) {
	if depth > maxNesting {
		return nil, derr(off, "descriptors nested more than %d deep", maxNesting)
	}
	if off < 0 || off+descriptorHeader > limit || limit > len(b) {
		return nil, derr(off, "descriptor header runs past the end (%d bytes available)", limit-off)
	}
	d := &Descriptor{Offset: off, Type: le32(b, off), Flags: le32(b, off+4), Size: le32(b, off+8)}
	if d.Size < descriptorHeader || int64(off)+int64(d.Size) > int64(limit) {
		return nil, derr(off+8, "descriptor size %d does not fit (header 16, %d bytes available)", d.Size, limit-off)
	}
	end := off + int(d.Size)
	p := off + descriptorHeader // payload
	switch d.Type {
	case DevicePartition:
		// 16-byte partition field, then a local hard disk: local type, style, 16-byte disk field.
		if end-p < 40 {
			return nil, derr(off, "partition descriptor of %d bytes, need %d", d.Size, descriptorHeader+40)
		}
		part, err := decodeDisk(b, p+16, p)
		if err != nil {
			return nil, err
		}
		d.Partition = part
	case DeviceLocal:
		if end-p < 4 {
			return nil, derr(off, "local device descriptor of %d bytes has no local type", d.Size)
		}
		l := &Local{Type: le32(b, p)}
		d.Local = l
		switch l.Type {
		case LocalDisk:
			if end-p < 24 {
				return nil, derr(off, "disk descriptor of %d bytes, need %d", d.Size, descriptorHeader+24)
			}
			part, err := decodeDisk(b, p, -1)
			if err != nil {
				return nil, err
			}
			d.Partition = part
		case LocalRamdisk, LocalFile, LocalVirtualDisk:
			if l.Type == LocalRamdisk && end-p >= 0x18 {
				l.ImageBase, l.ImageSize = le64(b, p+8), le64(b, p+16)
			}
			fp, err := findFilePath(b, p+4, end, depth)
			if err != nil {
				return nil, err
			}
			l.File = fp
		}
	case DeviceLocate:
		if end-p < 12 {
			return nil, derr(off, "locate descriptor of %d bytes, need %d", d.Size, descriptorHeader+12)
		}
		lo := &Locate{Kind: le32(b, p), ElementType: le32(b, p+4), ParentOffset: le32(b, p+8)}
		lo.Path = utf16String(b[p+12 : end])
		if lo.ParentOffset != 0 {
			po := off + int(lo.ParentOffset)
			if int64(off)+int64(lo.ParentOffset) >= int64(end) || po < p+12 {
				return nil, derr(p+8, "locate parent offset %d lies outside the descriptor", lo.ParentOffset)
			}
			parent, err := decodeDescriptor(b, po, end, depth+1)
			if err != nil {
				return nil, err
			}
			lo.Parent = parent
		}
		d.Locate = lo
	}
	return d, nil
}

// decodeDisk reads a local hard disk at off: local type, partition style, 16-byte disk field.
// partOff is where the partition field is, -1 for a whole-disk device.
func decodeDisk(b []byte, off, partOff int) (*Partition, error) {
	if lt := le32(b, off); lt != LocalDisk {
		return nil, derr(off, "partition's disk has local device type %d, not 0 (hard disk)", lt)
	}
	p := &Partition{Style: le32(b, off+4), partOff: partOff, diskOff: off + 8, WholeDisk: partOff < 0}
	switch p.Style {
	case StyleGPT:
		p.DiskGUID = formatGUID(b[off+8 : off+24])
		if partOff >= 0 {
			p.PartitionGUID = formatGUID(b[partOff : partOff+16])
		}
	case StyleMBR:
		p.Signature = le32(b, off+8)
		if partOff >= 0 {
			p.Offset = le64(b, partOff)
		}
	case StyleRaw:
		p.DiskNumber = le32(b, off+8)
	default:
		return nil, derr(off+4, "partition style %d is not 0 (GPT), 1 (MBR) or 2 (raw)", p.Style)
	}
	return p, nil
}

// findFilePath looks for the file-path descriptor of a ramdisk, file or virtual-disk device: the
// one that starts at a 4-byte boundary after the local type, has version 1 and a length that
// ends exactly where the device does (the ramdisk's image base and size come first).
func findFilePath(b []byte, from, end, depth int) (*FilePath, error) {
	for o := from; o+12 <= end; o += 4 {
		if le32(b, o) != 1 || int64(o)+int64(le32(b, o+4)) != int64(end) {
			continue
		}
		fp := &FilePath{Offset: o, Version: 1, Length: le32(b, o+4), PathType: le32(b, o+8)}
		if fp.PathType == 5 {
			dev, err := decodeDescriptor(b, o+12, end, depth+1)
			if err != nil {
				return nil, err
			}
			fp.Device = dev
			fp.Path = utf16String(b[o+12+int(dev.Size) : end])
		} else {
			fp.Path = utf16String(b[o+12 : end])
		}
		return fp, nil
	}
	return nil, derr(from, "no file-path descriptor (version 1, length reaching the end of the device at byte %d)", end)
}

// Walk calls fn for the device's descriptors, outermost first, with a path naming where each
// lies ("device", "device > ramdisk file > device" …).
func (d *Device) Walk(fn func(where string, desc *Descriptor)) {
	var walk func(where string, x *Descriptor)
	walk = func(where string, x *Descriptor) {
		if x == nil {
			return
		}
		fn(where, x)
		if x.Local != nil && x.Local.File != nil {
			walk(where+" > "+localName(x.Local.Type)+" file > device", x.Local.File.Device)
		}
		if x.Locate != nil {
			walk(where+" > locate parent", x.Locate.Parent)
		}
	}
	walk("device", d.Descriptor)
}

// String describes a device for reports.
func (d *Device) String() string {
	var parts []string
	d.Walk(func(where string, x *Descriptor) {
		s := x.TypeName()
		switch {
		case x.Partition != nil:
			s += " " + x.Partition.String()
		case x.Locate != nil && x.Locate.Path != "":
			s += fmt.Sprintf(" path %q", x.Locate.Path)
		case x.Locate != nil:
			s += fmt.Sprintf(" by element %08x", x.Locate.ElementType)
		}
		if x.Local != nil && x.Local.File != nil && x.Local.File.Path != "" {
			s += fmt.Sprintf(" file %q", x.Local.File.Path)
		}
		parts = append(parts, s)
	})
	if d.Options != "" {
		parts = append(parts, "options "+d.Options)
	}
	return strings.Join(parts, "; ")
}

func le32(b []byte, off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
func le64(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func utf16String(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}

func utf16Decode(u []uint16) []rune { return utf16.Decode(u) }

// formatGUID formats 16 on-disk (mixed-endian) bytes in the canonical upper-case form.
func formatGUID(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%04X-%012X", binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]), binary.BigEndian.Uint16(b[8:]), b[10:16])
}

// ParseGUID reads a GUID in canonical form, with or without braces, in either case, into its
// on-disk (mixed-endian) bytes.
func ParseGUID(s string) ([16]byte, error) {
	var g [16]byte
	t := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "{"), "}")
	if len(t) != 36 || t[8] != '-' || t[13] != '-' || t[18] != '-' || t[23] != '-' {
		return g, fmt.Errorf("%q is not a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", s)
	}
	hex := strings.ReplaceAll(t, "-", "")
	var raw [16]byte
	for i := 0; i < 16; i++ {
		var v byte
		for _, c := range hex[2*i : 2*i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c - 'a' + 10)
			case c >= 'A' && c <= 'F':
				v |= byte(c - 'A' + 10)
			default:
				return g, fmt.Errorf("%q is not a GUID: %q is not a hex digit", s, c)
			}
		}
		raw[i] = v
	}
	// The first three fields are stored little-endian.
	g[0], g[1], g[2], g[3] = raw[3], raw[2], raw[1], raw[0]
	g[4], g[5] = raw[5], raw[4]
	g[6], g[7] = raw[7], raw[6]
	copy(g[8:], raw[8:])
	return g, nil
}
