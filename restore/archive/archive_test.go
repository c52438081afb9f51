package archive

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/rest"
	"golang.org/x/crypto/bcrypt"
)

// loc parses a location the test knows to be valid.
func loc(t *testing.T, s string) Location {
	t.Helper()
	l, err := ParseLocation(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestParseLocation: every kind parses, String gives it back in a form that parses to the same
// location, and what is wrong is named.
func TestParseLocation(t *testing.T) {
	for _, c := range []struct {
		in, str string
		want    Location
	}{
		{"/srv/archive/", "/srv/archive", Location{Kind: Path, Path: "/srv/archive"}},
		{"usb:/archive", "usb:/archive", Location{Kind: USB, Path: "/archive"}},
		{"USB://a//b/", "usb:/a/b", Location{Kind: USB, Path: "/a/b"}},
		{"HTTPS://h:8420/r", "HTTPS://h:8420/r", Location{Kind: HTTP, URL: "HTTPS://h:8420/r"}},
		{"s3://bkt/a/b/", "s3://bkt/a/b", Location{Kind: S3, Bucket: "bkt", Path: "a/b"}},
		{"s3://bkt", "s3://bkt", Location{Kind: S3, Bucket: "bkt"}},
		{"nfs://filer:2049/export/dr", "nfs://filer:2049/export/dr", Location{Kind: NFS, URL: "nfs://filer:2049/export/dr"}},
		{"SMB://filer/share", "SMB://filer/share", Location{Kind: SMB, URL: "SMB://filer/share"}},
	} {
		got, err := ParseLocation(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
			continue
		}
		if got.String() != c.str {
			t.Errorf("%q: String() = %q, want %q", c.in, got.String(), c.str)
		}
		if back, err := ParseLocation(got.String()); err != nil || back != got {
			t.Errorf("%q: String() %q parses as %+v, %v", c.in, got.String(), back, err)
		}
	}
	if l, err := ParseLocation("cdrom:/ks/web01.ks", CDROM, HTTP); err != nil || l != (Location{Kind: CDROM, Path: "/ks/web01.ks"}) || l.String() != "cdrom:/ks/web01.ks" {
		t.Errorf("cdrom: %+v %v", l, err)
	}
	for in, want := range map[string]string{
		"":                  "empty location",
		"archive":           `"archive" is not an absolute path; want an absolute path, usb:/PATH, http(s)://…, s3://BUCKET/PREFIX, nfs://SERVER/EXPORT or smb://SERVER/SHARE`,
		"ftp://x/y":         `"ftp://x/y": ftp is not supported; want an absolute path`,
		"cdrom:/r":          `"cdrom:/r": cdrom locations cannot be used here`,
		"usb:r":             `"usb:r": want usb:/PATH, a path from the top of the medium`,
		"s3://Bad_Bucket/x": `bucket name "Bad_Bucket": upper-case letters are not allowed`,
		"s3://bkt/a//b":     `prefix "a//b": empty path segment`,
		"http:///r":         `"http:///r" names no host`,
		"nfs://filer":       `names no export`,
		"smb://filer/":      `names no share`,
		"smb://f/s?x=1":     `a share URL takes no ?query or #fragment`,
		"http://h/%zz":      `is not a valid URL: invalid URL escape "%zz"`,
	} {
		if _, err := ParseLocation(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseLocation(%q): %v, want %q", in, err, want)
		}
	}
	// A password in a URL is refused without being repeated.
	for _, in := range []string{"https://user:hunter2@h/r", "smb://bob:hunter2@filer/s"} {
		_, err := ParseLocation(in)
		if err == nil || !strings.Contains(err.Error(), "carries a user name or password") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: %v", in, err)
		}
	}
}

// TestParseLocationFrom: a relative directory on a command line is taken from the working
// directory and remembered as given, for messages; everything else parses as ParseLocation.
func TestParseLocationFrom(t *testing.T) {
	l, err := ParseLocationFrom("backups/../repo", "/home/tech")
	if err != nil || l.Kind != Path || l.Path != "/home/tech/repo" || l.String() != "/home/tech/repo" || l.Given != "backups/../repo" {
		t.Fatalf("relative: %+v %v", l, err)
	}
	if s := l.Shown(); s != "backups/../repo (/home/tech/repo)" {
		t.Errorf("Shown() = %q", s)
	}
	if l, err := ParseLocationFrom("/srv/r", "/home/tech"); err != nil || l != (Location{Kind: Path, Path: "/srv/r"}) || l.Shown() != "/srv/r" {
		t.Errorf("absolute: %+v %v", l, err)
	}
	if l, err := ParseLocationFrom("s3://bkt/p", "/home/tech"); err != nil || l.Kind != S3 {
		t.Errorf("s3: %+v %v", l, err)
	}
	if _, err := ParseLocationFrom("ftp://x", "/home/tech"); err == nil || !strings.Contains(err.Error(), "want a path, usb:/PATH") {
		t.Errorf("ftp: %v", err)
	}
	if _, err := ParseLocationFrom("repo", ""); err == nil {
		t.Error("relative to nothing: parsed")
	}
}

func TestSpecCheck(t *testing.T) {
	for _, c := range []struct {
		sp   Spec
		want []OptionError // Msg: a part of it
	}{
		{Spec{Location: loc(t, "s3://bkt"), Endpoint: "https://minio:9000", InsecureTLS: true, CredentialsFile: "/c"}, nil},
		{Spec{Location: loc(t, "https://h/r"), InsecureTLS: true}, nil},
		{Spec{Location: loc(t, "smb://f/s"), CredentialsFile: "/c"}, nil},
		{Spec{Location: loc(t, "/r"), Endpoint: "https://x"}, []OptionError{{"endpoint", false, "--endpoint is for s3:// repositories (an S3-compatible server's URL), not for /r"}}},
		{Spec{Location: loc(t, "s3://bkt"), Endpoint: "minio:9000"}, []OptionError{{"endpoint", true, `--endpoint: want the server's URL, such as https://minio:9000, got "minio:9000"`}}},
		{Spec{Location: loc(t, "s3://bkt"), Endpoint: "ftp://h"}, []OptionError{{"endpoint", true, `--endpoint: "ftp://h": ftp is not supported; want http(s)://…`}}},
		{Spec{Location: loc(t, "http://h/r"), InsecureTLS: true}, []OptionError{{"insecure-tls", false, "--insecure-tls: http://h/r is not reached over TLS"}}},
		{Spec{Location: loc(t, "s3://bkt"), Endpoint: "http://h", InsecureTLS: true}, []OptionError{{"insecure-tls", false, "--insecure-tls: s3://bkt is not reached over TLS"}}},
		{Spec{Location: loc(t, "nfs://f/e"), CredentialsFile: "/c"}, []OptionError{{"credentials-file", false, "--credentials-file is for s3:// (access keys), smb:// and http(s):// (user name and password) repositories, not for nfs://f/e"}}},
		// A location that did not parse is not held against the options.
		{Spec{Endpoint: "https://x", InsecureTLS: true, CredentialsFile: "/c"}, nil},
	} {
		got := c.sp.Check()
		if len(got) != len(c.want) {
			t.Errorf("%+v: %v, want %v", c.sp, got, c.want)
			continue
		}
		for i, w := range c.want {
			if got[i].Option != w.Option || got[i].InValue != w.InValue || !strings.Contains(got[i].Msg, w.Msg) {
				t.Errorf("%+v: %+v, want %+v", c.sp, *got[i], w)
			}
		}
	}
}

// TestOpenDirectoryAndHTTP opens one repository as a directory and through `cauldron serve`'s
// handler on loopback: both see the same repository, and only the directory has a Dir.
func TestOpenDirectoryAndHTTP(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "repo")
	r, err := tib.Init(ctx, local.New(dir), tib.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id := r.Config().ID

	o, err := Open(ctx, Spec{Location: loc(t, dir+"/")})
	if err != nil {
		t.Fatal(err)
	}
	if o.Dir != dir || o.Share {
		t.Fatalf("directory: Dir %q Share %v", o.Dir, o.Share)
	}
	rd, err := tib.Open(ctx, o, nil)
	if err != nil || rd.Config().ID != id {
		t.Fatalf("directory: %v", err)
	}
	o.Close()

	srv := httptest.NewServer(rest.NewHandler(local.New(dir), rest.HandlerOptions{}))
	defer srv.Close()
	o, err = Open(ctx, Spec{Location: loc(t, srv.URL)})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if o.Dir != "" {
		t.Fatalf("HTTP: Dir %q", o.Dir)
	}
	rh, err := tib.Open(ctx, o, nil)
	if err != nil || rh.Config().ID != id {
		t.Fatalf("HTTP: %v", err)
	}
}

func TestOpenRefuses(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, []byte("x"), 0o600)
	for _, c := range []struct {
		sp   Spec
		want string
	}{
		{Spec{}, "no repository location given"},
		{Spec{Location: loc(t, file)}, "not a directory"},
		{Spec{Location: loc(t, "/nonexistent/repo")}, "/nonexistent/repo: no repository (create one with `cauldron init --repo /nonexistent/repo`)"},
		{Spec{Location: loc(t, "usb:/repo")}, "usb:/repo: usb: locations work only in the boot environment"},
		{Spec{Location: loc(t, "/srv"), Endpoint: "https://minio"}, "--endpoint is for s3:// repositories (an S3-compatible server's URL), not for /srv"},
		{Spec{Location: loc(t, "nfs://filer/x"), InsecureTLS: true}, "--insecure-tls: nfs://filer/x is not reached over TLS"},
		{Spec{Location: loc(t, "s3://bucket/p"), AccessKeyID: "a"}, "give both the access key ID and the secret access key"},
		{Spec{Location: loc(t, "smb://filer/share"), CredentialsFile: "/nonexistent/cred"}, "SMB credentials"},
		{Spec{Location: loc(t, dir), CredentialsFile: "/c"}, "--credentials-file is for s3://"},
	} {
		o, err := Open(ctx, c.sp)
		if err == nil {
			o.Close()
			t.Errorf("%+v: opened", c.sp)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.sp, err, c.want)
		}
	}
	// A relative directory given on a command line: the message names it as given and as the
	// absolute path it means.
	l, err := ParseLocationFrom("missing", dir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(ctx, Spec{Location: l})
	if !errors.Is(err, tib.ErrNoRepository) || !strings.Contains(err.Error(), "missing ("+filepath.Join(dir, "missing")+"): no repository") {
		t.Errorf("relative: %v", err)
	}
	// A USB stick is mounted by whoever can (the boot environment), then opened as a directory.
	mounted := filepath.Join(dir, "stick")
	if _, err := tib.Init(ctx, local.New(filepath.Join(mounted, "repo")), tib.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	o, err := Open(ctx, Spec{Location: loc(t, "usb:/repo"), MountUSB: func(_ context.Context, p string) (string, error) { return filepath.Join(mounted, p), nil }})
	if err != nil || o.Dir != filepath.Join(mounted, "repo") {
		t.Fatalf("usb: %+v %v", o, err)
	}
	o.Close()
}

// TestOpenRepository: the errors keep their chain, and a directory without a repository is
// named as given.
func TestOpenRepository(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	if _, err := tib.Init(ctx, local.New(filepath.Join(dir, "repo")), tib.InitOptions{Password: []byte("right")}); err != nil {
		t.Fatal(err)
	}
	sp := Spec{Location: loc(t, filepath.Join(dir, "repo"))}
	pw := func(s string) func() ([]byte, error) { return func() ([]byte, error) { return []byte(s), nil } }
	r, o, err := OpenRepository(ctx, sp, pw("right"))
	if err != nil || o.Dir != filepath.Join(dir, "repo") || r.Config().ID == "" {
		t.Fatalf("right password: %v", err)
	}
	o.Close()
	if _, _, err := OpenRepository(ctx, sp, pw("wrong")); !errors.Is(err, tib.ErrWrongPassword) {
		t.Errorf("wrong password: %v", err)
	}
	if _, _, err := OpenRepository(ctx, sp, nil); !errors.Is(err, tib.ErrNeedPassword) {
		t.Errorf("no password: %v", err)
	}
	// A directory that exists but holds no repository.
	os.Mkdir(filepath.Join(dir, "empty"), 0o755)
	l, err := ParseLocationFrom("empty", dir)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = OpenRepository(ctx, Spec{Location: l}, nil)
	if !errors.Is(err, tib.ErrNoRepository) || !strings.HasPrefix(err.Error(), "empty ("+filepath.Join(dir, "empty")+"): no repository") {
		t.Errorf("empty directory: %v", err)
	}
}

func TestS3CredentialsFromEnvironment(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	_, err := Open(context.Background(), Spec{Location: loc(t, "s3://bucket/p"), Endpoint: "http://127.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID") {
		t.Fatalf("without keys: %v", err)
	}
	file := filepath.Join(t.TempDir(), "credentials")
	os.WriteFile(file, []byte("[default]\naws_access_key_id = AK\naws_secret_access_key = SK\n"), 0o600)
	c, err := s3Credentials(Spec{CredentialsFile: file})
	if err != nil || c.AccessKeyID != "AK" || c.SecretAccessKey != "SK" {
		t.Fatalf("from the file: %+v %v", c, err)
	}
	c, err = s3Credentials(Spec{CredentialsFile: file, AccessKeyID: "typed", SecretAccessKey: "typed2"})
	if err != nil || c.AccessKeyID != "typed" {
		t.Fatalf("typed keys win: %+v %v", c, err)
	}
}

func TestReadSMBCredentials(t *testing.T) {
	dir := t.TempDir()
	write := func(s string) string {
		p := filepath.Join(dir, "c")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	c, err := ReadSMBCredentials(write("# for the DR share\nusername=backup\r\npassword= p=ss word \ndomain=CORP\n"))
	if err != nil || c != (SMBCredentials{User: "backup", Password: " p=ss word ", Domain: "CORP"}) {
		t.Fatalf("%+v %v", c, err)
	}
	c, err = ReadSMBCredentials(write(`user=CORP\backup` + "\npass=x\n"))
	if err != nil || c != (SMBCredentials{User: "backup", Password: "x", Domain: "CORP"}) {
		t.Fatalf("DOMAIN\\user: %+v %v", c, err)
	}
	for s, want := range map[string]string{
		"password=x\n":        "no username= line",
		"username=a\nfoo=b\n": `:2: unknown key "foo"`,
		"username a\n":        ":1: want KEY=VALUE",
	} {
		if _, err := ReadSMBCredentials(write(s)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", s, err, want)
		}
	}
	if _, err := ReadSMBCredentials(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestPasswordSource: the one way to a password, in its order, refusing an empty file or
// variable by name.
func TestPasswordSource(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pwFile, empty, newlines := write("pw", "correct horse\r\n"), write("empty", ""), write("newlines", "\n\n")
	prompted := func(confirm bool) ([]byte, error) {
		if confirm {
			return []byte("typed twice"), nil
		}
		return []byte("typed"), nil
	}
	t.Setenv("ARCHIVE_PW", "from env")
	t.Setenv("EMPTY_PW", "")
	for _, c := range []struct {
		name     string
		env      string // $CAULDRON_PASSWORD
		src      PasswordSource
		confirm  bool
		want     string
		wantNone bool
		err      string
	}{
		{name: "file wins", env: "x", src: PasswordSource{File: pwFile, Prompt: prompted}, want: "correct horse"},
		{name: "empty file", src: PasswordSource{File: empty}, err: "--password-file " + empty + " is empty (an empty password opens nothing)"},
		{name: "line breaks only", src: PasswordSource{File: newlines}, err: "--password-file " + newlines + " is empty"},
		{name: "missing file", src: PasswordSource{File: filepath.Join(dir, "none")}, err: "--password-file: open " + filepath.Join(dir, "none")},
		{name: "variable", env: "x", src: PasswordSource{Env: "ARCHIVE_PW"}, want: "from env"},
		{name: "variable unset", src: PasswordSource{Env: "NO_SUCH_PW"}, err: "--password-env: $NO_SUCH_PW is not set"},
		{name: "variable empty", src: PasswordSource{Env: "EMPTY_PW"}, err: "--password-env $EMPTY_PW is empty"},
		{name: "CAULDRON_PASSWORD", env: "from cauldron", src: PasswordSource{Prompt: prompted}, want: "from cauldron"},
		{name: "prompt", src: PasswordSource{Prompt: prompted}, want: "typed"},
		{name: "prompt, twice", src: PasswordSource{Prompt: prompted}, confirm: true, want: "typed twice"},
		{name: "none", src: PasswordSource{}, wantNone: true},
	} {
		t.Setenv(PasswordEnv, c.env)
		got, err := c.src.Password(c.confirm)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %q, %v; want the error %q", c.name, got, err, c.err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.wantNone && got != nil, !c.wantNone && string(got) != c.want:
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	if _, err := ReadPasswordFile(empty); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("empty file: %v is not ErrEmptyPassword", err)
	}
	t.Setenv(PasswordEnv, "")
	if (PasswordSource{Prompt: prompted}).Given() || !(PasswordSource{File: pwFile}).Given() {
		t.Error("Given: a prompt is not a given password; a file is")
	}
}

// TestHTTPCredentials: an http(s):// repository behind cauldron serve's logins is opened with
// the user and password of a --credentials-file or of $CAULDRON_HTTP_USER and
// $CAULDRON_HTTP_PASSWORD; without them, the server's 401 comes back saying where they go.
func TestHTTPCredentials(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	if _, err := tib.Init(context.Background(), local.New(dir), tib.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret=pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	pwFile := filepath.Join(t.TempDir(), "htpasswd")
	os.WriteFile(pwFile, []byte("dr:"+string(hash)+"\n"), 0o600)
	users, err := rest.ReadHtpasswd(pwFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rest.RequireAuth(rest.NewHandler(local.New(dir), rest.HandlerOptions{}), rest.AuthOptions{Users: users}))
	defer srv.Close()
	open := func(sp Spec) error {
		sp.Location = loc(t, srv.URL+"/")
		r, o, err := OpenRepository(context.Background(), sp, nil)
		if err == nil && r.Config().Version == 0 {
			err = errors.New("opened a repository without a config version")
		}
		if o != nil {
			o.Close()
		}
		return err
	}
	t.Setenv("CAULDRON_HTTP_USER", "")
	t.Setenv("CAULDRON_HTTP_PASSWORD", "")
	if err := open(Spec{}); err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "--credentials-file") {
		t.Fatalf("without credentials: %v", err)
	}
	cred := filepath.Join(t.TempDir(), "cred")
	os.WriteFile(cred, []byte("# the backup server\nusername=dr\npassword=s3cret=pw\n"), 0o600)
	if err := open(Spec{CredentialsFile: cred}); err != nil {
		t.Fatalf("from --credentials-file: %v", err)
	}
	os.WriteFile(cred, []byte("username=dr\npassword=wrong\n"), 0o600)
	if err := open(Spec{CredentialsFile: cred}); err == nil || !strings.Contains(err.Error(), "wrong user name or password") {
		t.Fatalf("a wrong password from the file: %v", err)
	}
	os.WriteFile(cred, []byte("username=dr\npassword=s3cret=pw\ndomain=CORP\n"), 0o600)
	if err := open(Spec{CredentialsFile: cred}); err == nil || !strings.Contains(err.Error(), "domain= is for SMB") {
		t.Fatalf("a domain for HTTP: %v", err)
	}
	t.Setenv("CAULDRON_HTTP_PASSWORD", "s3cret=pw")
	if err := open(Spec{}); err == nil || !strings.Contains(err.Error(), "$CAULDRON_HTTP_USER is not") {
		t.Fatalf("a password without a user: %v", err)
	}
	t.Setenv("CAULDRON_HTTP_USER", "dr")
	if err := open(Spec{}); err != nil {
		t.Fatalf("from the environment: %v", err)
	}
	if _, err := ParseLocation("http://dr:s3cret@backup01:8420/", HTTP); err == nil {
		t.Fatal("a URL with a password was accepted")
	}
}
