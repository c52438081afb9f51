package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/initramfs"
	"github.com/spf13/cobra"
)

func newBuildMedia() *cobra.Command {
	var o initramfs.Options
	c := &cobra.Command{
		Use:   "build-media --out DIR | --prefetch",
		Short: "Build the boot media: a BIOS/UEFI (Secure Boot) hybrid ISO, a kernel and initramfs, and a PXE folder",
		Long: `build-media builds Cauldron's boot environment from the Debian kernel package (downloaded into
the cache, never installed) and u-root, with this cauldron binary (or --cauldron) as the program
that starts at boot. It writes DIR/cauldron.iso (CD, USB stick written raw, BIOS and UEFI with
Secure Boot), DIR/vmlinuz, DIR/initrd.img and DIR/pxe/ (serve as a TFTP or HTTP root).
The same inputs give byte-identical files; SOURCE_DATE_EPOCH sets the time stamps.
The firmware the drivers declare comes from Debian main and non-free-firmware; the latter through
build-media's own apt lists in the cache (CACHE/apt), derived from the host's Debian sources,
whose configuration is left as it is.
--prefetch only fills the cache (no media); --offline then builds from it without the network.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.OutDir == "" && !o.Prefetch {
				return fmt.Errorf("--out is required (or --prefetch, to fill the cache only)")
			}
			if o.OutDir != "" && o.Prefetch {
				return fmt.Errorf("--prefetch writes no media: give --out or --prefetch, not both")
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
			fmt.Fprintf(out, "PXE        %s\n", m.PXEDir)
			fmt.Fprintf(out, "built in   %s\n", m.Duration.Round(100*time.Millisecond))
			fmt.Fprintf(out, "firmware   %d files from Debian main and non-free-firmware\n", len(m.Firmware))
			printMissingFirmware(out, m, "not in the image")
			return nil
		},
	}
	c.Flags().StringVar(&o.OutDir, "out", "", "output directory (required unless --prefetch)")
	c.Flags().StringVar(&o.CacheDir, "cache", "", "cache for downloaded packages and the u-root build (default "+initramfs.DefaultCacheDir+")")
	c.Flags().StringVar(&o.Cauldron, "cauldron", "", "static cauldron binary to put in the image (default: this one)")
	c.Flags().StringVar(&o.Compression, "compression", "zstd", "initramfs compression: zstd, gzip, xz or none")
	c.Flags().BoolVar(&o.Offline, "offline", false, "build from the cache alone: download nothing, refresh no apt lists (fill it first with --prefetch)")
	c.Flags().BoolVar(&o.Prefetch, "prefetch", false, "only fill the cache with what an --offline build needs (kernel and firmware packages, apt lists, u-root); no --out")
	return c
}

// cacheDir is the cache build-media uses for the --cache value.
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
