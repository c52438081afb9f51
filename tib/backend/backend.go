// Package backend is the one interface through which a repository reaches its storage: a flat
// set of named files of a few types, each written once, whole, and atomically. Local directories
// implement it now; HTTP and S3 come later and must pass the same conformance suite
// (package backendtest).
package backend

import (
	"context"
	"errors"
	"io"
	"time"
)

// FileType is the kind of a stored file; it decides the folder it lives in.
type FileType string

const (
	Config     FileType = "config"
	Key        FileType = "keys"
	Pack       FileType = "data"
	Index      FileType = "index"
	Generation FileType = "generations"
	Lock       FileType = "locks"
	Session    FileType = "sessions"
	Journal    FileType = "journals"
	Report     FileType = "reports"
)

// Replaceable reports whether files of type t may be saved over: locks are refreshed, sessions
// change state and recovery journals record progress. Every other file is content-named and
// written once.
func (t FileType) Replaceable() bool { return t == Lock || t == Session || t == Journal }

// Types lists every file type, for creating and checking a repository's folders.
var Types = []FileType{Key, Pack, Index, Generation, Lock, Session, Journal, Report}

// Handle names one file.
type Handle struct {
	Type FileType
	Name string // for Config: empty
}

func (h Handle) String() string {
	if h.Type == Config {
		return "config"
	}
	return string(h.Type) + "/" + h.Name
}

// FileInfo is what List and Stat report.
type FileInfo struct {
	Name string
	Size int64
	// ModTime is when the file was stored, by the storage's own clock (which may differ from
	// this host's: compare it only with another file's ModTime from the same storage); zero
	// when the storage does not say.
	ModTime time.Time
}

// TempCleaner is a backend that stages files in a temporary area of its own (local: REPO/tmp,
// also where `cauldron serve` streams uploads) before moving them into place. A writer killed
// in between leaves its file there; CleanTemp removes such files once they are older than
// TempAge by the storage's own clock, and returns how many it removed.
type TempCleaner interface {
	CleanTemp(ctx context.Context) (int, error)
}

// TempAge is how long a temporary file must have gone unmodified before CleanTemp removes it. A
// writer writes, syncs and moves its file within seconds of its last byte, and a server drops
// an upload that stalls for minutes (rest.DefaultIOTimeout), so no running writer owns a file
// this old; one that somehow did would find its file gone and fail its save, losing nothing.
const TempAge = time.Hour

// ErrNotExist is returned (wrapped) when a file is missing.
var ErrNotExist = errors.New("file does not exist")

// ErrExist is returned (wrapped) by Save when the file is already there: files are immutable.
var ErrExist = errors.New("file already exists")

// Backend stores a repository's files.
type Backend interface {
	// Location says where the repository is, for messages.
	Location() string
	// Create makes a new, empty repository's structure; it fails if a config is already there.
	Create(ctx context.Context) error
	// Save stores a file atomically: a reader never sees a partial file, and after a crash the file
	// is either whole or absent. Saving an existing name fails with ErrExist, except for the
	// Replaceable types (locks, sessions, journals).
	Save(ctx context.Context, h Handle, data []byte) error
	// Load reads length bytes at offset (length 0: to the end).
	Load(ctx context.Context, h Handle, length int, offset int64) ([]byte, error)
	// Stat reports a file's size and modification time.
	Stat(ctx context.Context, h Handle) (FileInfo, error)
	// List calls fn for each file of type t, in no particular order.
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error
	// Remove deletes a file.
	Remove(ctx context.Context, h Handle) error
	// Close releases resources.
	Close() error
}

// ReadAll loads a whole file.
func ReadAll(ctx context.Context, b Backend, h Handle) ([]byte, error) {
	return b.Load(ctx, h, 0, 0)
}

// Reader is an io.ReaderAt over one stored file.
func Reader(ctx context.Context, b Backend, h Handle) io.ReaderAt {
	return readerAt{ctx, b, h}
}

type readerAt struct {
	ctx context.Context
	b   Backend
	h   Handle
}

func (r readerAt) ReadAt(p []byte, off int64) (int, error) {
	data, err := r.b.Load(r.ctx, r.h, len(p), off)
	n := copy(p, data)
	if err == nil && n < len(p) {
		err = io.EOF
	}
	return n, err
}
