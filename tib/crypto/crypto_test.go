package crypto

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	k, err := NewRandomKey()
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("the disk's first sector")
	sealed := k.Seal(nil, msg)
	if len(sealed) != len(msg)+Overhead || bytes.Contains(sealed, msg) {
		t.Fatal("sealed object has the wrong size or shows the plaintext")
	}
	if again := k.Seal(nil, msg); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one plaintext are equal: the nonce is not random")
	}
	got, err := k.Open(nil, sealed)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	for i := range sealed {
		bad := append([]byte(nil), sealed...)
		bad[i] ^= 1
		if _, err := k.Open(nil, bad); !errors.Is(err, ErrAuth) {
			t.Fatalf("flipping byte %d was not detected", i)
		}
	}
	other, _ := NewRandomKey()
	if _, err := other.Open(nil, sealed); !errors.Is(err, ErrAuth) {
		t.Fatal("another key opened the object")
	}
	if _, err := k.Open(nil, sealed[:Overhead-1]); err == nil {
		t.Fatal("a truncated object opened")
	}
}

func TestChunkIDIsKeyed(t *testing.T) {
	a, _ := NewRandomKey()
	b, _ := NewRandomKey()
	data := []byte("same content")
	if a.ChunkID(data) != a.ChunkID(append([]byte(nil), data...)) {
		t.Fatal("chunk IDs of equal data differ")
	}
	if a.ChunkID(data) == b.ChunkID(data) || a.ChunkID(data) == Hash(data) {
		t.Fatal("chunk IDs do not depend on the key")
	}
	if PublicKey().ChunkID(data) != PublicKey().ChunkID(data) {
		t.Fatal("the public key is not fixed")
	}
}

func TestDeriveKey(t *testing.T) {
	p := KDFParams{Time: 1, Memory: 1024, Threads: 1, Salt: []byte("0123456789abcdef")}
	k1, err := DeriveKey([]byte("pw"), p)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := DeriveKey([]byte("pw"), p)
	k3, _ := DeriveKey([]byte("pW"), p)
	if !bytes.Equal(k1.Encrypt, k2.Encrypt) || bytes.Equal(k1.Encrypt, k3.Encrypt) {
		t.Fatal("key derivation is not a function of the password")
	}
	for _, bad := range []KDFParams{{}, {Time: 1, Memory: 2 << 20, Threads: 1, Salt: p.Salt}, {Time: 1, Memory: 1024, Threads: 1, Salt: []byte("x")}} {
		if _, err := DeriveKey([]byte("pw"), bad); err == nil {
			t.Fatalf("parameters %+v accepted", bad)
		}
	}
}

func TestParseID(t *testing.T) {
	id := Hash([]byte("x"))
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatal("ID does not round-trip")
	}
	for _, s := range []string{"", "zz", id.String()[:63], id.String() + "00"} {
		if _, err := ParseID(s); err == nil {
			t.Fatalf("ParseID(%q) succeeded", s)
		}
	}
}
