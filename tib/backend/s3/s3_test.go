package s3_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cauldron-dr/cauldron/internal/s3gw"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/backendtest"
	"github.com/cauldron-dr/cauldron/tib/backend/s3"
)

var testCreds = s3.Credentials{AccessKeyID: testAccess, SecretAccessKey: testSecret}

func open(t *testing.T, o s3.Options) *s3.Backend {
	t.Helper()
	if o.Endpoint == "" {
		o.Endpoint = gateway(t)
	}
	if o.Credentials == (s3.Credentials{}) {
		o.Credentials = testCreds
	}
	b, err := s3.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return open(t, s3.Options{Bucket: newBucket(t, gateway(t), nil), Prefix: "repo"})
	})
}

// The conformance suite again with the repository at the bucket's root.
func TestConformanceNoPrefix(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return open(t, s3.Options{Bucket: newBucket(t, gateway(t), nil)})
	})
}

func TestObjectLayout(t *testing.T) {
	ctx := context.Background()
	bucket := newBucket(t, gateway(t), nil)
	b := open(t, s3.Options{Bucket: bucket, Prefix: "/prod/web01/"})
	if got, want := b.Location(), "s3://"+bucket+"/prod/web01"; got != want {
		t.Fatalf("Location = %q, want %q", got, want)
	}
	if err := b.Create(ctx); err != nil {
		t.Fatal(err)
	}
	files := []backend.Handle{
		{Type: backend.Config}, {Type: backend.Key, Name: "k1"}, {Type: backend.Pack, Name: "ab12"},
		{Type: backend.Index, Name: "i1"}, {Type: backend.Generation, Name: "g1"},
		{Type: backend.Lock, Name: "l1"}, {Type: backend.Session, Name: "s1"},
		{Type: backend.Journal, Name: "j1"}, {Type: backend.Report, Name: "r1"},
	}
	for _, h := range files {
		if err := b.Save(ctx, h, []byte(h.String())); err != nil {
			t.Fatal(err)
		}
	}
	// The gateway keeps key a/b/c as the file BUCKET/a/b/c: its folder is an independent view
	// of what the backend wrote.
	want := []string{
		"prod/web01/config", "prod/web01/data/ab/ab12", "prod/web01/generations/g1", "prod/web01/index/i1",
		"prod/web01/journals/j1", "prod/web01/keys/k1", "prod/web01/locks/l1", "prod/web01/reports/r1",
		"prod/web01/sessions/s1",
	}
	got := bucketFiles(t, bucket)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("object keys:\n%v\nwant\n%v", got, want)
	}
}

// bucketFiles lists, sorted, the files in the gateway's folder for bucket.
func bucketFiles(t *testing.T, bucket string) []string {
	t.Helper()
	var keys []string
	dir := filepath.Join(shared.root, "s3", bucket)
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && p != dir {
				return filepath.SkipDir // the gateway's own bookkeeping
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		keys = append(keys, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys
}

func TestMissingBucket(t *testing.T) {
	_, err := s3.New(context.Background(), s3.Options{
		Bucket: "no-such-bucket", Prefix: "prod", Endpoint: gateway(t), Credentials: testCreds,
	})
	if err == nil {
		t.Fatal("New on a missing bucket succeeded")
	}
	msg := err.Error()
	for _, want := range []string{`bucket "no-such-bucket" does not exist`, gateway(t), "does not create buckets"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not say %q", msg, want)
		}
	}
	t.Log(msg)
}

func TestWrongCredentials(t *testing.T) {
	bucket := newBucket(t, gateway(t), nil)
	for _, c := range []struct {
		name  string
		creds s3.Credentials
		want  string
	}{
		{"unknown access key", s3.Credentials{AccessKeyID: "nobody", SecretAccessKey: testSecret}, `access key "nobody" is not known`},
		{"wrong secret", s3.Credentials{AccessKeyID: testAccess, SecretAccessKey: "wrong-secret"}, "the secret key does not match"},
		{"anonymous", s3.Credentials{}, "denied access to anonymous requests (no credentials were given)"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := s3.Options{Bucket: bucket, Endpoint: gateway(t), Credentials: c.creds}
			_, err := s3.New(context.Background(), o)
			if err == nil {
				t.Fatal("New with bad credentials succeeded")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), gateway(t)) {
				t.Fatalf("message %q does not say %q and name the endpoint", err, c.want)
			}
			t.Log(err)
		})
	}
}

// Two repositories in one bucket, under prefixes where one is a string prefix of the other,
// and a third nested inside the first: none sees the others' files.
func TestPrefixIsolation(t *testing.T) {
	ctx := context.Background()
	bucket := newBucket(t, gateway(t), nil)
	repos := map[string]*s3.Backend{}
	for _, p := range []string{"site", "site-b", "site/nested"} {
		b := open(t, s3.Options{Bucket: bucket, Prefix: p})
		repos[p] = b
	}
	// The nested repository first; "site" must then refuse Create, as it is not empty.
	if err := repos["site/nested"].Create(ctx); err != nil {
		t.Fatal(err)
	}
	if err := repos["site/nested"].Save(ctx, backend.Handle{Type: backend.Config}, []byte("site/nested")); err != nil {
		t.Fatal(err)
	}
	if err := repos["site"].Create(ctx); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("Create over a prefix holding another repository: %v", err)
	}
	if err := repos["site-b"].Create(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"site", "site-b"} {
		if err := repos[p].Save(ctx, backend.Handle{Type: backend.Config}, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	for p, b := range repos {
		for _, h := range []backend.Handle{
			{Type: backend.Pack, Name: "aa01"}, {Type: backend.Index, Name: "i-" + strings.ReplaceAll(p, "/", "-")},
		} {
			if err := b.Save(ctx, h, []byte(p)); err != nil {
				t.Fatalf("%s: %v", p, err)
			}
		}
	}
	for p, b := range repos {
		for _, typ := range []backend.FileType{backend.Pack, backend.Index} {
			var names []string
			err := b.List(ctx, typ, func(fi backend.FileInfo) error {
				names = append(names, fi.Name)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 {
				t.Errorf("%s: %s list = %v, want its own one file", p, typ, names)
			}
		}
		got, err := backend.ReadAll(ctx, b, backend.Handle{Type: backend.Config})
		if err != nil || string(got) != p {
			t.Errorf("%s: config = %q, %v", p, got, err)
		}
	}
	if err := repos["site"].Remove(ctx, backend.Handle{Type: backend.Pack, Name: "aa01"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"site-b", "site/nested"} {
		if _, err := repos[p].Stat(ctx, backend.Handle{Type: backend.Pack, Name: "aa01"}); err != nil {
			t.Errorf("removing site's pack touched %s: %v", p, err)
		}
	}
}

func TestCreateRefusesNonEmpty(t *testing.T) {
	ctx := context.Background()
	bucket := newBucket(t, gateway(t), nil)
	other := open(t, s3.Options{Bucket: bucket, Prefix: "photos"})
	if err := other.Save(ctx, backend.Handle{Type: backend.Report, Name: "holiday.jpg"}, []byte("x")); err != nil {
		t.Fatal(err)
	}
	b := open(t, s3.Options{Bucket: bucket, Prefix: "photos"})
	err := b.Create(ctx)
	if err == nil || !strings.Contains(err.Error(), "s3://"+bucket+"/photos/reports/holiday.jpg") {
		t.Fatalf("Create over foreign data: %v", err)
	}
	// The existing-config case wraps ErrExist, as the local backend does.
	if err := b.Save(ctx, backend.Handle{Type: backend.Config}, []byte("c")); err != nil {
		t.Fatal(err)
	}
	if err := b.Create(ctx); !errors.Is(err, backend.ErrExist) {
		t.Fatalf("Create over a config: %v", err)
	}
}

func TestLoadEdges(t *testing.T) {
	ctx := context.Background()
	b := open(t, s3.Options{Bucket: newBucket(t, gateway(t), nil), Prefix: "r"})
	empty := backend.Handle{Type: backend.Lock, Name: "empty"}
	if err := b.Save(ctx, empty, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := backend.ReadAll(ctx, b, empty); err != nil || len(got) != 0 {
		t.Fatalf("empty file: %q, %v", got, err)
	}
	h := backend.Handle{Type: backend.Index, Name: "ten"}
	if err := b.Save(ctx, h, []byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if got, err := b.Load(ctx, h, 0, 10); err != nil || len(got) != 0 {
		t.Fatalf("Load(0, at the end) = %q, %v; want empty", got, err)
	}
	for _, c := range []struct {
		n   int
		off int64
	}{{0, 11}, {1, 10}, {5, 8}, {1, 100}} {
		if _, err := b.Load(ctx, h, c.n, c.off); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Load(%d at %d) past the end: %v, want io.ErrUnexpectedEOF", c.n, c.off, err)
		}
	}
	if _, err := b.Load(ctx, h, -1, 0); err == nil {
		t.Error("negative length accepted")
	}
	// backend.Reader on top: ReadAt at the end of the file reports io.EOF.
	buf := make([]byte, 4)
	if n, err := backend.Reader(ctx, b, h).ReadAt(buf, 6); n != 4 || err != nil || string(buf) != "6789" {
		t.Fatalf("ReadAt = %d %q %v", n, buf, err)
	}
	// A missing file's message names the bucket and key.
	_, err := b.Stat(ctx, backend.Handle{Type: backend.Key, Name: "nokey"})
	if !errors.Is(err, backend.ErrNotExist) || !strings.Contains(err.Error(), "/r/keys/nokey") {
		t.Fatalf("Stat of a missing key: %v", err)
	}
}

func TestCheckThenPut(t *testing.T) {
	ctx := context.Background()
	b := open(t, s3.Options{Bucket: newBucket(t, gateway(t), nil), Prefix: "old-server", CheckThenPut: true})
	h := backend.Handle{Type: backend.Generation, Name: "g1"}
	if err := b.Save(ctx, h, []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, h, []byte("two")); !errors.Is(err, backend.ErrExist) {
		t.Fatalf("second Save: %v, want ErrExist", err)
	}
	l := backend.Handle{Type: backend.Lock, Name: "l"}
	for _, s := range []string{"a", "b"} {
		if err := b.Save(ctx, l, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInsecureTLS(t *testing.T) {
	endpoint, cert := startTLSGateway(t)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	bucket := newBucket(t, endpoint, roots)
	ctx := context.Background()

	_, err := s3.New(ctx, s3.Options{Bucket: bucket, Endpoint: endpoint, Credentials: testCreds})
	if err == nil {
		t.Fatal("a self-signed certificate was accepted without InsecureTLS")
	}
	if !strings.Contains(err.Error(), "is not trusted") || !strings.Contains(err.Error(), endpoint) {
		t.Fatalf("message %q does not point at the certificate and the endpoint", err)
	}
	t.Log(err)

	b, err := s3.New(ctx, s3.Options{Bucket: bucket, Prefix: "lab", Endpoint: endpoint, Credentials: testCreds, InsecureTLS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Create(ctx); err != nil {
		t.Fatal(err)
	}
	data := bytes.Repeat([]byte("tls"), 10000)
	h := backend.Handle{Type: backend.Pack, Name: "cafe01"}
	if err := b.Save(ctx, h, data); err != nil {
		t.Fatal(err)
	}
	if err := b.Save(ctx, h, data); !errors.Is(err, backend.ErrExist) {
		t.Fatalf("second Save over TLS: %v", err)
	}
	got, err := b.Load(ctx, h, 9, 3)
	if err != nil || string(got) != "tlstlstls" {
		t.Fatalf("Load over TLS = %q, %v", got, err)
	}

	backendtest.Run(t, func(t *testing.T) backend.Backend {
		return open(t, s3.Options{Bucket: newBucket(t, endpoint, roots), Prefix: "repo", Endpoint: endpoint, InsecureTLS: true})
	})
}

// minio-go retries 503s by itself (ten times, with back-off); a deadline must cut that short.
// The server here is a stand-in that only ever answers "slow down", which no real server can
// be told to do.
func TestContextEndsRetries(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := s3.New(ctx, s3.Options{Bucket: "busy-bucket", Endpoint: srv.URL, Credentials: testCreds})
	took := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("New against a server that keeps answering 503: %v, want DeadlineExceeded", err)
	}
	if took > 3*time.Second {
		t.Fatalf("New took %s after a 300ms deadline", took)
	}
	if hits.Load() < 2 {
		t.Fatalf("minio-go did not retry (%d requests)", hits.Load())
	}

	// An already cancelled context stops Save and Load on the real server.
	b := open(t, s3.Options{Bucket: newBucket(t, gateway(t), nil)})
	done, cancelNow := context.WithCancel(context.Background())
	cancelNow()
	if err := b.Save(done, backend.Handle{Type: backend.Index, Name: "x"}, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Save with a cancelled context: %v", err)
	}
	if _, err := b.Load(done, backend.Handle{Type: backend.Index, Name: "x"}, 0, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Load with a cancelled context: %v", err)
	}
	if err := b.List(done, backend.Index, func(backend.FileInfo) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("List with a cancelled context: %v", err)
	}
}

func TestListStopsOnCallbackError(t *testing.T) {
	ctx := context.Background()
	b := open(t, s3.Options{Bucket: newBucket(t, gateway(t), nil)})
	for i := 0; i < 5; i++ {
		if err := b.Save(ctx, backend.Handle{Type: backend.Pack, Name: fmt.Sprintf("%02x%d", i, i)}, []byte("p")); err != nil {
			t.Fatal(err)
		}
	}
	stop := errors.New("enough")
	calls := 0
	err := b.List(ctx, backend.Pack, func(backend.FileInfo) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("List = %v after %d calls, want the callback's error after 1", err, calls)
	}
}

func TestBadOptions(t *testing.T) {
	for _, c := range []struct {
		o    s3.Options
		want string
	}{
		{s3.Options{Bucket: "Bad_Bucket"}, "upper-case"},
		{s3.Options{Bucket: "ok-bucket", Prefix: "a//b"}, "empty path segment"},
		{s3.Options{Bucket: "ok-bucket", Endpoint: "127.0.0.1:9000"}, "scheme"},
		{s3.Options{Bucket: "ok-bucket", Endpoint: "ftp://127.0.0.1:9000"}, `scheme "ftp"`},
		{s3.Options{Bucket: "ok-bucket", Endpoint: "http://127.0.0.1:9000/ok-bucket"}, "only scheme, host and port"},
		{s3.Options{Bucket: "ok-bucket", Endpoint: "http://user:pw@127.0.0.1:9000"}, "credentials do not belong"},
	} {
		_, err := s3.New(context.Background(), c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("New(%+v) = %v, want a message with %q", c.o, err, c.want)
		}
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	addr, err := s3gw.FreeAddr() // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = s3.New(ctx, s3.Options{Bucket: "some-bucket", Endpoint: "http://" + addr, Credentials: testCreds})
	if err == nil || !strings.Contains(err.Error(), "cannot reach http://"+addr) {
		t.Fatalf("New against a closed port: %v", err)
	}
}

// minio-go v7.4.1 means not to retry a certificate signed by an unknown authority, but it looks
// for a bare x509.UnknownAuthorityError, which Go has wrapped in *tls.CertificateVerificationError
// since 1.20: the raw client makes about ten TLS handshakes before it gives up. The backend's
// transport unwraps the error, so one handshake decides.
func TestCertificateErrorNotRetried(t *testing.T) {
	var handshakes atomic.Int64
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			handshakes.Add(1)
		}
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failed handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")

	raw, err := minio.New(host, &minio.Options{
		Creds: credentials.NewStaticV4(testAccess, testSecret, ""), Secure: true, Region: "us-east-1",
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.BucketExists(context.Background(), "some-bucket"); err == nil {
		t.Fatal("raw minio-go accepted an unknown certificate")
	}
	rawTries := handshakes.Swap(0)
	t.Logf("raw minio-go: %d connections for one request to an untrusted server", rawTries)
	if rawTries < 2 {
		t.Logf("minio-go no longer retries certificate errors; certErrorTransport may go")
	}

	_, err = s3.New(context.Background(), s3.Options{Bucket: "some-bucket", Endpoint: srv.URL, Credentials: testCreds})
	if err == nil || !strings.Contains(err.Error(), "is not trusted") {
		t.Fatalf("New against an untrusted server: %v", err)
	}
	if n := handshakes.Load(); n != 1 {
		t.Fatalf("the backend made %d connections to an untrusted server, want 1", n)
	}
}

// versitygw v1.8.0 in single-account mode answers a request signed with an unknown access key
// with 404 XAdminUserNotFound (an admin-API error) where S3 says 403 InvalidAccessKeyId: its
// IAMServiceSingle.GetUserAccount returns that error instead of auth.ErrNoSuchUser, which the
// authentication middleware maps. The backend reads both codes the same way; if this test fails
// after an upgrade, versitygw answers correctly and the extra code in fail may go.
func TestVersitygwUnknownKeyCode(t *testing.T) {
	host := strings.TrimPrefix(gateway(t), "http://")
	raw, err := minio.New(host, &minio.Options{
		Creds: credentials.NewStaticV4("nobody", testSecret, ""), Region: "us-east-1", MaxRetries: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// A GET, since a HEAD's answer has no body to carry the code.
	_, _, _, err = minio.Core{Client: raw}.GetObject(context.Background(), newBucket(t, gateway(t), nil), "k", minio.GetObjectOptions{})
	resp := minio.ToErrorResponse(err)
	if resp.StatusCode != http.StatusNotFound || resp.Code != "XAdminUserNotFound" {
		t.Fatalf("unknown access key: %d %s (%v); versitygw's answer changed", resp.StatusCode, resp.Code, err)
	}
}

// Two answers no test server can be made to give, from a stand-in: Amazon's 409
// ConditionalRequestConflict while another conditional write of the key is in flight (the
// backend asks again and gets the final 412), and a 200 with the whole file for a ranged GET
// (which must not be taken for the range).
func TestMisbehavingServer(t *testing.T) {
	var puts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		switch {
		case r.Method == http.MethodGet && r.URL.Query().Has("list-type"):
			fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>stand-in</Name><IsTruncated>false</IsTruncated></ListBucketResult>`)
		case r.Method == http.MethodPut:
			io.Copy(io.Discard, r.Body)
			if r.Header.Get("If-None-Match") != "*" {
				t.Errorf("PUT without If-None-Match: *")
			}
			code, status := "ConditionalRequestConflict", http.StatusConflict
			if puts.Add(1) > 1 {
				code, status = "PreconditionFailed", http.StatusPreconditionFailed
			}
			w.WriteHeader(status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>stand-in</Message></Error>`, code)
		case r.Method == http.MethodGet:
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", "10")
			w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
			w.Header().Set("ETag", `"e"`)
			fmt.Fprint(w, "0123456789") // Range ignored
		default:
			w.WriteHeader(http.StatusNotImplemented)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	b, err := s3.New(ctx, s3.Options{Bucket: "stand-in", Endpoint: srv.URL, Credentials: testCreds})
	if err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Type: backend.Generation, Name: "g1"}
	if err := b.Save(ctx, h, []byte("g")); !errors.Is(err, backend.ErrExist) || puts.Load() != 2 {
		t.Fatalf("Save after a 409 = %v after %d PUTs; want ErrExist after 2", err, puts.Load())
	}
	if got, err := b.Load(ctx, h, 3, 2); err == nil || !strings.Contains(err.Error(), "Content-Range") {
		t.Fatalf("Load from a server that ignores Range = %q, %v", got, err)
	}
	if got, err := b.Load(ctx, h, 0, 0); err != nil || string(got) != "0123456789" {
		t.Fatalf("whole Load = %q, %v", got, err)
	}
}
