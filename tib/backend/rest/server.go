package rest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"

	"github.com/cauldron-dr/cauldron/tib/backend"
)

// HandlerOptions choose what a server allows.
type HandlerOptions struct {
	// ReadOnly refuses every write (403).
	ReadOnly bool
	// AppendOnly refuses removing anything but locks, sessions and journals (403); see the
	// package documentation for what it protects against.
	AppendOnly bool
	// MaxFileSize bounds one saved file; 0: DefaultMaxFileSize.
	MaxFileSize int64
	// ErrorLog, when set, records failures of the storage (the answers with status 500), which
	// the client sees only as a short message.
	ErrorLog *log.Logger
}

// DefaultMaxFileSize is above the largest pack a repository makes (1 GiB target plus the blob
// that crosses it).
const DefaultMaxFileSize = 2 << 30

// NewHandler serves be over the protocol in the package documentation, at the root of its URL
// space (mount it elsewhere with http.StripPrefix).
func NewHandler(be backend.Backend, o HandlerOptions) http.Handler {
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	return &handler{be: be, o: o}
}

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
	data, err := s.be.Load(r.Context(), h, int(rg.length), rg.start)
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) && s.pastEnd(r, h, rg) {
			s.fail(w, r, http.StatusRequestedRangeNotSatisfiable, err.Error())
			return
		}
		s.backendError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if !ranged {
		w.WriteHeader(http.StatusOK)
	} else {
		// The file's total size is not known without another storage request, and the
		// client does not need it: "*" is the standard's word for that.
		if len(data) > 0 {
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/*", rg.start, rg.start+int64(len(data))-1))
		}
		w.WriteHeader(http.StatusPartialContent)
	}
	w.Write(data)
}

// pastEnd confirms that a short Load asked for bytes past the end of the file. Backends report
// that with io.ErrUnexpectedEOF, but a storage connection that broke half-way can say the same;
// only the first is the client's mistake (416), the second is worth a retry (500).
func (s *handler) pastEnd(r *http.Request, h backend.Handle, rg byteRange) bool {
	fi, err := s.be.Stat(r.Context(), h)
	if err != nil {
		return false
	}
	return rg.start > fi.Size || rg.start+rg.length > fi.Size
}

func (s *handler) stat(w http.ResponseWriter, r *http.Request, h backend.Handle) {
	fi, err := s.be.Stat(r.Context(), h)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size, 10))
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
	// Grow as the bytes arrive rather than trusting the announced length with one allocation.
	var buf bytes.Buffer
	buf.Grow(int(min(r.ContentLength, 16<<20)))
	n, err := buf.ReadFrom(io.LimitReader(r.Body, r.ContentLength+1))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%s: reading the upload: %v", h, err))
		return
	}
	if n != r.ContentLength {
		s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%s: received %d bytes, Content-Length said %d", h, n, r.ContentLength))
		return
	}
	data := buf.Bytes()
	if want := r.Header.Get(hashHeader); want != "" {
		sum := sha256.Sum256(data)
		if got := hex.EncodeToString(sum[:]); got != want {
			s.fail(w, r, http.StatusBadRequest, fmt.Sprintf("%s: the upload's SHA-256 is %s, the client sent %s: damaged on the way", h, got, want))
			return
		}
	}
	// Append-only needs no test here: replacing is allowed only for the replaceable types, and
	// the backend refuses the others with ErrExist.
	if err := s.be.Save(r.Context(), h, data); err != nil {
		s.backendError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusOK)
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
