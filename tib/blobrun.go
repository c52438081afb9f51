package tib

import (
	"context"
	"fmt"

	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/crypto"
)

// A BlobRun is blobs that lie close together in one pack, read with one request: over a network,
// a request per blob spends more on the requests (round trips, authentication, a signature per S3
// request) than on the bytes, so a restore fetches runs. Each blob is still opened and checked
// against its ID on its own.
type BlobRun struct {
	Pack  crypto.ID
	Start int64      // offset of the first blob in the pack
	End   int64      // end of the last blob
	Blobs []Location // in pack order
}

// Run limits: a run holds at most MaxRunBytes (one blob larger than that is a run of its own),
// and skips at most MaxRunGap bytes of blobs it does not need between two it does. 4 MiB makes
// a request's own cost small next to its transfer even on loopback, while a handful of runs in
// flight stays far inside the boot environment's memory.
const (
	MaxRunBytes = 4 << 20
	MaxRunGap   = 64 << 10
)

// BlobRuns groups ids, which SortByPack has put in pack order, into runs. Chunks the index
// does not know are returned in missing, for the caller to judge as LoadBlob's error would be.
func (r *Repository) BlobRuns(ids []crypto.ID) (runs []BlobRun, missing []crypto.ID) {
	for _, id := range ids {
		loc, ok := r.idx.Lookup(id)
		if !ok {
			missing = append(missing, id)
			continue
		}
		start, end := int64(loc.Offset), int64(loc.Offset)+int64(loc.Length)
		if n := len(runs); n > 0 {
			last := &runs[n-1]
			if last.Pack == loc.Pack && start >= last.End && start-last.End <= MaxRunGap && end-last.Start <= MaxRunBytes {
				last.End = end
				last.Blobs = append(last.Blobs, loc)
				continue
			}
		}
		runs = append(runs, BlobRun{Pack: loc.Pack, Start: start, End: end, Blobs: []Location{loc}})
	}
	return runs, missing
}

// ErrNotIndexed is the error of a chunk the index does not list.
func ErrNotIndexed(id crypto.ID) error {
	return fmt.Errorf("chunk %s: not in the index (missing)", id.Short())
}

// LoadRun reads a run with one request and calls fn with each blob's checked plaintext, in
// order, or with the error that blob met (fn's error stops the run and is returned). When the
// run cannot be read whole (a damaged or short pack), its blobs are read one by one, so that one
// bad range costs only the blobs it holds. plain is valid only during the call.
func (r *Repository) LoadRun(ctx context.Context, run BlobRun, fn func(id crypto.ID, plain []byte, err error) error) error {
	h := backend.Handle{Type: backend.Pack, Name: run.Pack.String()}
	sealed, err := r.be.Load(ctx, h, int(run.End-run.Start), run.Start)
	if err == nil && int64(len(sealed)) != run.End-run.Start {
		// Every backend reports a short read as an error; one that did not would make intact
		// blobs look damaged (or panic slicing them).
		err = fmt.Errorf("%s: %d bytes read at %d, %d asked for", h, len(sealed), run.Start, run.End-run.Start)
	}
	if err != nil && len(run.Blobs) > 1 {
		for _, loc := range run.Blobs {
			plain, err := r.LoadBlob(ctx, loc.ID, nil)
			if err := fn(loc.ID, plain, err); err != nil {
				return err
			}
		}
		return nil
	}
	var buf []byte
	for _, loc := range run.Blobs {
		var plain []byte
		blobErr := err
		if blobErr != nil {
			blobErr = fmt.Errorf("chunk %s in pack %s: %w", loc.ID.Short(), loc.Pack.Short(), err)
		} else {
			at := int64(loc.Offset) - run.Start
			plain, blobErr = r.openBlob(loc, sealed[at:at+int64(loc.Length)], buf)
			if blobErr == nil {
				buf = plain
			}
		}
		if err := fn(loc.ID, plain, blobErr); err != nil {
			return err
		}
	}
	return nil
}
