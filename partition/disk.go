// Package partition models disk layouts (MBR with extended/logical partitions, GPT, or none),
// reads them exactly from block devices and raw image files, and — in later stages — plans them
// onto different target disks and recreates them.
//
// The Disk model here is the one model of a layout in Cauldron: `cauldron layout show` prints it
// and `cauldron capture` stores it with every disk of a generation.
//
// All reading is written by hand, read-only, from the on-disk formats:
//   - MBR: go-diskfs has no API for logical partitions (the EBR chain), the boot code or the disk
//     signature.
//   - GPT: go-diskfs v1.9.4 accepts only 92-byte headers and 128-byte entries (both legal to be
//     larger), allocates whatever entry array a header asks for before checking it against the disk,
//     and reports a fallback to the backup header only as a bool. A recovery tool must read damaged
//     and unusual tables and say exactly what it found, so the header, both CRC32s, the backup
//     fallback and the UTF-16 names (with surrogate pairs) are parsed here.
//   - Filesystems are recognised by the magic numbers of their superblocks, as blkid does, without
//     mounting anything or running blkid (which the recovery environment may lack): a few KiB per
//     volume (more only to find a FAT32 label in a crowded root directory).
package partition

// Table is the partition table style of a disk.
type Table string

const (
	TableNone Table = "none"
	TableMBR  Table = "mbr"
	TableGPT  Table = "gpt"
)

// Disk is the layout of one whole disk.
type Disk struct {
	Table              Table `json:"table"`
	Size               int64 `json:"size"`               // bytes
	LogicalSectorSize  int   `json:"logicalSectorSize"`  // bytes, 512 or 4096
	PhysicalSectorSize int   `json:"physicalSectorSize"` // bytes

	// MBR identity and boot code (also present in a GPT disk's protective MBR).
	Signature  uint32 `json:"signature,omitempty"`  // MBR disk signature, bytes 440–443
	BootCode   []byte `json:"bootCode,omitempty"`   // bytes 0–439 of sector 0, when not all zero
	Bootloader string `json:"bootloader,omitempty"` // recognised boot code, e.g. "grub2", "syslinux", "windows"

	// GPT header facts.
	DiskGUID       string `json:"diskGUID,omitempty"`
	FirstUsableLBA uint64 `json:"firstUsableLBA,omitempty"`
	LastUsableLBA  uint64 `json:"lastUsableLBA,omitempty"`
	EntryCount     uint32 `json:"entryCount,omitempty"` // partition entries in the GPT array
	EntrySize      uint32 `json:"entrySize,omitempty"`  // bytes per GPT entry

	// What the kernel knows about the device (empty for image files).
	Model  string `json:"model,omitempty"`
	Serial string `json:"serial,omitempty"`
	WWN    string `json:"wwn,omitempty"`

	Partitions []Partition `json:"partitions"`

	// Filesystem is the volume written directly on the whole disk when Table is none (a
	// "superfloppy", e.g. a USB stick formatted without a partition table); nil otherwise.
	Filesystem *Filesystem `json:"filesystem,omitempty"`

	// Warnings are problems that did not stop the layout from being read but that a user restoring
	// this disk should know about, e.g. a damaged primary GPT header that was replaced by the backup.
	Warnings []string `json:"warnings,omitempty"`
}

// Kind says how an MBR partition is held: primary, the extended container, or logical inside it.
// GPT partitions are all primary.
type Kind string

const (
	KindPrimary  Kind = "primary"
	KindExtended Kind = "extended"
	KindLogical  Kind = "logical"
)

// Partition is one entry of the table.
type Partition struct {
	Number int   `json:"number"` // as the kernel numbers it: MBR primaries 1–4, logicals from 5; GPT entry index + 1
	Kind   Kind  `json:"kind"`
	Start  int64 `json:"start"` // bytes from the start of the disk
	Size   int64 `json:"size"`  // bytes

	Type       string `json:"type"`               // MBR: "0x83"; GPT: type GUID, upper-case
	TypeName   string `json:"typeName,omitempty"` // human name of the type, where known
	GUID       string `json:"guid,omitempty"`     // GPT unique partition GUID, upper-case
	Name       string `json:"name,omitempty"`     // GPT partition name
	Attributes uint64 `json:"attributes,omitempty"`
	Active     bool   `json:"active,omitempty"` // MBR boot flag

	Filesystem *Filesystem `json:"filesystem,omitempty"`
}

// Filesystem is what a partition's first bytes say it holds.
type Filesystem struct {
	Type      string `json:"type"` // ext4, ext3, ext2, xfs, btrfs, ntfs, vfat, swap, lvm2, luks, unknown
	Label     string `json:"label,omitempty"`
	UUID      string `json:"uuid,omitempty"`
	UsedBytes int64  `json:"usedBytes,omitempty"` // from the filesystem's own counters; 0 when unknown
}

// End is the first byte after the partition.
func (p Partition) End() int64 { return p.Start + p.Size }

// HoldsData reports whether the partition holds a volume of its own (the extended container does not:
// its logical partitions do).
func (p Partition) HoldsData() bool { return p.Kind != KindExtended }
