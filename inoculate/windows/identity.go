package windows

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/cauldron-dr/cauldron/inoculate/bcd"
	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// dmioPrefix starts a MountedDevices value naming a GPT partition by its GUID.
var dmioPrefix = []byte("DMIO:ID:")

// rewriteMountedDevices maps the disk identities in SYSTEM\MountedDevices: MBR volumes are 12
// bytes (disk signature, partition start in bytes), GPT ones "DMIO:ID:" and the partition GUID.
// Values of other forms (device paths of CD-ROMs and USB disks) name no disk identity.
func rewriteMountedDevices(hf *hiveFile, m bcd.Mapping, warn func(string)) error {
	const key = "MountedDevices"
	k, err := hf.h.Lookup(key)
	if err != nil {
		warn("SYSTEM has no MountedDevices key: Windows will assign drive letters afresh")
		return nil
	}
	vals, err := k.Values()
	if err != nil {
		return err
	}
	for _, v := range vals {
		if v.Type() != regf.RegBinary {
			continue
		}
		d, err := v.Data()
		if err != nil {
			return fmt.Errorf("MountedDevices\\%s: %w", v.Name(), err)
		}
		nd, why, w := mapMountedDevice(d, m)
		if w != "" {
			warn(fmt.Sprintf("MountedDevices\\%s: %s", v.Name(), w))
		}
		if nd == nil {
			continue
		}
		if bytes.Equal(nd, d) {
			continue
		}
		if err := hf.set(key, v.Name(), regf.RegBinary, nd, why+": the volume keeps its drive letter on the new disk"); err != nil {
			return err
		}
	}
	return nil
}

// mapMountedDevice maps one MountedDevices value: MBR volumes are 12 bytes (disk signature,
// partition start in bytes), GPT ones "DMIO:ID:" and the partition GUID. It returns nil for a
// value that names no mapped identity, and a warning for a partition the moves do not name.
func mapMountedDevice(d []byte, m bcd.Mapping) (nd []byte, why, warning string) {
	switch {
	case len(d) == 12:
		sig := binary.LittleEndian.Uint32(d)
		off := binary.LittleEndian.Uint64(d[4:])
		var dm *bcd.DiskMap
		for i := range m.Disks {
			if m.Disks[i].HasSignature && m.Disks[i].OldSignature == sig {
				dm = &m.Disks[i]
			}
		}
		if dm == nil {
			return nil, "", ""
		}
		nd = append([]byte(nil), d...)
		binary.LittleEndian.PutUint32(nd, dm.NewSignature)
		ns := off
		if len(dm.Starts) > 0 {
			var ok bool
			if ns, ok = dm.Starts[off]; !ok {
				warning = fmt.Sprintf("no partition of disk %08x starts at byte %d in the layout plan; its start is left as it was", sig, off)
				ns = off
			}
		}
		binary.LittleEndian.PutUint64(nd[4:], ns)
		return nd, fmt.Sprintf("MBR volume: disk signature %08x → %08x, start %d → %d", sig, dm.NewSignature, off, ns), warning
	case len(d) == 24 && bytes.HasPrefix(d, dmioPrefix):
		var old [16]byte
		copy(old[:], d[8:])
		for _, dm := range m.Disks {
			if np, ok := dm.Partitions[old]; ok {
				nd = append([]byte(nil), d...)
				copy(nd[8:], np[:])
				return nd, "GPT volume: partition GUID rewritten", ""
			}
		}
	}
	return nil, "", ""
}

// BCDResult is what was done to one BCD store.
type BCDResult struct {
	Store     string          `json:"store"` // host path
	Changes   []bcd.Change    `json:"changes"`
	Untouched []bcd.Untouched `json:"untouched,omitempty"`
	Elements  int             `json:"elements"`
	Backup    string          `json:"backup,omitempty"`
	Kept      bool            `json:"backupKept,omitempty"`

	store *bcd.Store
	orig  []byte
}

// rewriteBCD opens a store (repairing a dirty one from its logs in memory, refusing one
// without) and rewrites its device elements in memory.
func rewriteBCD(path string, m bcd.Mapping) (*BCDResult, error) {
	orig, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := bcd.Open(path)
	if err != nil {
		return nil, err
	}
	if probs := st.Hive().Check(); len(probs) > 0 {
		return nil, fmt.Errorf("BCD store %s breaks the rules Windows relies on (%d problem(s), first: %v); refusing to edit it", path, len(probs), probs[0])
	}
	rep, err := st.Rewrite(m)
	if err != nil {
		return nil, fmt.Errorf("BCD store %s: %w", path, err)
	}
	if probs := st.Hive().Check(); len(probs) > 0 {
		return nil, fmt.Errorf("BCD store %s fails the hive checker after the rewrite, not writing it: %v", path, probs[0])
	}
	return &BCDResult{Store: path, Changes: rep.Changes, Untouched: rep.Untouched, Elements: rep.Elements, store: st, orig: orig}, nil
}
