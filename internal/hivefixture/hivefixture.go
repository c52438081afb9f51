// Package hivefixture builds Windows registry hives for tests from the shared corpus (tests of
// several packages need a SOFTWARE hive; no tool on Linux creates one from nothing).
package hivefixture

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
	"github.com/cauldron-dr/cauldron/internal/corpus"
)

// Software builds a SOFTWARE hive for tests: hivex's minimal hive from the corpus with one of
// virt-v2v's phony-guest .reg texts (regText, a corpus path) imported by regf's importer, plus
// extra operations. No tool on Linux creates a hive from nothing.
func Software(t testing.TB, regText string, extra ...regf.RegOp) []byte {
	t.Helper()
	min, err := os.ReadFile(corpus.File(t, "hives/hivex-minimal"))
	if err != nil {
		t.Fatal(err)
	}
	h, err := regf.Parse(min)
	if err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(corpus.File(t, regText))
	if err != nil {
		t.Fatal(err)
	}
	ops, err := regf.ParseReg(bytes.NewReader(text), `HKEY_LOCAL_MACHINE\SOFTWARE`)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Import(append(ops, extra...)); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "SOFTWARE")
	if err := h.Save(p); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
