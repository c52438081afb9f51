// Command cauldron-media builds Cauldron's boot media: the hybrid BIOS/UEFI (Secure Boot) ISO, the
// kernel and initramfs, and the PXE folder, with a cauldron binary as the program that starts at
// boot.
//
// It is a command of its own, not a subcommand of cauldron, because the image builder (u-root's
// gobusybox and mkuimage, golang.org/x/tools, mvdan.cc/sh) is about a quarter of a stripped
// cauldron, and cauldron is the binary the boot image carries: it would ship the builder on every
// medium without ever using it there. cmd/cauldron's TestBootBinaryHasNoImageBuilder keeps it out.
package main

import (
	"context"
	"debug/buildinfo"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/cauldron-dr/cauldron/initramfs"
	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

// selfPackage is this command's import path, as Go records it in the binaries it builds: a
// binary that names it is an image builder, never the program an image should start.
const selfPackage = "github.com/cauldron-dr/cauldron/cmd/cauldron-media"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "cauldron-media:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	var o initramfs.Options
	c := &cobra.Command{
		Use:   "cauldron-media --out DIR [--cauldron PATH] | --prefetch",
		Short: "Build Cauldron's boot media: a BIOS/UEFI (Secure Boot) hybrid ISO, a kernel and initramfs, and a PXE folder",
		Long: `cauldron-media builds Cauldron's boot environment from the Debian kernel package (downloaded
into the cache, never installed) and u-root, with a cauldron binary as the program that starts at
boot. It writes DIR/cauldron.iso (CD, USB stick written raw, BIOS and UEFI with Secure Boot),
DIR/vmlinuz, DIR/initrd.img and DIR/pxe/ (serve as a TFTP or HTTP root).

The cauldron binary is --cauldron, or else the file named cauldron in the folder this program
is in (make build writes bin/cauldron and bin/cauldron-media side by side; install them side by
side too). Without either, nothing is built. It must be statically linked (CGO_ENABLED=0, as
make build links it).

The same inputs give byte-identical files; SOURCE_DATE_EPOCH sets the time stamps.
The firmware the drivers declare comes from Debian main and non-free-firmware; the latter through
cauldron-media's own apt lists in the cache (CACHE/apt), derived from the host's Debian sources,
whose configuration is left as it is.
--prefetch only fills the cache (no media, no cauldron binary needed); --offline then builds
from it without the network.`,
		Version:       version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.OutDir == "" && !o.Prefetch {
				return fmt.Errorf("--out is required (or --prefetch, to fill the cache only)")
			}
			if o.OutDir != "" && o.Prefetch {
				return fmt.Errorf("--prefetch writes no media: give --out or --prefetch, not both")
			}
			if !o.Prefetch {
				bin, err := cauldronBinary(o.Cauldron)
				if err != nil {
					return err
				}
				o.Cauldron = bin
			}
			o.Log = cmd.ErrOrStderr()
			m, err := initramfs.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if o.Prefetch {
				fmt.Fprintf(out, "cache      %s holds the kernel package (%s), the packages of %d firmware files and u-root's busybox: ready for --offline (%s)\n",
					cacheDir(o.CacheDir), m.KernelPackage, len(m.Firmware), m.Duration.Round(100*time.Millisecond))
				printMissingFirmware(out, m, "not cached")
				return nil
			}
			fmt.Fprintf(out, "ISO        %s  %d bytes\n", m.ISO, m.ISOSize)
			fmt.Fprintf(out, "kernel     %s  %d bytes  (%s, %s)\n", m.Kernel, m.KernelSize, m.KernelVersion, m.KernelPackage)
			fmt.Fprintf(out, "initramfs  %s  %d bytes  (%s; %d bytes as cpio)\n", m.Initramfs, m.InitramfsSize, m.Compression, m.InitramfsUncompressed)
			if fi, err := os.Stat(o.Cauldron); err == nil {
				fmt.Fprintf(out, "cauldron   %s  %d bytes  (/bin/cauldron in the image, started at boot)\n", o.Cauldron, fi.Size())
			}
			fmt.Fprintf(out, "PXE        %s\n", m.PXEDir)
			fmt.Fprintf(out, "built in   %s\n", m.Duration.Round(100*time.Millisecond))
			fmt.Fprintf(out, "firmware   %d files from Debian main and non-free-firmware\n", len(m.Firmware))
			printMissingFirmware(out, m, "not in the image")
			return nil
		},
	}
	c.Flags().StringVar(&o.OutDir, "out", "", "output directory (required unless --prefetch)")
	c.Flags().StringVar(&o.CacheDir, "cache", "", "cache for downloaded packages and the u-root build (default "+initramfs.DefaultCacheDir+")")
	c.Flags().StringVar(&o.Cauldron, "cauldron", "", "static cauldron binary the image starts at boot (default: cauldron in this program's folder)")
	c.Flags().StringVar(&o.Compression, "compression", "zstd", "initramfs compression: zstd, gzip, xz or none")
	c.Flags().BoolVar(&o.Offline, "offline", false, "build from the cache alone: download nothing, refresh no apt lists (fill it first with --prefetch)")
	c.Flags().BoolVar(&o.Prefetch, "prefetch", false, "only fill the cache with what an --offline build needs (kernel and firmware packages, apt lists, u-root); no --out")
	return c
}

// cauldronBinary is the binary the image starts at boot: flag if given, else the cauldron next to
// this program, where make build and packages put it. Guessing further (a cauldron on $PATH, or
// building one from a source tree) could put another version into the image than the technician
// meant, so without either the build stops and says how to name one.
func cauldronBinary(flag string) (string, error) {
	bin := flag
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return "", fmt.Errorf("finding the folder cauldron-media is in: %w (give --cauldron)", err)
		}
		bin = filepath.Join(filepath.Dir(self), "cauldron")
		if _, err := os.Stat(bin); err != nil {
			return "", fmt.Errorf("no cauldron binary given and none next to cauldron-media (%s: %w): give --cauldron PATH, a static cauldron as make build writes to bin/cauldron",
				bin, errors.Unwrap(err))
		}
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return "", err
	}
	// The Go build information names the main package. A cauldron-media (this program, perhaps
	// copied or renamed) is the likeliest wrong file; it would start at boot as an image builder.
	if info, err := buildinfo.ReadFile(bin); err == nil && info.Path == selfPackage {
		return "", fmt.Errorf("%s is cauldron-media, the image builder; the image needs the cauldron binary (make build writes bin/cauldron)", bin)
	}
	return bin, nil
}

// cacheDir is the cache cauldron-media uses for the --cache value.
func cacheDir(flag string) string {
	if flag == "" {
		return initramfs.DefaultCacheDir
	}
	return flag
}

// printMissingFirmware names the firmware files the image's drivers may ask for that the build
// could not include: either Debian has no such file, or non-free-firmware could not be reached
// (the build log says which). The names tell a technician which NICs may stay dark.
func printMissingFirmware(out io.Writer, m *initramfs.Media, what string) {
	n := len(m.MissingFirmware)
	if n == 0 {
		return
	}
	names := strings.Join(m.MissingFirmware, " ")
	if n > 8 {
		names = strings.Join(m.MissingFirmware[:8], " ") + " …"
	}
	fmt.Fprintf(out, "           %d files the drivers may ask for are %s (see the log): %s\n", n, what, names)
}
