package linux

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/u-root/u-root/pkg/efivarfs"
)

// EFIGlobalVariable is the vendor GUID of Boot####, BootOrder and the other variables the UEFI
// specification defines (§3.3).
var EFIGlobalVariable = uuid.MustParse("8be4df61-93ca-11d2-aa0d-00e098032b8c")

// bootVarAttrs are the attributes Boot#### and BootOrder must have: non-volatile, readable by
// boot services and at runtime.
const bootVarAttrs = efivarfs.AttributeNonVolatile | efivarfs.AttributeBootserviceAccess | efivarfs.AttributeRuntimeAccess

// DefaultEFIVars is where the kernel mounts efivarfs.
const DefaultEFIVars = efivarfs.DefaultVarFS

// openVars opens the variable store at dir: u-root's efivarfs access when dir is an efivarfs
// mount (it handles the immutable flag the kernel sets on variable files), otherwise — only when
// the caller named the folder, as tests do — a plain folder holding files in efivarfs' layout
// (4 bytes of attributes, then the data). The default location must be a real efivarfs:
// writing boot entries into an ordinary folder there would silently do nothing.
func openVars(dir string) (efivarfs.EFIVar, bool, error) {
	explicit := dir != ""
	if !explicit {
		dir = DefaultEFIVars
	}
	v, err := efivarfs.NewPath(dir)
	if err == nil {
		return v, true, nil
	}
	if !explicit {
		return nil, false, fmt.Errorf("efivarfs is not mounted at %s (mount -t efivarfs efivarfs %s): %v", dir, dir, err)
	}
	fi, serr := os.Stat(dir)
	if serr != nil || !fi.IsDir() {
		return nil, false, fmt.Errorf("EFI variables folder %s: not a folder", dir)
	}
	return dirVars(dir), false, nil
}

// dirVars keeps EFI variables as files in a plain folder, laid out as efivarfs lays them out.
type dirVars string

func (d dirVars) file(desc efivarfs.VariableDescriptor) string {
	return filepath.Join(string(d), desc.Name+"-"+desc.GUID.String())
}

func (d dirVars) Get(desc efivarfs.VariableDescriptor) (efivarfs.VariableAttributes, []byte, error) {
	b, err := os.ReadFile(d.file(desc))
	if errors.Is(err, fs.ErrNotExist) || (err == nil && len(b) < 4) {
		return 0, nil, efivarfs.ErrVarNotExist
	}
	if err != nil {
		return 0, nil, err
	}
	return efivarfs.VariableAttributes(binary.LittleEndian.Uint32(b)), b[4:], nil
}

func (d dirVars) Set(desc efivarfs.VariableDescriptor, attrs efivarfs.VariableAttributes, data []byte) error {
	b := binary.LittleEndian.AppendUint32(nil, uint32(attrs))
	return os.WriteFile(d.file(desc), append(b, data...), 0o644)
}

func (d dirVars) Remove(desc efivarfs.VariableDescriptor) error { return os.Remove(d.file(desc)) }

func (d dirVars) List() ([]efivarfs.VariableDescriptor, error) {
	entries, err := os.ReadDir(string(d))
	if err != nil {
		return nil, err
	}
	var out []efivarfs.VariableDescriptor
	for _, e := range entries {
		n := e.Name()
		if len(n) < 38 || n[len(n)-37] != '-' {
			continue
		}
		g, err := uuid.Parse(n[len(n)-36:])
		if err != nil {
			continue
		}
		out = append(out, efivarfs.VariableDescriptor{Name: n[:len(n)-37], GUID: g})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ESPPartition identifies the EFI system partition on the target disk for the boot entry's
// hard drive node. GUID is the GPT partition's unique GUID; for an MBR disk leave it empty and
// give MBRSignature (8 hex digits).
type ESPPartition struct {
	Number       uint32 `json:"number"`
	Start        uint64 `json:"start"` // first logical block
	Size         uint64 `json:"size"`  // in logical blocks
	GUID         string `json:"guid,omitempty"`
	MBRSignature string `json:"mbrSignature,omitempty"`
}

func (e ESPPartition) hardDrive() (*HardDrive, error) {
	if e.Number == 0 || e.Size == 0 {
		return nil, fmt.Errorf("ESP partition: number and size must be set (got %d, %d)", e.Number, e.Size)
	}
	hd := &HardDrive{PartitionNumber: e.Number, PartitionStart: e.Start, PartitionSize: e.Size}
	switch {
	case e.GUID != "":
		g, err := GUIDToBytes(e.GUID)
		if err != nil {
			return nil, fmt.Errorf("ESP partition: %w", err)
		}
		hd.Signature, hd.PartitionFormat, hd.SignatureType = g, PartFormatGPT, SigTypeGUID
	case e.MBRSignature != "":
		v, err := strconv.ParseUint(e.MBRSignature, 16, 32)
		if err != nil || len(e.MBRSignature) != 8 {
			return nil, fmt.Errorf("ESP partition: MBR signature %q is not 8 hex digits", e.MBRSignature)
		}
		binary.LittleEndian.PutUint32(hd.Signature[:], uint32(v))
		hd.PartitionFormat, hd.SignatureType = PartFormatMBR, SigTypeMBR
	default:
		return nil, errors.New("ESP partition: give its GPT partition GUID or the MBR disk signature")
	}
	return hd, nil
}

// BootEntry is the NVRAM boot entry Inoculate made, as read back.
type BootEntry struct {
	Variable    string   `json:"variable"` // Boot0003
	Number      uint16   `json:"number"`
	Description string   `json:"description"`
	Path        string   `json:"path"` // efibootmgr style: HD(…)/File(…)
	Reused      bool     `json:"reused"`
	BootOrder   []string `json:"bootOrder"` // as read back, first is ours
	Verified    bool     `json:"verified"`
	EFIVarFS    bool     `json:"efivarfs"` // false: a plain folder (tests)
}

var bootVarRE = regexp.MustCompile(`^Boot([0-9A-F]{4})$`)

// writeBootEntry creates (or reuses, when one with the same description and path exists) a
// Boot#### variable for the loader, puts it first in BootOrder, and reads both back.
func writeBootEntry(vars efivarfs.EFIVar, isFS bool, desc string, dp DevicePath) (*BootEntry, error) {
	opt := LoadOption{Attributes: LoadOptionActive, Description: desc, Path: dp}
	data, err := opt.MarshalBinary()
	if err != nil {
		return nil, err
	}
	list, err := vars.List()
	if err != nil {
		return nil, fmt.Errorf("listing EFI variables: %w", err)
	}
	used := map[uint16]bool{}
	num, reused := -1, false
	for _, v := range list {
		m := bootVarRE.FindStringSubmatch(v.Name)
		if m == nil || v.GUID != EFIGlobalVariable {
			continue
		}
		n, _ := strconv.ParseUint(m[1], 16, 16)
		used[uint16(n)] = true
		_, b, err := vars.Get(v)
		if err != nil {
			continue
		}
		if o, err := ParseLoadOption(b); err == nil && o.Description == desc && equalPath(o.Path, dp) && num < 0 {
			num, reused = int(n), true
		}
	}
	if num < 0 {
		for i := 0; i <= 0xffff; i++ {
			if !used[uint16(i)] {
				num = i
				break
			}
		}
		if num < 0 {
			return nil, errors.New("all 65536 Boot#### variables are taken")
		}
	}
	name := fmt.Sprintf("Boot%04X", num)
	bd := efivarfs.VariableDescriptor{Name: name, GUID: EFIGlobalVariable}
	if err := vars.Set(bd, bootVarAttrs, data); err != nil {
		return nil, fmt.Errorf("writing %s: %w", name, err)
	}
	od := efivarfs.VariableDescriptor{Name: "BootOrder", GUID: EFIGlobalVariable}
	var order []uint16
	if _, b, err := vars.Get(od); err == nil {
		for i := 0; i+1 < len(b); i += 2 {
			if n := binary.LittleEndian.Uint16(b[i:]); int(n) != num {
				order = append(order, n)
			}
		}
	} else if !errors.Is(err, efivarfs.ErrVarNotExist) {
		return nil, fmt.Errorf("reading BootOrder: %w", err)
	}
	order = append([]uint16{uint16(num)}, order...)
	ob := make([]byte, 0, 2*len(order))
	for _, n := range order {
		ob = binary.LittleEndian.AppendUint16(ob, n)
	}
	if err := vars.Set(od, bootVarAttrs, ob); err != nil {
		return nil, fmt.Errorf("writing BootOrder: %w", err)
	}

	// Read back: firmware may refuse or alter a variable without the write failing (full NVRAM,
	// a variable policy), and only what reads back will boot.
	be := &BootEntry{Variable: name, Number: uint16(num), Description: desc, Path: dp.String(), Reused: reused, EFIVarFS: isFS}
	attrs, got, err := vars.Get(bd)
	if err != nil {
		return be, fmt.Errorf("reading %s back: %w", name, err)
	}
	if attrs&bootVarAttrs != bootVarAttrs || !bytes.Equal(got, data) {
		return be, fmt.Errorf("%s reads back different from what was written (attributes %#x)", name, uint32(attrs))
	}
	o, err := ParseLoadOption(got)
	if err != nil || o.Description != desc || !equalPath(o.Path, dp) {
		return be, fmt.Errorf("%s reads back as an entry that does not decode to what was written: %v", name, err)
	}
	_, gotOrder, err := vars.Get(od)
	if err != nil {
		return be, fmt.Errorf("reading BootOrder back: %w", err)
	}
	for i := 0; i+1 < len(gotOrder); i += 2 {
		be.BootOrder = append(be.BootOrder, fmt.Sprintf("%04X", binary.LittleEndian.Uint16(gotOrder[i:])))
	}
	if !bytes.Equal(gotOrder, ob) {
		return be, fmt.Errorf("BootOrder reads back as %s, not %s first", strings.Join(be.BootOrder, ","), name[4:])
	}
	be.Verified = true
	return be, nil
}
