// Command synthindex adds a synthetic index to a repository, for measuring what the index costs
// at a size no test machine can store: index files listing N data blobs in packs that do not
// exist. Readers of the repository's real generations never need those blobs, so everything
// but prune and a verify of the whole repository still works; capture, restore and verify of a
// real generation pay for reading (and, if they keep it, holding) an index of that size. Not
// part of the boot binary: `make bench` runs it (scripts/bench-index.sh).
//
//	go run ./internal/synthindex --repo DIR --blobs 40000000
//
// The password comes from $CAULDRON_PASSWORD. Blobs are listed as 256 KiB cells (stored length
// just above, as incompressible data would be), 64 to a pack and 4096 packs to an index file,
// as prune writes them; IDs are random.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/crypto"
	"github.com/cauldron-dr/cauldron/tib/pack"
)

const (
	blobsPerPack = 64
	packsPerFile = 4096
	cellSize     = 256 << 10
	sealOverhead = 28 // nonce and tag
)

func main() {
	repo := flag.String("repo", "", "repository folder")
	blobs := flag.Int64("blobs", 40_000_000, "data blobs to list")
	seed := flag.Uint64("seed", 1, "random seed of the IDs")
	flag.Parse()
	if *repo == "" || *blobs <= 0 {
		fmt.Fprintln(os.Stderr, "usage: synthindex --repo DIR [--blobs N] [--seed S]")
		os.Exit(2)
	}
	if err := run(*repo, *blobs, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "synthindex:", err)
		os.Exit(1)
	}
}

func run(dir string, blobs int64, seed uint64) error {
	ctx := context.Background()
	r, err := tib.Open(ctx, local.New(dir), func() ([]byte, error) { return []byte(os.Getenv("CAULDRON_PASSWORD")), nil })
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewChaCha8(seedBytes(seed)))
	start := time.Now()
	var files int
	for done := int64(0); done < blobs; {
		var batch []tib.PackBlobs
		for len(batch) < packsPerFile && done < blobs {
			n := min(blobsPerPack, blobs-done)
			p := tib.PackBlobs{Pack: randomID(rng)}
			for i := int64(0); i < n; i++ {
				p.Blobs = append(p.Blobs, pack.Blob{Type: pack.DataBlob, Compression: pack.None, ID: randomID(rng),
					Offset: uint32(i) * (cellSize + sealOverhead), Length: cellSize + sealOverhead, RawLength: cellSize})
			}
			batch = append(batch, p)
			done += n
		}
		if _, err := r.WriteIndex(ctx, batch); err != nil {
			return err
		}
		files++
	}
	fmt.Printf("synthindex: %d blobs in %d index files, %.1f s\n", blobs, files, time.Since(start).Seconds())
	return nil
}

func seedBytes(seed uint64) [32]byte {
	var b [32]byte
	for i := range 8 {
		b[i] = byte(seed >> (8 * i))
	}
	return b
}

func randomID(rng *rand.Rand) crypto.ID {
	var id crypto.ID
	for i := 0; i < len(id); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			id[i+j] = byte(v >> (8 * j))
		}
	}
	return id
}
