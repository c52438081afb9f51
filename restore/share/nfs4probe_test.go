package share

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// fakeNFSServer answers every RPC record with reply(xid, minor of the call), or closes the
// connection when reply returns nil.
func fakeNFSServer(t *testing.T, reply func(xid, vers, minor uint32) []uint32) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var mark [4]byte
				if _, err := io.ReadFull(c, mark[:]); err != nil {
					return
				}
				rec := make([]byte, binary.BigEndian.Uint32(mark[:])&0x7fffffff)
				if _, err := io.ReadFull(c, rec); err != nil {
					return
				}
				w := func(i int) uint32 { return binary.BigEndian.Uint32(rec[4*i:]) }
				credLen := int(w(7))
				// After the credential: verifier flavor and length, tag length, minor version.
				minor := binary.BigEndian.Uint32(rec[32+credLen+12:])
				words := reply(w(0), w(4), minor)
				if words == nil {
					return
				}
				out := binary.BigEndian.AppendUint32(nil, 0x80000000|uint32(4*len(words)))
				for _, x := range words {
					out = binary.BigEndian.AppendUint32(out, x)
				}
				c.Write(out)
			}()
		}
	}()
	return l.Addr().String()
}

func TestProbeNFSv4(t *testing.T) {
	accepted := func(xid uint32, rest ...uint32) []uint32 {
		return append([]uint32{xid, rpcReply, msgAccepted, 0, 0}, rest...)
	}
	for _, c := range []struct {
		name  string
		reply func(xid, vers, minor uint32) []uint32
		want  v4Verdict
	}{
		{"nfsv4 server", func(xid, vers, minor uint32) []uint32 {
			if vers != 4 {
				t.Errorf("the probe asked for NFS version %d", vers)
			}
			if minor > 1 {
				return accepted(xid, acceptSuccess, nfs4ErrMinorVers, 0, 0)
			}
			return accepted(xid, acceptSuccess, 0, 0, 0)
		}, v4Speaks},
		{"nfsv3-only server", func(xid, _, _ uint32) []uint32 { return accepted(xid, acceptProgMismatch, 2, 3) }, v4NotSpoken},
		// go-nfs: the COMPOUND is taken for a v3 GETATTR of an empty handle.
		{"version-blind nfsv3 server", func(xid, _, _ uint32) []uint32 { return accepted(xid, acceptSuccess, 10001) }, v4NotSpoken},
		{"closes the connection", func(_, _, _ uint32) []uint32 { return nil }, v4NotSpoken},
		{"denied", func(xid, _, _ uint32) []uint32 { return []uint32{xid, rpcReply, 1, 1, 2} }, v4Unknown},
		{"wrong xid", func(xid, _, _ uint32) []uint32 { return accepted(xid+1, acceptSuccess, 0, 0, 0) }, v4Unknown},
	} {
		addr := fakeNFSServer(t, c.reply)
		got, why := probeNFSv4(context.Background(), addr, 1)
		if got != c.want {
			t.Errorf("%s: verdict %d (%s), want %d", c.name, got, why, c.want)
		}
		if c.name == "nfsv4 server" {
			if got, why := probeNFSv4(context.Background(), addr, 2); got != v4NoMinor {
				t.Errorf("%s, minor version 2: verdict %d (%s), want v4NoMinor", c.name, got, why)
			}
		}
	}
	// Nobody listening: unknown, the kernel decides.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	if got, _ := probeNFSv4(context.Background(), addr, 0); got != v4Unknown {
		t.Errorf("closed port: verdict %d", got)
	}
}

func TestCompoundCall(t *testing.T) {
	b := compoundCall(0x01020304, 2)
	if m := binary.BigEndian.Uint32(b); m != 0x80000000|uint32(len(b)-4) {
		t.Errorf("record mark %#x for %d bytes", m, len(b)-4)
	}
	if len(b)%4 != 0 {
		t.Errorf("%d bytes: not XDR-aligned", len(b))
	}
	words := make([]uint32, len(b)/4)
	for i := range words {
		words[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	// xid, CALL, RPC v2, NFS, v4, COMPOUND, AUTH_SYS
	for i, want := range []uint32{0x01020304, 0, 2, 100003, 4, 1, 1} {
		if words[i+1] != want {
			t.Errorf("word %d = %d, want %d", i+1, words[i+1], want)
		}
	}
	if tail := words[len(words)-3:]; tail[0] != 0 || tail[1] != 2 || tail[2] != 0 {
		t.Errorf("COMPOUND4args %v: want empty tag, minor version 2, no operations", tail)
	}
}
