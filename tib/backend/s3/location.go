package s3

import (
	"fmt"
	"net"
	"strings"
	"unicode/utf8"
)

// Location is a repository's place in S3: a bucket and a key prefix inside it.
type Location struct {
	Bucket string
	Prefix string // no leading or trailing slash; empty: the bucket's root
}

// String gives the location back in the s3://BUCKET/PREFIX form ParseLocation reads.
func (l Location) String() string {
	if l.Prefix == "" {
		return "s3://" + l.Bucket
	}
	return "s3://" + l.Bucket + "/" + l.Prefix
}

// maxPrefixLen keeps the longest key we build (PREFIX/generations/NAME, PREFIX/data/XX/NAME with
// content-hash names of 64 hex digits) well under S3's limit of 1024 bytes per key.
const maxPrefixLen = 800

// ParseLocation reads an s3://BUCKET[/PREFIX] location as technicians write it in a kickstart
// file or on the command line. The bucket name must follow Amazon's rules for new buckets (which
// every S3-compatible server accepts); the prefix is normalised (slashes at either end dropped)
// and must not contain empty, "." or ".." segments, which some servers treat as paths.
func ParseLocation(s string) (Location, error) {
	const scheme = "s3://"
	if len(s) < len(scheme) || !strings.EqualFold(s[:len(scheme)], scheme) {
		return Location{}, fmt.Errorf("S3 location %q: must start with s3:// (s3://BUCKET/PREFIX)", s)
	}
	rest := s[len(scheme):]
	bucket, prefix, _ := strings.Cut(rest, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("S3 location %q: the bucket name is missing (s3://BUCKET/PREFIX)", s)
	}
	if err := CheckBucketName(bucket); err != nil {
		return Location{}, fmt.Errorf("S3 location %q: %w", s, err)
	}
	p, err := CleanPrefix(prefix)
	if err != nil {
		return Location{}, fmt.Errorf("S3 location %q: %w", s, err)
	}
	return Location{Bucket: bucket, Prefix: p}, nil
}

// CheckBucketName applies Amazon S3's naming rules for general purpose buckets; the message names
// the rule that is broken. Servers that allow more (legacy upper-case names) are rare in the
// places Cauldron is used, and a strict check catches typos before anything is sent.
func CheckBucketName(name string) error {
	q := fmt.Sprintf("bucket name %q", name)
	if len(name) < 3 || len(name) > 63 {
		return fmt.Errorf("%s: must be 3 to 63 characters long (it has %d)", q, len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '.':
		case c >= 'A' && c <= 'Z':
			return fmt.Errorf("%s: upper-case letters are not allowed (%q at position %d)", q, c, i+1)
		case c == '_':
			return fmt.Errorf("%s: underscores are not allowed (position %d)", q, i+1)
		default:
			return fmt.Errorf("%s: character %q at position %d is not allowed (only a-z, 0-9, '-' and '.')", q, rune(c), i+1)
		}
	}
	if !alnum(name[0]) {
		return fmt.Errorf("%s: must begin with a letter or digit", q)
	}
	if !alnum(name[len(name)-1]) {
		return fmt.Errorf("%s: must end with a letter or digit", q)
	}
	if strings.Contains(name, "..") {
		return fmt.Errorf("%s: two dots in a row are not allowed", q)
	}
	if strings.Contains(name, ".-") || strings.Contains(name, "-.") {
		return fmt.Errorf("%s: a dot next to a hyphen is not allowed", q)
	}
	if ip := net.ParseIP(name); ip != nil && ip.To4() != nil {
		return fmt.Errorf("%s: must not look like an IP address", q)
	}
	for _, p := range []string{"xn--", "sthree-", "amzn-s3-demo-"} {
		if strings.HasPrefix(name, p) {
			return fmt.Errorf("%s: the prefix %q is reserved", q, p)
		}
	}
	for _, sfx := range []string{"-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"} {
		if strings.HasSuffix(name, sfx) {
			return fmt.Errorf("%s: the suffix %q is reserved", q, sfx)
		}
	}
	return nil
}

func alnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// CleanPrefix normalises a key prefix: slashes at either end are dropped; empty, "." and ".."
// segments, backslashes, control characters and invalid UTF-8 are refused, because POSIX-backed
// gateways map keys onto paths and would fold or reject them.
func CleanPrefix(prefix string) (string, error) {
	p := strings.Trim(prefix, "/")
	if p == "" {
		return "", nil
	}
	q := fmt.Sprintf("prefix %q", prefix)
	if len(p) > maxPrefixLen {
		return "", fmt.Errorf("%s: longer than %d bytes", q, maxPrefixLen)
	}
	if !utf8.ValidString(p) {
		return "", fmt.Errorf("%s: not valid UTF-8", q)
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%s: control character %U is not allowed", q, r)
		}
		if r == '\\' {
			return "", fmt.Errorf("%s: backslashes are not allowed", q)
		}
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return "", fmt.Errorf("%s: empty path segment (two slashes in a row)", q)
		case ".", "..":
			return "", fmt.Errorf("%s: %q segments are not allowed", q, seg)
		}
	}
	return p, nil
}
