package share

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Before the kernel is asked for an NFSv4 mount, the server is asked once, from user space,
// whether it speaks NFSv4 at all: a COMPOUND with no operations, which every NFSv4 server answers
// with its status, tag and an empty result list. mount.nfs learns the same from rpcbind. Without
// it, a server that speaks only NFSv3 but does not check the RPC version (user-space servers such
// as go-nfs answer a v4 COMPOUND as if it were a v3 GETATTR) leaves the kernel's NFSv4 client
// with replies it cannot decode: usually EIO at once, sometimes minutes of retries.

// v4Verdict is what the probe learnt about one NFSv4 minor version.
type v4Verdict int

const (
	v4Unknown   v4Verdict = iota // no answer or no connection: let the kernel try
	v4Speaks                     // a proper NFSv4 reply
	v4NoMinor                    // NFSv4, but not this minor version
	v4NotSpoken                  // the server does not speak NFSv4 at all
)

// ONC RPC (RFC 5531) and NFSv4 (RFC 7530) numbers the probe uses.
const (
	rpcCall            = 0
	rpcReply           = 1
	rpcVersion         = 2
	nfsProgram         = 100003
	nfsCompound        = 1
	authSys            = 1
	msgAccepted        = 0
	acceptSuccess      = 0
	acceptProgMismatch = 2
	nfs4ErrMinorVers   = 10021
)

// compoundCall is an RPC call of an empty NFSv4 COMPOUND of the given minor version, with
// AUTH_SYS as root (servers may refuse AUTH_NONE for COMPOUND), framed for TCP.
func compoundCall(xid, minor uint32) []byte {
	var b []byte
	put := func(v ...uint32) {
		for _, x := range v {
			b = binary.BigEndian.AppendUint32(b, x)
		}
	}
	machine := []byte("cauldron")
	// AUTH_SYS body: stamp, machine name (padded to 4), uid, gid, no extra gids.
	cred := binary.BigEndian.AppendUint32(nil, 0)
	cred = binary.BigEndian.AppendUint32(cred, uint32(len(machine)))
	cred = append(cred, machine...)
	for len(cred)%4 != 0 {
		cred = append(cred, 0)
	}
	cred = binary.BigEndian.AppendUint32(cred, 0)
	cred = binary.BigEndian.AppendUint32(cred, 0)
	cred = binary.BigEndian.AppendUint32(cred, 0)

	put(0) // record mark, set below
	put(xid, rpcCall, rpcVersion, nfsProgram, 4, nfsCompound)
	put(authSys, uint32(len(cred)))
	b = append(b, cred...)
	put(0, 0)        // verifier: AUTH_NONE
	put(0, minor, 0) // COMPOUND4args: empty tag, minor version, no operations
	binary.BigEndian.PutUint32(b, 0x80000000|uint32(len(b)-4))
	return b
}

// judgeCompoundReply reads the RPC reply record (without its record mark) to compoundCall.
func judgeCompoundReply(xid uint32, r []byte) (v4Verdict, string) {
	word := func(i int) (uint32, bool) {
		if len(r) < 4*(i+1) {
			return 0, false
		}
		return binary.BigEndian.Uint32(r[4*i:]), true
	}
	if x, ok := word(0); !ok || x != xid {
		return v4Unknown, "the reply is not to the probe"
	}
	if t, ok := word(1); !ok || t != rpcReply {
		return v4Unknown, "not an RPC reply"
	}
	if st, ok := word(2); !ok || st != msgAccepted {
		return v4Unknown, "the server denied the RPC call (authentication)"
	}
	verfLen, ok := word(4)
	if !ok || verfLen > 400 {
		return v4Unknown, "a malformed RPC reply"
	}
	i := 5 + int((verfLen+3)/4)
	accept, ok := word(i)
	if !ok {
		return v4Unknown, "a truncated RPC reply"
	}
	switch accept {
	case acceptSuccess:
	case acceptProgMismatch:
		low, _ := word(i + 1)
		high, _ := word(i + 2)
		return v4NotSpoken, fmt.Sprintf("the server speaks NFS versions %d to %d only", low, high)
	default:
		return v4NotSpoken, fmt.Sprintf("the server rejected an NFSv4 request (RPC accept status %d)", accept)
	}
	// COMPOUND4res: status, tag (empty, as sent), result count (0).
	body := r[4*(i+1):]
	if len(body) != 12 || binary.BigEndian.Uint32(body[4:]) != 0 || binary.BigEndian.Uint32(body[8:]) != 0 {
		return v4NotSpoken, "the server answered an NFSv4 request with something else (an NFSv3-only server that ignores the RPC version?)"
	}
	switch status := binary.BigEndian.Uint32(body); status {
	case 0:
		return v4Speaks, ""
	case nfs4ErrMinorVers:
		return v4NoMinor, "the server does not support this NFSv4 minor version"
	default:
		// Some servers refuse an empty COMPOUND with an error status: still NFSv4.
		return v4Speaks, ""
	}
}

// probeNFSv4 asks the server at addr whether it speaks NFSv4.minor (see above).
func probeNFSv4(ctx context.Context, addr string, minor uint32) (v4Verdict, string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return v4Unknown, err.Error()
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	xid := uint32(time.Now().UnixNano())
	if _, err := c.Write(compoundCall(xid, minor)); err != nil {
		return v4Unknown, err.Error()
	}
	// The reply may come in several fragments; 64 KiB is far more than any answer to an empty
	// COMPOUND.
	var rec []byte
	for {
		var mark [4]byte
		if _, err := io.ReadFull(c, mark[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return v4NotSpoken, "the server closed the connection on an NFSv4 request"
			}
			return v4Unknown, err.Error()
		}
		m := binary.BigEndian.Uint32(mark[:])
		n := m & 0x7fffffff
		if len(rec)+int(n) > 64<<10 {
			return v4NotSpoken, "an oversized reply to an NFSv4 request"
		}
		frag := make([]byte, n)
		if _, err := io.ReadFull(c, frag); err != nil {
			return v4Unknown, err.Error()
		}
		rec = append(rec, frag...)
		if m&0x80000000 != 0 {
			break
		}
	}
	return judgeCompoundReply(xid, rec)
}
