package initramfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestDebugInfoSize: build notes a cauldron binary built without -s -w; a test binary (with
// DWARF and symbols) has hundreds of kilobytes of them even for a small program, the same
// program linked with -s -w none.
func TestDebugInfoSize(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	build := func(name string, flags ...string) string {
		bin := filepath.Join(dir, name)
		cmd := exec.Command("go", append(append([]string{"build", "-trimpath"}, flags...), "-o", bin, src)...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", flags, err, out)
		}
		return bin
	}
	if n := debugInfoSize(build("full")); n < 100<<10 {
		t.Errorf("debugInfoSize(plain build) = %d, want DWARF and symbols", n)
	}
	if n := debugInfoSize(build("stripped", "-ldflags=-s -w")); n != 0 {
		t.Errorf("debugInfoSize(-s -w build) = %d, want 0", n)
	}
	if n := debugInfoSize(src); n != 0 {
		t.Errorf("debugInfoSize(not an ELF file) = %d, want 0", n)
	}
}
