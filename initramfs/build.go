// Package initramfs builds Cauldron's boot environment: a u-root initramfs that starts
// `cauldron boot` as uinit, with the Debian kernel's storage, network and filesystem modules, the
// firmware Debian (main and non-free-firmware) has for them and the host tools the recovery needs
// (ntfs-3g, e2fsprogs, …, in a squashfs image of /usr that the boot program mounts);
// and the media that boot it: a hybrid BIOS/UEFI (Secure Boot) ISO that also works written raw to a
// USB stick, and a folder a DHCP/TFTP or HTTP server can serve for PXE.
//
// Build is the one entry point; cmd/cauldron-media is its command. Everything it produces is
// reproducible: the same inputs (kernel package, host tools, cauldron binary, Go toolchain, u-root
// version) give byte-identical files.
//
// This package is the builder only, and it links u-root's gobusybox and mkuimage,
// golang.org/x/tools and mvdan.cc/sh. cauldron, the binary the image starts, must not import it:
// what runs at boot is initramfs/boot, which imports nothing from here.
package initramfs

import (
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Options says what Build builds and where.
type Options struct {
	// OutDir receives cauldron.iso, the kernel (vmlinuz), the initramfs (initrd.img) and pxe/.
	// Required; created if missing.
	OutDir string
	// CacheDir keeps downloaded .deb files, unpacked trees and the u-root busybox between builds.
	// "" = /var/tmp/cauldron-cache.
	CacheDir string
	// Cauldron is the path of the STATIC cauldron binary embedded as /bin/cauldron and started as
	// uinit (`/bin/cauldron boot`). Required unless Prefetch: the program that calls Build is the
	// image builder (cmd/cauldron-media, a test), never the binary the image should start.
	Cauldron string
	// Log receives progress lines; nil = discard.
	Log io.Writer

	// SourceDateEpoch is the time stamped on every file of the initramfs, the ISO and the EFI image
	// (seconds since 1970). 0 = $SOURCE_DATE_EPOCH if set, else the kernel package's build time.
	SourceDateEpoch int64
	// Compression of the initramfs: "zstd" (the default), "gzip", "xz" or "none".
	Compression string
	// KernelPackage is the Debian kernel package to use; "" = what linux-image-amd64 depends on.
	KernelPackage string

	// Offline builds from the cache alone: no package is downloaded and cauldron-media's apt lists
	// for non-free-firmware are not refreshed (old lists are used as they are). A kernel package
	// missing from the cache is an error; non-free-firmware missing from it is left out and named,
	// as when the mirror cannot be reached. The u-root module must be in the Go module cache.
	// The tests build offline: `make prefetch` fills the cache first (with Prefetch).
	Offline bool
	// Prefetch only fills the cache with what a later Offline build needs (the kernel package,
	// the firmware packages and lists, the u-root busybox) and writes nothing else: OutDir and
	// Cauldron are not used.
	Prefetch bool
}

// Media describes what Build wrote.
type Media struct {
	ISO, Kernel, Initramfs, PXEDir string // absolute paths in OutDir

	KernelVersion string // e.g. 6.1.0-56-amd64
	KernelPackage string // e.g. linux-image-6.1.0-56-amd64 6.1.192-2

	ISOSize, KernelSize, InitramfsSize int64 // bytes
	InitramfsUncompressed              int64 // bytes of the cpio before compression
	Compression                        string

	Modules         []string // module names in the image (dependencies included)
	Firmware        []string // firmware files included, relative to /lib/firmware
	MissingFirmware []string // firmware the included modules may ask for that Debian main and non-free-firmware lack (or could not be reached)
	Tools           []string // host tools included (paths in the image)

	SourceDateEpoch int64
	Duration        time.Duration // how long Build took
}

// DefaultCacheDir is the cache Build uses when Options.CacheDir is empty.
const DefaultCacheDir = "/var/tmp/cauldron-cache"

// Build builds the initramfs and the media into o.OutDir (with o.Prefetch, only fills the cache;
// the Media then names only the kernel, modules and firmware).
func Build(ctx context.Context, o Options) (*Media, error) {
	start := time.Now()
	b, err := newBuilder(ctx, o)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(b.work)
	m, err := b.run()
	if err != nil {
		return nil, err
	}
	m.Duration = time.Since(start)
	if o.Prefetch {
		return m, nil
	}
	b.logf("done in %s: ISO %s, kernel %s, initramfs %s (%s, %s uncompressed)",
		m.Duration.Round(100*time.Millisecond), mib(m.ISOSize), mib(m.KernelSize), mib(m.InitramfsSize),
		m.Compression, mib(m.InitramfsUncompressed))
	return m, nil
}

// builder carries one build's state.
type builder struct {
	ctx      context.Context
	o        Options
	out      string // absolute OutDir
	cache    string // absolute CacheDir
	cauldron string // absolute path of the cauldron binary
	work     string // scratch directory, removed at the end
	log      io.Writer
	epoch    int64
}

func newBuilder(ctx context.Context, o Options) (*builder, error) {
	b := &builder{ctx: ctx, o: o, log: o.Log}
	if b.log == nil {
		b.log = io.Discard
	}
	if o.Offline && o.Prefetch {
		return nil, errors.New("offline and prefetch exclude each other: prefetch downloads what an offline build needs")
	}
	var err error
	if !o.Prefetch {
		if o.OutDir == "" {
			return nil, errors.New("no output directory given (--out)")
		}
		// The binary first: a wrong one is refused before the output folder is made.
		if o.Cauldron == "" {
			return nil, errors.New("no cauldron binary given for the image to start (--cauldron)")
		}
		if b.cauldron, err = filepath.Abs(o.Cauldron); err != nil {
			return nil, err
		}
		if err := checkStatic(b.cauldron); err != nil {
			return nil, err
		}
		if b.out, err = writableDir(o.OutDir, "output directory"); err != nil {
			return nil, err
		}
	}
	cache := o.CacheDir
	if cache == "" {
		cache = DefaultCacheDir
	}
	if b.cache, err = writableDir(cache, "cache directory"); err != nil {
		return nil, err
	}

	switch o.Compression {
	case "":
		b.o.Compression = "zstd"
	case "zstd", "gzip", "xz", "none":
	default:
		return nil, fmt.Errorf("unknown initramfs compression %q (zstd, gzip, xz or none)", o.Compression)
	}

	b.epoch = o.SourceDateEpoch
	if b.epoch == 0 {
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			if b.epoch, err = strconv.ParseInt(s, 10, 64); err != nil || b.epoch <= 0 {
				return nil, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a positive number of seconds", s)
			}
		}
	}

	if b.work, err = os.MkdirTemp(b.cache, "work-"); err != nil {
		return nil, err
	}
	return b, nil
}

// debugInfoSize is the size of an ELF file's symbol tables and debug sections: what the Go
// linker's -s -w leave out.
func debugInfoSize(path string) int64 {
	f, err := elf.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	var n int64
	for _, s := range f.Sections {
		if strings.HasPrefix(s.Name, ".debug_") || strings.HasPrefix(s.Name, ".zdebug_") || s.Name == ".symtab" || s.Name == ".strtab" {
			n += int64(s.Size)
		}
	}
	return n
}

func (b *builder) logf(format string, args ...any) {
	fmt.Fprintf(b.log, format+"\n", args...)
}

func (b *builder) run() (*Media, error) {
	m := &Media{Compression: b.o.Compression}
	if n := debugInfoSize(b.cauldron); n > 1<<20 {
		// Every boot unpacks them for nothing: about 0.1 s of boot under emulation per 7 MB.
		b.logf("note: the cauldron binary carries %.1f MB of symbols and debug info the boot image does not use; build it with -ldflags=\"-s -w\" (make build does) for a smaller image that boots faster",
			float64(n)/1e6)
	}

	k, err := b.kernel()
	if err != nil {
		return nil, err
	}
	m.KernelVersion, m.KernelPackage = k.version, k.pkg+" "+k.pkgVersion
	if b.epoch == 0 {
		b.epoch = k.buildTime
	}
	m.SourceDateEpoch = b.epoch
	b.logf("kernel %s from %s %s; timestamps %s", k.version, k.pkg, k.pkgVersion,
		time.Unix(b.epoch, 0).UTC().Format(time.RFC3339))

	tree := newTree()
	if err := b.addModules(tree, k, m); err != nil {
		return nil, err
	}
	if b.o.Prefetch {
		// The tools come from the host and the cauldron binary from the caller: only u-root's
		// busybox is left to cache.
		if err := b.addURoot(tree); err != nil {
			return nil, err
		}
		b.logf("prefetch: the cache %s holds what an offline build needs", b.cache)
		return m, nil
	}
	if err := b.addTools(tree, m); err != nil {
		return nil, err
	}
	if err := b.addCauldron(tree); err != nil {
		return nil, err
	}
	if err := b.addURoot(tree); err != nil {
		return nil, err
	}

	// The /usr image is mounted over /usr at boot: nothing else may live there.
	if hidden := tree.hiddenBy("usr"); len(hidden) > 0 {
		return nil, fmt.Errorf("internal: the initramfs has files under /usr, which the /usr image would hide at boot: %s",
			strings.Join(hidden, " "))
	}

	m.Kernel = filepath.Join(b.out, "vmlinuz")
	m.Initramfs = filepath.Join(b.out, "initrd.img")
	if err := copyFile(k.vmlinuz, m.Kernel, 0o644, b.epoch); err != nil {
		return nil, err
	}
	if m.InitramfsUncompressed, err = b.writeInitramfs(tree, m.Initramfs); err != nil {
		return nil, err
	}
	if m.PXEDir, err = b.writePXE(m); err != nil {
		return nil, err
	}
	if m.ISO, err = b.writeISO(m); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		path string
		size *int64
	}{{m.ISO, &m.ISOSize}, {m.Kernel, &m.KernelSize}, {m.Initramfs, &m.InitramfsSize}} {
		fi, err := os.Stat(f.path)
		if err != nil {
			return nil, err
		}
		*f.size = fi.Size()
	}
	return m, nil
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// writableDir makes dir (and its parents) if missing, checks it can be written to and returns its
// absolute path; what names it in errors.
func writableDir(dir, what string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	if err := checkWritable(abs); err != nil {
		return "", fmt.Errorf("%s %s is not writable: %w", what, abs, err)
	}
	return abs, nil
}

func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".cauldron-write-test-")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
