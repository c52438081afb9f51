package s3_test

import (
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/tib/backend/s3"
)

func TestParseLocation(t *testing.T) {
	long := strings.Repeat("a", 63)
	for _, c := range []struct {
		in     string
		bucket string
		prefix string
		err    string // part of the message; empty: valid
	}{
		{in: "s3://dr-archive/prod", bucket: "dr-archive", prefix: "prod"},
		{in: "s3://dr-archive", bucket: "dr-archive"},
		{in: "s3://dr-archive/", bucket: "dr-archive"},
		{in: "S3://dr-archive/prod/", bucket: "dr-archive", prefix: "prod"},
		{in: "s3://dr-archive//prod//", bucket: "dr-archive", prefix: "prod"},
		{in: "s3://dr-archive/prod//web01", err: "empty path segment"},
		{in: "s3://dr.archive.2026/site/web01", bucket: "dr.archive.2026", prefix: "site/web01"},
		{in: "s3://" + long + "/x", bucket: long, prefix: "x"},
		{in: "s3://abc/ünïcode prefix", bucket: "abc", prefix: "ünïcode prefix"},
		{in: "", err: "must start with s3://"},
		{in: "dr-archive/prod", err: "must start with s3://"},
		{in: "https://dr-archive/prod", err: "must start with s3://"},
		{in: "s3://", err: "bucket name is missing"},
		{in: "s3:///prod", err: "bucket name is missing"},
		{in: "s3://ab/prod", err: "3 to 63 characters"},
		{in: "s3://" + long + "a", err: "3 to 63 characters"},
		{in: "s3://DR-Archive", err: "upper-case"},
		{in: "s3://dr_archive", err: "underscores"},
		{in: "s3://dr archive", err: "is not allowed"},
		{in: "s3://-archive", err: "begin with a letter or digit"},
		{in: "s3://archive-", err: "end with a letter or digit"},
		{in: "s3://dr..archive", err: "two dots"},
		{in: "s3://dr.-archive", err: "dot next to a hyphen"},
		{in: "s3://192.168.1.10", err: "IP address"},
		{in: "s3://xn--archive", err: `prefix "xn--" is reserved`},
		{in: "s3://sthree-archive", err: "reserved"},
		{in: "s3://archive-s3alias", err: `suffix "-s3alias" is reserved`},
		{in: "s3://archive--ol-s3", err: "reserved"},
		{in: "s3://dr-archive/a/./b", err: `"." segments`},
		{in: "s3://dr-archive/a/../b", err: `".." segments`},
		{in: "s3://dr-archive/a\\b", err: "backslashes"},
		{in: "s3://dr-archive/a\x00b", err: "control character"},
		{in: "s3://dr-archive/a\xffb", err: "UTF-8"},
		{in: "s3://dr-archive/" + strings.Repeat("p", 801), err: "longer than 800"},
	} {
		loc, err := s3.ParseLocation(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseLocation(%q) = %+v, %v; want an error saying %q", c.in, loc, err, c.err)
			}
			continue
		}
		if err != nil || loc.Bucket != c.bucket || loc.Prefix != c.prefix {
			t.Errorf("ParseLocation(%q) = %+v, %v; want bucket %q prefix %q", c.in, loc, err, c.bucket, c.prefix)
		}
	}
}

// FuzzParseLocation: the parser never panics, what it accepts obeys the bucket rules and the
// prefix rules, and its String form parses back to the same location.
func FuzzParseLocation(f *testing.F) {
	for _, s := range []string{"s3://dr-archive/prod", "s3://a.b-c/x/y/", "s3://", "s3://ab", "S3://x..y/z", "s3://b-1//p", "s3://b-1/a/../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		loc, err := s3.ParseLocation(s)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if err := s3.CheckBucketName(loc.Bucket); err != nil {
			t.Fatalf("accepted bucket %q: %v", loc.Bucket, err)
		}
		if p, err := s3.CleanPrefix(loc.Prefix); err != nil || p != loc.Prefix {
			t.Fatalf("accepted prefix %q is not clean: %q, %v", loc.Prefix, p, err)
		}
		if strings.HasPrefix(loc.Prefix, "/") || strings.HasSuffix(loc.Prefix, "/") || strings.Contains(loc.Prefix, "//") {
			t.Fatalf("prefix %q has stray slashes", loc.Prefix)
		}
		again, err := s3.ParseLocation(loc.String())
		if err != nil || again != loc {
			t.Fatalf("%q → %+v → %q → %+v, %v", s, loc, loc.String(), again, err)
		}
	})
}
