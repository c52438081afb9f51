package pack

import (
	"testing"

	"github.com/cauldron-dr/cauldron/tib/crypto"
)

func TestWriteAndParse(t *testing.T) {
	key, _ := crypto.NewRandomKey()
	w := NewWriter(key, 0)
	var want []Blob
	for i, s := range []string{"first blob", "", "a third, longer blob of data"} {
		plain := []byte(s)
		want = append(want, w.Add(BlobType(i%2), None, key.ChunkID(plain), len(plain), key.Seal(nil, plain)))
	}
	data, name, blobs := w.Finish()
	if name != crypto.Hash(data) {
		t.Fatal("pack name is not the hash of its bytes")
	}
	n, err := HeaderLength(data, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	dataSize := int64(len(data) - 4 - n)
	got, err := ParseHeader(key, data[dataSize:len(data)-4], dataSize)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) || len(blobs) != len(want) {
		t.Fatalf("%d blobs parsed, %d written", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] || blobs[i] != want[i] {
			t.Fatalf("blob %d: got %+v, want %+v", i, got[i], want[i])
		}
		plain, err := key.Open(nil, data[got[i].Offset:got[i].Offset+got[i].Length])
		if err != nil || key.ChunkID(plain) != got[i].ID {
			t.Fatalf("blob %d does not open to its ID", i)
		}
	}
	// A header under another key, or a lying length field, is refused.
	other, _ := crypto.NewRandomKey()
	if _, err := ParseHeader(other, data[dataSize:len(data)-4], dataSize); err == nil {
		t.Fatal("header opened under another key")
	}
	if _, err := HeaderLength([]byte{0xff, 0xff, 0xff, 0x7f}, 100); err == nil {
		t.Fatal("header length beyond the pack accepted")
	}
	if _, err := ParseHeader(key, data[dataSize:len(data)-4], dataSize+1); err == nil {
		t.Fatal("entries that do not tile the data accepted")
	}
}
