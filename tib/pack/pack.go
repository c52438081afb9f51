// Package pack writes and reads pack files: the unit a repository stores data in, sized for
// object storage (16 MiB by default).
//
// A pack is: blob 1 ‖ blob 2 ‖ … ‖ sealed header ‖ header length (uint32, little-endian, the
// sealed header's length). Every blob is sealed on its own (package crypto), so any blob can be
// read with one ranged load. The header's plaintext is one 42-byte entry per blob, in file order:
//
//	type (1: 0 data, 1 metadata) ‖ compression (1: 0 none, 1 zstd) ‖ stored length (uint32 LE)
//	‖ raw length (uint32 LE) ‖ chunk ID (32)
//
// Offsets are implied by order. The pack's file name is the BLAKE3 hash of all its bytes, so
// anyone can check a pack's integrity without the key. docs/archive-format.md is the full spec.
package pack

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cauldron-dr/cauldron/tib/crypto"
)

// BlobType separates disk data from the repository's own metadata blobs (chunk lists, used maps).
type BlobType uint8

const (
	DataBlob BlobType = 0
	MetaBlob BlobType = 1
)

func (t BlobType) String() string {
	switch t {
	case DataBlob:
		return "data"
	case MetaBlob:
		return "meta"
	}
	return fmt.Sprintf("type%d", uint8(t))
}

// Compression of a blob's plaintext before sealing.
type Compression uint8

const (
	None Compression = 0
	Zstd Compression = 1
)

// EntrySize is the length of one header entry.
const EntrySize = 1 + 1 + 4 + 4 + 32

// MaxHeaderSize bounds a header so a damaged length cannot make a reader allocate without limit.
const MaxHeaderSize = 16 << 20

// Blob is one header entry with its place in the pack.
type Blob struct {
	Type        BlobType
	Compression Compression
	ID          crypto.ID
	Offset      uint32 // from the start of the pack
	Length      uint32 // stored (sealed) length
	RawLength   uint32 // plaintext length after decompression
}

// Writer assembles one pack in memory.
type Writer struct {
	key   *crypto.Key
	buf   []byte
	blobs []Blob
}

// NewWriter starts a pack whose blobs are already sealed by the caller; key seals the header.
func NewWriter(key *crypto.Key, sizeHint int) *Writer {
	return &Writer{key: key, buf: make([]byte, 0, sizeHint)}
}

// Add appends one sealed blob.
func (w *Writer) Add(t BlobType, c Compression, id crypto.ID, rawLength int, sealed []byte) Blob {
	b := Blob{Type: t, Compression: c, ID: id, Offset: uint32(len(w.buf)), Length: uint32(len(sealed)), RawLength: uint32(rawLength)}
	w.buf = append(w.buf, sealed...)
	w.blobs = append(w.blobs, b)
	return b
}

// Size is the pack's size so far (without the header).
func (w *Writer) Size() int { return len(w.buf) }

// Count is the number of blobs added.
func (w *Writer) Count() int { return len(w.blobs) }

// Finish appends the header and returns the pack's bytes, its name and its blobs.
func (w *Writer) Finish() ([]byte, crypto.ID, []Blob) {
	plain := make([]byte, 0, len(w.blobs)*EntrySize)
	for _, b := range w.blobs {
		plain = appendEntry(plain, b)
	}
	sealed := w.key.Seal(nil, plain)
	w.buf = append(w.buf, sealed...)
	w.buf = binary.LittleEndian.AppendUint32(w.buf, uint32(len(sealed)))
	return w.buf, crypto.Hash(w.buf), w.blobs
}

func appendEntry(dst []byte, b Blob) []byte {
	dst = append(dst, byte(b.Type), byte(b.Compression))
	dst = binary.LittleEndian.AppendUint32(dst, b.Length)
	dst = binary.LittleEndian.AppendUint32(dst, b.RawLength)
	return append(dst, b.ID[:]...)
}

// HeaderError says what is wrong with a pack's header.
type HeaderError struct{ Reason string }

func (e *HeaderError) Error() string { return "pack header: " + e.Reason }

// HeaderLength reads the trailing length field from a pack's last 4 bytes and checks it against
// the pack's size.
func HeaderLength(tail []byte, packSize int64) (int, error) {
	if len(tail) < 4 {
		return 0, &HeaderError{"pack shorter than its length field"}
	}
	n := int64(binary.LittleEndian.Uint32(tail[len(tail)-4:]))
	if n < crypto.Overhead || n > MaxHeaderSize || n+4 > packSize {
		return 0, &HeaderError{fmt.Sprintf("header length %d does not fit a pack of %d bytes", n, packSize)}
	}
	return int(n), nil
}

// ParseHeader opens a sealed header and checks that its blobs exactly tile the first
// dataSize bytes of the pack (dataSize = pack size − header − 4).
func ParseHeader(key *crypto.Key, sealed []byte, dataSize int64) ([]Blob, error) {
	plain, err := key.Open(nil, sealed)
	if err != nil {
		return nil, &HeaderError{err.Error()}
	}
	return DecodeEntries(plain, dataSize)
}

// DecodeEntries decodes a header's plaintext.
func DecodeEntries(plain []byte, dataSize int64) ([]Blob, error) {
	if len(plain)%EntrySize != 0 {
		return nil, &HeaderError{fmt.Sprintf("%d bytes is not a whole number of entries", len(plain))}
	}
	blobs := make([]Blob, 0, len(plain)/EntrySize)
	var off int64
	for p := plain; len(p) > 0; p = p[EntrySize:] {
		b := Blob{Type: BlobType(p[0]), Compression: Compression(p[1]),
			Length: binary.LittleEndian.Uint32(p[2:]), RawLength: binary.LittleEndian.Uint32(p[6:])}
		copy(b.ID[:], p[10:42])
		if b.Type > MetaBlob || b.Compression > Zstd {
			return nil, &HeaderError{fmt.Sprintf("entry %d: unknown type %d or compression %d", len(blobs), p[0], p[1])}
		}
		if b.Length < crypto.Overhead {
			return nil, &HeaderError{fmt.Sprintf("entry %d: length %d is shorter than a sealed blob", len(blobs), b.Length)}
		}
		b.Offset = uint32(off)
		off += int64(b.Length)
		if off > dataSize {
			return nil, &HeaderError{fmt.Sprintf("entry %d ends at %d, past the data (%d bytes)", len(blobs), off, dataSize)}
		}
		blobs = append(blobs, b)
	}
	if off != dataSize {
		return nil, &HeaderError{fmt.Sprintf("entries cover %d bytes but the data is %d", off, dataSize)}
	}
	return blobs, nil
}

// ErrBlobID means a blob's content does not hash to its ID.
var ErrBlobID = errors.New("content does not match its ID")
