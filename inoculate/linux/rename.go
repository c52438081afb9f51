package linux

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// RenameKind says what a Rename renames, which decides how its old value is recognised in text.
type RenameKind string

// The kinds of identity a restore can change.
const (
	// FSUUID is a filesystem's (or LUKS container's, or swap area's) UUID, as in UUID=…,
	// /dev/disk/by-uuid/…, resume=UUID=… and GRUB's search --fs-uuid. Matched without regard to
	// case (vfat's XXXX-XXXX is upper case, blkid prints the others in lower case).
	FSUUID RenameKind = "uuid"
	// PartUUID is a partition's PARTUUID: the GPT partition GUID, or SSSSSSSS-NN on MBR disks.
	PartUUID RenameKind = "partuuid"
	// DiskSignature is an MBR disk signature (8 hex digits): it renames every PARTUUID
	// SSSSSSSS-NN of the disk at once, whatever NN is.
	DiskSignature RenameKind = "disk-signature"
	// Device is a device name: /dev/vda1 → /dev/nvme0n1p1, or a whole disk /dev/vda → /dev/nvme0n1.
	// /dev/vda1 never matches inside /dev/vda10.
	Device RenameKind = "device"
)

// Rename is one identity that changed, old → new.
type Rename struct {
	Kind RenameKind `json:"kind"`
	Old  string     `json:"old"`
	New  string     `json:"new"`
}

func (r Rename) String() string { return fmt.Sprintf("%s %s → %s", r.Kind, r.Old, r.New) }

var (
	uuidRE = regexp.MustCompile(`^[0-9A-Za-z][0-9A-Za-z-]*$`)
	sigRE  = regexp.MustCompile(`^[0-9A-Fa-f]{8}$`)
	devRE  = regexp.MustCompile(`^/dev/[A-Za-z0-9_./:+@-]+$`)
)

// validate checks a Rename's values are of its kind.
func (r Rename) validate() error {
	if r.Old == r.New {
		return nil
	}
	switch r.Kind {
	case FSUUID, PartUUID:
		if !uuidRE.MatchString(r.Old) || !uuidRE.MatchString(r.New) {
			return fmt.Errorf("rename %s: a %s is letters, digits and '-'", r, r.Kind)
		}
	case DiskSignature:
		if !sigRE.MatchString(r.Old) || !sigRE.MatchString(r.New) {
			return fmt.Errorf("rename %s: a disk signature is 8 hex digits", r)
		}
	case Device:
		if !devRE.MatchString(r.Old) || !devRE.MatchString(r.New) {
			return fmt.Errorf("rename %s: device names start with /dev/", r)
		}
	default:
		return fmt.Errorf("rename %s: unknown kind %q (uuid, partuuid, disk-signature, device)", r, r.Kind)
	}
	return nil
}

// IdentityRename turns an identity of a layout plan (partition.Identity's What, Old and New)
// into a Rename. Identities Linux does not name anywhere (the GPT disk GUID) give ok=false.
func IdentityRename(what, old, new string) (r Rename, ok bool, err error) {
	switch what {
	case "partition GUID":
		// The kernel prints PARTUUIDs in lower case.
		r = Rename{Kind: PartUUID, Old: strings.ToLower(old), New: strings.ToLower(new)}
	case "disk signature":
		r = Rename{Kind: DiskSignature, Old: strings.ToLower(old), New: strings.ToLower(new)}
	case "disk GUID":
		return Rename{}, false, nil
	default:
		return Rename{}, false, fmt.Errorf("identity %q: unknown to Linux inoculation", what)
	}
	if err := r.validate(); err != nil {
		return Rename{}, false, err
	}
	return r, old != new, nil
}

// renamer replaces every Rename's old value in text, in one pass so that a chain (a→b, b→c) or a
// swap (a↔b) renames each occurrence once.
type renamer struct {
	rs []Rename // longest old value first, so /dev/vda10 wins over /dev/vda1
}

func newRenamer(rs []Rename) (*renamer, error) {
	var out []Rename
	for _, r := range rs {
		if err := r.validate(); err != nil {
			return nil, err
		}
		if r.Old != r.New {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Old) > len(out[j].Old) })
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[i].Kind == out[j].Kind && strings.EqualFold(out[i].Old, out[j].Old) && out[i].New != out[j].New {
				return nil, fmt.Errorf("renames %s and %s give one old value two new ones", out[i], out[j])
			}
		}
	}
	return &renamer{rs: out}, nil
}

func isAlnum(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// isFullUUID reports whether s has the 8-4-4-4-12 form of a UUID.
func isFullUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if s[i] != '-' {
				return false
			}
		} else if !isHex(s[i]) {
			return false
		}
	}
	return true
}

// match reports how many bytes of s at i the rename replaces (0: none) and what with.
func (r Rename) match(s string, i int) (int, string) {
	n := len(r.Old)
	if i+n > len(s) {
		return 0, ""
	}
	switch r.Kind {
	case FSUUID, PartUUID:
		if !strings.EqualFold(s[i:i+n], r.Old) {
			return 0, ""
		}
		// A whole token: an identity is never part of a longer run of letters, digits and '-'.
		// Except after a '-' for a full 36-character UUID, which cannot be mistaken: GRUB's menu
		// entry IDs are gnulinux-simple-UUID and gnulinux-advanced-UUID, and GRUB_DEFAULT may
		// name them; grub-mkconfig on the restored system will write them with the new UUID.
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '-' && !isFullUUID(r.Old)) {
			return 0, ""
		}
		if e := i + n; e < len(s) && (isAlnum(s[e]) || s[e] == '-') {
			return 0, ""
		}
		return n, r.New
	case DiskSignature:
		if !strings.EqualFold(s[i:i+n], r.Old) {
			return 0, ""
		}
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '-') {
			return 0, ""
		}
		// Only as the first half of an MBR PARTUUID: SSSSSSSS-NN, NN hex.
		e := i + n
		if e+3 > len(s) || s[e] != '-' || !isHex(s[e+1]) || !isHex(s[e+2]) {
			return 0, ""
		}
		if e+3 < len(s) && (isAlnum(s[e+3]) || s[e+3] == '-') {
			return 0, ""
		}
		return n, r.New
	case Device:
		if s[i:i+n] != r.Old {
			return 0, ""
		}
		if i > 0 {
			if c := s[i-1]; isAlnum(c) || strings.IndexByte("_./-", c) >= 0 {
				return 0, ""
			}
		}
		if e := i + n; e < len(s) {
			if c := s[e]; isAlnum(c) || strings.IndexByte("_.-", c) >= 0 {
				return 0, ""
			}
		}
		return n, r.New
	}
	return 0, ""
}

// replace returns line with every old value replaced.
func (m *renamer) replace(line string) string {
	if len(m.rs) == 0 {
		return line
	}
	var b strings.Builder
	changed := false
	for i := 0; i < len(line); {
		done := false
		for _, r := range m.rs {
			if n, repl := r.match(line, i); n > 0 {
				b.WriteString(repl)
				i += n
				done, changed = true, true
				break
			}
		}
		if !done {
			b.WriteByte(line[i])
			i++
		}
	}
	if !changed {
		return line
	}
	return b.String()
}

// LineChange is one line of a file, before and after (Old "" for an added line, New "" for a
// removed one).
type LineChange struct {
	Line int    `json:"line"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

// rewriteLines applies the renamer to every line of text that is not a comment (a line whose
// first non-blank character is '#': a stale comment misleads no program, and leaving it keeps
// the diff to what matters). It returns the new text and the changes.
func (m *renamer) rewriteLines(text string) (string, []LineChange) {
	lines := strings.Split(text, "\n")
	var ch []LineChange
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		if n := m.replace(l); n != l {
			ch = append(ch, LineChange{Line: i + 1, Old: l, New: n})
			lines[i] = n
		}
	}
	return strings.Join(lines, "\n"), ch
}

// PartitionDevice is the kernel's name of partition n of disk: a "p" separates the number from a
// disk name that ends in a digit (/dev/nvme0n1p1, /dev/mmcblk0p1, /dev/loop0p1; /dev/sda1).
func PartitionDevice(disk string, n int) string {
	if disk != "" && disk[len(disk)-1] >= '0' && disk[len(disk)-1] <= '9' {
		return fmt.Sprintf("%sp%d", disk, n)
	}
	return fmt.Sprintf("%s%d", disk, n)
}

// DeviceRenames are the device-name changes of a disk that moved from oldDisk to newDisk (as the
// restored system will name it, e.g. /dev/vda → /dev/nvme0n1): the disk itself and each of
// the partitions, numbered as in the layout (partition n stays partition n).
func DeviceRenames(oldDisk, newDisk string, partitions []int) ([]Rename, error) {
	if oldDisk == newDisk {
		return nil, nil
	}
	out := []Rename{{Kind: Device, Old: oldDisk, New: newDisk}}
	for _, n := range partitions {
		if n < 1 {
			return nil, fmt.Errorf("partition number %d: partitions count from 1", n)
		}
		out = append(out, Rename{Kind: Device, Old: PartitionDevice(oldDisk, n), New: PartitionDevice(newDisk, n)})
	}
	for _, r := range out {
		if err := r.validate(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
