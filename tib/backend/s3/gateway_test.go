package s3_test

// The tests talk to a real S3 server: versitygw over a POSIX directory, started in this process
// through its embedgw package on 127.0.0.1. embedgw allows one gateway per process, so the TLS
// test starts a second one, with a self-signed certificate, in a child process: this test binary
// run again with CAULDRON_S3_TEST_GATEWAY set (see TestMain).

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cauldron-dr/cauldron/internal/s3gw"
)

const (
	testAccess = "cauldron-test"
	testSecret = "cauldron-test-secret-key-0123456789"
	helperEnv  = "CAULDRON_S3_TEST_GATEWAY"
)

// The in-process gateway starts on first use (see gateway), so that the fuzz workers and the
// tests that need no server do not start one; TestMain stops it.
var shared struct {
	once     sync.Once
	url      string
	err      error
	root     string
	stop     context.CancelFunc
	finished <-chan error
}

// gateway returns the endpoint URL of the shared in-process versitygw.
func gateway(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		shared.root, shared.err = os.MkdirTemp("", "cauldron-s3-test-")
		if shared.err != nil {
			return
		}
		var ctx context.Context
		ctx, shared.stop = context.WithCancel(context.Background())
		var addr string
		addr, shared.finished, shared.err = startGateway(ctx, gatewaySpec{Dir: filepath.Join(shared.root, "s3")})
		shared.url = "http://" + addr
	})
	if shared.err != nil {
		t.Fatalf("starting versitygw: %v", shared.err)
	}
	return shared.url
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(helperGateway(spec))
	}
	code := m.Run()
	if shared.stop != nil {
		shared.stop()
		if shared.finished != nil {
			select {
			case <-shared.finished:
			case <-time.After(20 * time.Second):
				fmt.Fprintln(os.Stderr, "versitygw did not stop")
			}
		}
	}
	if shared.root != "" {
		os.RemoveAll(shared.root)
	}
	os.Exit(code)
}

// gatewaySpec is what a gateway needs; the child process gets it as JSON.
type gatewaySpec struct {
	Dir, Addr, CertFile, KeyFile string
}

// startGateway runs versitygw over spec.Dir on 127.0.0.1 until ctx ends and returns its address
// once it listens.
func startGateway(ctx context.Context, spec gatewaySpec) (string, <-chan error, error) {
	return s3gw.Start(ctx, s3gw.Spec{Dir: spec.Dir, Addr: spec.Addr, Access: testAccess, Secret: testSecret, CertFile: spec.CertFile, KeyFile: spec.KeyFile})
}

// helperGateway is the child process: it serves until its stdin closes (the parent test ends or
// dies), then stops.
func helperGateway(specJSON string) int {
	var spec gatewaySpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr, done, err := startGateway(ctx, spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting versitygw:", err)
		cancel()
		return 1
	}
	fmt.Println("listening", addr)
	bufio.NewReader(os.Stdin).ReadString(0)
	cancel()
	<-done
	return 0
}

// startTLSGateway starts a versitygw serving https with a fresh self-signed certificate for
// 127.0.0.1, in a child process, and returns its endpoint URL and the certificate.
func startTLSGateway(t *testing.T) (string, *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	cert := selfSigned(t, dir)
	addr, err := s3gw.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := json.Marshal(gatewaySpec{
		Dir: filepath.Join(dir, "s3"), Addr: addr,
		CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem"),
	})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the child stops on EOF
		waited := make(chan struct{})
		go func() { cmd.Wait(); close(waited) }()
		select {
		case <-waited:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-waited
		}
	})
	line := make(chan string, 1)
	go func() {
		// The gateway prints its own notes first; the helper's line comes once it listens.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "listening ") {
				line <- sc.Text()
				io.Copy(io.Discard, stdout)
				return
			}
		}
		close(line)
	}()
	select {
	case s, ok := <-line:
		if !ok {
			t.Fatalf("TLS gateway did not start (%q)", s)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("TLS gateway did not start within 60s")
	}
	return "https://" + addr, cert
}

// selfSigned writes cert.pem and key.pem for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "cauldron-lab-s3"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

var bucketSeq atomic.Int64

// newBucket makes a fresh bucket on the gateway at endpoint, as its administrator would (the
// backend itself never creates buckets). roots, if not nil, are the CAs to trust for https.
func newBucket(t *testing.T, endpoint string, roots *x509.CertPool) string {
	t.Helper()
	name := fmt.Sprintf("cauldron-test-%d-%d", os.Getpid(), bucketSeq.Add(1))
	host := strings.TrimPrefix(strings.TrimPrefix(endpoint, "http://"), "https://")
	secure := strings.HasPrefix(endpoint, "https://")
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		t.Fatal(err)
	}
	if roots != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	admin, err := minio.New(host, &minio.Options{
		Creds:     credentials.NewStaticV4(testAccess, testSecret, ""),
		Secure:    secure,
		Region:    "us-east-1",
		Transport: http.RoundTripper(tr),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.MakeBucket(context.Background(), name, minio.MakeBucketOptions{Region: "us-east-1"}); err != nil {
		t.Fatalf("making bucket %s: %v", name, err)
	}
	return name
}
