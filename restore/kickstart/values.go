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
	"unicode"

	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
)

// Location is a parsed place: `cauldron.ks=` values, the repository, report destinations. It is
// archive.Location: the kickstart, the wizard, the command line and the backends share one type
// and one parser.
type Location = archive.Location

// LocationKind says where a file or a repository is.
type LocationKind = archive.Kind

const (
	LocationPath  = archive.Path  // an absolute path on the running system
	LocationHTTP  = archive.HTTP  // an http:// or https:// URL
	LocationCDROM = archive.CDROM // a path on the CD/DVD the boot environment started from
	LocationUSB   = archive.USB   // a path on a removable disk (the first that has it)
	LocationS3    = archive.S3    // an S3 bucket and key prefix
	LocationNFS   = archive.NFS   // nfs://HOST[:PORT]/PATH: an NFS export the boot environment mounts
	LocationSMB   = archive.SMB   // smb://HOST[:PORT]/SHARE/PATH: an SMB (CIFS) share it mounts
)

// ParseLocation parses a `cauldron.ks=` value from the kernel command line: an http:// or
// https:// URL, cdrom:/PATH (on the boot CD), usb:/PATH (on a removable disk) or an absolute
// path (inside the boot image, or on the host for `cauldron recover --kickstart`).
func ParseLocation(s string) (Location, error) {
	return archive.ParseLocation(s, LocationHTTP, LocationCDROM, LocationUSB, LocationPath)
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

// parseGeneration reads latest, a generation ID prefix or a time, as the repository resolves
// them (tib.ParseGenerationRef): a time without a zone is UTC, a date alone the end of that day.
func parseGeneration(s string) (GenerationRef, error) {
	g, err := tib.ParseGenerationRef(s)
	return GenerationRef{Kind: g.Kind, ID: g.ID, Time: g.Time}, err
}

// Ref is g as the repository resolves it.
func (g GenerationRef) Ref() tib.GenerationRef {
	return tib.GenerationRef{Kind: g.Kind, ID: g.ID, Time: g.Time}
}

// String writes g as the kickstart does.
func (g GenerationRef) String() string { return g.Ref().String() }

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
