package usedblocks

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// On-disk constants of ext2/3/4, from the format as the kernel's ext4.h and e2fsprogs define it.
const (
	extSuperOffset = 1024 // the primary superblock sits 1024 bytes into the volume, whatever the block size
	extSuperSize   = 1024
	extMagic       = 0xEF53

	extStateValid  = 0x1 // s_state: cleanly unmounted
	extStateErrors = 0x2 // s_state: errors detected, e2fsck not yet run

	extCompatSparseSuper2 = 0x200

	extIncompatCompression = 0x1
	extIncompatFiletype    = 0x2
	extIncompatRecover     = 0x4
	extIncompatJournalDev  = 0x8
	extIncompatMetaBG      = 0x10
	extIncompatExtents     = 0x40
	extIncompat64Bit       = 0x80
	extIncompatMMP         = 0x100
	extIncompatFlexBG      = 0x200
	extIncompatEAInode     = 0x400
	extIncompatDirData     = 0x1000
	extIncompatCsumSeed    = 0x2000
	extIncompatLargeDir    = 0x4000
	extIncompatInlineData  = 0x8000
	extIncompatEncrypt     = 0x10000
	extIncompatCasefold    = 0x20000

	// extIncompatKnown are the incompatible features this reader understands. They either do not
	// touch block allocation at all (file types, extents, inline data, ...) or only move metadata
	// to places the group descriptors point at (flex_bg), or are handled explicitly (64bit,
	// meta_bg). Anything else may change the layout, so we refuse rather than guess.
	extIncompatKnown = extIncompatFiletype | extIncompatMetaBG | extIncompatExtents | extIncompat64Bit |
		extIncompatMMP | extIncompatFlexBG | extIncompatEAInode | extIncompatDirData | extIncompatCsumSeed |
		extIncompatLargeDir | extIncompatInlineData | extIncompatEncrypt | extIncompatCasefold

	extROCompatSparseSuper  = 0x1
	extROCompatLargeFile    = 0x2
	extROCompatBtreeDir     = 0x4
	extROCompatGDTCsum      = 0x10
	extROCompatBigalloc     = 0x200
	extROCompatMetadataCsum = 0x400

	extHasJournal = 0x4 // compat

	extBGBlockUninit = 0x2 // bg_flags: block bitmap never written; 0x1 is INODE_UNINIT, not this

	// extMaxGroups bounds the descriptors held in memory (40 bytes each): 2^24 groups is 2 PiB
	// with 4 KiB blocks, yet a damaged superblock claiming tiny groups cannot make us allocate
	// gigabytes.
	extMaxGroups = 1 << 24
)

// extFS is what the superblock says about layout, in blocks unless a name says units. A unit is
// what one bitmap bit stands for: a block, or with bigalloc a cluster of 2^n blocks.
type extFS struct {
	name           string // ext2, ext3 or ext4, for messages
	blockSize      int64
	ratio          int64 // blocks per unit
	blocksCount    int64
	firstDataBlock int64
	blocksPerGroup int64
	unitsPerGroup  int64
	itableBlocks   int64 // inode table length of every group
	descSize       int64
	descPerBlock   int64
	groups         int64
	descBlocks     int64
	reservedGDT    int64
	firstMetaBG    int64
	compat         uint32
	incompat       uint32
	roCompat       uint32
	backupBGs      [2]int64
	mmpBlock       int64  // multi-mount protection block, 0 if none
	uuid           []byte // for group descriptor checksums (gdt_csum)
	csumSeed       uint32 // for group descriptor checksums (metadata_csum)
}

// extGroup is one group descriptor's view of where the group's metadata lives.
type extGroup struct {
	blockBitmap, inodeBitmap, inodeTable int64
	flags                                uint16
	at                                   int64 // byte offset of the descriptor, for messages
}

// Ext reads an ext2/ext3/ext4 volume's block bitmaps. r reads the volume (offset 0 = volume start),
// size its size in bytes. The map's block size is the filesystem's block size (its cluster size
// with bigalloc). Everything the bitmaps mark used is used; so are the boot block, every superblock
// and group descriptor copy, the reserved GDT blocks and every group's bitmaps and inode table,
// whatever the bitmaps say, and whatever lies past the filesystem's last block.
//
// A volume whose journal needs replaying, that was not cleanly unmounted, or that has errors
// recorded, is refused with an error wrapping ErrUnsupported: its bitmaps may not describe the
// blocks the filesystem will use once the journal is replayed or e2fsck has run.
func Ext(r io.ReaderAt, size int64) (*Map, error) {
	r = io.NewSectionReader(r, 0, size) // never read past the volume, whatever the descriptors say
	sb := make([]byte, extSuperSize)
	if err := readAt(r, sb, extSuperOffset); err != nil {
		return nil, fmt.Errorf("ext: superblock at byte %d: %w", extSuperOffset, err)
	}
	fs, err := parseExtSuper(sb, size)
	if err != nil {
		return nil, err
	}
	groups, err := fs.readDescriptors(r)
	if err != nil {
		return nil, err
	}

	unitSize := fs.blockSize * fs.ratio
	m := newVolumeMap(unitSize, size, fs.blocksCount*fs.blockSize)
	// The boot block and the primary superblock: bytes 0-2047. With 1 KiB blocks they are blocks
	// 0 and 1, and block 0 lies before s_first_data_block, so no bitmap describes it.
	m.setBytes(0, extSuperOffset+extSuperSize)

	// Metadata is marked from the descriptors and the superblock alone, not only from the bitmaps:
	// a BLOCK_UNINIT group's bitmap is not on disk, and the kernel computes it from exactly these
	// structures. Marking them for every group is simpler than working out which group holds what
	// (flex_bg puts a group's bitmaps and inode table in another group), and harmless for
	// initialised groups, whose bitmaps mark the same blocks.
	for g := range fs.groups {
		start, n := fs.superAndDescriptors(g)
		fs.setBlocks(m, start, n)
		gd := groups[g]
		fs.setBlocks(m, gd.blockBitmap, 1)
		fs.setBlocks(m, gd.inodeBitmap, 1)
		fs.setBlocks(m, gd.inodeTable, fs.itableBlocks)
	}

	if fs.mmpBlock != 0 {
		fs.setBlocks(m, fs.mmpBlock, 1)
	}

	// The kernel trusts BLOCK_UNINIT only when group descriptors carry checksums (gdt_csum or
	// metadata_csum); without them the flag is stale and the bitmap on disk is the truth.
	uninitValid := fs.roCompat&(extROCompatGDTCsum|extROCompatMetadataCsum) != 0
	bitmap := make([]byte, fs.blockSize)
	totalUnits := (fs.blocksCount + fs.ratio - 1) / fs.ratio
	for g := range fs.groups {
		gd := groups[g]
		if uninitValid && gd.flags&extBGBlockUninit != 0 {
			continue
		}
		if err := readAt(r, bitmap, gd.blockBitmap*fs.blockSize); err != nil {
			return nil, fmt.Errorf("%s: group %d: block bitmap at block %d: %w", fs.name, g, gd.blockBitmap, err)
		}
		first := fs.firstDataBlock/fs.ratio + g*fs.unitsPerGroup
		// The last group may be short: bits past the volume's end are padding (mke2fs sets them),
		// not blocks.
		n := min(fs.unitsPerGroup, totalUnits-first)
		m.orBitmap(first, bitmap, n)
	}
	return m, nil
}

// setBlocks marks blocks [b, b+n) used, in the map's units.
func (fs *extFS) setBlocks(m *Map, b, n int64) {
	m.setBytes(b*fs.blockSize, n*fs.blockSize)
}

// parseExtSuper decodes and checks the superblock. Every value later used for arithmetic or
// allocation is bounded here, so that a damaged superblock yields an error, not a panic or a
// multi-gigabyte allocation.
func parseExtSuper(sb []byte, size int64) (*extFS, error) {
	le32 := func(off int) int64 { return int64(binary.LittleEndian.Uint32(sb[off:])) }
	le16 := func(off int) int64 { return int64(binary.LittleEndian.Uint16(sb[off:])) }
	if magic := le16(0x38); magic != extMagic {
		return nil, fmt.Errorf("ext: superblock at byte %d: magic %#04x is not %#04x", extSuperOffset, magic, extMagic)
	}
	fs := &extFS{
		compat:   uint32(le32(0x5C)),
		incompat: uint32(le32(0x60)),
		roCompat: uint32(le32(0x64)),
	}
	fs.name = extName(fs.compat, fs.incompat, fs.roCompat)
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%s: superblock at byte %d: %s", fs.name, extSuperOffset, fmt.Sprintf(format, a...))
	}
	unsupported := func(format string, a ...any) error {
		return fmt.Errorf("%s: superblock at byte %d: %s: %w", fs.name, extSuperOffset, fmt.Sprintf(format, a...), ErrUnsupported)
	}

	if fs.incompat&extIncompatJournalDev != 0 {
		return nil, unsupported("this is an external journal device, not a filesystem")
	}
	if fs.incompat&extIncompatRecover != 0 {
		return nil, unsupported("the journal needs recovery (mounted, or not cleanly unmounted); run e2fsck first")
	}
	if unknown := fs.incompat &^ extIncompatKnown; unknown != 0 {
		return nil, unsupported("unknown incompatible features %#x", unknown)
	}
	state := le16(0x3A)
	if state&extStateErrors != 0 {
		return nil, unsupported("errors recorded (s_state %#x); run e2fsck first", state)
	}
	if state&extStateValid == 0 {
		return nil, unsupported("not cleanly unmounted (s_state %#x); run e2fsck first", state)
	}

	logBlock := le32(0x18)
	if logBlock > 6 { // 64 KiB is the largest block size Linux supports
		return nil, bad("block size 1024<<%d is not supported", logBlock)
	}
	fs.blockSize = 1024 << logBlock
	fs.ratio = 1
	if fs.roCompat&extROCompatBigalloc != 0 {
		logCluster := le32(0x1C)
		if logCluster < logBlock || logCluster-logBlock > 16 {
			return nil, bad("bigalloc cluster size 1024<<%d does not fit block size %d", logCluster, fs.blockSize)
		}
		fs.ratio = 1 << (logCluster - logBlock)
	}

	fs.blocksCount = le32(0x4)
	fs.firstDataBlock = le32(0x14)
	if fs.incompat&extIncompat64Bit != 0 {
		hi := le32(0x150)
		if hi >= 1<<31/fs.blockSize { // keeps blocksCount*blockSize in an int64
			return nil, bad("block count %#x%08x is absurd", hi, fs.blocksCount)
		}
		fs.blocksCount |= hi << 32
	}
	// The first data block is the superblock's block: 1 with 1 KiB blocks, else 0. Bigalloc
	// always uses 0, its first cluster holding the superblock.
	wantFirst := int64(0)
	if fs.blockSize == 1024 && fs.ratio == 1 {
		wantFirst = 1
	}
	if fs.firstDataBlock != wantFirst {
		return nil, bad("first data block %d, want %d for %d-byte blocks", fs.firstDataBlock, wantFirst, fs.blockSize)
	}
	if fs.blocksCount <= fs.firstDataBlock {
		return nil, bad("block count %d is too small", fs.blocksCount)
	}
	if fs.blocksCount > size/fs.blockSize {
		return nil, bad("%d blocks of %d bytes do not fit the volume's %d bytes", fs.blocksCount, fs.blockSize, size)
	}

	bitsPerBlock := 8 * fs.blockSize
	if fs.ratio == 1 {
		fs.blocksPerGroup = le32(0x20)
		fs.unitsPerGroup = fs.blocksPerGroup
	} else {
		fs.unitsPerGroup = le32(0x24)
		fs.blocksPerGroup = le32(0x20)
		if fs.blocksPerGroup != fs.unitsPerGroup*fs.ratio {
			return nil, bad("%d blocks per group is not %d clusters of %d blocks", fs.blocksPerGroup, fs.unitsPerGroup, fs.ratio)
		}
	}
	if fs.unitsPerGroup < 8 || fs.unitsPerGroup > bitsPerBlock || fs.unitsPerGroup%8 != 0 {
		return nil, bad("%d blocks per group does not fit a one-block bitmap", fs.unitsPerGroup)
	}

	inodesPerGroup := le32(0x28)
	if inodesPerGroup < 1 || inodesPerGroup > bitsPerBlock {
		return nil, bad("%d inodes per group does not fit a one-block bitmap", inodesPerGroup)
	}
	inodeSize := int64(128) // revision 0 has fixed 128-byte inodes
	if le32(0x4C) >= 1 {
		inodeSize = le16(0x58)
	}
	if inodeSize < 128 || inodeSize > fs.blockSize || inodeSize&(inodeSize-1) != 0 {
		return nil, bad("inode size %d is not a power of two between 128 and the block size", inodeSize)
	}
	fs.itableBlocks = (inodesPerGroup*inodeSize + fs.blockSize - 1) / fs.blockSize

	fs.descSize = 32
	if fs.incompat&extIncompat64Bit != 0 {
		fs.descSize = le16(0xFE)
		if fs.descSize < 64 || fs.descSize > 1024 || fs.descSize&(fs.descSize-1) != 0 {
			return nil, bad("group descriptor size %d is not a power of two between 64 and 1024", fs.descSize)
		}
	}
	fs.descPerBlock = fs.blockSize / fs.descSize
	fs.groups = (fs.blocksCount - fs.firstDataBlock + fs.blocksPerGroup - 1) / fs.blocksPerGroup
	if fs.groups > extMaxGroups {
		return nil, bad("%d block groups is more than the %d this reader accepts", fs.groups, extMaxGroups)
	}
	fs.descBlocks = (fs.groups + fs.descPerBlock - 1) / fs.descPerBlock
	fs.reservedGDT = le16(0xCE)
	if fs.reservedGDT > fs.blockSize/4 { // the resize inode addresses them from one indirect block
		return nil, bad("%d reserved GDT blocks is more than a block can address", fs.reservedGDT)
	}
	if fs.incompat&extIncompatMetaBG != 0 {
		fs.firstMetaBG = le32(0x104)
		if fs.firstMetaBG > fs.descBlocks {
			return nil, bad("first meta_bg %d is past the %d descriptor blocks", fs.firstMetaBG, fs.descBlocks)
		}
	}
	if fs.compat&extCompatSparseSuper2 != 0 {
		fs.backupBGs = [2]int64{le32(0x24C), le32(0x250)}
	}
	if fs.incompat&extIncompatMMP != 0 {
		fs.mmpBlock = int64(binary.LittleEndian.Uint64(sb[0x168:]))
		if fs.mmpBlock <= fs.superBlock() || fs.mmpBlock >= fs.blocksCount {
			return nil, bad("MMP block %d is outside the filesystem", fs.mmpBlock)
		}
	}
	fs.uuid = sb[0x68:0x78]
	if fs.roCompat&extROCompatMetadataCsum != 0 {
		// The kernel refuses a superblock whose checksum fails; so do we, rather than trust
		// layout numbers from a damaged one.
		if want, got := binary.LittleEndian.Uint32(sb[0x3FC:]), extCRC32c(^uint32(0), sb[:0x3FC]); want != got {
			return nil, bad("checksum %#08x, computed %#08x", want, got)
		}
		fs.csumSeed = extCRC32c(^uint32(0), fs.uuid)
		if fs.incompat&extIncompatCsumSeed != 0 {
			fs.csumSeed = uint32(le32(0x270))
		}
	}
	return fs, nil
}

// extCRC32c is the kernel's ext4_chksum: CRC-32C continued from crc, with neither the initial nor
// the final inversion hash/crc32 applies.
func extCRC32c(crc uint32, p []byte) uint32 {
	return ^crc32.Update(^crc, castagnoli, p)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// extCRC16 is the kernel's crc16 (polynomial 0x8005, bit-reversed, no inversions), used by the
// older gdt_csum feature. Descriptors are checked once per group, so a bitwise loop is fast enough.
func extCRC16(crc uint16, p []byte) uint16 {
	for _, b := range p {
		crc ^= uint16(b)
		for range 8 {
			if crc&1 != 0 {
				crc = crc>>1 ^ 0xA001
			} else {
				crc >>= 1
			}
		}
	}
	return crc
}

// descChecksum computes group descriptor g's checksum as the kernel's ext4_group_desc_csum does:
// over the group number and the descriptor with its own checksum field (at 0x1E) left out.
// ok is false when the filesystem has no descriptor checksums.
func (fs *extFS) descChecksum(g int64, d []byte) (sum uint16, ok bool) {
	const at = 0x1E
	le := binary.LittleEndian.AppendUint32(nil, uint32(g))
	switch {
	case fs.roCompat&extROCompatMetadataCsum != 0:
		c := extCRC32c(fs.csumSeed, le)
		c = extCRC32c(c, d[:at])
		c = extCRC32c(c, []byte{0, 0})
		c = extCRC32c(c, d[at+2:])
		return uint16(c), true
	case fs.roCompat&extROCompatGDTCsum != 0:
		c := extCRC16(^uint16(0), fs.uuid)
		c = extCRC16(c, le)
		c = extCRC16(c, d[:at])
		if fs.incompat&extIncompat64Bit != 0 {
			c = extCRC16(c, d[at+2:])
		}
		return c, true
	}
	return 0, false
}

// extName names the variant the way blkid does, so that messages match what the user was told:
// ext2 has no journal and only ext2 features, ext3 a journal and only ext3 features, anything
// else is ext4.
func extName(compat, incompat, roCompat uint32) string {
	const ext3Incompat = extIncompatFiletype | extIncompatRecover | extIncompatMetaBG
	const ext3RO = extROCompatSparseSuper | extROCompatLargeFile | extROCompatBtreeDir
	switch {
	case incompat&^ext3Incompat != 0 || roCompat&^ext3RO != 0:
		return "ext4"
	case compat&extHasJournal != 0:
		return "ext3"
	}
	return "ext2"
}

// superBlock is the block holding the primary superblock: block 1 with 1 KiB blocks, else 0.
func (fs *extFS) superBlock() int64 { return extSuperOffset / fs.blockSize }

// groupFirstBlock is the first block of group g.
func (fs *extFS) groupFirstBlock(g int64) int64 { return fs.firstDataBlock + g*fs.blocksPerGroup }

// hasSuper reports whether group g holds a superblock copy (and, without meta_bg, a copy of the
// group descriptor table and the reserved GDT blocks).
func (fs *extFS) hasSuper(g int64) bool {
	switch {
	case g == 0:
		return true
	case fs.compat&extCompatSparseSuper2 != 0:
		// sparse_super2 keeps at most two backups, in the groups the superblock names.
		return g == fs.backupBGs[0] || g == fs.backupBGs[1]
	case g == 1 || fs.roCompat&extROCompatSparseSuper == 0:
		return true
	case g%2 == 0:
		return false
	}
	return isPowerOf(g, 3) || isPowerOf(g, 5) || isPowerOf(g, 7)
}

func isPowerOf(g, base int64) bool {
	for g%base == 0 {
		g /= base
	}
	return g == 1
}

// superAndDescriptors returns the blocks [start, start+n) at the head of group g that hold a
// superblock copy, group descriptor blocks and reserved GDT blocks, following the kernel's
// ext4_num_base_meta_blocks: without meta_bg (and in the groups before s_first_meta_bg's), every
// group with a superblock copy holds the whole old-style descriptor table and the reserved GDT
// blocks; with meta_bg, each meta group of descPerBlock groups keeps its one descriptor block in
// its first, second and last group.
func (fs *extFS) superAndDescriptors(g int64) (start, n int64) {
	start = fs.groupFirstBlock(g)
	if g == 0 {
		start = fs.superBlock()
	}
	hasSuper := fs.hasSuper(g)
	if hasSuper {
		n = 1
	}
	if fs.incompat&extIncompatMetaBG == 0 || g/fs.descPerBlock < fs.firstMetaBG {
		if hasSuper {
			old := fs.descBlocks
			if fs.incompat&extIncompatMetaBG != 0 {
				old = fs.firstMetaBG
			}
			n += old + fs.reservedGDT
		}
		return start, n
	}
	if i := g % fs.descPerBlock; i == 0 || i == 1 || i == fs.descPerBlock-1 {
		n++
	}
	return start, n
}

// descriptorBlock is where descriptor block i (descriptors of groups i*descPerBlock...) lives.
func (fs *extFS) descriptorBlock(i int64) int64 {
	if fs.incompat&extIncompatMetaBG == 0 || i < fs.firstMetaBG {
		return fs.superBlock() + 1 + i
	}
	g := i * fs.descPerBlock
	start := fs.groupFirstBlock(g)
	if g == 0 {
		start = fs.superBlock()
	}
	if fs.hasSuper(g) {
		start++
	}
	return start
}

// readDescriptors reads and checks every group descriptor.
func (fs *extFS) readDescriptors(r io.ReaderAt) ([]extGroup, error) {
	groups := make([]extGroup, fs.groups)
	buf := make([]byte, fs.blockSize)
	for i := range fs.descBlocks {
		b := fs.descriptorBlock(i)
		if b >= fs.blocksCount {
			return nil, fmt.Errorf("%s: group descriptor block %d is at block %d, beyond the volume's %d blocks", fs.name, i, b, fs.blocksCount)
		}
		if err := readAt(r, buf, b*fs.blockSize); err != nil {
			return nil, fmt.Errorf("%s: group descriptor block %d at block %d: %w", fs.name, i, b, err)
		}
		for j := range fs.descPerBlock {
			g := i*fs.descPerBlock + j
			if g >= fs.groups {
				break
			}
			d := buf[j*fs.descSize : (j+1)*fs.descSize]
			gd := extGroup{
				blockBitmap: int64(binary.LittleEndian.Uint32(d[0x0:])),
				inodeBitmap: int64(binary.LittleEndian.Uint32(d[0x4:])),
				inodeTable:  int64(binary.LittleEndian.Uint32(d[0x8:])),
				flags:       binary.LittleEndian.Uint16(d[0x12:]),
				at:          b*fs.blockSize + j*fs.descSize,
			}
			if fs.descSize >= 64 { // only 64bit filesystems have the high words
				gd.blockBitmap |= int64(binary.LittleEndian.Uint32(d[0x20:])) << 32
				gd.inodeBitmap |= int64(binary.LittleEndian.Uint32(d[0x24:])) << 32
				gd.inodeTable |= int64(binary.LittleEndian.Uint32(d[0x28:])) << 32
			}
			// A descriptor's flags decide whether its bitmap is read at all (BLOCK_UNINIT), so
			// one that fails its checksum must not be believed; the kernel refuses it too.
			if want, ok := fs.descChecksum(g, d); ok {
				if got := binary.LittleEndian.Uint16(d[0x1E:]); got != want {
					return nil, fmt.Errorf("%s: group descriptor %d at byte %d: checksum %#04x, computed %#04x", fs.name, g, gd.at, got, want)
				}
			}
			if err := fs.checkGroup(g, gd); err != nil {
				return nil, err
			}
			groups[g] = gd
		}
	}
	return groups, nil
}

// checkGroup rejects metadata placed outside the filesystem, which would otherwise make us read
// garbage or mark nothing where the filesystem keeps its bitmaps.
func (fs *extFS) checkGroup(g int64, gd extGroup) error {
	check := func(what string, b, n int64) error {
		switch {
		case b > fs.blocksCount-n:
			return fmt.Errorf("%s: group descriptor %d at byte %d: %s at block %d is beyond the volume's %d blocks",
				fs.name, g, gd.at, what, b, fs.blocksCount)
		case b <= fs.superBlock():
			return fmt.Errorf("%s: group descriptor %d at byte %d: %s at block %d overlaps the superblock",
				fs.name, g, gd.at, what, b)
		}
		return nil
	}
	if err := check("block bitmap", gd.blockBitmap, 1); err != nil {
		return err
	}
	if err := check("inode bitmap", gd.inodeBitmap, 1); err != nil {
		return err
	}
	return check(fmt.Sprintf("inode table (%d blocks)", fs.itableBlocks), gd.inodeTable, fs.itableBlocks)
}
