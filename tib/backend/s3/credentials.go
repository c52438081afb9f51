package s3

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Credentials sign the requests. An empty AccessKeyID and SecretAccessKey mean anonymous
// requests, which only a public bucket accepts.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string // temporary (STS) credentials only
}

func (c Credentials) anonymous() bool { return c.AccessKeyID == "" && c.SecretAccessKey == "" }

// The environment variables CredentialsFromEnv reads, as the AWS tools name them.
const (
	EnvAccessKeyID     = "AWS_ACCESS_KEY_ID"
	EnvSecretAccessKey = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken    = "AWS_SESSION_TOKEN"
)

// CredentialsFromEnv reads AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and (optionally)
// AWS_SESSION_TOKEN. Unlike the SDKs it does not quietly fall back to anonymous access: a missing
// variable is an error that names it, since on a recovery console a typo in an export is the
// likeliest cause.
func CredentialsFromEnv() (Credentials, error) {
	c := Credentials{
		AccessKeyID:     os.Getenv(EnvAccessKeyID),
		SecretAccessKey: os.Getenv(EnvSecretAccessKey),
		SessionToken:    os.Getenv(EnvSessionToken),
	}
	var missing []string
	if c.AccessKeyID == "" {
		missing = append(missing, EnvAccessKeyID)
	}
	if c.SecretAccessKey == "" {
		missing = append(missing, EnvSecretAccessKey)
	}
	switch len(missing) {
	case 1:
		return Credentials{}, fmt.Errorf("S3 credentials: environment variable %s is not set", missing[0])
	case 2:
		return Credentials{}, fmt.Errorf("S3 credentials: environment variables %s and %s are not set", missing[0], missing[1])
	}
	return c, nil
}

// DefaultCredentialsFile is where the AWS tools keep shared credentials: $AWS_SHARED_CREDENTIALS_FILE,
// else ~/.aws/credentials.
func DefaultCredentialsFile() string {
	if f := os.Getenv("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
		return f
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root" // the boot image runs as root without $HOME
	}
	return filepath.Join(home, ".aws", "credentials")
}

// CredentialsFromFile reads a profile (empty: "default") of an AWS shared-credentials file (empty
// path: DefaultCredentialsFile). minio-go's reader does the parsing, so the file may use what the
// AWS CLI writes (static keys, session tokens, credential_process); the result is taken once, so
// credentials that expire are good for this run only.
func CredentialsFromFile(path, profile string) (Credentials, error) {
	if path == "" {
		path = DefaultCredentialsFile()
	}
	if profile == "" {
		profile = "default"
	}
	where := fmt.Sprintf("S3 credentials file %s, profile %q", path, profile)
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Credentials{}, fmt.Errorf("%s: the file does not exist", where)
		}
		return Credentials{}, fmt.Errorf("%s: %w", where, err)
	}
	v, err := credentials.NewFileAWSCredentials(path, profile).Get()
	if err != nil {
		return Credentials{}, fmt.Errorf("%s: %w", where, err)
	}
	switch {
	case v.AccessKeyID == "" && v.SecretAccessKey == "":
		return Credentials{}, fmt.Errorf("%s: the profile has no aws_access_key_id and aws_secret_access_key", where)
	case v.AccessKeyID == "":
		return Credentials{}, fmt.Errorf("%s: aws_access_key_id is missing", where)
	case v.SecretAccessKey == "":
		return Credentials{}, fmt.Errorf("%s: aws_secret_access_key is missing", where)
	}
	return Credentials{AccessKeyID: v.AccessKeyID, SecretAccessKey: v.SecretAccessKey, SessionToken: v.SessionToken}, nil
}
