package linux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Runner runs the restored system's own programs inside it.
type Runner interface {
	// Prepare makes root ready to run programs in; the returned function undoes it and must be
	// called whatever happens.
	Prepare(root string) (undo func() error, err error)
	// Run runs argv (argv[0] a path inside the system) with root as its root folder and returns
	// its combined output.
	Run(ctx context.Context, root string, argv []string) ([]byte, error)
}

// ChrootRunner runs programs with chroot(2), the host's /dev, /proc, /sys and /run bind-mounted
// into the root for the time of the work: the initramfs tools read /proc and /sys (modules,
// mounts), and grub-install opens the target disk through /dev.
type ChrootRunner struct{}

// chrootBinds are bind-mounted into the root, in this order, and unmounted in reverse.
var chrootBinds = []string{"/dev", "/proc", "/sys", "/run"}

// Prepare bind-mounts the host's /dev, /proc, /sys and /run into root.
func (ChrootRunner) Prepare(root string) (func() error, error) {
	var done []string
	undo := func() error {
		var errs []error
		for i := len(done) - 1; i >= 0; i-- {
			if err := unmount(done[i]); err != nil {
				errs = append(errs, err)
			}
		}
		done = nil
		return errors.Join(errs...)
	}
	for _, b := range chrootBinds {
		target, err := resolve(root, b)
		if err != nil {
			return undo, errors.Join(fmt.Errorf("chroot %s: %s: %w", root, b, err), undo())
		}
		if err := os.MkdirAll(target, 0o755); err != nil {
			return undo, errors.Join(fmt.Errorf("chroot %s: %w", root, err), undo())
		}
		if err := unix.Mount(b, target, "", unix.MS_BIND, ""); err != nil {
			return undo, errors.Join(fmt.Errorf("chroot %s: bind-mounting %s onto %s: %w", root, b, target, err), undo())
		}
		done = append(done, target)
	}
	return undo, nil
}

// unmount unmounts target, waiting briefly for a busy mount (a program that just ended may still
// hold it), and detaches it lazily as a last resort so that nothing stays mounted in the root.
func unmount(target string) error {
	var err error
	for i := 0; i < 20; i++ {
		if err = unix.Unmount(target, 0); err == nil || errors.Is(err, unix.EINVAL) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if derr := unix.Unmount(target, unix.MNT_DETACH); derr == nil {
		return fmt.Errorf("unmounting %s: %v (detached lazily instead)", target, err)
	}
	return fmt.Errorf("unmounting %s: %w", target, err)
}

// chrootEnv is a plain environment for the system's own tools: nothing of the recovery
// environment's (its PATH, locale, TMPDIR) leaks in.
var chrootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root", "LANG=C", "LC_ALL=C", "TERM=dumb",
	"DEBIAN_FRONTEND=noninteractive", "DEBCONF_NONINTERACTIVE_SEEN=true",
}

// Run runs argv in root with chroot(2).
func (ChrootRunner) Run(ctx context.Context, root string, argv []string) ([]byte, error) {
	if len(argv) == 0 || !strings.HasPrefix(argv[0], "/") {
		return nil, fmt.Errorf("chroot: %q: give the program's absolute path inside the system", argv)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = chrootEnv
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root, Setpgid: true}
	// Kill the whole process group on cancellation: the tools start helpers of their own.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.Bytes(), err
}

// tailLines returns the last n lines of b.
func tailLines(b []byte, n int) string {
	s := strings.TrimRight(string(b), "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[… %d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
