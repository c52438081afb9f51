package initramfs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// URootVersion is the u-root release whose init, shell and commands the image carries (the one
// go.mod pins).
const URootVersion = "v0.16.0"

const urootModule = "github.com/u-root/u-root"

// builderVersions are the versions of the modules that build the busybox (go.mod pins them;
// TestURootVersionMatchesGoMod checks). They are part of the busybox cache's key as constants:
// a test binary's build information lists no dependencies, so reading them from there gave the
// tests another key than the `cauldron-media --prefetch` that filled the cache.
var builderVersions = []string{
	"github.com/u-root/mkuimage v0.0.0-20250905073043-9a40452f5d3b",
	"github.com/u-root/gobusybox/src v0.0.0-20250101170133-2e884e4509c7",
}

// URootCommands are the u-root commands compiled into the busybox: init, the gosh shell and what
// a technician needs at a prompt. Host tools (blkid, kmod's modprobe/insmod/lsmod, kexec, and
// util-linux's mount, umount and losetup, whose options the recovery and the resize tools use:
// --offset, --sizelimit, --find --show, -t) take precedence over u-root's namesakes, so those are
// left out.
var URootCommands = []string{
	"core/init", "core/gosh",
	"core/basename", "core/base64", "core/cat", "core/chmod", "core/cmp", "core/cp", "core/cpio",
	"core/date", "core/dd", "core/df", "core/dhclient", "core/dirname", "core/dmesg", "core/du",
	"core/echo", "core/false", "core/find", "core/free", "core/grep", "core/gzip", "core/head",
	"core/hexdump", "core/hostname", "core/hwclock", "core/id", "core/ip", "core/kill", "core/ln",
	"core/ls", "core/lsdrivers", "core/md5sum", "core/mkdir", "core/mknod",
	"core/mktemp", "core/more", "core/mv", "core/netcat", "core/netstat", "core/pci",
	"core/ping", "core/poweroff", "core/printenv", "core/ps", "core/pwd", "core/readlink",
	"core/realpath", "core/rm", "core/seq", "core/shasum", "core/shutdown", "core/sleep",
	"core/sort", "core/strings", "core/stty", "core/sync", "core/tail", "core/tar", "core/tee",
	"core/time", "core/timeout", "core/touch", "core/tr", "core/true", "core/truncate", "core/tty",
	"core/uname", "core/uniq", "core/uptime", "core/wc", "core/wget", "core/which",
	"core/xargs", "core/yes",
	"exp/dmidecode", "exp/watch",
}

// addURoot adds u-root's busybox (init, shell, commands) with /bin/uinit → /bin/cauldron and
// /etc/uinit.flags = "boot", so init runs `/bin/cauldron boot`. The busybox is built once per
// u-root version, command list and Go toolchain, and kept in the cache.
func (b *builder) addURoot(t *tree) error {
	goEnv, err := b.command("", nil, "go", "env", "GOVERSION", "GOROOT")
	if err != nil {
		return fmt.Errorf("the Go toolchain is needed to build u-root: %w", err)
	}
	goVersion, goRoot, _ := strings.Cut(strings.TrimSpace(string(goEnv)), "\n")
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", URootVersion, goVersion, strings.Join(URootCommands, " "))
	for _, v := range builderVersions { // the builder's own version matters too
		fmt.Fprintf(h, "%s\n", v)
	}
	key := hex.EncodeToString(h.Sum(nil))[:16]
	cached := filepath.Join(b.cache, "uroot", "uroot-"+URootVersion+"-"+key+".cpio")

	if _, err := os.Stat(cached); err != nil {
		if b.o.Offline {
			// Building it may fetch u-root's own dependencies, which offline must not.
			return fmt.Errorf("the u-root %s busybox is not in the cache (%s) and an offline build fetches nothing: fill the cache first (make prefetch, or cauldron-media --prefetch)",
				URootVersion, cached)
		}
		if err := b.buildURoot(cached, goRoot); err != nil {
			return err
		}
	} else {
		b.logf("u-root %s busybox from the cache", URootVersion)
	}
	data, err := os.ReadFile(cached)
	if err != nil {
		return err
	}
	recs, err := readCPIO(data)
	if err != nil {
		return fmt.Errorf("reading the u-root archive %s: %w", cached, err)
	}
	for _, r := range recs {
		if err := t.addRecord(r); err != nil {
			return err
		}
	}
	for _, p := range []string{"init", "bin/uinit", "bin/sh", "bbin/bb"} {
		if !t.has(p) {
			return fmt.Errorf("the u-root archive %s has no %s", cached, p)
		}
	}
	return nil
}

// buildURoot builds the busybox with the go command on $PATH (its GOROOT: a -trimpath cauldron
// does not know the GOROOT it was built with).
func (b *builder) buildURoot(out, goRoot string) error {
	b.logf("building u-root %s busybox (%d commands)", URootVersion, len(URootCommands))
	dir, err := b.urootSource()
	if err != nil {
		return err
	}
	tmp := filepath.Join(b.work, "uroot")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return err
	}
	pkgs := make([]string, len(URootCommands))
	for i, c := range URootCommands {
		pkgs[i] = urootModule + "/cmds/" + c
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	part := fmt.Sprintf("%s.part%d", out, os.Getpid()) // builds may share the cache
	logger := llog.New(slog.LevelWarn, func(format string, v ...any) {
		b.logf("u-root: "+format, v...)
	})
	err = uimage.Create(logger,
		uimage.WithEnv(golang.DisableCGO(), golang.WithWorkingDir(dir), golang.WithGOROOT(goRoot)),
		uimage.WithBusyboxCommands(pkgs...),
		uimage.WithInit("init"),
		uimage.WithShell("gosh"),
		uimage.WithUinit("/bin/cauldron", "boot"),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(part),
		uimage.WithTempDir(tmp),
	)
	if err != nil {
		os.Remove(part)
		return fmt.Errorf("building u-root %s: %w", URootVersion, err)
	}
	return os.Rename(part, out)
}

// urootSource finds (downloading if needed) the u-root module in the Go module cache; the
// busybox is built from there, so cauldron-media works from any directory.
func (b *builder) urootSource() (string, error) {
	env := []string{"GOFLAGS=-mod=mod"}
	if b.o.Offline {
		env = append(env, "GOPROXY=off") // the Go module cache or nothing
	}
	out, err := b.command(b.work, env, "go", "mod", "download", "-json", urootModule+"@"+URootVersion)
	if err != nil {
		return "", fmt.Errorf("fetching u-root %s: %w", URootVersion, err)
	}
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil {
		return "", fmt.Errorf("go mod download: %w", err)
	}
	if mod.Error != "" || mod.Dir == "" {
		return "", fmt.Errorf("fetching u-root %s: %s", URootVersion, mod.Error)
	}
	return mod.Dir, nil
}

// addCauldron adds the static cauldron binary as /bin/cauldron.
func (b *builder) addCauldron(t *tree) error {
	return t.addFile("bin/cauldron", b.cauldron, 0o755)
}
