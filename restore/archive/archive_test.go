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
)

func TestKindOf(t *testing.T) {
	for loc, want := range map[string]Kind{
		"/srv/archive": Dir, "relative": Dir, "HTTPS://h/r": HTTP, "http://h:8420": HTTP,
		"s3://bkt/p": S3, "nfs://filer/export": NFS, "SMB://filer/share": SMB, "usb:/x": Dir,
	} {
		if got := KindOf(loc); got != want {
			t.Errorf("KindOf(%q) = %s, want %s", loc, got, want)
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

	o, err := Open(ctx, Spec{Location: dir + "/"})
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
	o, err = Open(ctx, Spec{Location: srv.URL})
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
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, []byte("x"), 0o600)
	for _, c := range []struct {
		sp   Spec
		want string
	}{
		{Spec{}, "no repository location given"},
		{Spec{Location: "archive"}, "want an absolute directory"},
		{Spec{Location: file}, "not a directory"},
		{Spec{Location: "/nonexistent/repo"}, "no such file or directory"},
		{Spec{Location: "/srv", Endpoint: "https://minio"}, "an endpoint is for s3:// locations only"},
		{Spec{Location: "nfs://filer/x", InsecureTLS: true}, "for https:// and s3:// locations only"},
		{Spec{Location: "http://user:hunter2@h/r"}, "user"},
		{Spec{Location: "s3://Bad_Bucket/p", AccessKeyID: "a", SecretAccessKey: "b"}, "Bad_Bucket"},
		{Spec{Location: "s3://bucket/p", AccessKeyID: "a"}, "give both the access key ID and the secret access key"},
		{Spec{Location: "smb://filer/share", CredentialsFile: "/nonexistent/cred"}, "SMB credentials"},
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
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%+v: the message repeats the password: %v", c.sp, err)
		}
	}
}

func TestS3CredentialsFromEnvironment(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	_, err := Open(context.Background(), Spec{Location: "s3://bucket/p", Endpoint: "http://127.0.0.1:1"})
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
