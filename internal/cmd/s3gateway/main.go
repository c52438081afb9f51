// Command s3gateway runs an S3 server on loopback for the benchmarks (scripts/bench-net.sh):
// versitygw, embedded, over a POSIX folder. It is no part of cauldron (nothing in the boot
// binary links it); Debian has no versitygw package, and the tests embed the same gateway.
//
//	s3gateway -dir DIR -bucket NAME [-seed REPO] [-addr 127.0.0.1:PORT] [-tls-cert F -tls-key F]
//
// The root user's keys are $AWS_ACCESS_KEY_ID and $AWS_SECRET_ACCESS_KEY, the ones a cauldron
// client reads. With -seed, the local repository REPO is copied into s3://NAME through cauldron's
// own S3 client, so that a network restore reads the very generation a local one does. When it
// serves, it prints "listening URL" on standard output, and it stops on SIGINT or SIGTERM.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cauldron-dr/cauldron/internal/s3gw"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/s3"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "s3gateway:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "", "the folder that holds the buckets (created if missing)")
	addr := flag.String("addr", "127.0.0.1:0", "loopback address to listen on (port 0: any free port)")
	bucket := flag.String("bucket", "", "a bucket to create")
	seed := flag.String("seed", "", "a local repository to copy into the bucket before serving")
	certFile := flag.String("tls-cert", "", "serve https with this certificate (PEM)")
	keyFile := flag.String("tls-key", "", "and this key (PEM)")
	flag.Parse()
	if *dir == "" || *bucket == "" || flag.NArg() > 0 {
		return errors.New("usage: s3gateway -dir DIR -bucket NAME [-seed REPO] [-addr 127.0.0.1:PORT] [-tls-cert F -tls-key F]")
	}
	if (*certFile == "") != (*keyFile == "") {
		return errors.New("-tls-cert and -tls-key go together")
	}
	creds, err := s3.CredentialsFromEnv()
	if err != nil {
		return err
	}
	listen, err := loopbackAddr(*addr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	scheme := "http"
	if *certFile != "" {
		scheme = "https"
	}
	endpoint := scheme + "://" + listen
	_, done, err := s3gw.Start(ctx, s3gw.Spec{Dir: *dir, Addr: listen, Access: creds.AccessKeyID, Secret: creds.SecretAccessKey, CertFile: *certFile, KeyFile: *keyFile})
	if err != nil {
		return err
	}
	if err := makeBucket(ctx, endpoint, *bucket, creds); err != nil {
		return err
	}
	if *seed != "" {
		if err := copyRepository(ctx, *seed, s3.Options{Bucket: *bucket, Endpoint: endpoint, Credentials: creds, InsecureTLS: true}); err != nil {
			return err
		}
	}
	fmt.Println("listening", endpoint)
	return <-done
}

// loopbackAddr refuses anything but a loopback address and picks a free port for port 0
// (embedgw wants an address, not a listener).
func loopbackAddr(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("-addr %s: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("-addr %s: a benchmark gateway listens on a loopback address only", addr)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("-addr %s: %w", addr, err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// makeBucket creates the bucket as an administrator would: cauldron's backend never does.
func makeBucket(ctx context.Context, endpoint, name string, c s3.Credentials) error {
	host, secure := strings.CutPrefix(endpoint, "https://")
	if !secure {
		host = strings.TrimPrefix(endpoint, "http://")
	}
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return err
	}
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} // our own loopback gateway
	admin, err := minio.New(host, &minio.Options{Creds: credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, ""), Secure: secure, Region: "us-east-1", Transport: http.RoundTripper(tr)})
	if err != nil {
		return err
	}
	if err := admin.MakeBucket(ctx, name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		return fmt.Errorf("making bucket %s: %w", name, err)
	}
	return nil
}

// copyRepository saves every file of the local repository at dir into the S3 repository o.
func copyRepository(ctx context.Context, dir string, o s3.Options) error {
	from := local.New(dir)
	to, err := s3.New(ctx, o)
	if err != nil {
		return err
	}
	defer to.Close()
	cp := func(h backend.Handle) error {
		data, err := backend.ReadAll(ctx, from, h)
		if err != nil {
			return fmt.Errorf("seeding from %s: %w", dir, err)
		}
		if err := to.Save(ctx, h, data); err != nil {
			return fmt.Errorf("seeding %s: %w", h, err)
		}
		return nil
	}
	if err := cp(backend.Handle{Type: backend.Config}); err != nil {
		return err
	}
	for _, t := range backend.Types {
		var names []string
		if err := from.List(ctx, t, func(fi backend.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
			return fmt.Errorf("seeding from %s: %w", dir, err)
		}
		for _, n := range names {
			if err := cp(backend.Handle{Type: t, Name: n}); err != nil {
				return err
			}
		}
	}
	return nil
}
