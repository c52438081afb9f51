package rest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Users are the accounts of an htpasswd file, in the conventions of restic's rest-server:
// USER:HASH lines, bcrypt hashes only (`htpasswd -B`); other hash kinds are refused when the
// file is read rather than silently never matching.
type Users struct {
	hashes map[string][]byte
	// cost is the highest bcrypt cost in the file: an unknown user's check costs as much as a
	// known user's, so that timing does not tell which names exist.
	cost  int
	dummy func() []byte
	// ok remembers passwords already checked (by a SHA-256 of user and password), because
	// bcrypt is deliberately slow and every request carries the password again.
	mu sync.Mutex
	ok map[[32]byte]bool
}

// ReadHtpasswd reads an htpasswd file; each bad line is named by its number.
func ReadHtpasswd(path string) (*Users, error) {
	b, err := readRegularFile(path, maxHtpasswd)
	if err != nil {
		return nil, err
	}
	u := &Users{hashes: map[string][]byte{}, ok: map[[32]byte]bool{}}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		switch {
		case !ok || name == "":
			return nil, fmt.Errorf("%s:%d: want USER:HASH", path, n)
		case checkName(name) != nil:
			return nil, fmt.Errorf("%s:%d: user name %q: %v (a user name is also a path, /USER/, for --private-repos)", path, n, name, checkName(name))
		case !strings.HasPrefix(hash, "$2a$") && !strings.HasPrefix(hash, "$2b$") && !strings.HasPrefix(hash, "$2y$"):
			return nil, fmt.Errorf("%s:%d: user %s: only bcrypt hashes are accepted (make them with `htpasswd -B`)", path, n, name)
		case u.hashes[name] != nil:
			return nil, fmt.Errorf("%s:%d: user %s appears twice", path, n, name)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("%s:%d: user %s: %v", path, n, name, err)
		}
		u.hashes[name] = []byte(hash)
		if c, _ := bcrypt.Cost([]byte(hash)); c > u.cost {
			u.cost = c
		}
	}
	u.dummy = sync.OnceValue(func() []byte {
		h, _ := bcrypt.GenerateFromPassword([]byte("no such user"), max(u.cost, bcrypt.MinCost))
		return h
	})
	if len(u.hashes) == 0 {
		return nil, fmt.Errorf("%s: no users (add one with `htpasswd -B %s USER`)", path, path)
	}
	return u, nil
}

// maxHtpasswd bounds an htpasswd file: some hundred thousand users.
const maxHtpasswd = 16 << 20

// readRegularFile reads a regular file of at most limit bytes. Anything else is refused before
// a byte is read: a FIFO would block the reader until some writer opened it (the server at
// start, or every login while the file is read again), a device would never end.
func readRegularFile(path string, limit int64) ([]byte, error) {
	// Opened without blocking (os.Open would wait in open(2) for a FIFO's writer), and only
	// for reading.
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s)", path, fi.Mode().Type())
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s: %d bytes, more than an htpasswd file may be (%d)", path, fi.Size(), limit)
	}
	return io.ReadAll(io.LimitReader(f, limit))
}

// Has reports whether the file names user.
func (u *Users) Has(user string) bool { return u.hashes[user] != nil }

// Check reports whether password is user's.
func (u *Users) Check(user, password string) bool {
	hash, ok := u.hashes[user]
	if !ok {
		// Spend a bcrypt's time anyway, so that answers do not tell which users exist.
		bcrypt.CompareHashAndPassword(u.dummy(), []byte(password))
		return false
	}
	key := sha256.Sum256([]byte(user + "\x00" + password))
	u.mu.Lock()
	known := u.ok[key]
	u.mu.Unlock()
	if known {
		return true
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return false
	}
	u.mu.Lock()
	u.ok[key] = true
	u.mu.Unlock()
	return true
}

// Authenticator checks a user's password: Users, or an HtpasswdFile that follows its file.
type Authenticator interface {
	Check(user, password string) bool
}

// HtpasswdFile is an htpasswd file's users, read again when the file changes (its modification
// time, size or inode; looked at no more than once a second) or when Reload is called (SIGHUP),
// so that users are added and removed without restarting the server. A file that cannot be read
// or parsed leaves the users as they were, and says why through log.
type HtpasswdFile struct {
	path string
	log  func(string)

	mu      sync.Mutex
	users   *Users
	stamp   fileStamp
	checked time.Time
	lastErr string
}

// fileStamp is what tells that a file changed.
type fileStamp struct {
	mod   time.Time
	size  int64
	inode uint64
}

func stampOf(path string) (fileStamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{mod: fi.ModTime(), size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.inode = sys.Ino
	}
	return st, nil
}

// OpenHtpasswd reads path (ReadHtpasswd's rules) and follows it from then on.
func OpenHtpasswd(path string, log func(string)) (*HtpasswdFile, error) {
	f := &HtpasswdFile{path: path, log: log}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload reads the file again whether it looks changed or not. On an error the users stay as
// they were.
func (f *HtpasswdFile) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloadLocked()
}

func (f *HtpasswdFile) reloadLocked() error {
	f.checked = time.Now()
	st, err := stampOf(f.path)
	if err == nil {
		var u *Users
		if u, err = ReadHtpasswd(f.path); err == nil {
			f.users, f.stamp, f.lastErr = u, st, ""
			return nil
		}
	}
	// Said once per distinct error: a file being rewritten is looked at every second.
	if msg := err.Error(); msg != f.lastErr && f.users != nil && f.log != nil {
		f.log(fmt.Sprintf("htpasswd file not reloaded, the users stay as they were: %v", err))
		f.lastErr = msg
	}
	return err
}

// Users are the users now, read again first if the file changed.
func (f *HtpasswdFile) Users() *Users {
	f.mu.Lock()
	defer f.mu.Unlock()
	if time.Since(f.checked) >= time.Second {
		f.checked = time.Now()
		if st, err := stampOf(f.path); err != nil || st != f.stamp {
			if f.reloadLocked() == nil && f.log != nil {
				f.log(fmt.Sprintf("htpasswd file %s reloaded: %d user(s)", f.path, len(f.users.hashes)))
			}
		}
	}
	return f.users
}

// Check reports whether password is user's by the file as it is now.
func (f *HtpasswdFile) Check(user, password string) bool { return f.Users().Check(user, password) }

// AuthOptions choose who may use a server.
type AuthOptions struct {
	Users Authenticator
	// Private gives each user the repository under /USER/ and nothing else (403).
	Private bool
}

// RequireAuth admits to next only requests with HTTP basic authentication of a user in
// o.Users: others are answered 401 with a WWW-Authenticate challenge.
func RequireAuth(next http.Handler, o AuthOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pw, ok := r.BasicAuth()
		if !ok || !o.Users.Check(user, pw) {
			w.Header().Set("WWW-Authenticate", `Basic realm="cauldron", charset="UTF-8"`)
			msg := "authentication required: this server takes a user name and password"
			if ok {
				msg = "wrong user name or password"
			}
			plainError(w, r, http.StatusUnauthorized, msg)
			return
		}
		if o.Private {
			// Compared as a whole path element, so that user "ab" cannot reach /abc/.
			if p := r.URL.Path; p != "/"+user && !strings.HasPrefix(p, "/"+user+"/") {
				plainError(w, r, http.StatusForbidden, fmt.Sprintf("refused: user %s may reach only /%s/ (private repositories)", user, user))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// PrivateRepos serves, for each user, the repository that repo returns for them under /USER/.
// It expects RequireAuth in front of it, which has checked the user and the path.
func PrivateRepos(repo func(user string) http.Handler) http.Handler {
	var mu sync.Mutex
	handlers := map[string]http.Handler{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, _, _ := r.BasicAuth()
		mu.Lock()
		h := handlers[user]
		if h == nil {
			h = http.StripPrefix("/"+user, repo(user))
			handlers[user] = h
		}
		mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// plainError answers with status and a one-line text the client quotes.
func plainError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintln(w, msg)
	}
}
