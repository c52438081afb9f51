package usedblocks

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"

	ntfs "www.velocidex.com/golang/go-ntfs/parser"
)

type ntfsCase struct {
	name    string
	cluster string // mkntfs -c
	sector  string // mkntfs -s
	size    int64
	big     int
	mount   bool // populate through ntfs-3g (FUSE) instead of ntfscp
}

var ntfsCases = []ntfsCase{
	{name: "4k-clusters", cluster: "4096", sector: "512", size: 64 << 20, big: 5},
	{name: "512-clusters", cluster: "512", sector: "512", size: 24<<20 + 3*512, big: 3},
	{name: "64k-clusters", cluster: "65536", sector: "512", size: 96<<20 + 4096, big: 5},
	{name: "4k-sectors", cluster: "4096", sector: "4096", size: 48 << 20, big: 3},
	{name: "mounted", cluster: "4096", sector: "512", size: 64 << 20, big: 5, mount: true},
}

func TestNTFSRealImages(t *testing.T) {
	needTools(t, "mkntfs", "ntfscp", "ntfsinfo", "ntfsfix", "ntfscat")
	for _, c := range ntfsCases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			testNTFSCase(t, c)
		})
	}
}

func testNTFSCase(t *testing.T, c ntfsCase) {
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	sums := makeTree(t, tree, uint64(len(c.name)), c.big)
	img := newImage(t, dir, "fs.img", c.size)
	run(t, "mkntfs", "-F", "-Q", "-q", "-s", c.sector, "-c", c.cluster, img)
	if c.mount {
		populateNTFSMount(t, img, tree)
	} else {
		// ntfscp writes without mounting but cannot make directories: flatten the tree.
		flat := map[string]string{}
		names := make([]string, 0, len(sums))
		for name := range sums {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			dst := strings.ReplaceAll(name, "/", "_")
			run(t, "ntfscp", "-q", img, filepath.Join(tree, filepath.FromSlash(name)), "/"+dst)
			flat[dst] = sums[name]
		}
		sums = flat
	}

	info := run(t, "ntfsinfo", "-m", img)
	m := mapImage(t, img, NTFS)
	if cs := field(t, info, "Cluster Size"); cs != m.BlockSize {
		t.Fatalf("block size %d, ntfsinfo says clusters of %d", m.BlockSize, cs)
	}
	clusters, free := field(t, info, "Volume Size in Clusters"), field(t, info, "Free Clusters")
	if got, want := countIn(m, 0, clusters), clusters-free; got != want {
		t.Errorf("used clusters %d, ntfsinfo says %d (%d - %d free)", got, want, clusters, free)
	}
	if got := countIn(m, clusters, m.Blocks); got != m.Blocks-clusters || got == 0 {
		t.Errorf("%d of the %d blocks past the last cluster are used, want all (the backup boot sector is there)", got, m.Blocks-clusters)
	}

	restored := usedOnlyCopy(t, img, m)
	if out, err := exec.Command("ntfsfix", "-n", restored).CombinedOutput(); err != nil {
		t.Fatalf("ntfsfix -n on the used-blocks-only copy: %v\n%s", err, out)
	}
	// ntfsfix does not notice a damaged backup boot sector (it would silently rewrite it), so
	// check directly that it survived: it is the sector after the volume's last one.
	orig, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	back, err := os.ReadFile(restored)
	if err != nil {
		t.Fatal(err)
	}
	sector := int64(binary.LittleEndian.Uint16(orig[0x0B:]))
	backup := int64(binary.LittleEndian.Uint64(orig[0x28:])) * sector
	if !bytes.Equal(orig[backup:backup+512], back[backup:backup+512]) || !bytes.Equal(orig[:512], orig[backup:backup+512]) {
		t.Errorf("backup boot sector at byte %d lost in the used-blocks-only copy", backup)
	}
	for name, sum := range sums {
		out, err := exec.Command("ntfscat", restored, "/"+name).Output()
		if err != nil {
			t.Errorf("ntfscat %s: %v", name, err)
			continue
		}
		h := sha256.Sum256(out)
		if got := hex.EncodeToString(h[:]); got != sum {
			t.Errorf("%s: sha256 %s, want %s", name, got, sum)
		}
	}
}

// populateNTFSMount copies tree in through an ntfs-3g FUSE mount, deleting a filler file
// afterwards so that $Bitmap has holes. It skips when FUSE is not available.
func populateNTFSMount(t *testing.T, img, tree string) {
	t.Helper()
	needTools(t, "ntfs-3g")
	mnt := t.TempDir()
	if out, err := exec.Command("ntfs-3g", img, mnt).CombinedOutput(); err != nil {
		testenv.SkipOrFail(t, "cannot mount with ntfs-3g here: %v %s", err, out)
	}
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	scratch := filepath.Join(mnt, "scratch")
	if err := os.WriteFile(scratch, bytes.Repeat([]byte("s"), 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "cp", "-r", tree+"/.", mnt)
	if err := os.Remove(scratch); err != nil {
		t.Fatal(err)
	}
	run(t, "umount", mnt)
	mounted = false
}

// ntfsTestImage makes a small NTFS image with one file and returns its bytes.
func ntfsTestImage(t *testing.T) []byte {
	t.Helper()
	needTools(t, "mkntfs", "ntfscp")
	dir := t.TempDir()
	img := newImage(t, dir, "fs.img", 8<<20)
	run(t, "mkntfs", "-F", "-Q", "-q", "-c", "4096", img)
	src := filepath.Join(dir, "f")
	if err := os.WriteFile(src, bytes.Repeat([]byte("data"), 5000), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, "ntfscp", "-q", img, src, "/f")
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mftRecordOffset finds MFT record n of a freshly made image through its boot sector. mkntfs
// keeps the first records of $MFT contiguous, which is all these tests need.
func mftRecordOffset(t *testing.T, img []byte, n int64) int64 {
	t.Helper()
	cs, _, err := parseNTFSBoot(img[:512], int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	return int64(binary.LittleEndian.Uint64(img[0x30:]))*cs + n*1024
}

// findAttr returns the offset of the first attribute of type typ in the MFT record at rec.
func findAttr(t *testing.T, img []byte, rec int64, typ uint32) int64 {
	t.Helper()
	off := rec + int64(binary.LittleEndian.Uint16(img[rec+0x14:]))
	for off < rec+1024 {
		at := binary.LittleEndian.Uint32(img[off:])
		if at == typ {
			return off
		}
		if at == 0xFFFFFFFF {
			break
		}
		off += int64(binary.LittleEndian.Uint32(img[off+4:]))
	}
	t.Fatalf("no attribute %#x in the record at byte %d", typ, rec)
	return 0
}

// TestNTFSRefusesUnsafe marks a real image dirty, hibernated, and with a $LogFile waiting for
// replay, as Windows would leave it: each must be refused with ErrUnsupported.
func TestNTFSRefusesUnsafe(t *testing.T) {
	clean := ntfsTestImage(t)
	if _, err := NTFS(bytes.NewReader(clean), int64(len(clean))); err != nil {
		t.Fatalf("clean image: %v", err)
	}

	t.Run("dirty", func(t *testing.T) {
		img := bytes.Clone(clean)
		vi := findAttr(t, img, mftRecordOffset(t, img, ntfsMFTVolume), ntfsAttrVolumeInformation)
		content := vi + int64(binary.LittleEndian.Uint16(img[vi+0x14:]))
		img[content+10] |= ntfsVolumeDirty
		_, err := NTFS(bytes.NewReader(img), int64(len(img)))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "dirty") {
			t.Fatalf("got %v, want ErrUnsupported about a dirty volume", err)
		}
	})

	t.Run("log not replayed", func(t *testing.T) {
		img := bytes.Clone(clean)
		data := findAttr(t, img, mftRecordOffset(t, img, ntfsMFTLog), 0x80)
		// The first run of $LogFile's non-resident $DATA: header byte, then length, then offset.
		runs := data + int64(binary.LittleEndian.Uint16(img[data+0x20:]))
		h := img[runs]
		lenBytes, offBytes := int64(h&0xF), int64(h>>4)
		var lcn int64
		for i := offBytes - 1; i >= 0; i-- {
			lcn = lcn<<8 | int64(img[runs+1+lenBytes+i])
		}
		cs, _, _ := parseNTFSBoot(img[:512], int64(len(img)))
		log := img[lcn*cs:]
		// setPage writes a restart page at off whose restart area (at 0x30) has client 0 in use,
		// the given LSN, and the clean flag or not.
		setPage := func(off int, lsn uint64, clean bool) {
			page := log[off:]
			copy(page, "RSTR")
			binary.LittleEndian.PutUint32(page[0x10:], 4096)
			binary.LittleEndian.PutUint16(page[0x18:], 0x30)
			binary.LittleEndian.PutUint64(page[0x30:], lsn)
			binary.LittleEndian.PutUint16(page[0x30+0x0C:], 0)
			flags := uint16(0)
			if clean {
				flags = 0x0002
			}
			binary.LittleEndian.PutUint16(page[0x30+0x0E:], flags)
		}
		for _, tc := range []struct {
			name        string
			lsn0, lsn1  uint64 // 0: page absent (0xFF, as mkntfs leaves it)
			clean0      bool
			clean1      bool
			wantRefusal bool
		}{
			{"one page, dirty", 10, 0, false, false, true},
			{"one page, clean", 10, 0, true, false, false},
			{"second page newer and dirty", 10, 20, true, false, true},
			{"second page older and dirty", 30, 20, true, false, false},
			{"second page newer and clean", 10, 20, false, true, false},
			{"only the second page, dirty", 0, 20, false, false, true},
		} {
			for i := range 8192 {
				log[i] = 0xFF
			}
			if tc.lsn0 != 0 {
				setPage(0, tc.lsn0, tc.clean0)
			}
			if tc.lsn1 != 0 {
				setPage(4096, tc.lsn1, tc.clean1)
			}
			_, err := NTFS(bytes.NewReader(img), int64(len(img)))
			if tc.wantRefusal {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "$LogFile") {
					t.Errorf("%s: got %v, want ErrUnsupported about $LogFile", tc.name, err)
				}
			} else if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
		}
	})

	t.Run("hibernated", func(t *testing.T) {
		// withHiberfil returns the clean image with a hiberfil.sys starting with magic.
		withHiberfil := func(magic string) []byte {
			dir := t.TempDir()
			img := filepath.Join(dir, "fs.img")
			if err := os.WriteFile(img, clean, 0o644); err != nil {
				t.Fatal(err)
			}
			hib := filepath.Join(dir, "hiberfil.sys")
			if err := os.WriteFile(hib, append([]byte(magic), make([]byte, 8192)...), 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, "ntfscp", "-q", img, hib, "/hiberfil.sys")
			data, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			return data
		}
		for _, magic := range []string{"HIBR", "hibr"} {
			img := withHiberfil(magic)
			_, err := NTFS(bytes.NewReader(img), int64(len(img)))
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "hibernated") {
				t.Fatalf("%s: got %v, want ErrUnsupported about hibernation", magic, err)
			}
		}
		// After a normal boot Windows leaves the file with a "wake" header: not hibernated.
		img := withHiberfil("wake")
		if _, err := NTFS(bytes.NewReader(img), int64(len(img))); err != nil {
			t.Fatalf("woken hiberfil.sys: %v", err)
		}
	})
}

// TestNTFSCorrupt damages a real image: each must give an error, never a panic or a map.
func TestNTFSCorrupt(t *testing.T) {
	clean := ntfsTestImage(t)
	le64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	bitmapRec := mftRecordOffset(t, clean, ntfsMFTBitmap)
	bitmapData := findAttr(t, clean, bitmapRec, 0x80)
	runs := int(bitmapData) + int(binary.LittleEndian.Uint16(clean[bitmapData+0x20:]))
	le16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	for _, tc := range []struct {
		name string
		img  []byte
		want string
	}{
		{"oem id", corrupt(clean, 3, []byte("EXFAT   ")), "ntfs: boot sector at byte 0: OEM id"},
		{"sector size", corrupt(clean, 0x0B, []byte{0, 3}), "768 bytes per sector"},
		{"cluster code", corrupt(clean, 0x0D, []byte{3}), "3 sectors per cluster"},
		{"huge clusters", corrupt(clean, 0x0D, []byte{0xF4}), "larger than go-ntfs reads"},
		{"too many sectors", corrupt(clean, 0x28, le64(1<<40)), "do not fit the volume"},
		{"truncated", clean[:4<<20], "do not fit the volume"},
		{"tiny", clean[:300], "ntfs: boot sector at byte 0"},
		{"MFT elsewhere", corrupt(clean, 0x30, le64(1)), "ntfs"},
		{"$Bitmap record wiped", corrupt(clean, int(bitmapRec), make([]byte, 1024)), "ntfs"},
		{"$Bitmap renamed", corrupt(clean, int(bitmapRec), bytes.ReplaceAll(clean[bitmapRec:bitmapRec+1024],
			[]byte{'$', 0, 'B', 0, 'i', 0, 't', 0}, []byte{'$', 0, 'X', 0, 'i', 0, 't', 0})), "MFT record 6 is not $Bitmap"},
		{"$Bitmap compressed", corrupt(clean, int(bitmapData)+0x0C, le16(0x0001)), "(compressed, encrypted or sparse)"},
		{"$Bitmap sparse", corrupt(clean, int(bitmapData)+0x0C, le16(0x8000)), "(compressed, encrypted or sparse)"},
		{"run list garbage", corrupt(clean, runs, append([]byte{0x18}, bytes.Repeat([]byte{0xFF}, 16)...)), "not within the volume"},
		{"run beyond the volume", corrupt(clean, runs, []byte{0x21, 0x01, 0xFF, 0x7F}), "not within the volume"},
		{"sparse run", corrupt(clean, runs, []byte{0x01, 0x01, 0x00}), "not within the volume"},
		{"run list short", corrupt(clean, runs, []byte{0x00}), "VCN"},
		{"no fix-ups", corrupt(clean, int(bitmapRec)+6, le16(0)), "update-sequence entries"},
		{"one fix-up", corrupt(clean, int(bitmapRec)+6, le16(1)), "update-sequence entries"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NTFS(bytes.NewReader(tc.img), int64(len(tc.img)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got (%v, %v), want an error containing %q", m, err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestNTFSGoNTFSReadsGarbage documents the upstream behaviour NTFS guards against: given a
// $Bitmap whose run list is garbage (an 8-byte length of -1 at LCN -1), go-ntfs v0.2.1's own
// stream reader returns a full buffer and no error, and the bytes are not the bitmap. Read as an
// allocation map, that silently drops used clusters. NTFS must refuse it.
func TestNTFSGoNTFSReadsGarbage(t *testing.T) {
	clean := ntfsTestImage(t)
	rec := mftRecordOffset(t, clean, ntfsMFTBitmap)
	data := findAttr(t, clean, rec, 0x80)
	runs := int(data) + int(binary.LittleEndian.Uint16(clean[data+0x20:]))
	readBitmap := func(img []byte) ([]byte, error) {
		ctx, err := ntfs.GetNTFSContext(bytes.NewReader(img), 0)
		if err != nil {
			return nil, err
		}
		mft, err := ctx.GetMFT(ntfsMFTBitmap)
		if err != nil {
			return nil, err
		}
		s, err := ntfs.OpenStream(ctx, mft, ntfs.ATTR_TYPE_DATA, ntfs.WILDCARD_STREAM_ID, ntfs.WILDCARD_STREAM_NAME)
		if err != nil {
			return nil, err
		}
		buf := make([]byte, 256) // 2047 clusters: 256 bytes of bitmap
		n, err := s.ReadAt(buf, 0)
		return buf[:n], err
	}
	want, err := readBitmap(clean)
	if err != nil || len(want) != 256 {
		t.Fatalf("clean $Bitmap through go-ntfs: %d bytes, %v", len(want), err)
	}
	img := corrupt(clean, runs, append([]byte{0x18}, bytes.Repeat([]byte{0xFF}, 16)...))
	got, err := readBitmap(img)
	if err != nil || len(got) != len(want) || bytes.Equal(got, want) {
		t.Errorf("go-ntfs returned %d bytes, error %v, equal to the real bitmap %v: the upstream behaviour changed; revisit ntfsBitmapExtents",
			len(got), err, bytes.Equal(got, want))
	}
	if m, err := NTFS(bytes.NewReader(img), int64(len(img))); err == nil {
		t.Errorf("NTFS accepted it (%d used clusters)", m.Count())
	}
}

// panicReader panics when a read reaches past byte after, standing in for a fault deep in go-ntfs.
type panicReader struct {
	r     *bytes.Reader
	after int64
}

func (p panicReader) ReadAt(b []byte, off int64) (int, error) {
	if off+int64(len(b)) > p.after {
		panic("simulated fault below go-ntfs")
	}
	return p.r.ReadAt(b, off)
}

// TestNTFSRecoversPanics checks that a panic anywhere beneath NTFS (go-ntfs indexes buffers with
// on-disk values) comes back as an error, not a crashed capture.
func TestNTFSRecoversPanics(t *testing.T) {
	clean := ntfsTestImage(t)
	m, err := NTFS(panicReader{bytes.NewReader(clean), 8192}, int64(len(clean)))
	if m != nil || err == nil || !strings.Contains(err.Error(), "simulated fault") {
		t.Fatalf("got (%v, %v), want the panic as an error", m, err)
	}
}
