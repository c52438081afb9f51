package tib_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
	"github.com/cauldron-dr/cauldron/tib/usedblocks"
)

// The fuzz targets cover every decoder of what a repository stores: a damaged or hostile
// repository must give errors, never panics or out-of-range writes.

func FuzzDecodeIndex(f *testing.F) {
	f.Add(tib.EncodeIndex(nil))
	f.Add(tib.EncodeIndex([]tib.PackBlobs{{Pack: crypto.ID{1}, Blobs: []pack.Blob{{Type: pack.DataBlob, Compression: pack.Zstd, ID: crypto.ID{2}, Length: 100, RawLength: 300}, {Type: pack.MetaBlob, ID: crypto.ID{3}, Length: 40, RawLength: 12}}}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := tib.DecodeIndex(b)
		if err != nil {
			return
		}
		// What decodes must survive encoding and decoding again unchanged.
		again, err := tib.DecodeIndex(tib.EncodeIndex(packs))
		if err != nil || fmt.Sprint(again) != fmt.Sprint(packs) {
			t.Fatalf("index does not round-trip: %v", err)
		}
	})
}

func FuzzDecodeChunkList(f *testing.F) {
	f.Add(tib.EncodeChunkList([]tib.Cell{{Index: 0, ID: crypto.ID{1}}, {Index: 5, ID: crypto.ID{2}}}), int64(10))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, int64(1<<40))
	f.Fuzz(func(t *testing.T, b []byte, max int64) {
		if max <= 0 {
			return
		}
		cells, err := tib.DecodeChunkList(b, max)
		if err != nil {
			return
		}
		prev := int64(-1)
		for _, c := range cells {
			if c.Index <= prev || c.Index >= max {
				t.Fatalf("cell index %d after %d, max %d", c.Index, prev, max)
			}
			prev = c.Index
		}
	})
}

func FuzzDecodeUsedMap(f *testing.F) {
	m := usedblocks.New(4096, 100)
	m.SetRange(3, 70)
	f.Add(tib.EncodeUsedMap(m), int64(100))
	f.Fuzz(func(t *testing.T, b []byte, n int64) {
		if n < 0 || n > 1<<20 {
			return
		}
		m, err := tib.DecodeUsedMap(b, 4096, n)
		if err != nil {
			return
		}
		if m.Count() > n {
			t.Fatalf("%d used blocks in a map of %d", m.Count(), n)
		}
	})
}

func FuzzPackHeader(f *testing.F) {
	key := crypto.PublicKey()
	w := pack.NewWriter(key, 0)
	w.Add(pack.DataBlob, pack.None, crypto.ID{7}, 10, key.Seal(nil, []byte("0123456789")))
	data, _, _ := w.Finish()
	f.Add(data)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := pack.HeaderLength(b, int64(len(b)))
		if err != nil {
			return
		}
		dataSize := int64(len(b) - 4 - n)
		blobs, err := pack.ParseHeader(key, b[dataSize:len(b)-4], dataSize)
		if err != nil {
			return
		}
		for _, bl := range blobs {
			if int64(bl.Offset)+int64(bl.Length) > dataSize {
				t.Fatal("blob past the data")
			}
		}
	})
}

func FuzzDecodeEntries(f *testing.F) {
	f.Add(make([]byte, pack.EntrySize), int64(0))
	f.Fuzz(func(t *testing.T, b []byte, dataSize int64) {
		blobs, err := pack.DecodeEntries(b, dataSize)
		if err != nil {
			return
		}
		var sum int64
		for _, bl := range blobs {
			sum += int64(bl.Length)
		}
		if sum != dataSize {
			t.Fatalf("entries cover %d of %d bytes", sum, dataSize)
		}
	})
}

func FuzzGenerationManifest(f *testing.F) {
	f.Add([]byte(`{"version":1,"machine":"m","disks":[{"name":"disk0","layout":{"table":"gpt","size":1048576,"partitions":[]},"regions":[{"kind":"gap","start":0,"size":1048576,"blockSize":4096,"cellSize":262144}]}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var g tib.Generation
		if json.Unmarshal(b, &g) != nil || g.Validate() != nil {
			return
		}
		// A valid manifest keeps every region inside its disk with sane cells.
		for _, d := range g.Disks {
			for _, r := range d.Regions {
				if r.Start < 0 || r.Start+r.Size > d.Layout.Size || r.CellSize%r.BlockSize != 0 || r.NumCells() <= 0 {
					t.Fatalf("Validate accepted region %+v of a %d-byte disk", r, d.Layout.Size)
				}
			}
		}
	})
}

func FuzzSealedOpen(f *testing.F) {
	key := crypto.PublicKey()
	f.Add(key.Seal(nil, []byte("config")))
	f.Fuzz(func(t *testing.T, b []byte) {
		key.Open(nil, b) // must not panic on any input
	})
}
