package bcd

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
)

// Store is an open BCD store.
type Store struct {
	hive *regf.Hive
	path string
}

// Open reads a BCD store. A dirty store (interrupted write) is repaired from its BCD.LOG1/LOG2
// in memory first, as Windows does when it loads it; one whose logs are missing is refused.
func Open(path string) (*Store, error) {
	h, err := regf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("bcd: %s: %w", path, err)
	}
	if h.Dirty() {
		if _, err := h.ReplayFiles(path); err != nil {
			return nil, fmt.Errorf("bcd: %s is dirty and its logs cannot be replayed: %w", path, err)
		}
	}
	s, err := newStore(h)
	if err != nil {
		return nil, fmt.Errorf("bcd: %s: %w", path, err)
	}
	s.path = path
	return s, nil
}

// Parse reads a BCD store from its bytes (kept and modified by Rewrite).
func Parse(b []byte) (*Store, error) {
	h, err := regf.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("bcd: %w", err)
	}
	return newStore(h)
}

func newStore(h *regf.Hive) (*Store, error) {
	if _, err := h.Lookup("Objects"); err != nil {
		return nil, fmt.Errorf("not a BCD store: the hive has no Objects key: %w", err)
	}
	return &Store{hive: h}, nil
}

// Hive returns the underlying hive.
func (s *Store) Hive() *regf.Hive { return s.hive }

// Save writes the store atomically (path "" is the file it was opened from) and checks what was
// written with regf's checker.
func (s *Store) Save(path string) error {
	if path == "" {
		path = s.path
	}
	if path == "" {
		return fmt.Errorf("bcd: Save needs a path for a store that was not opened from a file")
	}
	if err := s.hive.Save(path); err != nil {
		return fmt.Errorf("bcd: saving %s: %w", path, err)
	}
	h, err := regf.Open(path)
	if err != nil {
		return fmt.Errorf("bcd: reading back %s: %w", path, err)
	}
	if p := h.Check(); len(p) > 0 {
		return fmt.Errorf("bcd: %s fails the hive checker after saving: %v", path, p[0])
	}
	s.path = path
	return nil
}

// Well-known object GUIDs (bcdedit's friendly names).
var wellKnown = map[string]string{
	"{9dea862c-5cdd-4e70-acc1-f32b344d4795}": "{bootmgr}",
	"{a5a30fa2-3d06-4e9f-b5f4-a01df9d1fcba}": "{fwbootmgr}",
	"{b2721d73-1db4-4c62-bf78-c548a880142d}": "{memdiag}",
	"{466f5a88-0af2-4f76-9038-095b170dc21c}": "{ntldr}",
	"{fa926493-6f1c-4193-a414-58f0b2456d1e}": "{current}",
	"{1cae1eb7-a0df-4d4d-9851-4860e34ef535}": "{default}",
	"{ae5534e0-a924-466c-b836-758539a3ee3a}": "{ramdiskoptions}",
	"{7ea2e1ac-2e61-4728-aaa3-896d9d0a9f0e}": "{globalsettings}",
	"{6efb52bf-1766-41db-a6b3-0ee5eff72bd7}": "{bootloadersettings}",
	"{1afa9c49-16ab-4a5c-901b-212802da9460}": "{resumeloadersettings}",
	"{4636856e-540f-4170-a130-a84776f4c654}": "{dbgsettings}",
	"{0ce4991b-e6b3-4b16-b23c-5e0d9250e5d9}": "{emssettings}",
	"{5189b25c-5558-4bf2-bca4-289b11bd29e2}": "{badmemory}",
	"{7ff607e0-4395-11db-b0de-0800200c9a66}": "{hypervisorsettings}",
	"{313e8eed-7098-4586-a9bf-309c61f8d449}": "{kerneldbgsettings}",
}

// BootMgr is {bootmgr}'s GUID.
const BootMgr = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"

// WellKnownName returns bcdedit's friendly name for an object GUID, or "".
func WellKnownName(guid string) string { return wellKnown[strings.ToLower(guid)] }

// Object is one BCD object.
type Object struct {
	GUID        string // the key name, e.g. {9dea862c-5cdd-4e70-acc1-f32b344d4795}
	Name        string // well-known name ({bootmgr} …), "" for others
	Type        uint32 // Description\Type
	Description string // element 12000004, "" when absent
	Elements    []Element
}

// TypeName describes Type: application (with image and application type), inherit or device.
func (o *Object) TypeName() string { return ObjectTypeName(o.Type) }

// ObjectTypeName describes an object type.
func ObjectTypeName(t uint32) string {
	switch t >> 28 {
	case 1:
		image := map[uint32]string{1: "firmware", 2: "boot", 3: "NTLDR", 4: "real-mode"}[(t>>20)&0xF]
		app := map[uint32]string{1: "firmware boot manager", 2: "Windows boot manager", 3: "Windows boot loader",
			4: "Windows resume application", 5: "memory tester", 6: "NTLDR", 7: "setup loader", 8: "boot sector",
			9: "startup application", 0xA: "boot application", 0xFFFFF: "custom application"}[t&0xFFFFF]
		if app == "" {
			app = fmt.Sprintf("application type %#x", t&0xFFFFF)
		}
		if image == "" {
			return "application: " + app
		}
		return "application (" + image + "): " + app
	case 2:
		switch (t >> 20) & 0xF {
		case 1:
			return "inherit: any object"
		case 2:
			return fmt.Sprintf("inherit: applications of type %#x", t&0xFFFFF)
		case 3:
			return "inherit: device objects"
		}
		return "inherit"
	case 3:
		return "device"
	}
	return fmt.Sprintf("object type %#08x", t)
}

// Element formats (bits 24–27 of the element type).
const (
	FormatDevice      = 1
	FormatString      = 2
	FormatObject      = 3
	FormatObjectList  = 4
	FormatInteger     = 5
	FormatBoolean     = 6
	FormatIntegerList = 7
)

// Element is one element of an object, decoded by its format.
type Element struct {
	Type     uint32
	Name     string // bcdedit's name when known ("device", "osdevice", "path" …), else ""
	RegType  uint32 // the registry value's type
	Raw      []byte
	Device   *Device
	String   string   // string and object formats
	Objects  []string // object lists
	Integer  uint64
	Integers []uint64
	Boolean  bool
	Err      error // why the element does not decode; the other fields are then empty
}

// Class is the element class: 1 library, 2 application, 3 device, 4 template.
func (e *Element) Class() uint32 { return e.Type >> 28 }

// Format is the element format (FormatDevice …).
func (e *Element) Format() uint32 { return (e.Type >> 24) & 0xF }

// Key is the element's subkey name.
func (e *Element) Key() string { return fmt.Sprintf("%08x", e.Type) }

// Value formats the decoded value for reports.
func (e *Element) Value() string {
	if e.Err != nil {
		return "undecodable: " + e.Err.Error()
	}
	switch e.Format() {
	case FormatDevice:
		return e.Device.String()
	case FormatString:
		return strconv.Quote(e.String)
	case FormatObject:
		return objectRef(e.String)
	case FormatObjectList:
		var s []string
		for _, o := range e.Objects {
			s = append(s, objectRef(o))
		}
		return strings.Join(s, ", ")
	case FormatInteger:
		return fmt.Sprintf("%d (%#x)", e.Integer, e.Integer)
	case FormatBoolean:
		return strconv.FormatBool(e.Boolean)
	case FormatIntegerList:
		var s []string
		for _, n := range e.Integers {
			s = append(s, strconv.FormatUint(n, 10))
		}
		return strings.Join(s, ", ")
	}
	return fmt.Sprintf("% x", e.Raw)
}

func objectRef(g string) string {
	if n := WellKnownName(g); n != "" {
		return n + " " + g
	}
	return g
}

// elementNames are bcdedit's names of common elements. Library elements (class 1) mean the same
// everywhere; application elements depend on the application, so they are keyed by the
// application type too (0 = any).
var libraryNames = map[uint32]string{
	0x11000001: "device", 0x12000002: "path", 0x12000004: "description", 0x12000005: "locale",
	0x14000006: "inherit", 0x15000007: "truncatememory", 0x14000008: "recoverysequence",
	0x16000009: "recoveryenabled", 0x1700000a: "badmemorylist", 0x1600000b: "badmemoryaccess",
	0x1500000c: "firstmegabytepolicy", 0x16000010: "bootdebug", 0x15000011: "debugtype",
	0x15000013: "debugport", 0x15000014: "baudrate", 0x16000020: "bootems", 0x15000022: "emsport",
	0x15000023: "emsbaudrate", 0x12000030: "loadoptions", 0x16000040: "advancedoptions",
	0x16000041: "optionsedit", 0x15000042: "keyringaddress", 0x16000046: "graphicsmodedisabled",
	0x15000047: "configaccesspolicy", 0x16000048: "nointegritychecks", 0x16000049: "testsigning",
	0x16000050: "extendedinput", 0x15000052: "graphicsresolution", 0x16000053: "restartonfailure",
	0x16000060: "isolatedcontext", 0x15000065: "displaymessage", 0x15000066: "displaymessageoverride",
	0x17000077: "allowedinmemorysettings",
}

var appNames = map[uint32]map[uint32]string{
	// Boot managers (firmware 1, Windows 2).
	1: {0x24000001: "displayorder", 0x24000002: "bootsequence", 0x23000003: "default", 0x25000004: "timeout"},
	2: {0x24000001: "displayorder", 0x24000002: "bootsequence", 0x23000003: "default", 0x25000004: "timeout",
		0x26000005: "resume", 0x23000006: "resumeobject", 0x24000010: "toolsdisplayorder",
		0x26000020: "displaybootmenu", 0x26000021: "noerrordisplay", 0x21000022: "bcddevice", 0x22000023: "bcdfilepath",
		0x26000024: "hormenabled", 0x26000025: "hiberboot", 0x22000026: "passwordoverride", 0x22000027: "pinpassphraseoverride",
		0x26000028: "processcustomactionsfirst", 0x27000030: "customactions", 0x26000031: "persistbootsequence"},
	// Windows boot loader.
	3: {0x21000001: "osdevice", 0x22000002: "systemroot", 0x23000003: "resumeobject", 0x26000004: "stampdisks",
		0x26000010: "detecthal", 0x22000011: "kernel", 0x22000012: "hal", 0x22000013: "dbgtransport",
		0x25000020: "nx", 0x25000021: "pae", 0x26000022: "winpe", 0x26000024: "nocrashautoreboot",
		0x26000025: "lastknowngood", 0x26000026: "oslnointegritychecks", 0x26000027: "osltestsigning",
		0x26000030: "nolowmem", 0x25000031: "removememory", 0x25000032: "increaseuserva",
		0x26000040: "vga", 0x26000041: "quietboot", 0x26000042: "novesa", 0x25000050: "clustermodeaddressing",
		0x26000051: "usephysicaldestination", 0x25000052: "restrictapiccluster", 0x26000060: "onecpu",
		0x25000061: "numproc", 0x26000062: "maxproc", 0x25000063: "configflags", 0x26000070: "usefirmwarepcisettings",
		0x25000071: "msi", 0x25000072: "pciexpress", 0x25000080: "safeboot", 0x26000081: "safebootalternateshell",
		0x26000090: "bootlog", 0x26000091: "sos", 0x260000a0: "debug", 0x260000a1: "halbreakpoint",
		0x260000b0: "ems", 0x250000c0: "forcefailure", 0x250000c1: "driverloadfailurepolicy",
		0x250000c2: "bootmenupolicy", 0x250000e0: "bootstatuspolicy", 0x250000f3: "hypervisorlaunchtype"},
	// Windows resume application.
	4: {0x21000001: "filedevice", 0x22000002: "filepath", 0x26000003: "customsettings", 0x26000004: "pae",
		0x21000005: "associatedosdevice", 0x26000006: "debugoptionenabled", 0x25000007: "bootux",
		0x25000008: "bootmenupolicy"},
	// Memory tester.
	5: {0x25000001: "passcount", 0x25000002: "testmix", 0x26000003: "failurecount", 0x26000004: "testtofail",
		0x26000005: "stridefailcount", 0x26000006: "invcfailcount"},
}

// deviceNames are elements of device objects (class 3), e.g. {ramdiskoptions}.
var deviceNames = map[uint32]string{
	0x35000001: "ramdiskimageoffset", 0x35000002: "ramdisktftpclientport", 0x31000003: "ramdisksdidevice",
	0x32000004: "ramdisksdipath", 0x35000005: "ramdiskimagelength", 0x36000006: "exportascd",
	0x35000007: "ramdisktftpblocksize", 0x35000008: "ramdisktftpwindowsize", 0x36000009: "ramdiskmcenabled",
	0x3600000a: "ramdiskmctftpfallback", 0x3600000b: "ramdisktftpvarwindow",
}

// ElementName returns bcdedit's name of an element in an object of the given type, or "".
func ElementName(objectType, element uint32) string {
	switch element >> 28 {
	case 1:
		return libraryNames[element]
	case 2:
		if objectType>>28 == 1 {
			return appNames[objectType&0xFFFFF][element]
		}
		if objectType>>28 == 2 && (objectType>>20)&0xF == 2 {
			return appNames[objectType&0xFFFFF][element]
		}
	case 3:
		return deviceNames[element]
	}
	return ""
}

// Objects decodes every object and element of the store, in key order.
func (s *Store) Objects() ([]Object, error) {
	objs, err := s.hive.Lookup("Objects")
	if err != nil {
		return nil, err
	}
	keys, err := objs.Subkeys()
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, k := range keys {
		o, err := s.object(k)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// Object decodes one object by GUID (or well-known name such as {bootmgr}).
func (s *Store) Object(id string) (Object, error) {
	for g, n := range wellKnown {
		if strings.EqualFold(n, id) {
			id = g
		}
	}
	k, err := s.hive.Lookup(`Objects\` + id)
	if err != nil {
		return Object{}, fmt.Errorf("bcd: no object %s: %w", id, err)
	}
	return s.object(k)
}

func (s *Store) object(k regf.Key) (Object, error) {
	o := Object{GUID: k.Name(), Name: WellKnownName(k.Name())}
	if d, ok, err := k.Subkey("Description"); err != nil {
		return o, err
	} else if ok {
		v, ok, err := d.Value("Type")
		if err != nil {
			return o, err
		}
		if ok {
			b, err := v.Data()
			if err != nil {
				return o, err
			}
			if v.Type() != regf.RegDword || len(b) != 4 {
				return o, fmt.Errorf("bcd: %s\\Description\\Type is %d bytes of type %d, not a REG_DWORD", k.Path(), len(b), v.Type())
			}
			o.Type = binary.LittleEndian.Uint32(b)
		}
	}
	els, ok, err := k.Subkey("Elements")
	if err != nil || !ok {
		return o, err
	}
	subs, err := els.Subkeys()
	if err != nil {
		return o, err
	}
	for _, ek := range subs {
		t, err := strconv.ParseUint(ek.Name(), 16, 32)
		if err != nil || len(ek.Name()) != 8 {
			return o, fmt.Errorf("bcd: element key %s is not 8 hex digits", ek.Path())
		}
		e := Element{Type: uint32(t), Name: ElementName(o.Type, uint32(t))}
		v, ok, err := ek.Value("Element")
		if err != nil {
			return o, err
		}
		if !ok {
			// Windows leaves empty element keys in templates; they hold nothing to decode.
			e.Err = fmt.Errorf("no Element value")
			o.Elements = append(o.Elements, e)
			continue
		}
		if e.Raw, err = v.Data(); err != nil {
			return o, err
		}
		e.RegType = v.Type()
		e.decode()
		if e.Type == 0x12000004 && e.Err == nil {
			o.Description = e.String
		}
		o.Elements = append(o.Elements, e)
	}
	sort.SliceStable(o.Elements, func(i, j int) bool { return o.Elements[i].Type < o.Elements[j].Type })
	return o, nil
}

func (e *Element) decode() {
	b := e.Raw
	want := func(t uint32) bool {
		if e.RegType != t {
			e.Err = fmt.Errorf("format %d stored as registry type %d, not %d", e.Format(), e.RegType, t)
			return false
		}
		return true
	}
	switch e.Format() {
	case FormatDevice:
		if want(regf.RegBinary) {
			e.Device, e.Err = DecodeDevice(b)
		}
	case FormatString, FormatObject:
		if want(regf.RegSz) {
			e.String = utf16String(b)
		}
	case FormatObjectList:
		if want(regf.RegMultiSz) {
			e.Objects = multiSz(b)
		}
	case FormatInteger:
		if want(regf.RegBinary) {
			if len(b) == 0 || len(b) > 8 {
				e.Err = fmt.Errorf("integer of %d bytes", len(b))
				return
			}
			var x [8]byte
			copy(x[:], b)
			e.Integer = binary.LittleEndian.Uint64(x[:])
		}
	case FormatBoolean:
		if want(regf.RegBinary) {
			if len(b) == 0 || len(b) > 4 {
				e.Err = fmt.Errorf("boolean of %d bytes", len(b))
				return
			}
			for _, c := range b {
				e.Boolean = e.Boolean || c != 0
			}
		}
	case FormatIntegerList:
		if want(regf.RegBinary) {
			if len(b)%8 != 0 {
				e.Err = fmt.Errorf("integer list of %d bytes, not a multiple of 8", len(b))
				return
			}
			for i := 0; i < len(b); i += 8 {
				e.Integers = append(e.Integers, binary.LittleEndian.Uint64(b[i:]))
			}
		}
	default:
		e.Err = fmt.Errorf("unknown element format %d", e.Format())
	}
}

func multiSz(b []byte) []string {
	var out []string
	var cur []uint16
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			if len(cur) == 0 {
				break
			}
			out = append(out, string(utf16Decode(cur)))
			cur = cur[:0]
			continue
		}
		cur = append(cur, c)
	}
	if len(cur) > 0 {
		out = append(out, string(utf16Decode(cur)))
	}
	return out
}
