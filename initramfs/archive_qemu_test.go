package initramfs_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cauldron-dr/cauldron/qemu"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/cauldron-dr/cauldron/tib/backend"
	"github.com/cauldron-dr/cauldron/tib/backend/local"
	"github.com/cauldron-dr/cauldron/tib/backend/rest"
)

// TestKickstartRecoveryOverHTTP is an unattended recovery whose kickstart and archive are both
// on the network: the boot environment (PXE kernel and initramfs, booted directly) gets an
// address by DHCP from QEMU's user network, fetches the kickstart named by cauldron.ks=, opens
// the repository served by `cauldron serve`'s handler (append-only) on the host's loopback,
// restores onto a virtio disk, writes its session and report back over HTTP, and powers off.
func TestKickstartRecoveryOverHTTP(t *testing.T) {
	qemu.Require(t, qemu.BIOS, false)
	dir := t.TempDir()
	_, pxeDir := testMedia(t, dir)

	src := filepath.Join(dir, "source.img")
	data := make([]byte, 16<<20)
	for i := 2 << 20; i < 11<<20; i++ {
		data[i] = byte(i*13 + i>>11)
	}
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	repoDir := filepath.Join(dir, "repo")
	r, err := tib.Init(t.Context(), local.New(repoDir), tib.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Capture(t.Context(), tib.CaptureOptions{Machine: "net01", Sources: []string{src}}); err != nil {
		t.Fatal(err)
	}

	ks := "machine net01\nfreeze-replication --release remove\n" +
		"disk disk0 --target serial:NET-TARGET\ninoculate --skip\non-success poweroff\non-failure poweroff\n" +
		"confirm --destroy-data-on-targets\n"
	port, ksFetched, repoRequests := serveKickstart(t, ks, repoDir)

	target := filepath.Join(dir, "target.img")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(target, 16<<20); err != nil {
		t.Fatal(err)
	}
	v := qemu.StartT(t, qemu.Config{Name: "ks-over-http", Timeout: bootTimeout + 8*time.Minute, MemoryMiB: 1024,
		Kernel: filepath.Join(pxeDir, "vmlinuz"), Initrd: filepath.Join(pxeDir, "initrd.img"),
		Append: fmt.Sprintf("console=ttyS0,115200n8 quiet cauldron.ks=http://10.0.2.2:%d/net01.ks", port),
		Disks:  []qemu.Disk{{Bus: qemu.Virtio, Path: target, Serial: "NET-TARGET"}}})
	if _, err := v.Expect(`cauldron: ready uptime=`, bootTimeout); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ExpectPartial(`cauldron: kickstart \S+ \([0-9]+ bytes\)`, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ExpectPartial(`cauldron: recovery finished`, 8*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := v.Wait(2 * time.Minute); err != nil {
		t.Fatalf("the guest did not power off after the recovery (on-success poweroff): %v", err)
	}
	if ksFetched.Load() == 0 || repoRequests.Load() == 0 {
		t.Fatalf("requests: kickstart %d, repository %d", ksFetched.Load(), repoRequests.Load())
	}
	got, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the disk recovered over HTTP differs from the captured disk")
	}
	// The recovery wrote its report into the repository over HTTP, and removed its session.
	var reports []string
	local.New(repoDir).List(t.Context(), backend.Report, func(fi backend.FileInfo) error {
		reports = append(reports, fi.Name)
		return nil
	})
	if len(reports) != 1 {
		t.Fatalf("reports in the repository after the recovery: %v", reports)
	}
	out := v.Output()
	for _, want := range []string{"network eth0 10.0.2.15/24 dhcp", "http://10.0.2.2:"} {
		if !strings.Contains(out, want) {
			t.Errorf("the console does not show %q", want)
		}
	}
}

// serveKickstart serves, on the host's loopback (the guest's 10.0.2.2), /net01.ks: the kickstart
// ks after a repository line naming /repo/, where the repository in repoDir is served append-only
// by `cauldron serve`'s handler. It returns the port and the number of requests for each.
func serveKickstart(t *testing.T, ks, repoDir string) (port int, ksFetched, repoRequests *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port = ln.Addr().(*net.TCPAddr).Port
	ks = fmt.Sprintf("repository http://10.0.2.2:%d/repo/\n", port) + ks
	ksFetched, repoRequests = new(atomic.Int64), new(atomic.Int64)
	mux := http.NewServeMux()
	mux.HandleFunc("/net01.ks", func(w http.ResponseWriter, _ *http.Request) {
		ksFetched.Add(1)
		w.Write([]byte(ks))
	})
	repoHandler := rest.NewHandler(local.New(repoDir), rest.HandlerOptions{AppendOnly: true})
	mux.Handle("/repo/", http.StripPrefix("/repo", http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		repoRequests.Add(1)
		repoHandler.ServeHTTP(w, req)
	})))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return port, ksFetched, repoRequests
}

// TestKickstartOverStaticNetwork: with ip= in its static form (address, gateway, netmask, host
// name, device, name server), the boot environment configures the NIC itself, without DHCP
// (QEMU's DHCP would give 10.0.2.15), reaches the kickstart and the repository over it, and
// reports the configuration on the console. The repository holds no such machine: the recovery
// fails cleanly, before touching the target, and on-failure powers off.
func TestKickstartOverStaticNetwork(t *testing.T) {
	qemu.Require(t, qemu.BIOS, false)
	dir := t.TempDir()
	_, pxeDir := testMedia(t, dir)
	repoDir := filepath.Join(dir, "repo")
	if _, err := tib.Init(t.Context(), local.New(repoDir), tib.InitOptions{}); err != nil {
		t.Fatal(err)
	}
	ks := "machine net01\ndisk disk0 --target serial:STATIC-TARGET\ninoculate --skip\n" +
		"on-success poweroff\non-failure poweroff\nconfirm --destroy-data-on-targets\n"
	port, ksFetched, repoRequests := serveKickstart(t, ks, repoDir)
	target := filepath.Join(dir, "target.img")
	pattern := make([]byte, 1<<20)
	for i := range pattern {
		pattern[i] = byte(i * 7)
	}
	if err := os.WriteFile(target, pattern, 0o644); err != nil {
		t.Fatal(err)
	}
	v := qemu.StartT(t, qemu.Config{Name: "ks-static-ip", Timeout: bootTimeout + 3*time.Minute, MemoryMiB: 1024,
		Kernel: filepath.Join(pxeDir, "vmlinuz"), Initrd: filepath.Join(pxeDir, "initrd.img"),
		Append: fmt.Sprintf("console=ttyS0,115200n8 quiet ip=10.0.2.50::10.0.2.2:255.255.255.0:dr-static:eth0:none:10.0.2.3 "+
			"cauldron.ks=http://10.0.2.2:%d/net01.ks", port),
		Disks: []qemu.Disk{{Bus: qemu.Virtio, Path: target, Serial: "STATIC-TARGET"}}})
	if _, err := v.Expect(`cauldron: network eth0 10\.0\.2\.50/24 static gateway 10\.0\.2\.2 dns 10\.0\.2\.3`, bootTimeout); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ExpectPartial(`cauldron: kickstart \S+ \([0-9]+ bytes\)`, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := v.ExpectPartial(`cauldron: recovery failed: http://10\.0\.2\.2:[0-9]+/net01\.ks:2:1: unknown machine "net01" in http://10\.0\.2\.2:[0-9]+/repo/`, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := v.Wait(2 * time.Minute); err != nil {
		t.Fatalf("the guest did not power off after the failed recovery (on-failure poweroff): %v", err)
	}
	if ksFetched.Load() == 0 || repoRequests.Load() == 0 {
		t.Fatalf("requests: kickstart %d, repository %d", ksFetched.Load(), repoRequests.Load())
	}
	if strings.Contains(v.Output(), "dhcp") {
		t.Errorf("the console mentions DHCP although ip= is static:\n%s", v.Output())
	}
	if got, err := os.ReadFile(target); err != nil || !bytes.Equal(got, pattern) {
		t.Errorf("the target disk changed although the recovery failed before restoring (%v)", err)
	}
}
