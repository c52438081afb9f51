package rest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// Options tune a client.
type Options struct {
	// InsecureTLS skips checking the server's certificate: for a lab server with a self-signed
	// certificate. It applies to the client's own transport, not to a Transport given here.
	InsecureTLS bool
	// Transport replaces the client's own (tests, proxies, custom TLS roots).
	Transport http.RoundTripper
	// Timeout is how long one request may make no progress — connecting, waiting for the answer
	// to begin, or a pause in sending or receiving the body — before it is abandoned (and, when
	// safe, retried). 0: DefaultTimeout.
	Timeout time.Duration
	// Retries is how many times a request that is safe to repeat is repeated after a transient
	// failure. 0: DefaultRetries; negative: never.
	Retries int
	// Backoff is the first wait before a retry; each further wait doubles, up to MaxBackoff.
	// 0: DefaultBackoff.
	Backoff time.Duration
	// User and Password are sent with every request (HTTP basic authentication) when User
	// is set. They come from a credentials file or the environment, never from the URL.
	User, Password string
}

// Defaults for Options. With them a request survives about 45 seconds of outage: long enough
// for a switch port to come back or a Wi-Fi link to re-associate, short enough that a dead
// server is reported while the technician is still watching.
const (
	DefaultTimeout = time.Minute
	DefaultRetries = 8
	DefaultBackoff = 500 * time.Millisecond
	MaxBackoff     = 10 * time.Second
)

// maxLoad bounds an answer whose length the client cannot predict (a whole file).
const maxLoad = DefaultMaxFileSize

// maxPrealloc bounds the buffer made at once for an answer's announced length (a restore's runs
// and a whole pack fit in it): a server announcing 2 GiB and sending nothing must not cost the
// client 2 GiB.
const maxPrealloc = 16 << 20

// maxErrorText bounds the server's text the client keeps for its messages.
const maxErrorText = 512

// errStalled marks a request abandoned by the Timeout.
var errStalled = errors.New("no progress")

// Backend is a repository reached over HTTP or HTTPS.
type Backend struct {
	loc     string // the URL as given, for Location and messages
	root    string // the URL with a trailing slash; request paths are appended
	client  *http.Client
	own     *http.Transport // the client's own transport, closed with the backend
	timeout time.Duration
	retries int
	backoff time.Duration

	user, password string
}

var _ backend.Backend = (*Backend)(nil)

// New returns a client for the repository at rawURL (http:// or https://, with an optional
// path). It does not contact the server.
func New(rawURL string, o Options) (*Backend, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// Not quoting rawURL: it may hold the very password the next check refuses.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("the repository URL does not parse: %v", err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("repository URL %s carries a user name or password: credentials do not belong in a URL, which ends up in kickstart files and logs; give them in a --credentials-file or in $CAULDRON_HTTP_USER and $CAULDRON_HTTP_PASSWORD", u.Redacted())
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "":
		return nil, fmt.Errorf("repository URL %q has no scheme: write http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH", rawURL)
	default:
		return nil, fmt.Errorf("repository URL %q: scheme %q is not served over HTTP; use http:// or https://", rawURL, u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, fmt.Errorf("repository URL %q names no host: write %s://HOST[:PORT]/PATH", rawURL, u.Scheme)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, fmt.Errorf("repository URL %q has a query or fragment; the repository is named by its path alone", rawURL)
	}
	b := &Backend{loc: u.String(), timeout: o.Timeout, retries: o.Retries, backoff: o.Backoff, user: o.User, password: o.Password}
	root := *u
	if !strings.HasSuffix(root.Path, "/") {
		root.Path += "/"
		if root.RawPath != "" {
			root.RawPath += "/"
		}
	}
	b.root = root.String()
	if b.timeout <= 0 {
		b.timeout = DefaultTimeout
	}
	if b.retries == 0 {
		b.retries = DefaultRetries
	} else if b.retries < 0 {
		b.retries = 0
	}
	if b.backoff <= 0 {
		b.backoff = DefaultBackoff
	}
	rt := o.Transport
	if rt == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: o.InsecureTLS, MinVersion: tls.VersionTLS12}
		// A recovery restores several volumes at once, each reading packs in parallel.
		t.MaxIdleConnsPerHost = 16
		// HTTP/1.1 only: a connection per parallel read. Over TLS the server would offer
		// HTTP/2, which carries every read on one connection through flow-control windows and
		// one more copy of every byte; a restore over HTTPS ran at two thirds of HTTP's rate.
		t.Protocols = new(http.Protocols)
		t.Protocols.SetHTTP1(true)
		b.own, rt = t, t
	}
	b.client = &http.Client{
		Transport: rt,
		// A redirect would turn a POST into a GET or send a file somewhere unexpected; the
		// repository URL should name the server itself.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return b, nil
}

// Location returns the repository URL.
func (b *Backend) Location() string { return b.loc }

// Close releases idle connections.
func (b *Backend) Close() error {
	if b.own != nil {
		b.own.CloseIdleConnections()
	}
	return nil
}

// Create makes the repository's structure on the server.
func (b *Backend) Create(ctx context.Context) error {
	ans, _, err := b.do(ctx, request{method: http.MethodPost, rel: "?create=true", maxBody: maxErrorText, unsafe: true})
	if err != nil {
		return err
	}
	return ans.expect(http.StatusOK)
}

// Save stores a file. Saves of the write-once types are retried; see the package documentation.
func (b *Backend) Save(ctx context.Context, h backend.Handle, data []byte) error {
	if err := checkHandle(h); err != nil {
		return fmt.Errorf("%s: %w", b.loc, err)
	}
	body := data
	if body == nil {
		body = []byte{}
	}
	ans, attempts, err := b.do(ctx, request{method: http.MethodPost, rel: handlePath(h), body: body, maxBody: maxErrorText, unsafe: h.Type.Replaceable()})
	if err != nil {
		return err
	}
	if ans.status == http.StatusConflict && attempts > 1 && !h.Type.Replaceable() {
		// An earlier attempt may have stored the file and lost only its answer. If the file
		// holds exactly our bytes, the save happened; anything else is a real conflict.
		if got, lerr := b.Load(ctx, h, 0, 0); lerr == nil && bytes.Equal(got, data) {
			return nil
		}
	}
	return ans.expect(http.StatusOK)
}

// Load reads length bytes at offset (length 0: to the end) with one ranged GET.
func (b *Backend) Load(ctx context.Context, h backend.Handle, length int, offset int64) ([]byte, error) {
	if err := checkHandle(h); err != nil {
		return nil, fmt.Errorf("%s: %w", b.loc, err)
	}
	if length < 0 || offset < 0 {
		return nil, fmt.Errorf("%s: %s: invalid range offset %d length %d", b.loc, h, offset, length)
	}
	rq := request{method: http.MethodGet, rel: handlePath(h), maxBody: maxLoad}
	ranged := length > 0 || offset > 0
	if ranged {
		rq.rng = &byteRange{start: offset, length: int64(length)}
	}
	if length > 0 {
		rq.maxBody = int64(length)
	}
	ans, _, err := b.do(ctx, rq)
	if err != nil {
		return nil, err
	}
	data := ans.body
	switch {
	case ans.status == http.StatusOK && !ranged:
	case ans.status == http.StatusPartialContent && ranged:
		if cr := ans.header.Get("Content-Range"); cr != "" {
			var start int64
			if _, err := fmt.Sscanf(cr, "bytes %d-", &start); err != nil || start != offset {
				return nil, fmt.Errorf("%s: answered range %q to a request for bytes from %d", ans.what(), cr, offset)
			}
		}
	case ans.status == http.StatusOK && ranged:
		// Something on the way ignored the Range header and sent the whole file: cut the
		// range out of it.
		if offset > int64(len(data)) || length > 0 && offset+int64(length) > int64(len(data)) {
			return nil, fmt.Errorf("%s: the file has %d bytes, the range %d+%d reaches past its end: %w", ans.what(), len(data), offset, length, io.ErrUnexpectedEOF)
		}
		data = data[offset:]
		if length > 0 {
			data = data[:length]
		}
	default:
		return nil, ans.expect(http.StatusOK)
	}
	if length > 0 && len(data) != length {
		return nil, fmt.Errorf("%s: short read: wanted %d bytes at %d, got %d: %w", ans.what(), length, offset, len(data), io.ErrUnexpectedEOF)
	}
	return data, nil
}

// Stat reads a file's size (Content-Length) and modification time (Last-Modified, the
// server's clock; zero when the server does not send it) with HEAD.
func (b *Backend) Stat(ctx context.Context, h backend.Handle) (backend.FileInfo, error) {
	if err := checkHandle(h); err != nil {
		return backend.FileInfo{}, fmt.Errorf("%s: %w", b.loc, err)
	}
	ans, _, err := b.do(ctx, request{method: http.MethodHead, rel: handlePath(h)})
	if err != nil {
		return backend.FileInfo{}, err
	}
	if err := ans.expect(http.StatusOK); err != nil {
		return backend.FileInfo{}, err
	}
	if ans.length < 0 {
		return backend.FileInfo{}, fmt.Errorf("%s: the answer has no Content-Length", ans.what())
	}
	fi := backend.FileInfo{Name: h.Name, Size: ans.length}
	if t, err := http.ParseTime(ans.header.Get("Last-Modified")); err == nil {
		fi.ModTime = t
	}
	return fi, nil
}

// List reads the whole listing before calling fn, so that a retried request never reports a
// file twice.
func (b *Backend) List(ctx context.Context, t backend.FileType, fn func(backend.FileInfo) error) error {
	if err := checkType(t); err != nil {
		return fmt.Errorf("%s: %w", b.loc, err)
	}
	ans, _, err := b.do(ctx, request{method: http.MethodGet, rel: string(t) + "/", maxBody: maxListBytes})
	if err != nil {
		return err
	}
	if err := ans.expect(http.StatusOK); err != nil {
		return err
	}
	files, err := parseList(ans.body)
	if err != nil {
		return fmt.Errorf("%s: %w", ans.what(), err)
	}
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(f); err != nil {
			return err
		}
	}
	return nil
}

// Remove deletes a file.
func (b *Backend) Remove(ctx context.Context, h backend.Handle) error {
	if err := checkHandle(h); err != nil {
		return fmt.Errorf("%s: %w", b.loc, err)
	}
	ans, _, err := b.do(ctx, request{method: http.MethodDelete, rel: handlePath(h), maxBody: maxErrorText, unsafe: true})
	if err != nil {
		return err
	}
	return ans.expect(http.StatusOK)
}

// request is one protocol request.
type request struct {
	method  string
	rel     string     // path (and query) relative to the repository URL
	body    []byte     // POST: the file (non-nil, possibly empty)
	rng     *byteRange // GET: the range
	maxBody int64      // the most a successful answer's body may hold (writes: a proxy's "OK")
	// unsafe requests are repeated only when they never reached a server: repeating one that
	// did could undo another writer's change in between.
	unsafe bool
}

// answer is a server's complete answer.
type answer struct {
	method, url string
	status      int
	header      http.Header
	length      int64 // Content-Length, -1 if none
	body        []byte
}

func (a answer) what() string { return a.method + " " + a.url }

// expect turns any status but want into a StatusError.
func (a answer) expect(want int) error {
	if a.status == want {
		return nil
	}
	return &StatusError{Method: a.method, URL: a.url, Code: a.status, Text: cleanText(a.body)}
}

// StatusError is a server's refusal or failure. errors.Is finds backend.ErrNotExist in a 404,
// backend.ErrExist in a 409, and io.ErrUnexpectedEOF in a 416 (a range past the end).
type StatusError struct {
	Method, URL string
	Code        int
	Text        string // the server's explanation
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Code, http.StatusText(e.Code))
	if e.Text != "" {
		s += ": " + e.Text
	}
	if e.Code == http.StatusUnauthorized {
		s += " (give the server's user name and password in a --credentials-file of username= and password= lines, or in $CAULDRON_HTTP_USER and $CAULDRON_HTTP_PASSWORD)"
	}
	return s
}

func (e *StatusError) Unwrap() error {
	switch e.Code {
	case http.StatusNotFound:
		return backend.ErrNotExist
	case http.StatusConflict:
		return backend.ErrExist
	case http.StatusRequestedRangeNotSatisfiable:
		return io.ErrUnexpectedEOF
	}
	return nil
}

// cleanText makes a server's error body fit for a one-line message: the server is not trusted
// to send printable text of a sensible length.
func cleanText(b []byte) string {
	if len(b) > maxErrorText {
		b = append(b[:maxErrorText:maxErrorText], "…"...)
	}
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, string(b))
	return strings.TrimSpace(s)
}

// do runs rq, repeating it after transient failures when that is safe. It returns the first
// answer that is not a transient failure (any status; the caller judges it) and the number of
// attempts made.
func (b *Backend) do(ctx context.Context, rq request) (answer, int, error) {
	for attempt := 1; ; attempt++ {
		ans, reached, err := b.attempt(ctx, rq)
		if err == nil && !transientStatus(ans.status) {
			return ans, attempt, nil
		}
		if err == nil {
			err = ans.expect(http.StatusOK)
		}
		if ctx.Err() != nil {
			return answer{}, attempt, fmt.Errorf("%w (%s %s%s)", context.Cause(ctx), rq.method, b.root, rq.rel)
		}
		// A 429 is the server's word that it did nothing (it refuses before reading the
		// body), so even a request unsafe to repeat may be sent again.
		if !transient(err) || rq.unsafe && reached && ans.status != http.StatusTooManyRequests || attempt > b.retries {
			if attempt > 1 {
				err = fmt.Errorf("%w (gave up after %d attempts)", err, attempt)
			}
			return answer{}, attempt, err
		}
		select {
		case <-time.After(b.wait(attempt, ans.header)):
		case <-ctx.Done():
			return answer{}, attempt, fmt.Errorf("%w (while waiting to retry after: %v)", context.Cause(ctx), err)
		}
	}
}

// wait is the pause before retry number attempt: exponential, jittered so that many clients
// that failed together do not return together, and stretched to a Retry-After the server asks
// for (within reason).
func (b *Backend) wait(attempt int, h http.Header) time.Duration {
	d := b.backoff << min(attempt-1, 20)
	if d > MaxBackoff || d <= 0 {
		d = MaxBackoff
	}
	d = d*3/4 + rand.N(d/2+1)
	if h != nil {
		if s, err := strconv.Atoi(h.Get("Retry-After")); err == nil && s > 0 {
			d = max(d, min(time.Duration(s)*time.Second, 3*MaxBackoff))
		}
	}
	return d
}

func transientStatus(code int) bool {
	return code >= 500 || code == http.StatusTooManyRequests
}

// transient tells failures worth repeating (the network, an overloaded or restarting server)
// from those that will fail the same way again.
func transient(err error) bool {
	var se *StatusError
	if errors.As(err, &se) {
		return transientStatus(se.Code)
	}
	var perm *permanentError
	if errors.As(err, &perm) {
		return false
	}
	return true
}

// permanentError is a failure no retry mends: an untrusted certificate, a server that does not
// speak the protocol.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// attempt makes one request and reads the whole answer. reached says whether a connection to a
// server was made, after which an unsafe request must not be repeated.
func (b *Backend) attempt(ctx context.Context, rq request) (ans answer, reached bool, err error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dog := time.AfterFunc(b.timeout, func() { cancel(errStalled) })
	defer dog.Stop()
	var conn atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { conn.Store(true) }})

	target := b.root + rq.rel
	ans = answer{method: rq.method, url: target}
	var body io.Reader
	if len(rq.body) > 0 {
		body = &progress{r: bytes.NewReader(rq.body), dog: dog, d: b.timeout}
	} else if rq.body != nil || rq.method == http.MethodPost {
		body = http.NoBody
	}
	req, err := http.NewRequestWithContext(ctx, rq.method, target, body)
	if err != nil {
		return ans, false, &permanentError{fmt.Errorf("%s %s: %w", rq.method, target, err)}
	}
	if len(rq.body) > 0 {
		req.ContentLength = int64(len(rq.body))
		// The transport may need the body again when a kept-alive connection turns out closed.
		req.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(&progress{r: bytes.NewReader(rq.body), dog: dog, d: b.timeout}), nil
		}
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if rq.body != nil {
		sum := sha256.Sum256(rq.body)
		req.Header.Set(hashHeader, hex.EncodeToString(sum[:]))
	}
	if rq.rng != nil {
		req.Header.Set("Range", rq.rng.header())
	}
	if b.user != "" {
		req.SetBasicAuth(b.user, b.password)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return ans, conn.Load(), b.connError(ctx, rq, target, err)
	}
	defer resp.Body.Close()
	dog.Reset(b.timeout)
	ans.status, ans.header, ans.length = resp.StatusCode, resp.Header, resp.ContentLength
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return ans, true, &permanentError{fmt.Errorf("%s %s: %s, to %q: give the repository's own URL", rq.method, target, resp.Status, resp.Header.Get("Location"))}
	}
	limit := int64(maxErrorText)
	switch {
	case resp.StatusCode == http.StatusOK && rq.rng != nil:
		// The whole file in answer to a range (a proxy dropped the header): Load cuts it.
		limit = maxLoad
	case resp.StatusCode/100 == 2:
		limit = rq.maxBody
	}
	r := &progress{r: resp.Body, dog: dog, d: b.timeout}
	var data []byte
	if cl := resp.ContentLength; cl >= 0 && cl <= min(limit, maxPrealloc) && rq.method != http.MethodHead {
		// The length is announced: read into a buffer of exactly that size. io.ReadAll grows
		// its buffer step by step, clearing and copying about three times the bytes of a
		// pack's run — a quarter of a network restore's CPU time. Only up to maxPrealloc:
		// past it the buffer grows with the bytes that really come.
		data = make([]byte, cl)
		_, err = io.ReadFull(r, data)
	} else {
		data, err = io.ReadAll(io.LimitReader(r, limit+1))
	}
	if err != nil {
		return ans, true, b.connError(ctx, rq, target, err)
	}
	if int64(len(data)) > limit {
		if resp.StatusCode/100 != 2 {
			// An error text is only quoted; its end does not matter.
			data = data[:limit]
		} else {
			return ans, true, &permanentError{fmt.Errorf("%s %s: the answer is larger than the %d bytes asked for", rq.method, target, limit)}
		}
	} else if rq.method != http.MethodHead && resp.ContentLength >= 0 && int64(len(data)) != resp.ContentLength {
		return ans, true, fmt.Errorf("%s %s: received %d bytes of the %d announced: %w", rq.method, target, len(data), resp.ContentLength, io.ErrUnexpectedEOF)
	}
	ans.body = data
	return ans, true, nil
}

// connError words a failure below HTTP, naming the URL, and marks the ones no retry mends.
func (b *Backend) connError(ctx context.Context, rq request, target string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if context.Cause(ctx) == errStalled {
		return fmt.Errorf("%s %s: %w for %s", rq.method, target, errStalled, b.timeout)
	}
	var (
		verr    *tls.CertificateVerificationError
		unknown x509.UnknownAuthorityError
		host    x509.HostnameError
		invalid x509.CertificateInvalidError
	)
	if errors.As(err, &verr) || errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) {
		return &permanentError{fmt.Errorf("%s %s: %w (the server's certificate is not trusted here; only for a lab server you trust, skip the check with the insecure-TLS option)", rq.method, target, err)}
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
		// net/http reports the second case with an untyped error, hence the text match.
		return &permanentError{fmt.Errorf("%s %s: %w (is the server speaking plain HTTP? then use an http:// URL)", rq.method, target, err)}
	}
	return fmt.Errorf("%s %s: %w", rq.method, target, err)
}

// progress resets the stall timer whenever bytes move.
type progress struct {
	r   io.Reader
	dog *time.Timer
	d   time.Duration
}

func (p *progress) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.dog.Reset(p.d)
	}
	return n, err
}
