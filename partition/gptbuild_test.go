package partition

import (
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf16"
)

// Hand-built GPTs, for what sgdisk cannot make: entry sizes above 128 bytes, larger headers, and
// hostile header values. The layout follows the UEFI specification; sgdisk -v checks it in
// TestHandBuiltGPTValidForSgdisk.

type tGPTPart struct {
	typ, guid   string // canonical text form
	first, last uint64
	attrs       uint64
	name        string
}

type tGPT struct {
	lss        int64
	size       int64
	entrySize  uint32
	entryCount uint32
	headerSize uint32
	diskGUID   string
	parts      []tGPTPart // entry i+1 when index i; a zero typ leaves the entry unused
}

// guidBytes encodes a canonical GUID the way GPT stores it (first three fields little-endian).
func guidBytes(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("bad GUID " + s)
	}
	out := make([]byte, 16)
	binary.LittleEndian.PutUint32(out[0:], binary.BigEndian.Uint32(b[0:]))
	binary.LittleEndian.PutUint16(out[4:], binary.BigEndian.Uint16(b[4:]))
	binary.LittleEndian.PutUint16(out[6:], binary.BigEndian.Uint16(b[6:]))
	copy(out[8:], b[8:])
	return out
}

func (g tGPT) arraySectors() uint64 {
	return (uint64(g.entryCount)*uint64(g.entrySize) + uint64(g.lss) - 1) / uint64(g.lss)
}

// write writes the protective MBR, both headers and both arrays into w.
func (g tGPT) write(w io.WriterAt) error {
	if g.entrySize == 0 {
		g.entrySize = 128
	}
	if g.entryCount == 0 {
		g.entryCount = 128
	}
	if g.headerSize == 0 {
		g.headerSize = 92
	}
	sectors := uint64(g.size / g.lss)
	last := sectors - 1
	as := g.arraySectors()
	array := make([]byte, uint64(g.entryCount)*uint64(g.entrySize))
	for i, p := range g.parts {
		if p.typ == "" {
			continue
		}
		e := array[uint64(i)*uint64(g.entrySize):]
		copy(e[0:], guidBytes(p.typ))
		copy(e[16:], guidBytes(p.guid))
		binary.LittleEndian.PutUint64(e[32:], p.first)
		binary.LittleEndian.PutUint64(e[40:], p.last)
		binary.LittleEndian.PutUint64(e[48:], p.attrs)
		for j, u := range utf16.Encode([]rune(p.name)) {
			binary.LittleEndian.PutUint16(e[56+2*j:], u)
		}
	}
	pmbr := make([]byte, 512)
	e := pmbr[446:]
	e[4] = 0xEE
	binary.LittleEndian.PutUint32(e[8:], 1)
	binary.LittleEndian.PutUint32(e[12:], uint32(min(last, 0xFFFFFFFF)))
	pmbr[510], pmbr[511] = 0x55, 0xAA
	if _, err := w.WriteAt(pmbr, 0); err != nil {
		return err
	}
	header := func(my, alt, arrayLBA uint64) []byte {
		h := make([]byte, g.lss)
		copy(h, "EFI PART")
		binary.LittleEndian.PutUint32(h[8:], 0x00010000)
		binary.LittleEndian.PutUint32(h[12:], g.headerSize)
		binary.LittleEndian.PutUint64(h[24:], my)
		binary.LittleEndian.PutUint64(h[32:], alt)
		binary.LittleEndian.PutUint64(h[40:], 2+as)
		binary.LittleEndian.PutUint64(h[48:], last-as-1)
		copy(h[56:], guidBytes(g.diskGUID))
		binary.LittleEndian.PutUint64(h[72:], arrayLBA)
		binary.LittleEndian.PutUint32(h[80:], g.entryCount)
		binary.LittleEndian.PutUint32(h[84:], g.entrySize)
		binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(array))
		binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:g.headerSize]))
		return h
	}
	for _, c := range []struct {
		at   uint64
		data []byte
	}{
		{1, header(1, last, 2)},
		{2, array},
		{last - as, array},
		{last, header(last, 1, last-as)},
	} {
		if _, err := w.WriteAt(c.data, int64(c.at)*g.lss); err != nil {
			return err
		}
	}
	return nil
}
