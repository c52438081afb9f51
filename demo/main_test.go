package main

import (
	"context"
	"strings"
	"testing"

	"github.com/cauldron-dr/cauldron/internal/testenv"
	"github.com/cauldron-dr/cauldron/qemu"
)

// TestDemo is `make demo` as a test: a real Debian machine captured, recovered unattended from
// the Cauldron ISO onto NVMe (a controller its initramfs had no driver for), booted to its login
// prompt with its marker file; and the same recovery without inoculation failing to boot.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("the demo boots three machines under emulation: minutes; not in -short runs")
	}
	testenv.NeedRoot(t)
	testenv.NeedTools(t, "debootstrap", "mke2fs", "losetup", "partx")
	qemu.Require(t, qemu.BIOS, false)
	var out strings.Builder
	err := run(context.Background(), &out, t.TempDir(), true) // tests reach no mirror: make prefetch filled the caches
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "cauldron-marker:") || !strings.Contains(out.String(), "root=/dev/nvme0n1") || !strings.Contains(out.String(), "report=/var/log/cauldron/recovery-") {
		t.Fatalf("the recovered machine did not show its marker on NVMe")
	}
}
