package kickstart

import (
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"path"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// LocationKind says where a file or a repository is.
type LocationKind string

const (
	LocationPath  LocationKind = "path"  // an absolute path on the running system
	LocationHTTP  LocationKind = "http"  // an http:// or https:// URL
	LocationCDROM LocationKind = "cdrom" // a path on the CD/DVD the boot environment started from
	LocationUSB   LocationKind = "usb"   // a path on a removable disk (the first that has it)
	LocationS3    LocationKind = "s3"    // an S3 bucket and key prefix
	LocationNFS   LocationKind = "nfs"   // nfs://HOST[:PORT]/PATH: an NFS export the boot environment mounts
	LocationSMB   LocationKind = "smb"   // smb://HOST[:PORT]/SHARE/PATH: an SMB (CIFS) share it mounts
)

// Location is a parsed place: `cauldron.ks=` values, the repository, report destinations.
type Location struct {
	Kind   LocationKind `json:"kind"`
	Path   string       `json:"path,omitempty"`   // path, cdrom, usb: absolute and clean; s3: the key prefix
	URL    string       `json:"url,omitempty"`    // http, nfs, smb: the URL as given
	Bucket string       `json:"bucket,omitempty"` // s3
}

// String writes l in the form it is given in.
func (l Location) String() string {
	switch l.Kind {
	case LocationHTTP, LocationNFS, LocationSMB:
		return l.URL
	case LocationS3:
		if l.Path == "" {
			return "s3://" + l.Bucket
		}
		return "s3://" + l.Bucket + "/" + l.Path
	case LocationCDROM, LocationUSB:
		return string(l.Kind) + ":" + l.Path
	}
	return l.Path
}

// HTTPS reports whether l is an https:// URL.
func (l Location) HTTPS() bool {
	return l.Kind == LocationHTTP && strings.HasPrefix(strings.ToLower(l.URL), "https://")
}

// ParseLocation parses a `cauldron.ks=` value from the kernel command line: an http:// or
// https:// URL, cdrom:/PATH (on the boot CD), usb:/PATH (on a removable disk) or an absolute
// path (inside the boot image, or on the host for `cauldron recover --kickstart`).
func ParseLocation(s string) (Location, error) {
	return parseLocation(s, LocationHTTP, LocationCDROM, LocationUSB, LocationPath)
}

var s3Bucket = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func parseLocation(s string, allowed ...LocationKind) (Location, error) {
	var l Location
	lower := strings.ToLower(s)
	scheme, rest, hasScheme := strings.Cut(s, ":")
	switch {
	case s == "":
		return l, errors.New("empty location")
	case strings.HasPrefix(lower, "http://") || strings.HasPrefix(lower, "https://"):
		u, err := url.Parse(s)
		if err != nil {
			return l, fmt.Errorf("%q is not a valid URL: %v", s, unwrapURLError(err))
		}
		if u.Host == "" {
			return l, fmt.Errorf("%q names no host", s)
		}
		if u.User != nil {
			return l, fmt.Errorf("%q carries a user name or password in the URL; keep secrets out of kickstart files", s)
		}
		l = Location{Kind: LocationHTTP, URL: s}
	case strings.HasPrefix(lower, "s3://"):
		bucket, prefix, _ := strings.Cut(s[len("s3://"):], "/")
		if !s3Bucket.MatchString(bucket) || strings.Contains(bucket, "..") {
			return l, fmt.Errorf("%q: the bucket name %q is not valid (3 to 63 lower-case letters, digits, dots and hyphens)", s, bucket)
		}
		prefix = strings.Trim(prefix, "/")
		l = Location{Kind: LocationS3, Bucket: bucket, Path: prefix}
	case strings.HasPrefix(lower, "nfs://") || strings.HasPrefix(lower, "smb://"):
		kind := LocationKind(lower[:3])
		u, err := url.Parse(s)
		if err != nil {
			return l, fmt.Errorf("%q is not a valid URL: %v", s, unwrapURLError(err))
		}
		if u.Host == "" || u.Hostname() == "" {
			return l, fmt.Errorf("%q names no server", s)
		}
		if u.User != nil {
			return l, fmt.Errorf("%q carries a user name or password in the URL; keep secrets out of kickstart files (use --credentials-file)", s)
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return l, fmt.Errorf("%q: a share URL takes no ?query or #fragment", s)
		}
		p := strings.Trim(u.Path, "/")
		switch {
		case kind == LocationNFS && p == "":
			return l, fmt.Errorf("%q names no export; want nfs://SERVER/EXPORT/PATH", s)
		case kind == LocationSMB && p == "":
			return l, fmt.Errorf("%q names no share; want smb://SERVER/SHARE/PATH", s)
		}
		l = Location{Kind: kind, URL: s}
	case strings.HasPrefix(s, "/"):
		l = Location{Kind: LocationPath, Path: path.Clean(s)}
	case hasScheme && (strings.EqualFold(scheme, "cdrom") || strings.EqualFold(scheme, "usb")):
		kind := LocationKind(strings.ToLower(scheme))
		if !strings.HasPrefix(rest, "/") {
			return l, fmt.Errorf("%q: want %s:/PATH, a path from the top of the medium", s, kind)
		}
		l = Location{Kind: kind, Path: path.Clean(rest)}
	case hasScheme && isScheme(scheme):
		return l, fmt.Errorf("%q: %s is not supported; want %s", s, scheme, kindList(allowed))
	default:
		return l, fmt.Errorf("%q is not an absolute path; want %s", s, kindList(allowed))
	}
	for _, k := range allowed {
		if k == l.Kind {
			return l, nil
		}
	}
	return l, fmt.Errorf("%q: %s locations cannot be used here; want %s", s, l.Kind, kindList(allowed))
}

func isScheme(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && (r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

func kindList(kinds []LocationKind) string {
	var s []string
	for _, k := range kinds {
		switch k {
		case LocationPath:
			s = append(s, "an absolute path")
		case LocationHTTP:
			s = append(s, "http(s)://…")
		case LocationCDROM:
			s = append(s, "cdrom:/PATH")
		case LocationUSB:
			s = append(s, "usb:/PATH")
		case LocationS3:
			s = append(s, "s3://BUCKET/PREFIX")
		case LocationNFS:
			s = append(s, "nfs://SERVER/EXPORT")
		case LocationSMB:
			s = append(s, "smb://SERVER/SHARE")
		}
	}
	return orList(s)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// orList writes "a", "a or b", "a, b or c".
func orList(s []string) string {
	switch len(s) {
	case 0:
		return ""
	case 1:
		return s[0]
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// parseSize reads a size: a number (with an optional fraction) and a unit. K, M, G and T (and
// KiB…TiB) are powers of 1024, as lsblk, qemu-img and virt-install count; KB, MB, GB and TB are
// powers of 1000, as disk makers label their disks; no unit or B means bytes.
func parseSize(s string) (int64, error) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], strings.ToLower(s[i:])
	if num == "" || num == "." || strings.Count(num, ".") > 1 || len(num) > 24 {
		return 0, fmt.Errorf("want a size such as 500G, 480GB or 1.5T, got %q", s)
	}
	mult := map[string]int64{"": 1, "b": 1,
		"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12}
	m, ok := mult[unit]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q; want K, M, G, T (powers of 1024) or KB, MB, GB, TB (powers of 1000)", s, s[i:])
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("want a size such as 500G, 480GB or 1.5T, got %q", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(m))
	n := new(big.Int).Quo(r.Num(), r.Denom())
	if !n.IsInt64() || n.Int64() > 1<<60 {
		return 0, fmt.Errorf("%q is too big", s)
	}
	return n.Int64(), nil
}

// formatSize writes n so that parseSize reads it back exactly: in the largest power-of-1024 unit
// that divides it, else in bytes.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return fmt.Sprintf("%d%s", n/u.mult, u.suffix)
		}
	}
	return fmt.Sprintf("%d", n)
}

// parseSelector reads a target disk: an absolute path, serial:S, wwn:W, or size:biggest,
// size:smallest or size:MIN-MAX. bare allows a bare kernel name (sda → /dev/sda), as anaconda's
// ignoredisk takes; sizes allows the size forms.
func parseSelector(s string, bare, sizes bool) (DiskSelector, error) {
	want := "an absolute path (/dev/…), serial:S or wwn:W"
	if sizes {
		want = "an absolute path (/dev/… or an image file), serial:S, wwn:W, size:biggest, size:smallest or size:MIN-MAX"
	}
	key, val, hasKey := strings.Cut(s, ":")
	switch {
	case strings.HasPrefix(s, "/"):
		return DiskSelector{By: SelectPath, Value: path.Clean(s)}, nil
	case hasKey && strings.EqualFold(key, "serial"), hasKey && strings.EqualFold(key, "wwn"):
		if val == "" {
			return DiskSelector{}, fmt.Errorf("%s: empty; want %s:VALUE as `cauldron layout show` prints it", s, strings.ToLower(key))
		}
		return DiskSelector{By: SelectBy(strings.ToLower(key)), Value: val}, nil
	case hasKey && strings.EqualFold(key, "size"):
		if !sizes {
			return DiskSelector{}, fmt.Errorf("%q: size: cannot name a disk here; want %s", s, want)
		}
		switch strings.ToLower(val) {
		case "biggest":
			return DiskSelector{By: SelectBiggest}, nil
		case "smallest":
			return DiskSelector{By: SelectSmallest}, nil
		}
		lo, hi, ok := strings.Cut(val, "-")
		if !ok {
			return DiskSelector{}, fmt.Errorf("%q: want size:biggest, size:smallest or size:MIN-MAX (such as size:450G-520G)", s)
		}
		min, err := parseSize(lo)
		if err != nil {
			return DiskSelector{}, fmt.Errorf("%q: %v", s, err)
		}
		max, err := parseSize(hi)
		if err != nil {
			return DiskSelector{}, fmt.Errorf("%q: %v", s, err)
		}
		if min > max {
			return DiskSelector{}, fmt.Errorf("%q: the smallest size is bigger than the biggest", s)
		}
		return DiskSelector{By: SelectSize, Min: min, Max: max}, nil
	case bare && isKernelName(s):
		return DiskSelector{By: SelectPath, Value: "/dev/" + s}, nil
	case isKernelName(s):
		return DiskSelector{}, fmt.Errorf("want %s, got %q; did you mean \"/dev/%s\"?", want, s, s)
	}
	return DiskSelector{}, fmt.Errorf("want %s, got %q", want, s)
}

// isKernelName reports whether s looks like a block device's kernel name (sda, nvme0n1, vdb).
func isKernelName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '!' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

var hexRef = regexp.MustCompile(`^[0-9a-f]{4,64}$`)

// parseGeneration reads latest, a generation ID prefix or a time. A time without a zone is UTC
// (the boot environment has no local zone); a date alone means the end of that day.
func parseGeneration(s string) (GenerationRef, error) {
	lower := strings.ToLower(s)
	if lower == "latest" {
		return GenerationRef{Kind: GenerationLatest}, nil
	}
	if hexRef.MatchString(lower) {
		return GenerationRef{Kind: GenerationID, ID: lower}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return GenerationRef{Kind: GenerationTime, Time: t.UTC()}, nil
	}
	for _, layout := range []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04"} {
		if t, err := time.Parse(layout, s); err == nil {
			return GenerationRef{Kind: GenerationTime, Time: t}, nil
		}
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return GenerationRef{Kind: GenerationTime, Time: t.Add(24*time.Hour - time.Nanosecond)}, nil
	}
	if len(lower) < 4 && hexRef.MatchString(lower+strings.Repeat("0", 4-len(lower))) {
		return GenerationRef{}, fmt.Errorf("want at least 4 hex digits of a generation ID, got %q", s)
	}
	return GenerationRef{}, fmt.Errorf("want latest, a generation ID (at least 4 hex digits) or a time such as 2026-11-21T02:00:00Z, got %q", s)
}

// String writes g as the kickstart does.
func (g GenerationRef) String() string {
	switch g.Kind {
	case GenerationID:
		return g.ID
	case GenerationTime:
		return g.Time.UTC().Format(time.RFC3339Nano)
	}
	return "latest"
}

// checkName checks a machine, disk or VM name the way the repository does: 1 to 128
// printable characters, no slashes.
func checkName(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("must be 1 to 128 characters, got %d", len(s))
	}
	for _, r := range s {
		if !unicode.IsPrint(r) && r != ' ' || r == '/' || r == '\\' {
			return fmt.Errorf("%q: control characters and slashes are not allowed", s)
		}
	}
	return nil
}

var (
	envName       = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	driverName    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	hostnameLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
	ifaceName     = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,15}$`)
)

// checkHostname checks an RFC 1123 host name (labels of letters, digits and inner hyphens).
func checkHostname(s string) error {
	if len(s) > 253 {
		return fmt.Errorf("%q is longer than 253 characters", s)
	}
	for _, l := range strings.Split(s, ".") {
		if !hostnameLabel.MatchString(l) {
			return fmt.Errorf("want a host name (letters, digits and hyphens, dot-separated labels of at most 63), got %q", s)
		}
	}
	return nil
}

// parseDevice reads an interface name or a MAC address (normalised to lower case with colons).
func parseDevice(s string) (string, error) {
	if strings.Count(s, ":") == 5 || strings.Count(s, "-") == 5 {
		mac, err := net.ParseMAC(s)
		if err != nil || len(mac) != 6 {
			return "", fmt.Errorf("%q is not a MAC address", s)
		}
		return mac.String(), nil
	}
	if !ifaceName.MatchString(s) {
		return "", fmt.Errorf("want an interface name (at most 15 letters, digits, '.', '-', '_') or a MAC address, got %q", s)
	}
	return s, nil
}
