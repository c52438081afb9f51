package bcd

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// Identity is one disk or partition identity old → new, with the same fields as
// partition.Identity (so one converts to the other): What is "disk signature" (eight hex
// digits), "disk GUID" or "partition GUID".
type Identity struct {
	What      string `json:"what"`
	Partition int    `json:"partition,omitempty"`
	Old       string `json:"old"`
	New       string `json:"new"`
}

// Move is a partition's start old → new in bytes (partition.Move's OldStart and NewStart): MBR
// device elements name a partition by its start, so a moved partition changes identity.
type Move struct {
	OldStart int64 `json:"oldStart"`
	NewStart int64 `json:"newStart"`
}

// DiskMap is one disk's identities old → new.
type DiskMap struct {
	HasSignature               bool
	OldSignature, NewSignature uint32
	HasGUID                    bool
	OldGUID, NewGUID           [16]byte              // on-disk byte order
	Partitions                 map[[16]byte][16]byte // GPT partition GUIDs
	Starts                     map[uint64]uint64     // MBR partition starts in bytes
}

// NewDiskMap builds a disk's map from a layout plan's identities and moves.
func NewDiskMap(ids []Identity, moves []Move) (DiskMap, error) {
	m := DiskMap{Partitions: map[[16]byte][16]byte{}, Starts: map[uint64]uint64{}}
	for _, id := range ids {
		switch id.What {
		case "disk signature":
			o, err1 := parseSignature(id.Old)
			n, err2 := parseSignature(id.New)
			if err1 != nil || err2 != nil {
				return m, fmt.Errorf("bcd: disk signature %q → %q: want eight hex digits", id.Old, id.New)
			}
			m.HasSignature, m.OldSignature, m.NewSignature = true, o, n
		case "disk GUID", "partition GUID":
			o, err := ParseGUID(id.Old)
			if err != nil {
				return m, fmt.Errorf("bcd: %s (old): %w", id.What, err)
			}
			n, err := ParseGUID(id.New)
			if err != nil {
				return m, fmt.Errorf("bcd: %s (new): %w", id.What, err)
			}
			if id.What == "disk GUID" {
				m.HasGUID, m.OldGUID, m.NewGUID = true, o, n
			} else {
				m.Partitions[o] = n
			}
		default:
			return m, fmt.Errorf("bcd: unknown identity %q (disk signature, disk GUID or partition GUID)", id.What)
		}
	}
	for _, mv := range moves {
		if mv.OldStart < 0 || mv.NewStart < 0 {
			return m, fmt.Errorf("bcd: negative partition start in move %d → %d", mv.OldStart, mv.NewStart)
		}
		m.Starts[uint64(mv.OldStart)] = uint64(mv.NewStart)
	}
	return m, nil
}

func parseSignature(s string) (uint32, error) {
	s = strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0x"), "0X")
	if len(s) == 0 || len(s) > 8 {
		return 0, fmt.Errorf("bad signature")
	}
	v, err := strconv.ParseUint(s, 16, 32)
	return uint32(v), err
}

// Mapping is every disk's identities old → new.
type Mapping struct{ Disks []DiskMap }

// Change is one identity field rewritten (or, in Report.Kept, matched and left as it was).
type Change struct {
	Object     string `json:"object"`
	ObjectName string `json:"objectName,omitempty"`
	Element    string `json:"element"`
	Name       string `json:"name,omitempty"`
	Where      string `json:"where"` // which descriptor: "device", "device > ramdisk file > device" …
	Field      string `json:"field"` // "disk GUID", "partition GUID", "disk signature", "partition start"
	Old        string `json:"old"`
	New        string `json:"new"`
}

// Untouched is a device descriptor left as it was, and why.
type Untouched struct {
	Object     string `json:"object"`
	ObjectName string `json:"objectName,omitempty"`
	Element    string `json:"element"`
	Name       string `json:"name,omitempty"`
	Where      string `json:"where"`
	Device     string `json:"device"`
	Reason     string `json:"reason"`
}

// Report is what Rewrite did.
type Report struct {
	Changes   []Change    `json:"changes"`
	Kept      []Change    `json:"kept,omitempty"`
	Untouched []Untouched `json:"untouched,omitempty"`
	Elements  int         `json:"elements"` // device elements written
}

// Rewrite patches every device element (nested descriptors included) that names a mapped disk,
// in place and at the same size, in the in-memory hive; Save writes it. Descriptors naming no
// disk (boot, locate, network) or a disk the mapping lacks are left alone and reported.
func (s *Store) Rewrite(m Mapping) (*Report, error) {
	if err := m.check(); err != nil {
		return nil, err
	}
	objs, err := s.Objects()
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	for _, o := range objs {
		for _, e := range o.Elements {
			if e.Format() != FormatDevice {
				continue
			}
			base := Untouched{Object: o.GUID, ObjectName: o.Name, Element: e.Key(), Name: e.Name, Where: "device"}
			if e.Err != nil {
				u := base
				u.Reason = "does not decode: " + e.Err.Error()
				rep.Untouched = append(rep.Untouched, u)
				continue
			}
			data := append([]byte(nil), e.Raw...)
			changed := false
			e.Device.Walk(func(where string, d *Descriptor) {
				u := base
				u.Where = where
				u.Device = d.TypeName()
				ch := Change{Object: o.GUID, ObjectName: o.Name, Element: e.Key(), Name: e.Name, Where: where}
				reason := m.apply(d, data, ch, rep, &changed)
				if reason != "" {
					if d.Partition != nil {
						u.Device += " " + d.Partition.String()
					}
					u.Reason = reason
					rep.Untouched = append(rep.Untouched, u)
				}
			})
			if !changed {
				continue
			}
			if _, err := DecodeDevice(data); err != nil {
				return nil, fmt.Errorf("bcd: rewritten %s element %s no longer decodes: %w", o.GUID, e.Key(), err)
			}
			path := `Objects\` + o.GUID + `\Elements\` + e.Key()
			if err := s.hive.SetValue(path, "Element", regf.RegBinary, data); err != nil {
				return nil, fmt.Errorf("bcd: writing %s: %w", path, err)
			}
			rep.Elements++
		}
	}
	return rep, nil
}

// check refuses a mapping in which two disks claim the same old identity: which one a device
// element names would then be a guess.
func (m Mapping) check() error {
	sigs := map[uint32]bool{}
	guids := map[[16]byte]bool{}
	for _, d := range m.Disks {
		if d.HasSignature {
			if sigs[d.OldSignature] {
				return fmt.Errorf("bcd: two disks in the mapping have the old signature %08x", d.OldSignature)
			}
			sigs[d.OldSignature] = true
		}
		if d.HasGUID {
			if guids[d.OldGUID] {
				return fmt.Errorf("bcd: two disks in the mapping have the old disk GUID %s", formatGUID(d.OldGUID[:]))
			}
			guids[d.OldGUID] = true
		}
	}
	return nil
}

// apply rewrites one descriptor's identities in data; it returns why it did not, or "".
func (m Mapping) apply(d *Descriptor, data []byte, ch Change, rep *Report, changed *bool) string {
	p := d.Partition
	if p == nil {
		switch {
		case d.Local != nil && d.Local.File != nil, d.Locate != nil && d.Locate.Parent != nil:
			return "" // its nested device is visited on its own
		case d.Type == DeviceBoot:
			return "names no disk: the boot device is the one the boot manager was loaded from"
		case d.Type == DeviceLocate:
			return "names no disk: the partition is found at boot by its path"
		case d.Type == DeviceUDP:
			return "names no disk: network boot"
		case d.Type == DeviceLegacyPartition:
			return "legacy partition device: its layout is not known, left as it is"
		}
		return "names no disk"
	}
	record := func(field, old, new string) {
		c := ch
		c.Field, c.Old, c.New = field, old, new
		if old == new {
			rep.Kept = append(rep.Kept, c)
			return
		}
		rep.Changes = append(rep.Changes, c)
		*changed = true
	}
	switch p.Style {
	case StyleGPT:
		disk := [16]byte(data[p.diskOff : p.diskOff+16])
		var dm *DiskMap
		for i := range m.Disks {
			if m.Disks[i].HasGUID && m.Disks[i].OldGUID == disk {
				dm = &m.Disks[i]
			}
		}
		if dm == nil {
			return "disk GUID " + p.DiskGUID + " is not in the mapping"
		}
		var newPart [16]byte
		if !p.WholeDisk {
			old := [16]byte(data[p.partOff : p.partOff+16])
			np, ok := dm.Partitions[old]
			if !ok {
				return "partition GUID " + p.PartitionGUID + " is not among the mapped disk's partitions"
			}
			newPart = np
		}
		copy(data[p.diskOff:], dm.NewGUID[:])
		record("disk GUID", p.DiskGUID, formatGUID(dm.NewGUID[:]))
		if !p.WholeDisk {
			copy(data[p.partOff:], newPart[:])
			record("partition GUID", p.PartitionGUID, formatGUID(newPart[:]))
		}
	case StyleMBR:
		var dm *DiskMap
		for i := range m.Disks {
			if m.Disks[i].HasSignature && m.Disks[i].OldSignature == p.Signature {
				dm = &m.Disks[i]
			}
		}
		if dm == nil {
			return fmt.Sprintf("disk signature %08x is not in the mapping", p.Signature)
		}
		newStart := p.Offset
		if !p.WholeDisk && len(dm.Starts) > 0 {
			ns, ok := dm.Starts[p.Offset]
			if !ok {
				return fmt.Sprintf("no partition of the mapped disk starts at byte %d", p.Offset)
			}
			newStart = ns
		}
		binary.LittleEndian.PutUint32(data[p.diskOff:], dm.NewSignature)
		record("disk signature", fmt.Sprintf("%08x", p.Signature), fmt.Sprintf("%08x", dm.NewSignature))
		if !p.WholeDisk {
			binary.LittleEndian.PutUint64(data[p.partOff:], newStart)
			record("partition start", strconv.FormatUint(p.Offset, 10), strconv.FormatUint(newStart, 10))
		}
	default:
		return "raw disk (by number): no identity to rewrite"
	}
	return ""
}
