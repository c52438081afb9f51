package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/rest"
	"golang.org/x/crypto/bcrypt"
)

// serveLines hands the command's output to the test line by line as it is written.
type serveLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan string
}

func (l *serveLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		line, err := l.buf.ReadString('\n')
		if err != nil {
			l.buf.WriteString(line) // no newline yet: keep it for the next write
			break
		}
		select {
		case l.ch <- strings.TrimSpace(line):
		default: // nobody is reading this many lines; the test looks only at the first ones
		}
	}
	return len(p), nil
}

// startServe runs `cauldron serve` in-process with args and returns the URL it prints, a
// buffer of its standard error, and a function that cancels it and returns its error.
func startServe(t *testing.T, args ...string) (string, *serveLines, func() error) {
	t.Helper()
	out := &serveLines{ch: make(chan string, 16)}
	errs := &serveLines{ch: make(chan string, 64)}
	cmd := newServe()
	cmd.SetOut(out)
	cmd.SetErr(errs)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	stop := func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(15 * time.Second):
			t.Fatal("cauldron serve did not stop after its context was cancelled")
			return nil
		}
	}
	select {
	case line := <-out.ch:
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(line, "serving ") {
			stop()
			t.Fatalf("cauldron serve printed %q", line)
		}
		return f[len(f)-1], errs, stop
	case err := <-done:
		cancel()
		t.Fatalf("cauldron serve %s: %v", strings.Join(args, " "), err)
	case <-time.After(15 * time.Second):
		stop()
		t.Fatal("cauldron serve printed no URL")
	}
	return "", nil, nil
}

func serveInitRepo(t *testing.T) (string, *tib.Repository) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := tib.Init(context.Background(), local.New(dir), tib.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return dir, r
}

func serveOpen(t *testing.T, url string, o rest.Options) (*tib.Repository, error) {
	t.Helper()
	be, err := rest.New(url, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return tib.Open(context.Background(), be, nil)
}

func TestServe(t *testing.T) {
	dir, made := serveInitRepo(t)
	url, _, stop := startServe(t, "--repo", dir, "--no-auth", "--listen", "127.0.0.1:0")
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("URL %q", url)
	}
	r, err := serveOpen(t, url, rest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Config().ID != made.Config().ID {
		t.Fatalf("served repository %s, made %s", r.Config().ID, made.Config().ID)
	}
	// A read-write server takes the writes a capture makes.
	if err := r.Backend().Save(context.Background(), backend.Handle{Type: backend.Lock, Name: "0123456789abcdef"}, bytes.Repeat([]byte("x"), 32)); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve ended with %v", err)
	}
	host := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/")
	if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after serve stopped", host)
	}
}

func TestServeAppendOnlyAndReadOnly(t *testing.T) {
	dir, _ := serveInitRepo(t)
	pack := backend.Handle{Type: backend.Pack, Name: "ab01"}
	if err := local.New(dir).Save(context.Background(), pack, []byte("pack")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"--append-only", "--read-only"} {
		url, errs, stop := startServe(t, "--repo", dir, "--no-auth", "--listen", "127.0.0.1:0", mode)
		r, err := serveOpen(t, url, rest.Options{})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Backend().Remove(context.Background(), pack)
		var se *rest.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusForbidden || !strings.Contains(err.Error(), strings.TrimPrefix(mode, "--")) {
			t.Fatalf("%s: removing a pack: %v", mode, err)
		}
		lockErr := r.Backend().Save(context.Background(), backend.Handle{Type: backend.Lock, Name: "0123456789abcd" + hex.EncodeToString([]byte(mode[2:3]))}, bytes.Repeat([]byte("x"), 32))
		if mode == "--append-only" && lockErr != nil || mode == "--read-only" && lockErr == nil {
			t.Fatalf("%s: saving a lock: %v", mode, lockErr)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		select { // the server's operator sees the refusal
		case line := <-errs.ch:
			if !strings.Contains(line, "refused") {
				t.Errorf("%s: the server logged %q", mode, line)
			}
		default:
			t.Errorf("%s: the server did not log the refusal", mode)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "ab", "ab01")); err != nil {
		t.Fatal(err)
	}
}

func TestServeTLS(t *testing.T) {
	dir, made := serveInitRepo(t)
	cert, key := serveSelfSigned(t)
	url, _, stop := startServe(t, "--repo", dir, "--no-auth", "--listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key)
	defer stop()
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("URL %q", url)
	}
	r, err := serveOpen(t, url, rest.Options{InsecureTLS: true})
	if err != nil || r.Config().ID != made.Config().ID {
		t.Fatalf("over TLS: %v", err)
	}
	if _, err := serveOpen(t, url, rest.Options{Retries: -1}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("a self-signed certificate was accepted without InsecureTLS: %v", err)
	}
}

func TestServeRefusesBadFlags(t *testing.T) {
	dir, _ := serveInitRepo(t)
	cert, key := serveSelfSigned(t)
	md5File := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(md5File, []byte("# users\nalice:"+serveHash(t, "pw")+"\nbob:$apr1$x$y\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--repo", t.TempDir()}, "cauldron init"},
		{[]string{"--repo", filepath.Join(t.TempDir(), "missing")}, "no repository"},
		{[]string{"--repo", dir, "--append-only", "--read-only"}, "append-only"},
		{[]string{"--repo", dir, "--tls-cert", cert}, "tls-key"},
		{[]string{"--repo", dir, "--no-auth", "--tls-cert", key, "--tls-key", cert}, "--tls-cert"},
		{[]string{"--repo", dir, "--no-auth", "--listen", "127.0.0.1:99999"}, "--listen"},
		{[]string{"--repo", dir, "--listen", "127.0.0.1:0"}, "htpasswd -B -c " + filepath.Join(dir, ".htpasswd")},
		{[]string{"--repo", dir, "--htpasswd-file", md5File, "--listen", "127.0.0.1:0"}, md5File + ":3: user bob: only bcrypt"},
		{[]string{"--repo", dir, "--no-auth", "--listen", "0.0.0.0:0"}, "only on a loopback address"},
		{[]string{"--repo", dir, "--no-auth", "--private-repos"}, "cannot go with --no-auth"},
		{[]string{"--repo", dir, "--insecure-listen", "--htpasswd-file", md5File}, "without --no-auth"},
		{[]string{"--repo", dir, "--no-auth", "--max-uploads", "0"}, "--max-uploads 0"},
	} {
		cmd := newServe()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(c.args)
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := cmd.ExecuteContext(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %s: %v, want an error naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// serveHash is password's bcrypt hash, at the lowest cost (tests need no strength).
func serveHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// TestServeAuth: with the repository's .htpasswd (the default), a client without a password,
// or with a wrong one, gets 401 and a message saying where credentials go; the right one opens
// the repository. --no-auth on a network address starts only with --insecure-listen.
func TestServeAuth(t *testing.T) {
	dir, made := serveInitRepo(t)
	users := "alice:" + serveHash(t, "alice's pw") + "\nbob:" + serveHash(t, "bob's pw") + "\n"
	if err := os.WriteFile(filepath.Join(dir, ".htpasswd"), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _, stop := startServe(t, "--repo", dir, "--listen", "127.0.0.1:0", "--append-only")
	defer stop()
	for _, o := range []rest.Options{{}, {User: "alice", Password: "bob's pw"}, {User: "carol", Password: "x"}} {
		_, err := serveOpen(t, url, o)
		var se *rest.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusUnauthorized || !strings.Contains(err.Error(), "CAULDRON_HTTP_PASSWORD") {
			t.Errorf("user %q: %v, want 401 saying where credentials go", o.User, err)
		}
	}
	r, err := serveOpen(t, url, rest.Options{User: "alice", Password: "alice's pw"})
	if err != nil || r.Config().ID != made.Config().ID {
		t.Fatalf("alice with her password: %v", err)
	}
	// The htpasswd file inside the repository is not one of its files: no path reaches it.
	resp, err := http.Get(url + ".htpasswd")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET /.htpasswd without a login: %s", resp.Status)
	}

	url2, _, stop2 := startServe(t, "--repo", dir, "--no-auth", "--insecure-listen", "--listen", "0.0.0.0:0")
	defer stop2()
	if _, err := serveOpen(t, strings.Replace(url2, "://"+hostOf(url2), "://127.0.0.1", 1), rest.Options{}); err != nil {
		t.Fatalf("--no-auth --insecure-listen: %v", err)
	}
}

// TestServeUserModes: on a read-write server, a user given --append-only-user cannot remove a
// pack and one given --read-only-user cannot even take a lock, while another user can do both.
func TestServeUserModes(t *testing.T) {
	dir, _ := serveInitRepo(t)
	ctx := context.Background()
	pack := backend.Handle{Type: backend.Pack, Name: "ab01"}
	if err := local.New(dir).Save(ctx, pack, []byte("pack")); err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "htpasswd")
	users := "alice:" + serveHash(t, "a") + "\nbob:" + serveHash(t, "b") + "\ncarol:" + serveHash(t, "c") + "\n"
	if err := os.WriteFile(pwFile, []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--append-only-user", "dave"}, "--append-only-user dave: no such user"},
		{[]string{"--append-only-user", "bob", "--read-only-user", "bob"}, "also given append-only"},
	} {
		cmd := newServe()
		cmd.SetOut(io.Discard)
		cmd.SetArgs(append([]string{"--repo", dir, "--htpasswd-file", pwFile, "--listen", "127.0.0.1:0"}, c.args...))
		cmd.SilenceUsage, cmd.SilenceErrors = true, true
		if err := cmd.ExecuteContext(ctx); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %s: %v, want an error naming %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	url, _, stop := startServe(t, "--repo", dir, "--htpasswd-file", pwFile, "--listen", "127.0.0.1:0",
		"--append-only-user", "bob", "--read-only-user", "carol")
	defer stop()
	as := func(user, pw string) backend.Backend {
		r, err := serveOpen(t, url, rest.Options{User: user, Password: pw})
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		return r.Backend()
	}
	lock := func(n byte) backend.Handle {
		return backend.Handle{Type: backend.Lock, Name: "0123456789abcde" + string('0'+n)}
	}
	sealed := bytes.Repeat([]byte("x"), 32)
	var se *rest.StatusError
	bob := as("bob", "b")
	if err := bob.Save(ctx, lock(1), sealed); err != nil {
		t.Fatalf("bob (append-only) taking a lock: %v", err)
	}
	if err := bob.Remove(ctx, pack); !errors.As(err, &se) || se.Code != http.StatusForbidden || !strings.Contains(err.Error(), "append-only") {
		t.Fatalf("bob (append-only) removing a pack: %v", err)
	}
	carol := as("carol", "c")
	if err := carol.Save(ctx, lock(2), sealed); !errors.As(err, &se) || se.Code != http.StatusForbidden || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("carol (read-only) taking a lock: %v", err)
	}
	alice := as("alice", "a")
	if err := alice.Remove(ctx, pack); err != nil {
		t.Fatalf("alice (the server's read-write mode) removing a pack: %v", err)
	}
}

func hostOf(url string) string {
	h := strings.TrimPrefix(strings.TrimPrefix(url, "http://"), "https://")
	h, _, _ = strings.Cut(h, ":")
	return h
}

// TestServePrivateRepos: each user creates and uses the repository DIR/USER at /USER/ and is
// refused (403) anywhere else; a user given --read-only-user cannot create theirs.
func TestServePrivateRepos(t *testing.T) {
	root := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(pwFile, []byte("alice:"+serveHash(t, "a")+"\nal:"+serveHash(t, "b")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	url, _, stop := startServe(t, "--repo", root, "--private-repos", "--htpasswd-file", pwFile, "--listen", "127.0.0.1:0", "--read-only-user", "al")
	defer stop()
	be, err := rest.New(url+"alice/", rest.Options{User: "alice", Password: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	made, err := tib.Init(context.Background(), be, tib.InitOptions{Password: []byte("repo pw")})
	if err != nil {
		t.Fatalf("alice creates her repository: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "alice", "config")); err != nil {
		t.Fatalf("alice's repository is not in DIR/alice: %v", err)
	}
	for _, path := range []string{"alice/", "", "alice2/"} {
		_, err := serveOpen(t, url+path, rest.Options{User: "al", Password: "b"})
		var se *rest.StatusError
		if !errors.As(err, &se) || se.Code != http.StatusForbidden || !strings.Contains(err.Error(), "only /al/") {
			t.Errorf("al opening /%s: %v, want 403", path, err)
		}
	}
	al, err := rest.New(url+"al/", rest.Options{User: "al", Password: "b"})
	if err != nil {
		t.Fatal(err)
	}
	defer al.Close()
	var se *rest.StatusError
	if err := al.Create(context.Background()); !errors.As(err, &se) || se.Code != http.StatusForbidden || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("al (read-only) creating /al/: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "al")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a read-only user's refused create made DIR/al: %v", err)
	}
	again, err := rest.New(url+"alice", rest.Options{User: "alice", Password: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	r, err := tib.Open(context.Background(), again, func() ([]byte, error) { return []byte("repo pw"), nil })
	if err != nil || r.Config().ID != made.Config().ID {
		t.Fatalf("alice reopening her repository: %v", err)
	}
}

// serveSelfSigned writes a certificate for 127.0.0.1 and its key, as a lab server would have.
func serveSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "cauldron test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestServeCleansTemp: an upload cut off by a killed server leaves its file in REPO/tmp; serve
// removes it once an hour old, and never a fresh one, which an upload in progress may own.
func TestServeCleansTemp(t *testing.T) {
	dir, _ := serveInitRepo(t)
	left := filepath.Join(dir, "tmp", "data-ab01-1")
	fresh := filepath.Join(dir, "tmp", "data-ab02-2")
	for _, p := range []string{left, fresh} {
		if err := os.WriteFile(p, []byte("half an upload"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-backend.TempAge - time.Minute)
	if err := os.Chtimes(left, old, old); err != nil {
		t.Fatal(err)
	}
	_, errs, stop := startServe(t, "--repo", dir, "--no-auth", "--listen", "127.0.0.1:0")
	defer stop()
	select {
	case line := <-errs.ch:
		if !strings.Contains(line, "removed 1 file(s) that interrupted uploads left in "+dir+"/tmp") {
			t.Fatalf("serve said %q", line)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not clear its tmp/")
	}
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("the leftover upload: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Fatalf("the fresh upload: %v", err)
	}
}

// TestServeUploadLimitWholeServer: --max-uploads bounds the whole server's uploads. It used to be
// counted per private repository (and per mode), so N users could hold N times the limit.
func TestServeUploadLimitWholeServer(t *testing.T) {
	root := t.TempDir()
	pwFile := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(pwFile, []byte("alice:"+serveHash(t, "a")+"\nbob:"+serveHash(t, "b")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "bob"} {
		if _, err := tib.Init(context.Background(), local.New(filepath.Join(root, u)), tib.InitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	url, _, stop := startServe(t, "--repo", root, "--private-repos", "--htpasswd-file", pwFile, "--listen", "127.0.0.1:0", "--max-uploads", "1")
	defer stop()

	// Alice's slow upload holds the server's one slot.
	body, feed := io.Pipe()
	defer feed.Close()
	req, _ := http.NewRequest(http.MethodPost, url+"alice/data/"+strings.Repeat("ab", 32), body)
	req.ContentLength = 1 << 20
	req.SetBasicAuth("alice", "a")
	slow := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		slow <- err
	}()
	if _, err := feed.Write(make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	// Its file in alice's tmp/ says it holds the slot.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		ents, _ := os.ReadDir(filepath.Join(root, "alice", "tmp"))
		if len(ents) > 0 && strings.HasPrefix(ents[0].Name(), "data-") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("alice's upload did not start")
		}
	}
	be, err := rest.New(url+"bob/", rest.Options{User: "bob", Password: "b", Retries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	err = be.Save(context.Background(), backend.Handle{Type: backend.Lock, Name: "0123456789abcdef"}, bytes.Repeat([]byte("x"), 32))
	var se *rest.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusTooManyRequests || !strings.Contains(err.Error(), "receiving 1 files already") {
		t.Fatalf("bob's upload beside alice's with --max-uploads 1: %v; want 429", err)
	}
	feed.CloseWithError(errors.New("test done"))
	<-slow
	// The slot is free again once alice's upload ends.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err = be.Save(context.Background(), backend.Handle{Type: backend.Lock, Name: "0123456789abcdef"}, bytes.Repeat([]byte("x"), 32))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's upload after alice's ended: %v", err)
		}
	}
}

// TestServeHtpasswdReload: the htpasswd file is read again when it changes and on SIGHUP, without
// a restart; a removed user is refused at once (a remembered password included), and a broken
// file keeps the users as they were. It used to be read only when serve started.
func TestServeHtpasswdReload(t *testing.T) {
	dir, _ := serveInitRepo(t)
	pwFile := filepath.Join(t.TempDir(), "htpasswd")
	write := func(users string) {
		t.Helper()
		tmp := pwFile + ".new"
		if err := os.WriteFile(tmp, []byte(users), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, pwFile); err != nil { // as editors and htpasswd do: a new file
			t.Fatal(err)
		}
	}
	write("alice:" + serveHash(t, "a") + "\n")
	url, errs, stop := startServe(t, "--repo", dir, "--htpasswd-file", pwFile, "--listen", "127.0.0.1:0")
	defer stop()
	login := func(user, pw string) error {
		_, err := serveOpen(t, url, rest.Options{User: user, Password: pw, Retries: -1})
		return err
	}
	// eventually waits for the server to see the file's change.
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(100 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s", what)
			}
		}
	}
	if err := login("alice", "a"); err != nil {
		t.Fatal(err)
	}
	write("bob:" + serveHash(t, "b") + "\n")
	eventually("bob admitted after the file changed", func() bool { return login("bob", "b") == nil })
	if err := login("alice", "a"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("alice, removed from the file: %v", err)
	}
	// A broken file keeps the users, and the log says why.
	write("bob:not a bcrypt hash\n")
	eventually("the log names the broken file", func() bool {
		login("bob", "b") // the file is looked at when requests come
		select {
		case line := <-errs.ch:
			return strings.Contains(line, "htpasswd file not reloaded, the users stay as they were") && strings.Contains(line, "only bcrypt hashes")
		default:
			return false
		}
	})
	if err := login("bob", "b"); err != nil {
		t.Fatalf("bob after a broken file: %v", err)
	}

	// SIGHUP reads the file even when nothing shows it changed: rewritten in place, same size,
	// its old modification time put back.
	write("carol:" + serveHash(t, "c") + "\n")
	eventually("carol admitted", func() bool { return login("carol", "c") == nil })
	fi, err := os.Stat(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte("david:"+serveHash(t, "d")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(pwFile, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if err := login("david", "d"); err == nil {
		t.Fatal("the unchanged-looking file was read without SIGHUP; this test proves nothing")
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually("david admitted after SIGHUP", func() bool { return login("david", "d") == nil })
}
