package tib

import (
	"encoding/binary"
	"slices"

	"github.com/cauldron-dr/cauldron/tib/crypto"
)

// fingerprints remember which data blobs a repository stores in about 4 bytes each, so that a
// capture dedupes against an index of any size within bounded memory: the first 16 bits of an
// ID choose one of 65536 buckets (implied by position, not stored) and the next 32 bits are
// stored, sorted within the bucket. has never answers "absent" for an added ID; it answers
// "present" for an ID that was not added with odds of about n/2^48 (n added: 1 in 7 million
// lookups at 40 million blobs) — which is why a capture confirms every blob it skipped on a
// fingerprint alone before it commits (Repository.confirmAssumed).
type fingerprints struct {
	buckets [1 << 16][]uint32
	sorted  bool
	n       int
}

// fingerprintCollide makes every ID share one fingerprint: tests use it to force "maybe stored"
// answers for blobs that are not stored.
var fingerprintCollide = false

func fingerprintOf(id crypto.ID) (bucket uint16, value uint32) {
	if fingerprintCollide {
		return 0, 0
	}
	return binary.BigEndian.Uint16(id[0:2]), binary.BigEndian.Uint32(id[2:6])
}

// expect makes room for about n fingerprints at once, so that the buckets do not grow by
// appending (which leaves a third of them unused and the outgrown arrays as garbage). n is an
// estimate; a bucket that receives more grows.
func (f *fingerprints) expect(n int64) {
	per := n / int64(len(f.buckets))
	per += 3*isqrt(per) + 4 // the bucket sizes spread like a Poisson count around n/65536
	for i := range f.buckets {
		if cap(f.buckets[i]) == 0 {
			f.buckets[i] = make([]uint32, 0, per)
		}
	}
}

func isqrt(n int64) int64 {
	r := int64(0)
	for (r+1)*(r+1) <= n {
		r++
	}
	return r
}

func (f *fingerprints) add(id crypto.ID) {
	b, v := fingerprintOf(id)
	f.buckets[b] = append(f.buckets[b], v)
	f.sorted = false
	f.n++
}

// seal sorts the buckets for lookup, in place.
func (f *fingerprints) seal() {
	if f.sorted {
		return
	}
	for i, b := range f.buckets {
		slices.Sort(b)
		f.buckets[i] = slices.Compact(b)
	}
	f.sorted = true
}

// has must only be called on a sealed table.
func (f *fingerprints) has(id crypto.ID) bool {
	b, v := fingerprintOf(id)
	_, found := slices.BinarySearch(f.buckets[b], v)
	return found
}
