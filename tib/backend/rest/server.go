package rest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// HandlerOptions choose what a server allows.
type HandlerOptions struct {
	// ReadOnly refuses every write (403).
	ReadOnly bool
	// AppendOnly refuses removing anything but locks, sessions and journals (403), and adding
	// key files to a repository that has a config (403); see the package documentation for what
	// it protects against.
	AppendOnly bool
	// CheckObjects refuses (400) a saved file that cannot be what its path says: a name not of
	// the format's form, a content-named file whose bytes do not hash to its name, a pack or
	// sealed object too short or malformed to be one. cauldron serve always sets it; it is an
	// option because the handler can front any store of named files (the conformance suite's
	// names are not the format's).
	CheckObjects bool
	// MaxFileSize bounds one saved file (413); 0: DefaultMaxFileSize.
	MaxFileSize int64
	// MaxUploads bounds the saves in progress at once; one more is answered 429 with a
	// Retry-After, before its body is read. 0: DefaultMaxUploads. Ignored when Uploads is set.
	MaxUploads int
	// Uploads, when set, is the bound shared with other handlers (one server's repositories
	// and modes): what it protects — descriptors, disk, memory — is the server's, not one
	// repository's.
	Uploads *UploadLimit
	// IOTimeout is how long an upload or a download may make no progress before the server
	// drops the connection (where the connection supports deadlines, as net/http's do).
	// 0: DefaultIOTimeout.
	IOTimeout time.Duration
	// ErrorLog, when set, records failures of the storage (the answers with status 500), which
	// the client sees only as a short message.
	ErrorLog *log.Logger
}

// DefaultMaxFileSize is above the largest pack a repository makes (1 GiB target plus the blob
// that crosses it).
const DefaultMaxFileSize = 2 << 30

// DefaultMaxUploads allows a few clients' parallel pack uploads (a capture saves a handful at
// once) while bounding the files, descriptors and, for backends that cannot stream, memory that
// uploads hold.
const DefaultMaxUploads = 32

// DefaultIOTimeout matches the client's DefaultTimeout: neither side waits longer for the other.
const DefaultIOTimeout = time.Minute

// retryAfter is the pause, in seconds, a refused upload is asked to wait.
const retryAfter = "5"

// piece is how much of a file is sent between two extensions of the write deadline: small
// enough to cross a slow link within IOTimeout, large enough that sendfile does the work.
const piece = 1 << 20

// FileOpener is a backend whose files the server can send straight from the file system
// (local.Local); others are sent a piece at a time through Load.
type FileOpener interface {
	Open(ctx context.Context, h backend.Handle) (*os.File, error)
}

// StreamSaver is a backend that stores a file from a reader without holding it in memory
// (local.Local: into its tmp/, fsynced, then moved into place). If the reader fails, nothing
// may be stored. Uploads to other backends are gathered in memory first, bounded by
// MaxFileSize and MaxUploads.
type StreamSaver interface {
	SaveFrom(ctx context.Context, h backend.Handle, r io.Reader) error
}

// NewHandler serves be over the protocol in the package documentation, at the root of its URL
// space (mount it elsewhere with http.StripPrefix).
func NewHandler(be backend.Backend, o HandlerOptions) http.Handler {
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.MaxUploads <= 0 {
		o.MaxUploads = DefaultMaxUploads
	}
	if o.IOTimeout <= 0 {
		o.IOTimeout = DefaultIOTimeout
	}
	if o.Uploads == nil {
		o.Uploads = NewUploadLimit(o.MaxUploads)
	}
	return &handler{be: be, o: o}
}

// UploadLimit bounds the saves in progress at once across the handlers that share it.
type UploadLimit struct {
	tokens chan struct{} // a semaphore: one token per save in progress
}

// NewUploadLimit allows n saves at once (at least 1).
func NewUploadLimit(n int) *UploadLimit {
	return &UploadLimit{tokens: make(chan struct{}, max(n, 1))}
}

// take reserves a save's slot without waiting; false when every slot is in use.
func (l *UploadLimit) take() bool {
	select {
	case l.tokens <- struct{}{}:
		return true
	default:
		return false
	}
}

func (l *UploadLimit) release() { <-l.tokens }

type handler struct {
	be backend.Backend
	o  HandlerOptions
}

// mode names the server's restriction in refusals.
func (s *handler) mode() string {
	if s.o.ReadOnly {
		return "read-only"
	}
	return "append-only"
}

func (s *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t, err := parsePath(r.URL.Path)
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, err.Error())
		return
	}
	write := r.Method == http.MethodPost || r.Method == http.MethodDelete
	if write && s.o.ReadOnly {
		s.fail(w, r, http.StatusForbidden, "refused: the server is read-only")
		return
	}
	switch {
	case t.root:
		if r.Method != http.MethodPost || r.URL.Query().Get("create") != "true" {
			s.fail(w, r, http.StatusBadRequest, "the repository root only takes POST /?create=true")
			return
		}
		s.create(w, r)
	case t.list != "":
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			s.fail(w, r, http.StatusMethodNotAllowed, "a listing only takes GET")
			return
		}
		s.list(w, r, t.list)
	default:
		switch r.Method {
		case http.MethodGet:
			s.load(w, r, t.handle)
		case http.MethodHead:
			s.stat(w, r, t.handle)
		case http.MethodPost:
			s.save(w, r, t.handle)
		case http.MethodDelete:
			s.remove(w, r, t.handle)
		default:
			w.Header().Set("Allow", "GET, HEAD, POST, DELETE")
			s.fail(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" is not part of the protocol")
		}
	}
}

func (s *handler) create(w http.ResponseWriter, r *http.Request) {
	if err := s.be.Create(r.Context()); err != nil {
		s.backendError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *handler) list(w http.ResponseWriter, r *http.Request, t backend.FileType) {
	// The whole listing is gathered before the answer starts, so that a storage failure
	// half-way is a 500 rather than a truncated 200.
	var files []backend.FileInfo
	err := s.be.List(r.Context(), t, func(fi backend.FileInfo) error {
		// A stray file the protocol cannot name (an editor's backup, a dot file) is not part
		// of the repository; listing it would only make clients refuse the whole listing.
		if checkName(fi.Name) == nil {
			files = append(files, fi)
		}
		return nil
	})
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	var b bytes.Buffer
	if err := encodeList(&b, files); err != nil {
		s.backendError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.Write(b.Bytes())
}

func (s *handler) load(w http.ResponseWriter, r *http.Request, h backend.Handle) {
	rg := byteRange{}
	ranged := r.Header.Get("Range") != ""
	if ranged {
		var err error
		if rg, err = parseRange(r.Header.Get("Range")); err != nil {
			s.fail(w, r, http.StatusRequestedRangeNotSatisfiable, err.Error())
			return
		}
	}
	src, err := s.open(r.Context(), h)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	defer src.close()
	// The range is checked against the file before anything is allocated or sent: a request
	// for 2 GiB of a small file costs nothing.
	n := src.size - rg.start
	if rg.length > 0 {
		n = rg.length
	}
	if rg.start > src.size || rg.start+n > src.size {
		s.fail(w, r, http.StatusRequestedRangeNotSatisfiable, fmt.Sprintf("%s: the range %s reaches past the end of the file (%d bytes)", h, rg.header(), src.size))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	if !ranged {
		w.WriteHeader(http.StatusOK)
	} else {
		// "*": the total size is not part of the protocol's answer (the client does not
		// need it).
		if n > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", rg.start, rg.start+n-1))
		}
		w.WriteHeader(http.StatusPartialContent)
	}
	rc := http.NewResponseController(w)
	// A deadline left on a kept-alive connection would cut the next answer short.
	defer rc.SetWriteDeadline(time.Time{})
	for off, end := rg.start, rg.start+n; off < end; {
		// A client that stops reading holds the connection only for IOTimeout.
		_ = rc.SetWriteDeadline(time.Now().Add(s.o.IOTimeout))
		k := min(piece, end-off)
		if err := src.copy(r.Context(), w, off, k); err != nil {
			// The status is sent; only a broken connection tells the client that the body
			// is not whole (it checks Content-Length).
			if s.o.ErrorLog != nil && r.Context().Err() == nil {
				s.o.ErrorLog.Printf("%s %s: sending bytes %d-%d: %v", r.Method, r.URL.Path, off, off+k-1, err)
			}
			panic(http.ErrAbortHandler)
		}
		off += k
	}
}

// source is a file being sent: straight from the file system when the backend can open it,
// otherwise a piece at a time through Load.
type source struct {
	be   backend.Backend
	h    backend.Handle
	f    *os.File
	size int64
}

func (s *handler) open(ctx context.Context, h backend.Handle) (*source, error) {
	if o, ok := s.be.(FileOpener); ok {
		f, err := o.Open(ctx, h)
		if err != nil {
			return nil, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		return &source{h: h, f: f, size: fi.Size()}, nil
	}
	fi, err := s.be.Stat(ctx, h)
	if err != nil {
		return nil, err
	}
	return &source{be: s.be, h: h, size: fi.Size}, nil
}

func (src *source) close() {
	if src.f != nil {
		src.f.Close()
	}
}

// copy sends n bytes from off.
func (src *source) copy(ctx context.Context, w io.Writer, off, n int64) error {
	if src.f != nil {
		// io.Copy hands a section of an *os.File to the connection's ReadFrom: sendfile
		// where it can, no buffer of the range's size in any case.
		m, err := io.Copy(w, io.NewSectionReader(src.f, off, n))
		if err == nil && m < n {
			err = fmt.Errorf("%s: the file ended after %d of %d bytes: %w", src.h, m, n, io.ErrUnexpectedEOF)
		}
		return err
	}
	data, err := src.be.Load(ctx, src.h, int(n), off)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	return err
}

func (s *handler) stat(w http.ResponseWriter, r *http.Request, h backend.Handle) {
	fi, err := s.be.Stat(r.Context(), h)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size, 10))
	if !fi.ModTime.IsZero() {
		w.Header().Set("Last-Modified", fi.ModTime.UTC().Format(http.TimeFormat))
	}
	w.WriteHeader(http.StatusOK)
}

func (s *handler) save(w http.ResponseWriter, r *http.Request, h backend.Handle) {
	if r.ContentLength < 0 {
		s.fail(w, r, http.StatusLengthRequired, "a saved file needs a Content-Length")
		return
	}
	if r.ContentLength > s.o.MaxFileSize {
		s.fail(w, r, http.StatusRequestEntityTooLarge, fmt.Sprintf("%s: %d bytes is more than this server takes (%d)", h, r.ContentLength, s.o.MaxFileSize))
		return
	}
	var check *objectCheck
	if s.o.CheckObjects {
		var err error
		if check, err = newObjectCheck(h, r.ContentLength); err != nil {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("refused %s: %v", h, err))
			return
		}
	}
	if s.o.AppendOnly && h.Type == backend.Key {
		// A key file added to a repository lets whoever wrote it claim a password (and, in
		// an unencrypted repository, makes every open demand one). Key files are written
		// before the config when a repository is created, so creating one still works.
		if _, err := s.be.Stat(r.Context(), backend.Handle{Type: backend.Config}); err == nil {
			s.fail(w, r, http.StatusForbidden, fmt.Sprintf("refused: the server is append-only; %s cannot be added to a repository that exists (add keys on the server)", h))
			return
		} else if !errors.Is(err, backend.ErrNotExist) {
			s.backendError(w, r, err)
			return
		}
	}
	if !s.o.Uploads.take() {
		w.Header().Set("Retry-After", retryAfter)
		s.fail(w, r, http.StatusTooManyRequests, fmt.Sprintf("%s: the server is receiving %d files already; try again shortly", h, cap(s.o.Uploads.tokens)))
		return
	}
	defer s.o.Uploads.release()
	body := &upload{h: h, r: r.Body, want: r.ContentLength, check: check, rc: http.NewResponseController(w), timeout: s.o.IOTimeout}
	if want := r.Header.Get(hashHeader); want != "" {
		body.sha, body.shaWant = sha256.New(), want
	}
	// Append-only needs no test here: replacing is allowed only for the replaceable types,
	// and the backend refuses the others with ErrExist.
	var err error
	if ss, ok := s.be.(StreamSaver); ok {
		err = ss.SaveFrom(r.Context(), h, body)
	} else {
		var data []byte
		if data, err = io.ReadAll(body); err == nil {
			err = s.be.Save(r.Context(), h, data)
		}
	}
	var ue *uploadError
	if errors.As(err, &ue) {
		s.fail(w, r, ue.status, ue.msg)
		return
	}
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// upload reads a request's body for a save, checking it as it passes: its length against the
// Content-Length, its SHA-256 against the client's, and, with CheckObjects, its content against
// its name. It reports a failure as an *uploadError in place of io.EOF, so the backend stores
// nothing.
type upload struct {
	h       backend.Handle
	r       io.Reader
	want, n int64
	sha     hash.Hash
	shaWant string
	check   *objectCheck
	rc      *http.ResponseController
	timeout time.Duration
}

// uploadError is a refused upload: the client's mistake, with the status that says so.
type uploadError struct {
	status int
	msg    string
}

func (e *uploadError) Error() string { return e.msg }

func (u *upload) Read(p []byte) (int, error) {
	// A client that stops sending holds the connection only for the timeout. The answer's
	// write deadline moves with it: the server's WriteTimeout counts from the request's headers,
	// and would cut the answer to a slow upload that never stalled (a 1 MiB pack at 12 KB/s).
	deadline := time.Now().Add(u.timeout)
	_ = u.rc.SetReadDeadline(deadline)
	_ = u.rc.SetWriteDeadline(deadline.Add(u.timeout))
	n, err := u.r.Read(p)
	u.n += int64(n)
	if u.sha != nil {
		u.sha.Write(p[:n])
	}
	if u.check != nil {
		u.check.write(p[:n])
	}
	switch {
	case err == io.EOF:
		if err := u.finish(); err != nil {
			return n, err
		}
		return n, io.EOF
	case err != nil:
		return n, &uploadError{http.StatusBadRequest, fmt.Sprintf("%s: reading the upload after %d bytes: %v", u.h, u.n, err)}
	}
	return n, nil
}

func (u *upload) finish() error {
	if u.n != u.want {
		return &uploadError{http.StatusBadRequest, fmt.Sprintf("%s: received %d bytes, Content-Length said %d", u.h, u.n, u.want)}
	}
	if u.sha != nil {
		if got := hex.EncodeToString(u.sha.Sum(nil)); got != u.shaWant {
			return &uploadError{http.StatusBadRequest, fmt.Sprintf("%s: the upload's SHA-256 is %s, the client sent %s: damaged on the way", u.h, got, u.shaWant)}
		}
	}
	if u.check != nil {
		if err := u.check.finish(); err != nil {
			return &uploadError{http.StatusBadRequest, fmt.Sprintf("refused %s: %v", u.h, err)}
		}
	}
	return nil
}

func (s *handler) remove(w http.ResponseWriter, r *http.Request, h backend.Handle) {
	if s.o.AppendOnly && !h.Type.Replaceable() {
		s.fail(w, r, http.StatusForbidden, fmt.Sprintf("refused: the server is append-only; %s cannot be removed", h))
		return
	}
	if err := s.be.Remove(r.Context(), h); err != nil {
		s.backendError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// backendError answers with the status that carries err's meaning across.
func (s *handler) backendError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, backend.ErrNotExist):
		s.fail(w, r, http.StatusNotFound, err.Error())
	case errors.Is(err, backend.ErrExist):
		s.fail(w, r, http.StatusConflict, err.Error())
	case r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		s.fail(w, r, http.StatusServiceUnavailable, "request cancelled")
	default:
		if s.o.ErrorLog != nil {
			s.o.ErrorLog.Printf("%s %s: %v", r.Method, r.URL.Path, err)
		}
		s.fail(w, r, http.StatusInternalServerError, err.Error())
	}
}

// fail answers with status and a one-line text the client quotes.
func (s *handler) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if status == http.StatusForbidden && s.o.ErrorLog != nil {
		s.o.ErrorLog.Printf("%s %s refused (%s)", r.Method, r.URL.Path, s.mode())
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		io.WriteString(w, msg+"\n")
	}
}
