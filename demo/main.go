// Command demo is `make demo`: Cauldron's whole promise, end to end, on emulated machines.
//
//  1. A real source machine: Debian 12 installed with debootstrap on a virtio disk, booting with
//     GRUB, whose initramfs carries only the virtio driver (scripts/source-debian.sh, cached).
//  2. It is captured into a repository, which is put on a USB stick image with a kickstart.
//  3. The Cauldron ISO boots (QEMU, TCG, BIOS) on a machine whose only other disk is a blank, bigger
//     NVMe disk; the kickstart on the stick recovers unattended: layout grown, data restored and
//     verified, Debian inoculated for NVMe, the machine powers off.
//  4. The recovered NVMe disk boots alone, to Debian's login prompt; the demo logs in and shows the
//     marker file the source machine had.
//  5. The negative: the same recovery without inoculation (on the host) does not boot on NVMe.
//
// The same run is TestDemo (demo/main_test.go), part of `make test`.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/initramfs"
	"github.com/cauldron-dr/cauldron/qemu"
)

func main() {
	keep := flag.Bool("keep", false, "keep the work folder (repository, images, logs)")
	offline := flag.Bool("offline", false, "use only what `make prefetch` cached (source machine image, kernel and firmware packages): reach no mirror")
	flag.Parse()
	work, err := os.MkdirTemp("/var/tmp", "cauldron-demo-run-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	if !*keep {
		defer os.RemoveAll(work)
	}
	if err := run(context.Background(), os.Stdout, work, *offline); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type step struct {
	name    string
	seconds float64
	detail  string
}

// run does the whole demo in work (a fresh folder) and prints its story and a summary to out.
// Offline, it uses only the caches `make prefetch` fills and fails if they lack something.
func run(ctx context.Context, out io.Writer, work string, offline bool) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	var steps []step
	timed := func(name string, fn func() (string, error)) error {
		fmt.Fprintf(out, "\n== %s\n", name)
		start := time.Now()
		detail, err := fn()
		steps = append(steps, step{name, time.Since(start).Seconds(), detail})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if detail != "" {
			fmt.Fprintf(out, "   %s\n", detail)
		}
		return nil
	}
	bin := filepath.Join(work, "cauldron")
	var source, repo, stick, iso string
	cauldron := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "CAULDRON_PASSWORD=")
		b, err := cmd.CombinedOutput()
		if err != nil {
			return string(b), fmt.Errorf("cauldron %s: %v\n%s", strings.Join(args, " "), err, b)
		}
		return string(b), nil
	}

	if err := timed("build cauldron (static)", func() (string, error) {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", bin, "./cmd/cauldron")
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%v\n%s", err, b)
		}
		return "", nil
	}); err != nil {
		return err
	}
	if err := timed("source machine: Debian 12 on virtio, initramfs with only virtio_blk", func() (string, error) {
		var args []string
		if offline {
			args = append(args, "--offline")
		}
		cmd := exec.CommandContext(ctx, filepath.Join(root, "scripts", "source-debian.sh"), args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		b, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%v\n%s", err, stderr.Bytes())
		}
		source = strings.TrimSpace(string(b))
		return source, nil
	}); err != nil {
		return err
	}
	repo = filepath.Join(work, "stick", "repo")
	if err := timed("capture it into a repository", func() (string, error) {
		os.MkdirAll(filepath.Dir(repo), 0o755)
		if _, err := cauldron("init", "--repo", repo, "--no-password"); err != nil {
			return "", err
		}
		o, err := cauldron("capture", "--repo", repo, "--machine", "debian", source)
		return lastLine(o), err
	}); err != nil {
		return err
	}
	if err := timed("put the repository and a kickstart on a USB stick", func() (string, error) {
		ks := strings.Join([]string{
			"# make demo: recover the Debian machine onto this machine's NVMe disk",
			"repository usb:/repo",
			"machine debian --generation latest",
			"freeze-replication --release remove",
			"disk disk0 --target serial:CLDTARGET --resize grow-last",
			"inoculate --hardware detect",
			"on-success poweroff",
			"on-failure poweroff",
			"confirm --destroy-data-on-targets",
		}, "\n") + "\n"
		if err := os.WriteFile(filepath.Join(work, "stick", "cauldron.ks"), []byte(ks), 0o644); err != nil {
			return "", err
		}
		if _, err := cauldron("kickstart", "validate", filepath.Join(work, "stick", "cauldron.ks")); err != nil {
			return "", err
		}
		stick = filepath.Join(work, "stick.img")
		size := dirSize(filepath.Join(work, "stick"))*5/4 + 64<<20
		b, err := exec.CommandContext(ctx, "mke2fs", "-q", "-F", "-t", "ext4", "-L", "ARCHIVE", "-d", filepath.Join(work, "stick"), stick, fmt.Sprintf("%dK", size/1024)).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("mke2fs: %v %s", err, b)
		}
		return fmt.Sprintf("%s stick with repo/ and cauldron.ks", human(size)), nil
	}); err != nil {
		return err
	}
	if err := timed("build the Cauldron boot media", func() (string, error) {
		m, err := initramfs.Build(ctx, initramfs.Options{OutDir: filepath.Join(work, "media"), Cauldron: bin, Offline: offline})
		if err != nil {
			return "", err
		}
		iso = m.ISO
		fi, _ := os.Stat(iso)
		return fmt.Sprintf("%s (%s)", iso, human(fi.Size())), nil
	}); err != nil {
		return err
	}
	target := filepath.Join(work, "nvme-target.img")
	var recoverySummary []string
	if err := timed("boot the ISO on a machine with a blank 3 GiB NVMe disk and the stick; recover unattended", func() (string, error) {
		if err := makeSparse(target, 3<<30); err != nil {
			return "", err
		}
		vm, err := qemu.Start(ctx, qemu.Config{
			Name: "demo-recovery", CDROM: iso, MemoryMiB: 2048, CPUs: 2, NoNetwork: true,
			Disks: []qemu.Disk{
				{Path: target, Bus: qemu.NVMe, Serial: "CLDTARGET"},
				{Path: stick, Bus: qemu.USB, Serial: "CLDSTICK"},
			},
			Timeout: 25 * time.Minute,
		})
		if err != nil {
			return "", err
		}
		defer vm.Close(false)
		fmt.Fprintf(out, "   console log: %s\n", vm.LogPath())
		if err := vm.Console().FailOn(`recovery failed|cauldron: internal error`); err != nil {
			return "", err
		}
		if _, err := vm.Expect(`cauldron: ready uptime=`, 3*time.Minute); err != nil {
			return "", err
		}
		if _, err := vm.Expect(`Recovery of debian .* succeeded`, 20*time.Minute); err != nil {
			return "", err
		}
		if err := vm.Wait(3 * time.Minute); err != nil {
			return "", fmt.Errorf("the machine did not power off after the recovery: %w", err)
		}
		recoverySummary = summaryLines(vm.Output())
		for _, l := range recoverySummary {
			fmt.Fprintf(out, "   | %s\n", l)
		}
		return "recovered and powered off", nil
	}); err != nil {
		return err
	}
	var marker string
	if err := timed("boot the recovered NVMe disk alone", func() (string, error) {
		vm, err := qemu.Start(ctx, qemu.Config{
			Name: "demo-recovered", NoNetwork: true, VGA: "none", Timeout: 12 * time.Minute,
			Disks: []qemu.Disk{{Path: target, Bus: qemu.NVMe, Serial: "CLDTARGET", Boot: true, Snapshot: true}},
		})
		if err != nil {
			return "", err
		}
		defer vm.Close(false)
		if err := vm.Console().FailOn(`Gave up waiting for root|Kernel panic`); err != nil {
			return "", err
		}
		if _, err := vm.ExpectPartial(`login: $`, 10*time.Minute); err != nil {
			return "", err
		}
		vm.Send("root\n")
		if _, err := vm.ExpectPartial(`Password: $`, time.Minute); err != nil {
			return "", err
		}
		vm.Send("cauldron\n")
		if _, err := vm.ExpectPartial(`# $`, 2*time.Minute); err != nil {
			return "", err
		}
		// The quotes split the word, so that the echo of the typed line does not match.
		vm.Send("echo \"cauldron-\"\"marker: $(cat /root/cauldron-marker) root=$(findmnt -no SOURCE /) report=$(ls /var/log/cauldron/*.txt)\"\n")
		m, err := vm.Expect(`cauldron-marker: (\S.*)`, time.Minute)
		if err != nil {
			return "", err
		}
		marker = strings.TrimSpace(m[0])
		return marker, nil
	}); err != nil {
		return err
	}
	if err := timed("the negative: the same recovery without inoculation does not boot on NVMe", func() (string, error) {
		plain := filepath.Join(work, "nvme-plain.img")
		ks := filepath.Join(work, "plain.ks")
		os.WriteFile(ks, []byte("repository "+repo+"\nmachine debian\ndisk disk0 --target "+plain+"\ninoculate --skip\nconfirm --destroy-data-on-targets\n"), 0o644)
		if _, err := cauldron("recover", "--kickstart", ks); err != nil {
			return "", err
		}
		vm, err := qemu.Start(ctx, qemu.Config{
			Name: "demo-not-inoculated", NoNetwork: true, VGA: "none", Timeout: 10 * time.Minute,
			Disks: []qemu.Disk{{Path: plain, Bus: qemu.NVMe, Boot: true, Snapshot: true}},
		})
		if err != nil {
			return "", err
		}
		defer vm.Close(false)
		if err := vm.Console().FailOn(`login: $`); err != nil {
			return "", err
		}
		m, err := vm.Expect(`(Gave up waiting for root file system device|ALERT!.*does not exist)`, 8*time.Minute)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(m[0]), nil
	}); err != nil {
		return err
	}

	fmt.Fprintf(out, "\n== summary\n")
	var total float64
	for _, s := range steps {
		total += s.seconds
		fmt.Fprintf(out, "  %6.1f s  %s\n", s.seconds, s.name)
	}
	fmt.Fprintf(out, "  %6.1f s  in all\n", total)
	fmt.Fprintf(out, "  the recovered machine says: %s\n", marker)
	return nil
}

// summaryLines picks the recovery report's summary (Report.WriteText) out of the console.
func summaryLines(console string) []string {
	i := strings.LastIndex(console, "Recovery of ")
	if i < 0 {
		return nil
	}
	var out []string
	for _, l := range strings.Split(console[i:], "\n") {
		l = strings.TrimRight(l, "\r ")
		if l == "" || strings.HasPrefix(l, "cauldron: ") && len(out) > 0 {
			break
		}
		out = append(out, l)
	}
	return out
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := dir; d != "/"; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("run the demo inside the repository (no go.mod above " + dir + ")")
}

func makeSparse(p string, size int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Truncate(size)
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func human(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
