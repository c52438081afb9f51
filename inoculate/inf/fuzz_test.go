package inf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/corpus"
)

// FuzzParse: any bytes either fail with an *Error naming the file, or parse; then listing models
// for several targets and planning every model must not panic, and their failures are *Errors
// too.
func FuzzParse(f *testing.F) {
	dir, _ := corpus.Dir()
	files, _ := filepath.Glob(filepath.Join(dir, "inf", "*"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(decorated))
	f.Add(utf16le(driverINF("01/01/2020", "1.2.3.4", "NTamd64.10.0...17763", `PCI\VEN_1&DEV_2`), true))
	f.Add([]byte(header + "[S]\r\nA = \"x\"\"y\", \\ ; c\r\n b\r\n[Strings.0407]\r\nk=v\r\n"))
	targets := []Target{win7, win10, server19, win10_x86, {Arch: "arm64", Version: WinVersion{10, 0, 22631}}}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse("fuzz.inf", b, Options{LCID: "0407"})
		if err != nil {
			var ie *Error
			if !errors.As(err, &ie) || ie.File != "fuzz.inf" {
				t.Fatalf("error %T %v does not name the file", err, err)
			}
			return
		}
		for _, tg := range targets {
			models, err := file.Models(tg)
			if err != nil {
				continue
			}
			for _, m := range models {
				if _, err := file.Match(tg, []string{m.HardwareID}); err != nil {
					t.Fatalf("Match after Models succeeded: %v", err)
				}
				if _, err := file.Plan(m, tg.Arch); err != nil {
					var ie *Error
					if !errors.As(err, &ie) {
						t.Fatalf("Plan error %T %v is not an *inf.Error", err, err)
					}
				}
			}
		}
	})
}
