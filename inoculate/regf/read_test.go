package regf

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/corpus"
)

// Every hive of the corpus, and what Windows' rules say about it.
var corpusHives = []struct {
	file  string
	state string // clean, dirty, refused, or broken (opens, Check finds the named rule)
	rule  string // for broken: a fragment of the expected problem
}{
	{"hives/regipy-SYSTEM.xz", "clean", ""},
	{"hives/regipy-SYSTEM_WIN_10_1709.xz", "dirty", ""},
	{"hives/regipy-SYSTEM_B.xz", "dirty", ""},
	{"hives/regipy-corrupted_system_hive.xz", "refused", "hive bin signature"},
	{"hives/hivex-minimal", "clean", ""},
	{"hives/nt-hive-testhive", "clean", ""},
	{"hives/yarp/BadListHive", "broken", "parent link"},
	{"hives/yarp/BadSubkeyHive", "broken", "reachable twice"},
	{"hives/yarp/BigDataHive", "clean", ""},
	{"hives/yarp/DuplicateSubkeysHive", "broken", "appears twice"},
	{"hives/yarp/EmptyHive", "clean", ""},
	{"hives/yarp/ExtendedASCIIHive", "clean", ""},
	{"hives/yarp/ManySubkeysHive", "clean", ""},
	{"hives/yarp/MultiSzHive", "clean", ""},
	{"hives/yarp/StringValuesHive", "clean", ""},
	{"hives/yarp/TruncatedHive", "broken", "truncated"},
	{"hives/yarp/UnicodeHive", "clean", ""},
	{"hives/yarp/WrongOrderHive", "broken", "not sorted"},
	{"hives/yarp/NewDirtyHive1/NewDirtyHive", "dirty", ""},
	{"hives/yarp/NewDirtyHive1/RecoveredHive_Windows10", "clean", ""},
	{"hives/yarp/OldDirtyHive/OldDirtyHive", "dirty", ""},
	{"hives/yarp/OldDirtyHive/RecoveredHive_Windows7", "clean", ""},
	{"bcd/regipy-BCD-uefi.xz", "clean", ""},
	{"bcd/windeploy-BCD-bios", "clean", ""},
	{"bcd/windeploy-BCD-efi", "clean", ""},
}

func TestCorpusOpenAndCheck(t *testing.T) {
	for _, c := range corpusHives {
		t.Run(c.file, func(t *testing.T) {
			h, err := Open(corpus.File(t, c.file))
			if c.state == "refused" {
				var fe *FormatError
				if !errors.As(err, &fe) || !strings.Contains(fe.Rule, c.rule) {
					t.Fatalf("want a FormatError about %q, got %v", c.rule, err)
				}
				if fe.Offset == 0 || !strings.Contains(err.Error(), "file offset 0x") {
					t.Fatalf("error does not name the offset: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			probs := h.Check()
			switch c.state {
			case "clean":
				if len(probs) != 0 {
					t.Fatalf("clean hive fails the checker: %v", probs)
				}
			case "dirty":
				if !h.Dirty() || len(probs) != 1 || !strings.Contains(probs[0].Rule, "dirty") || probs[0].Offset != 4 {
					t.Fatalf("want exactly the dirty problem, got %v", probs)
				}
			case "broken":
				found := false
				for _, p := range probs {
					if strings.Contains(p.Rule, c.rule) && p.Offset > 0 {
						found = true
					}
				}
				if !found {
					t.Fatalf("want a problem about %q, got %v", c.rule, probs)
				}
			}
		})
	}
}

func TestExportMatchesHivexregedit(t *testing.T) {
	t.Parallel()
	for _, c := range corpusHives {
		if c.state == "refused" || c.file == "hives/yarp/TruncatedHive" {
			continue
		}
		// hivexregedit names keys after their parent links, so in a hive whose links are wrong
		// it prints a key under a path no walk from the root reaches; we print the path walked.
		if c.file == "hives/yarp/BadListHive" || c.file == "hives/yarp/BadSubkeyHive" {
			continue
		}
		t.Run(c.file, func(t *testing.T) {
			p := corpus.File(t, c.file)
			h, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			want := hivexExport(t, p, `\`)
			got := ourExport(t, h, `\`)
			if !bytes.Equal(got, want) {
				t.Fatalf("export differs from hivexregedit --export: %s", firstDiff(want, got))
			}
		})
	}
}

// hivexregedit prints keys under the path their parent links give; a walk from the root gives
// another path in BadListHive. Both readers agree on the rest.
func TestHivexPathFromParentLinks(t *testing.T) {
	p := corpus.File(t, "hives/yarp/BadListHive")
	h, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	want := hivexExport(t, p, `\`)
	got := ourExport(t, h, `\`)
	if !bytes.Contains(want, []byte(`[\3\subkey]`)) || !bytes.Contains(got, []byte(`[\2\subkey]`)) {
		t.Fatalf("expected hivexregedit to print [\\3\\subkey] (parent link) and us [\\2\\subkey] (list):\n%s\n%s", want, got)
	}
}

func TestLookupCaseInsensitive(t *testing.T) {
	h, err := Open(corpus.File(t, "hives/regipy-SYSTEM.xz"))
	if err != nil {
		t.Fatal(err)
	}
	k, err := h.Lookup(`controlset001\SERVICES\MsAhCi`)
	if err != nil {
		t.Fatal(err)
	}
	if k.Name() != "msahci" {
		t.Fatalf("name %q", k.Name())
	}
	v, ok, err := k.Value("START")
	if err != nil || !ok {
		t.Fatalf("Start: %v %v", ok, err)
	}
	d, _ := v.Data()
	if v.Type() != RegDword || !bytes.Equal(d, []byte{3, 0, 0, 0}) {
		t.Fatalf("Start = type %d %x, want REG_DWORD 3", v.Type(), d)
	}
	sd, err := k.SecurityDescriptor()
	if err != nil || len(sd) < 20 || sd[0] != 1 {
		t.Fatalf("security descriptor %x: %v", sd, err)
	}
	cdd, err := h.Lookup(`ControlSet001\Control\CriticalDeviceDatabase`)
	if err != nil {
		t.Fatal(err)
	}
	subs, err := cdd.Subkeys()
	if err != nil || len(subs) != 2548 {
		t.Fatalf("CriticalDeviceDatabase has %d subkeys (%v), want 2548", len(subs), err)
	}
	if _, err := h.Lookup(`ControlSet001\NoSuchKey`); err == nil {
		t.Fatal("lookup of a missing key succeeded")
	}
}

func TestBigDataAndClass(t *testing.T) {
	h, err := Open(corpus.File(t, "hives/nt-hive-testhive"))
	if err != nil {
		t.Fatal(err)
	}
	// offreg stores 16345 bytes and more as db big data; the checker has verified the shape,
	// here the bytes must come back whole.
	found := 0
	var walk func(k Key)
	walk = func(k Key) {
		vals, _ := k.Values()
		for _, v := range vals {
			d, err := v.Data()
			if err != nil {
				t.Fatalf("%s %q: %v", k.Path(), v.Name(), err)
			}
			if len(d) >= 16343 && len(d) <= 16345 {
				found++
			}
		}
		subs, _ := k.Subkeys()
		for _, s := range subs {
			if _, err := s.Class(); err != nil {
				t.Fatal(err)
			}
			walk(s)
		}
	}
	walk(h.Root())
	if found < 3 {
		t.Fatalf("found %d values of 16343..16345 bytes, want the three big-data edge cases", found)
	}
}
