// Package s3gw runs a real S3 server for the tests and the benchmarks: versitygw, embedded,
// over a POSIX folder, on a loopback address. Debian has no versitygw package; nothing in the
// boot binary links this.
package s3gw

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/versity/versitygw/backend/meta"
	"github.com/versity/versitygw/backend/posix"
	"github.com/versity/versitygw/embedgw"
	"github.com/versity/versitygw/s3api"
)

// Spec is what a gateway needs. Addr empty: a free port on 127.0.0.1. CertFile and KeyFile
// set: https.
type Spec struct {
	Dir, Addr, Access, Secret, CertFile, KeyFile string
}

// Start runs versitygw over spec.Dir until ctx ends and returns its address once it listens;
// done reports how it stopped. embedgw allows one gateway per process.
func Start(ctx context.Context, spec Spec) (addr string, done <-chan error, err error) {
	dir, err := filepath.Abs(spec.Dir)
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	var ms meta.MetadataStorer = meta.XattrMeta{}
	var opts posix.PosixOpts
	if err := (meta.XattrMeta{}).Test(dir); err != nil {
		// A filesystem without user xattrs: keep the metadata in a sidecar folder instead.
		side := dir + ".meta"
		if err := os.MkdirAll(side, 0o700); err != nil {
			return "", nil, err
		}
		sc, err := meta.NewSideCar(side)
		if err != nil {
			return "", nil, err
		}
		ms, opts.SideCarDir = sc, side
	}
	// posix.New changes the working directory to its root: callers use no relative paths.
	be, err := posix.New(dir, ms, opts)
	if err != nil {
		return "", nil, fmt.Errorf("versitygw over %s: %w", dir, err)
	}
	addr = spec.Addr
	if addr == "" {
		if addr, err = FreeAddr(); err != nil {
			return "", nil, err
		}
	}
	ready := make(chan struct{})
	cfg := &embedgw.Config{
		RootUserAccess:    spec.Access,
		RootUserSecret:    spec.Secret,
		Region:            "us-east-1",
		Ports:             []string{addr},
		MaxConnections:    256,
		MaxRequests:       256,
		MultipartMaxParts: 10000,
		CertFile:          spec.CertFile,
		KeyFile:           spec.KeyFile,
		Quiet:             true,
		S3Options:         []s3api.Option{s3api.WithOnListen(func() { close(ready) })},
	}
	stopped := make(chan error, 1)
	go func() { stopped <- embedgw.RunVersityGW(ctx, be, cfg) }()
	select {
	case <-ready:
		return addr, stopped, nil
	case err := <-stopped:
		return "", nil, fmt.Errorf("versitygw stopped: %v", err)
	case <-time.After(30 * time.Second):
		return "", nil, fmt.Errorf("versitygw did not listen on %s within 30 s", addr)
	}
}

// FreeAddr finds a free port on 127.0.0.1; embedgw wants an address, not a listener.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
