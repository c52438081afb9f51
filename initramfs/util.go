package initramfs

import (
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// checkStatic refuses anything but a statically linked x86-64 ELF executable: the boot image has
// no C library for cauldron (the tools' libraries are there, but nothing promises the versions).
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("cauldron binary %s: %w", path, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("cauldron binary %s is for %s, not x86-64", path, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			interp, _ := io.ReadAll(p.Open())
			return fmt.Errorf("cauldron binary %s is dynamically linked (interpreter %s); the boot image needs a static one: build it with CGO_ENABLED=0 (make build)",
				path, strings.TrimRight(string(interp), "\x00"))
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		return fmt.Errorf("cauldron binary %s is dynamically linked (needs %s); the boot image needs a static one: build it with CGO_ENABLED=0 (make build)",
			path, strings.Join(libs, ", "))
	}
	return nil
}

// copyFile copies src to dst with the given mode and modification time.
func copyFile(src, dst string, mode os.FileMode, mtime int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp%d", dst, os.Getpid())
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		os.Remove(tmp)
		return err
	}
	if err := out.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	if err := setTime(tmp, mtime); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// writeFile writes data to path with the given mode and modification time.
func writeFile(path string, data []byte, mode os.FileMode, mtime int64) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(path, mode); err != nil {
		return err
	}
	return setTime(path, mtime)
}

func setTime(path string, mtime int64) error {
	t := time.Unix(mtime, 0)
	return os.Chtimes(path, t, t)
}

// setTreeTimes stamps every file and directory under root (symlinks excepted) with mtime.
func setTreeTimes(root string, mtime int64) error {
	var dirs []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			dirs = append(dirs, p) // after their contents, below
		case fi.Mode()&os.ModeSymlink == 0:
			return setTime(p, mtime)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := setTime(dirs[i], mtime); err != nil {
			return err
		}
	}
	return nil
}

// command runs a program and returns its standard output; the error carries the end of its
// standard error.
func (b *builder) command(dir string, env []string, name string, args ...string) ([]byte, error) {
	if _, err := exec.LookPath(name); err != nil {
		return nil, fmt.Errorf("%s is not installed (Debian package %s): %w", name, debPackageOf(name), err)
	}
	cmd := exec.CommandContext(b.ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if len(msg) > 2000 {
			msg = "…" + msg[len(msg)-2000:]
		}
		if msg == "" {
			msg = strings.TrimSpace(stdout.String())
		}
		return stdout.Bytes(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, msg)
	}
	return stdout.Bytes(), nil
}

// debPackageOf names the Debian package that provides a build-time program, for error messages.
func debPackageOf(prog string) string {
	switch prog {
	case "apt-get", "apt-cache":
		return "apt"
	case "dpkg", "dpkg-deb":
		return "dpkg"
	case "depmod", "kmod", "modprobe":
		return "kmod"
	case "xorriso":
		return "xorriso"
	case "mksquashfs", "unsquashfs":
		return "squashfs-tools"
	case "mkfs.vfat", "mkfs.fat":
		return "dosfstools"
	case "mcopy", "mmd", "mdir":
		return "mtools"
	case "go":
		return "golang (or a Go toolchain from go.dev)"
	}
	return "?"
}
