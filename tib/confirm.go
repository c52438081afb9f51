package tib

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
	"github.com/klauspost/compress/zstd"
)

// beforeConfirm lets tests change a source between its capture and the confirmation.
var beforeConfirm func()

// assumedCell is a cell a capture did not store because its fingerprint matched: where to read
// it again if the repository does not hold it after all.
type assumedCell struct {
	src *source
	rp  *regionPlan
	Cell
}

// confirmAssumed makes sure every cell skipped on a fingerprint alone is stored: one pass over
// the index files (and the packs found through their headers) finds each, and adds its pack to
// usedPacks; a cell found nowhere (a fingerprint's false "present") is read again from its
// source, checked to hash to the same ID — else the source changed under the capture, which then
// fails rather than name a chunk it cannot store — and stored. No generation may name a chunk
// that is not stored.
func (r *Repository) confirmAssumed(ctx context.Context, cells []assumedCell, packer *Packer, usedPacks map[crypto.ID]bool, level zstd.EncoderLevel) error {
	if len(cells) == 0 {
		return nil
	}
	if beforeConfirm != nil {
		beforeConfirm()
	}
	ids := make([]crypto.ID, 0, len(cells))
	for _, c := range cells {
		ids = append(ids, c.ID)
	}
	slices.SortFunc(ids, compareIDs)
	ids = slices.Compact(ids)
	found := make([]bool, len(ids))
	if err := r.eachIndexedPack(ctx, true, func(p PackBlobs) error {
		for _, b := range p.Blobs {
			if i, ok := slices.BinarySearchFunc(ids, b.ID, compareIDs); ok && !found[i] {
				found[i] = true
				usedPacks[p.Pack] = true
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("confirming the chunks found through fingerprints: %w", err)
	}
	enc := NewEncoder(r.key, level)
	for _, c := range cells {
		i, _ := slices.BinarySearchFunc(ids, c.ID, compareIDs)
		if found[i] {
			continue
		}
		found[i] = true // one copy is enough when several cells share the chunk
		if err := r.storeAgain(c, packer, enc); err != nil {
			return err
		}
	}
	return nil
}

// storeAgain reads an assumed cell from its source again and stores it.
func (r *Repository) storeAgain(c assumedCell, packer *Packer, enc *Encoder) error {
	buf, _, err := c.rp.readCell(c.src.f, c.Index, make([]byte, c.rp.CellSize))
	if err != nil {
		return fmt.Errorf("%s: reading a chunk again: %w", c.src.path, err)
	}
	if id := r.key.ChunkID(buf); id != c.ID {
		at := c.rp.Start + c.Index*c.rp.CellSize
		return fmt.Errorf("%s bytes %d–%d changed while the capture ran (read again, they hash to %s, not %s): the generation is not saved; capture a source nothing writes to",
			c.src.path, at, at+int64(len(buf))-1, id.Short(), c.ID.Short())
	}
	if !packer.Reserve(c.ID) {
		return nil // stored meanwhile by this capture
	}
	sealed, comp := enc.Seal(buf)
	return packer.Add(pack.DataBlob, comp, c.ID, len(buf), sealed)
}

func compareIDs(a, b crypto.ID) int { return bytes.Compare(a[:], b[:]) }
