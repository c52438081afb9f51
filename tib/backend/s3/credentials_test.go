package s3_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib/backend/s3"
)

func TestCredentialsFromEnv(t *testing.T) {
	t.Setenv(s3.EnvAccessKeyID, "AKIAEXAMPLE")
	t.Setenv(s3.EnvSecretAccessKey, "secret")
	t.Setenv(s3.EnvSessionToken, "token")
	c, err := s3.CredentialsFromEnv()
	if err != nil || c != (s3.Credentials{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "secret", SessionToken: "token"}) {
		t.Fatalf("CredentialsFromEnv = %+v, %v", c, err)
	}

	t.Setenv(s3.EnvSecretAccessKey, "")
	if _, err := s3.CredentialsFromEnv(); err == nil || !strings.Contains(err.Error(), "AWS_SECRET_ACCESS_KEY is not set") {
		t.Fatalf("missing secret: %v", err)
	}
	t.Setenv(s3.EnvAccessKeyID, "")
	if _, err := s3.CredentialsFromEnv(); err == nil || !strings.Contains(err.Error(), "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set") {
		t.Fatalf("missing both: %v", err)
	}
}

func TestCredentialsFromFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "credentials")
	err := os.WriteFile(path, []byte(`[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = default-secret

[lab]
aws_access_key_id=AKIALAB
aws_secret_access_key=lab-secret
aws_session_token=lab-token

[half]
aws_access_key_id = AKIAHALF

[empty]
region = us-east-1
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_PROFILE", "lab") // ignored: the profile is always the one asked for
	c, err := s3.CredentialsFromFile(path, "")
	if err != nil || c != (s3.Credentials{AccessKeyID: "AKIADEFAULT", SecretAccessKey: "default-secret"}) {
		t.Fatalf("default profile = %+v, %v", c, err)
	}
	c, err = s3.CredentialsFromFile(path, "lab")
	if err != nil || c != (s3.Credentials{AccessKeyID: "AKIALAB", SecretAccessKey: "lab-secret", SessionToken: "lab-token"}) {
		t.Fatalf("lab profile = %+v, %v", c, err)
	}
	for _, bad := range []struct{ path, profile, want string }{
		{filepath.Join(dir, "nope"), "", "nope, profile \"default\": the file does not exist"},
		{path, "missing", `profile "missing"`},
		{path, "half", "aws_secret_access_key must both be set"},
		{path, "empty", "has no aws_access_key_id and aws_secret_access_key"},
	} {
		_, err := s3.CredentialsFromFile(bad.path, bad.profile)
		if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), bad.path) {
			t.Errorf("CredentialsFromFile(%s, %q) = %v; want the file named and %q", bad.path, bad.profile, err, bad.want)
		}
	}

	// The default file comes from AWS_SHARED_CREDENTIALS_FILE, as with the AWS tools.
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", path)
	if c, err := s3.CredentialsFromFile("", "lab"); err != nil || c.AccessKeyID != "AKIALAB" {
		t.Fatalf("default file = %+v, %v", c, err)
	}
}
