package crypto

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
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
	k1, err := DeriveKey(context.Background(), []byte("pw"), p)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := DeriveKey(context.Background(), []byte("pw"), p)
	k3, _ := DeriveKey(context.Background(), []byte("pW"), p)
	if !bytes.Equal(k1.Encrypt, k2.Encrypt) || bytes.Equal(k1.Encrypt, k3.Encrypt) {
		t.Fatal("key derivation is not a function of the password")
	}
	def, err := DefaultKDFParams()
	if err != nil || def.Check() != nil {
		t.Fatalf("the default parameters are out of bounds: %+v: %v", def, err)
	}
	salt := p.Salt
	for _, c := range []struct {
		p    KDFParams
		want string
	}{
		{KDFParams{}, "time 0"},
		// The attack of issue 16: derivation never ended. Refused at once now.
		{KDFParams{Time: 1<<32 - 1, Memory: 1024, Threads: 1, Salt: salt}, "time 4294967295"},
		{KDFParams{Time: 1, Memory: 2 << 20, Threads: 1, Salt: salt}, "memory 2097152"},
		{KDFParams{Time: 1, Memory: 1024, Threads: 200, Salt: salt}, "threads 200"},
		{KDFParams{Time: 1, Memory: 16, Threads: 4, Salt: salt}, "8 KiB per thread"},
		{KDFParams{Time: 64, Memory: 1 << 20, Threads: 4, Salt: salt}, "exceeds"},
		{KDFParams{Time: 1, Memory: 1024, Threads: 1, Salt: []byte("x")}, "salt of 1 bytes"},
		{KDFParams{Time: 1, Memory: 1024, Threads: 1, Salt: make([]byte, 65)}, "salt of 65 bytes"},
	} {
		start := time.Now()
		_, err := DeriveKey(context.Background(), []byte("pw"), c.p)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("parameters %+v: err = %v, want one naming %q", c.p, err, c.want)
		}
		if time.Since(start) > time.Second {
			t.Fatalf("parameters %+v were refused only after %v: something was derived first", c.p, time.Since(start))
		}
	}
}

// A derivation that takes long (within the bounds) gives way to a cancelled context at once,
// so that SIGINT and SIGTERM end a process waiting for it.
func TestDeriveKeyCancel(t *testing.T) {
	p := KDFParams{Time: 32, Memory: 128 << 10, Threads: 1, Salt: []byte("0123456789abcdef")}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := DeriveKey(ctx, []byte("pw"), p)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("DeriveKey = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("DeriveKey returned %v after the cancel", d)
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
