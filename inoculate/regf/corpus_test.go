package regf

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"

	"github.com/cauldron-dr/cauldron/internal/corpus"
)

func TestMain(m *testing.M) {
	code := m.Run()
	corpus.Cleanup()
	os.Exit(code)
}

// copyHive copies a hive into a test's temporary directory so it can be edited.
func copyHive(t testing.TB, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// hivexExport runs hivexregedit --export on a hive.
func hivexExport(t testing.TB, hive, key string) []byte {
	t.Helper()
	testenv.NeedTools(t, "hivexregedit")
	var stderr bytes.Buffer
	cmd := exec.Command("hivexregedit", "--export", hive, key)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("hivexregedit --export %s: %v\n%s", hive, err, stderr.Bytes())
	}
	return out
}

func ourExport(t testing.TB, h *Hive, key string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := h.Export(&b, key); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return b.Bytes()
}

// firstDiff shows where two exports part, for failure messages.
func firstDiff(a, b []byte) string {
	al, bl := strings.Split(string(a), "\n"), strings.Split(string(b), "\n")
	for i := 0; i < len(al) && i < len(bl); i++ {
		if al[i] != bl[i] {
			return fmt.Sprintf("line %d:\n  %s\n  %s", i+1, trunc(al[i]), trunc(bl[i]))
		}
	}
	return fmt.Sprintf("lengths differ: %d and %d lines", len(al), len(bl))
}

func trunc(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}

// saveReopen saves h, opens the file again and fails the test when our checker finds anything.
func saveReopen(t testing.TB, h *Hive, path string) *Hive {
	t.Helper()
	if err := h.Save(""); err != nil {
		t.Fatal(err)
	}
	h, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if p := h.Check(); len(p) != 0 {
		t.Fatalf("saved hive fails the checker: %v", p[:min(len(p), 5)])
	}
	return h
}
