// Package s3 stores a repository in an S3 bucket (Amazon S3, or an S3-compatible server such as
// MinIO, Ceph RGW or versitygw given by its endpoint URL), through minio-go.
//
// Layout, under an optional key prefix: PREFIX/config, PREFIX/keys/ID, PREFIX/data/XX/ID (XX: the
// first two characters of the name, as in the local layout, so listings and server-side folders
// stay small), PREFIX/index/ID, PREFIX/generations/ID, PREFIX/locks/ID, PREFIX/sessions/NAME,
// PREFIX/journals/NAME, PREFIX/reports/ID. S3 has no folders, so Create writes nothing.
//
// Atomicity comes from S3 itself: a single PUT (never multipart here; one PUT holds up to 5 GiB,
// far more than a pack) makes an object appear whole or not at all. Files that must not be replaced are written with a conditional PUT
// ("If-None-Match: *"), so of two writers racing for one name exactly one wins and the other gets
// backend.ErrExist; Amazon S3 and current S3-compatible servers honour it. For a server that
// refuses the header, Options.CheckThenPut writes after a separate existence check instead: then
// a race between two writers of the same name remains. minio-go retries a request whose answer
// was lost; should the lost answer have been a success, the retried conditional PUT reports
// backend.ErrExist for a file this very call wrote (with the same content).
//
// minio-go retries failed requests by itself (up to ten tries with back-off); every call takes a
// ctx whose cancellation or deadline ends those retries and is what the error then wraps.
//
// Cauldron never creates buckets: a bucket's region, object lock, versioning and lifecycle are
// the storage owner's decisions, and creating one silently would turn a mistyped bucket name into
// a backup nobody will find. A missing bucket is an error that names it.
package s3

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// Options say where the repository is and how to reach it.
type Options struct {
	Bucket string
	Prefix string // key prefix; slashes at either end are ignored
	// Endpoint is the http:// or https:// URL of an S3-compatible server (host and port only);
	// empty means Amazon S3.
	Endpoint string
	// Region of the bucket. Empty: asked from the server (Amazon) or us-east-1 (other servers).
	Region      string
	Credentials Credentials
	// InsecureTLS accepts any certificate from an https endpoint: for a lab server with a
	// self-signed certificate only, since it gives up knowing who answers.
	InsecureTLS bool
	// CheckThenPut replaces the conditional PUT by an existence check before the PUT, for
	// servers that reject If-None-Match; two writers racing for one name may then both succeed.
	CheckThenPut bool
	// Transport carries the requests (tests); nil: minio-go's default transport.
	Transport http.RoundTripper
}

// Backend is a repository in an S3 bucket; it implements backend.Backend.
type Backend struct {
	client   *minio.Client
	core     minio.Core
	loc      Location
	base     string // key prefix with its trailing slash, or empty
	endpoint string // for messages: the URL the technician gave, or "Amazon S3"
	accessID string
	anon     bool
	checkPut bool
	tr       http.RoundTripper
}

var _ backend.Backend = (*Backend)(nil)

// New connects to the bucket and checks, with one listing request, that the bucket exists and the
// credentials are accepted, so that those mistakes are reported before anything else is tried.
func New(ctx context.Context, o Options) (*Backend, error) {
	if err := CheckBucketName(o.Bucket); err != nil {
		return nil, fmt.Errorf("S3 repository: %w", err)
	}
	prefix, err := CleanPrefix(o.Prefix)
	if err != nil {
		return nil, fmt.Errorf("S3 repository: %w", err)
	}
	host, secure, err := parseEndpoint(o.Endpoint)
	if err != nil {
		return nil, err
	}
	region := o.Region
	if region == "" && o.Endpoint != "" {
		// Most S3-compatible servers have a single region and answer the location query
		// inconsistently; us-east-1 is what they all accept.
		region = "us-east-1"
	}
	tr := o.Transport
	if tr == nil {
		t, err := minio.DefaultTransport(secure)
		if err != nil {
			return nil, fmt.Errorf("S3 repository: %w", err)
		}
		tr = t
	}
	if o.InsecureTLS {
		t, ok := tr.(*http.Transport)
		if !ok {
			return nil, errors.New("S3 repository: InsecureTLS needs an *http.Transport")
		}
		t = t.Clone()
		if t.TLSClientConfig == nil {
			t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		t.TLSClientConfig.InsecureSkipVerify = true
		tr = t
	}
	tr = certErrorTransport{tr}
	c := o.Credentials
	client, err := minio.New(host, &minio.Options{
		Creds:     credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, c.SessionToken),
		Secure:    secure,
		Region:    region,
		Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 repository at %s: %w", endpointName(o.Endpoint), err)
	}
	b := &Backend{
		client:   client,
		core:     minio.Core{Client: client},
		loc:      Location{Bucket: o.Bucket, Prefix: prefix},
		endpoint: endpointName(o.Endpoint),
		accessID: c.AccessKeyID,
		anon:     c.anonymous(),
		checkPut: o.CheckThenPut,
		tr:       tr,
	}
	if prefix != "" {
		b.base = prefix + "/"
	}
	if _, err := b.firstKey(ctx, b.base); err != nil {
		return nil, err
	}
	return b, nil
}

func endpointName(endpoint string) string {
	if endpoint == "" {
		return "Amazon S3"
	}
	return endpoint
}

// parseEndpoint checks the endpoint URL and returns what minio-go wants: host[:port] and whether
// to use TLS.
func parseEndpoint(endpoint string) (host string, secure bool, err error) {
	if endpoint == "" {
		return "s3.amazonaws.com", true, nil
	}
	bad := func(why string) error { return fmt.Errorf("S3 endpoint %q: %s", endpoint, why) }
	if !strings.Contains(endpoint, "://") {
		return "", false, bad("the scheme is missing (want http://HOST:PORT or https://HOST:PORT)")
	}
	u, err := url.Parse(endpoint)
	if err != nil {
		return "", false, bad("not a URL (want http://HOST:PORT or https://HOST:PORT)")
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		secure = true
	case "http":
	default:
		return "", false, bad(fmt.Sprintf("scheme %q is not http or https", u.Scheme))
	}
	if u.Host == "" {
		return "", false, bad("the host is missing")
	}
	if u.User != nil {
		return "", false, bad("credentials do not belong in the URL")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false, bad("only scheme, host and port are allowed (the bucket and prefix go in the s3:// location)")
	}
	return u.Host, secure, nil
}

// Location returns s3://BUCKET/PREFIX.
func (b *Backend) Location() string { return b.loc.String() }

// Endpoint returns the server as given (its URL), or "Amazon S3".
func (b *Backend) Endpoint() string { return b.endpoint }

// key is the object key of h; it checks the name like the local backend does.
func (b *Backend) key(h backend.Handle) (string, error) {
	if h.Type == backend.Config {
		return b.base + "config", nil
	}
	known := false
	for _, t := range backend.Types {
		known = known || t == h.Type
	}
	if !known {
		return "", fmt.Errorf("%s: unknown file type %q", b.Location(), h.Type)
	}
	if h.Name == "" || h.Name == "." || h.Name == ".." || strings.ContainsAny(h.Name, "/\\") {
		return "", fmt.Errorf("%s: invalid file name %q", b.Location(), h.Name)
	}
	if h.Type == backend.Pack && len(h.Name) >= 2 {
		return b.base + string(h.Type) + "/" + h.Name[:2] + "/" + h.Name, nil
	}
	return b.base + string(h.Type) + "/" + h.Name, nil
}

// where names an object for messages: s3://BUCKET/KEY.
func (b *Backend) where(key string) string {
	if key == "" {
		return "s3://" + b.loc.Bucket
	}
	return "s3://" + b.loc.Bucket + "/" + key
}

// Create checks that a new repository may start here: the bucket exists (New checked), no
// config is there and nothing else is under the prefix, so a repository is never mixed into
// other data. There are no folders to make.
func (b *Backend) Create(ctx context.Context) error {
	cfg, _ := b.key(backend.Handle{Type: backend.Config})
	if _, err := b.client.StatObject(ctx, b.loc.Bucket, cfg, minio.StatObjectOptions{}); err == nil {
		return fmt.Errorf("%s: a repository already exists here: %w", b.Location(), backend.ErrExist)
	} else if err := b.fail(ctx, cfg, err); !errors.Is(err, backend.ErrNotExist) {
		return err
	}
	key, err := b.firstKey(ctx, b.base)
	if err != nil {
		return err
	}
	if key != "" {
		return fmt.Errorf("%s: not empty (it holds %s); a new repository needs an empty bucket or an unused prefix", b.Location(), b.where(key))
	}
	return nil
}

// firstKey lists at most one key under prefix; it is also the probe that turns a missing bucket
// and rejected credentials into plain messages.
func (b *Backend) firstKey(ctx context.Context, prefix string) (string, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops minio-go's listing goroutine
	// Recursive, so the answer is a real key to name rather than a folder.
	for obj := range b.client.ListObjects(lctx, b.loc.Bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: 1, Recursive: true}) {
		if obj.Err != nil {
			return "", b.fail(ctx, prefix, obj.Err)
		}
		return obj.Key, nil
	}
	// A cancelled listing ends its channel quietly.
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", b.Location(), err)
	}
	return "", nil
}

// Save stores data with a single PUT; for files that must not be replaced, conditionally.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	key, err := b.key(h)
	if err != nil {
		return err
	}
	conditional := !h.Type.Replaceable()
	if conditional && b.checkPut {
		_, err := b.client.StatObject(ctx, b.loc.Bucket, key, minio.StatObjectOptions{})
		if err == nil {
			return fmt.Errorf("%s: %w", b.where(key), backend.ErrExist)
		}
		if err := b.fail(ctx, key, err); !errors.Is(err, backend.ErrNotExist) {
			return err
		}
		conditional = false
	}
	for attempt := 0; ; attempt++ {
		opts := minio.PutObjectOptions{
			ContentType: "application/octet-stream",
			// One request, so the object appears whole or not at all, and a conditional
			// header applies to the one request that creates it.
			DisableMultipart: true,
			// MD5 is the integrity check every S3 implementation verifies.
			SendContentMd5: true,
		}
		if conditional {
			opts.SetMatchETagExcept("*")
		}
		_, err = b.client.PutObject(ctx, b.loc.Bucket, key, bytes.NewReader(data), int64(len(data)), opts)
		if err == nil {
			return nil
		}
		var resp minio.ErrorResponse
		// Amazon answers 409 ConditionalRequestConflict while another conditional write of the
		// same key is in flight; asking again gets the final answer (412 once it has landed).
		if conditional && errors.As(err, &resp) && resp.StatusCode == http.StatusConflict && attempt < 5 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: %w", b.where(key), ctx.Err())
			case <-time.After(time.Duration(50<<attempt) * time.Millisecond):
			}
			continue
		}
		return b.fail(ctx, key, err)
	}
}

// Load reads length bytes at offset (length 0: to the end) with a ranged GET. Fewer bytes than
// asked for is an error wrapping io.ErrUnexpectedEOF.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64) ([]byte, error) {
	key, err := b.key(h)
	if err != nil {
		return nil, err
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("%s: invalid range offset %d length %d", b.where(key), offset, length)
	}
	var opts minio.GetObjectOptions
	switch {
	case length > 0:
		err = opts.SetRange(offset, offset+int64(length)-1)
	case offset > 0:
		err = opts.SetRange(offset, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", b.where(key), err)
	}
	body, info, hdr, err := b.core.GetObject(ctx, b.loc.Bucket, key, opts)
	if err != nil {
		var resp minio.ErrorResponse
		if errors.As(err, &resp) && resp.StatusCode == http.StatusRequestedRangeNotSatisfiable {
			return b.pastEnd(ctx, key, length, offset)
		}
		return nil, b.fail(ctx, key, err)
	}
	defer body.Close()
	if length > 0 || offset > 0 {
		// A server that ignored the Range header would hand back the file from its start;
		// reading that as the asked-for range would be silent corruption.
		var start int64
		if _, err := fmt.Sscanf(hdr.Get("Content-Range"), "bytes %d-", &start); err != nil || start != offset {
			return nil, fmt.Errorf("%s: the server answered a read at offset %d with Content-Range %q", b.where(key), offset, hdr.Get("Content-Range"))
		}
	}
	var buf []byte
	want := length
	if length == 0 && info.Size >= 0 {
		want = int(info.Size) // the response's Content-Length: the bytes from offset on
	}
	if want > 0 || length == 0 && info.Size == 0 {
		buf = make([]byte, want)
		var n int
		n, err = io.ReadFull(body, buf)
		buf = buf[:n]
	} else {
		buf, err = io.ReadAll(body) // no Content-Length: to the end, however long
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return buf, fmt.Errorf("%s: short read at %d (wanted %d bytes, got %d): %w", b.where(key), offset, want, len(buf), io.ErrUnexpectedEOF)
	}
	if err != nil {
		return nil, b.fail(ctx, key, err)
	}
	return buf, nil
}

// pastEnd answers a ranged GET the server refused as unsatisfiable: reading to the end from
// exactly the end is an empty result; anything else is a short read.
func (b *Backend) pastEnd(ctx context.Context, key string, length int, offset int64) ([]byte, error) {
	info, err := b.client.StatObject(ctx, b.loc.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return nil, b.fail(ctx, key, err)
	}
	if length == 0 && offset == info.Size {
		return []byte{}, nil
	}
	return nil, fmt.Errorf("%s: offset %d past the end (%d bytes): %w", b.where(key), offset, info.Size, io.ErrUnexpectedEOF)
}

// Stat reports a file's size and the object's Last-Modified time (the S3 server's clock).
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	key, err := b.key(h)
	if err != nil {
		return backend.FileInfo{}, err
	}
	info, err := b.client.StatObject(ctx, b.loc.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return backend.FileInfo{}, b.fail(ctx, key, err)
	}
	return backend.FileInfo{Name: h.Name, Size: info.Size, ModTime: info.LastModified}, nil
}

// List calls fn for each file of type t. Packs are listed through their XX/ sub-prefixes;
// other types only at their own level, so nothing of another type (or repository, under a
// longer prefix) is reported.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if t == backend.Config {
		return fmt.Errorf("%s: the config is not listed", b.Location())
	}
	dir := b.base + string(t) + "/"
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // an early return stops minio-go's listing goroutine
	for obj := range b.client.ListObjects(lctx, b.loc.Bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: t == backend.Pack}) {
		if obj.Err != nil {
			return b.fail(ctx, dir, obj.Err)
		}
		rel := strings.TrimPrefix(obj.Key, dir)
		if rel == "" || strings.HasSuffix(rel, "/") {
			continue // a common prefix or a folder marker
		}
		name := rel
		if t == backend.Pack {
			parts := strings.Split(rel, "/")
			if len(parts) > 2 {
				continue
			}
			name = parts[len(parts)-1]
		}
		if err := fn(backend.FileInfo{Name: name, Size: obj.Size, ModTime: obj.LastModified}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: listing %s: %w", b.Location(), t, err)
	}
	return nil
}

// Remove deletes a file. S3 deletes missing keys without complaint, so the key is checked first;
// of two concurrent removals of one file both may succeed.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	key, err := b.key(h)
	if err != nil {
		return err
	}
	if _, err := b.client.StatObject(ctx, b.loc.Bucket, key, minio.StatObjectOptions{}); err != nil {
		return b.fail(ctx, key, err)
	}
	if err := b.client.RemoveObject(ctx, b.loc.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return b.fail(ctx, key, err)
	}
	return nil
}

// Close releases idle connections.
func (b *Backend) Close() error {
	if t, ok := b.tr.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
	return nil
}

// fail turns a minio-go error about key into one that says what went wrong in the technician's
// terms; missing files wrap backend.ErrNotExist, refused conditional writes backend.ErrExist,
// and a cancelled or expired ctx its error.
func (b *Backend) fail(ctx context.Context, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%s: %w", b.where(key), cerr)
	}
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		var unknownCA x509.UnknownAuthorityError
		var verify *tls.CertificateVerificationError
		if errors.As(err, &unknownCA) || errors.As(err, &verify) {
			return fmt.Errorf("%s: the certificate of %s is not trusted (for a lab server with a self-signed certificate, use the insecure-TLS option): %w", b.where(key), b.endpoint, err)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			return fmt.Errorf("%s: cannot reach %s: %w", b.where(key), b.endpoint, err)
		}
		return fmt.Errorf("%s: %w", b.where(key), err)
	}
	who := fmt.Sprintf("access key %q", b.accessID)
	if b.anon {
		who = "anonymous requests (no credentials were given)"
	}
	switch resp.Code {
	case minio.NoSuchKey:
		return fmt.Errorf("%s: %w", b.where(key), backend.ErrNotExist)
	case minio.NoSuchBucket:
		return fmt.Errorf("bucket %q does not exist on %s (Cauldron does not create buckets; create it with the storage's own tools)", b.loc.Bucket, b.endpoint)
	case minio.PreconditionFailed:
		return fmt.Errorf("%s: %w", b.where(key), backend.ErrExist)
	case "InvalidAccessKeyId", "XAdminUserNotFound":
		// versitygw v1.8.0 in single-account mode answers an unknown key with 404
		// XAdminUserNotFound instead of 403 InvalidAccessKeyId (TestVersitygwUnknownKeyCode).
		return fmt.Errorf("%s refused the credentials: access key %q is not known there: %w", b.endpoint, b.accessID, err)
	case "SignatureDoesNotMatch":
		return fmt.Errorf("%s refused the credentials: the secret key does not match access key %q: %w", b.endpoint, b.accessID, err)
	case "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
		return fmt.Errorf("%s refused the session token of access key %q (expired or invalid): %w", b.endpoint, b.accessID, err)
	case "RequestTimeTooSkewed":
		return fmt.Errorf("%s: this machine's clock differs too much from the server's; set the date and retry: %w", b.endpoint, err)
	case minio.AccessDenied, "AllAccessDisabled":
		return fmt.Errorf("%s: %s denied access to %s: %w", b.where(key), b.endpoint, who, err)
	}
	return fmt.Errorf("%s on %s: %w", b.where(key), b.endpoint, err)
}

// certErrorTransport hands an unknown-authority certificate error to minio-go as the bare
// x509.UnknownAuthorityError it tests for: since Go 1.20 the error comes wrapped in a
// *tls.CertificateVerificationError, minio-go v7.4.1 no longer recognises it and retries ten
// times with back-off before reporting it (TestCertificateErrorNotRetried).
type certErrorTransport struct{ http.RoundTripper }

func (t certErrorTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.RoundTripper.RoundTrip(r)
	var verify *tls.CertificateVerificationError
	var unknownCA x509.UnknownAuthorityError
	if errors.As(err, &verify) && errors.As(verify.Err, &unknownCA) {
		return nil, unknownCA
	}
	return resp, err
}

func (t certErrorTransport) CloseIdleConnections() {
	if c, ok := t.RoundTripper.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
