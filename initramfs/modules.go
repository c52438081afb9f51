package initramfs

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// Modules are the kernel modules the image carries, by purpose; their dependencies (modules.dep)
// and soft dependencies (modules.softdep) are added. Names the kernel lacks or builds in are
// skipped with a note. The boot program loads them by modalias; the kernel's own requests
// (filesystems, crypto, nls) go to /sbin/modprobe (kmod).
//
// The firmware the chosen modules declare comes along (addFirmware): from Debian main, and from
// non-free-firmware for the NICs that need it (Realtek r8169/r8152, Broadcom tg3/bnx2/bnx2x,
// QLogic qede, Intel ice), as Debian's own installer carries it.
//
// Left out on purpose: Fibre Channel and iSCSI offload HBAs (qla2xxx, lpfc, be2iscsi, bnx2fc,
// qedf, qedi). Restoring onto a SAN LUN through them needs FC/iSCSI initiator setup and multipath
// tooling the image does not have, and the archive is reached over the NICs above anyway; each
// module is 1.5–2.6 MB, and qla2xxx would bring its own non-free firmware on top.
var Modules = map[string][]string{
	"storage": {
		"ahci", "ata_piix", "ata_generic", "sata_nv", "sata_sil24", "sata_via",
		"nvme", "virtio_blk", "virtio_scsi", "virtio_pci", "sd_mod", "sr_mod", "sg",
		"megaraid_sas", "mpt3sas", "mpi3mr", "mptspi", "mptsas", "hpsa", "aacraid", "smartpqi",
		"vmw_pvscsi", "hv_storvsc", "xen_blkfront", "isci", "mvsas", "pm80xx", "arcmsr",
		"3w_9xxx", "3w_sas", "sym53c8xx",
		"usb_storage", "uas", "xhci_pci", "xhci_hcd", "ehci_pci", "ehci_hcd", "ohci_pci",
		"ohci_hcd", "uhci_hcd", "mmc_block", "sdhci_pci", "sdhci_acpi", "rtsx_pci_sdmmc",
		"nbd", "loop",
	},
	"input": {"usbhid", "hid_generic", "hid_hyperv", "hyperv_keyboard", "virtio_input"},
	"network": {
		"virtio_net", "e1000", "e1000e", "igb", "igc", "ixgbe", "ixgbevf", "i40e", "iavf", "ice",
		"r8169", "tg3", "bnx2", "bnx2x", "bnxt_en", "qede", "be2net", "mlx4_en", "mlx5_core",
		"vmxnet3", "hv_netvsc", "xen_netfront", "ena", "gve", "sfc", "atlantic", "alx", "atl1c",
		"8139cp", "8139too", "pcnet32", "ne2k_pci", "r8152", "ax88179_178a", "cdc_ether",
		"cdc_ncm", "af_packet",
	},
	"filesystems": {
		"ext4", "xfs", "btrfs", "vfat", "msdos", "exfat", "nls_cp437", "nls_iso8859_1", "nls_utf8",
		"nls_ascii", "isofs", "udf", "squashfs", "overlay", "fuse", "efivarfs",
	},
	// NFS and SMB clients, for archives on file servers (package restore/share). Besides what
	// modules.dep and cifs's softdeps bring, the crypto the kernel asks /sbin/modprobe for at
	// run time: SMB 3 signing (cmac(aes)) and encryption (gcm(aes) and ccm(aes), which load ctr
	// and ghash when a mount starts), SMB 3.1.1's pre-authentication hash (sha512). Left out:
	// Kerberos (rpcsec_gss_krb5, auth_rpcgss; cifs's upcalls), which needs daemons the image
	// does not run.
	"network-shares": {
		"nfs", "nfsv3", "nfsv4", "cifs", "dns_resolver", "cmac", "sha512_generic", "gcm", "ccm",
		"ctr", "ghash_generic", "ghash_clmulni_intel",
	},
	"device-mapper": {
		"dm_mod", "dm_crypt", "dm_snapshot", "dm_mirror", "dm_thin_pool", "dm_zero", "dm_raid",
		"md_mod", "raid0", "raid1", "raid10", "raid456", "linear",
	},
	"crypto": {
		"aesni_intel", "aes_generic", "xts", "cbc", "ecb", "essiv", "sha256_ssse3",
		"sha512_ssse3", "sha256_generic", "crc32c_intel", "crc32c_generic", "crc32_pclmul",
		"af_alg", "algif_skcipher", "algif_hash", "xxhash_generic", "blake2b_generic",
	},
}

// addModules puts the chosen modules with their dependencies and firmware into the tree, with
// modules.dep, modules.alias and the rest regenerated for the subset by depmod.
func (b *builder) addModules(t *tree, k *kernel, m *Media) error {
	kdir := filepath.Join(k.root, "lib/modules", k.version)
	idx, err := readModuleIndex(kdir)
	if err != nil {
		return err
	}
	var want []string
	for _, group := range sortedKeys(Modules) {
		want = append(want, Modules[group]...)
	}
	chosen := map[string]bool{}
	var missing []string
	var visit func(name string)
	visit = func(name string) {
		name = modName(name)
		if chosen[name] {
			return
		}
		rel, ok := idx.path[name]
		if !ok {
			return
		}
		chosen[name] = true
		for _, d := range idx.deps[rel] {
			visit(modName(path.Base(d)))
		}
		for _, s := range idx.softdeps[name] {
			for _, n := range idx.resolve(s) {
				visit(n)
			}
		}
	}
	for _, w := range want {
		n := modName(w)
		if _, ok := idx.path[n]; !ok {
			if !idx.builtin[n] {
				missing = append(missing, w)
			}
			continue
		}
		visit(n)
	}
	if len(missing) > 0 {
		b.logf("modules not in %s (skipped): %s", k.version, strings.Join(missing, " "))
	}

	// Stage the subset and let depmod index it.
	stage := filepath.Join(b.work, "modules")
	sdir := filepath.Join(stage, "lib/modules", k.version)
	var rels []string
	for n := range chosen {
		rels = append(rels, idx.path[n])
	}
	sort.Strings(rels)
	// The modules go in compressed (.ko.zst): the kernel then unpacks a much smaller initramfs
	// at boot, which under TCG saves about a second, and only the modules a machine needs are
	// ever decompressed (by the boot program or kmod, in user space; the signature inside stays valid).
	zst, err := b.compressModules(k, kdir, rels)
	if err != nil {
		return err
	}
	for _, rel := range rels {
		dst := filepath.Join(sdir, rel+".zst")
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if err := os.Link(zst[rel], dst); err != nil {
			if err := copyFile(zst[rel], dst, 0o644, b.epoch); err != nil {
				return err
			}
		}
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo"} {
		if err := copyFile(filepath.Join(kdir, f), filepath.Join(sdir, f), 0o644, b.epoch); err != nil {
			return err
		}
	}
	// modules.order, filtered to the subset, keeps depmod's output in the kernel's order.
	var order bytes.Buffer
	inSet := map[string]bool{}
	for _, r := range rels {
		inSet[r] = true
	}
	if data, err := os.ReadFile(filepath.Join(kdir, "modules.order")); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if inSet[line] {
				order.WriteString(line + "\n")
			}
		}
	}
	if err := os.WriteFile(filepath.Join(sdir, "modules.order"), order.Bytes(), 0o644); err != nil {
		return err
	}
	if _, err := b.command("", nil, "depmod", "-b", stage, k.version); err != nil {
		return fmt.Errorf("indexing the modules: %w", err)
	}

	ents, err := os.ReadDir(sdir)
	if err != nil {
		return err
	}
	target := path.Join("lib/modules", k.version)
	for _, e := range ents {
		if e.IsDir() || e.Name() == "modules.builtin.modinfo" {
			continue
		}
		if err := t.addFile(path.Join(target, e.Name()), filepath.Join(sdir, e.Name()), 0o644); err != nil {
			return err
		}
	}
	for _, rel := range rels {
		if err := t.addFile(path.Join(target, rel+".zst"), zst[rel], 0o644); err != nil {
			return err
		}
	}
	for n := range chosen {
		m.Modules = append(m.Modules, n)
	}
	sort.Strings(m.Modules)
	b.logf("%d modules (%d asked for, the rest dependencies)", len(m.Modules), len(want)-len(missing))

	return b.addFirmware(t, kdir, rels, m)
}

// addFirmware adds the firmware files the modules declare (MODULE_FIRMWARE): from Debian main's
// firmware-linux-free where it has them, the rest from the non-free-firmware packages that hold
// them, as Debian's own installer does. Only the declared files (and what they link to) go in, not
// whole packages. What neither has, or what cannot be fetched (no network, a mirror without
// non-free-firmware), is listed in m.MissingFirmware; the build goes on without it.
func (b *builder) addFirmware(t *tree, kdir string, rels []string, m *Media) error {
	wanted := map[string]bool{}
	for _, rel := range rels {
		for _, fw := range modinfoField(filepath.Join(kdir, rel), "firmware") {
			wanted[fw] = true
		}
	}
	left := sortedKeys(wanted)
	if deb, _, err := b.fetchDeb("firmware-linux-free"); err != nil {
		b.logf("no firmware-linux-free: %v", err)
	} else if root, err := b.unpackDeb(deb, false); err != nil {
		return err
	} else if left, err = copyFirmware(t, root, left, m); err != nil {
		return err
	}
	n := len(m.Firmware)
	b.logf("firmware: %d files from Debian main (firmware-linux-free)", n)
	var err error
	if left, err = b.addNonFreeFirmware(t, left, m, b.hostSourceFiles()); err != nil {
		return err
	}
	sort.Strings(m.Firmware)
	m.MissingFirmware = left
	if len(left) > 0 {
		b.logf("firmware: %d files the modules declare are not in the image (in neither Debian main nor non-free-firmware, or not fetched): %s",
			len(left), strings.Join(left, " "))
	}
	return nil
}

// addNonFreeFirmware adds the wanted files that Debian's non-free-firmware packages hold and
// returns those still missing; hostFiles are the host's apt source files to derive the mirrors
// from. It fails only for local trouble (unpacking); an unreachable or incomplete
// non-free-firmware leaves the files missing, with the reason in the log.
func (b *builder) addNonFreeFirmware(t *tree, want []string, m *Media, hostFiles []string) ([]string, error) {
	if len(want) == 0 {
		return nil, nil
	}
	a, err := b.openFirmwareApt(hostFiles)
	if err != nil {
		b.logf("firmware: Debian non-free-firmware not available, %d files left out: %v", len(want), err)
		return want, nil
	}
	defer a.close()
	holders, err := b.firmwareContents(a, want)
	if err != nil {
		b.logf("firmware: cannot tell which non-free-firmware packages hold the %d files: %v", len(want), err)
		return want, nil
	}
	// One package per file; when several hold it, one already needed, else the first by name.
	files := map[string][]string{}
	var unknown []string
	for _, fw := range want {
		pkgs := holders[fw]
		if len(pkgs) == 0 {
			unknown = append(unknown, fw)
			continue
		}
		pkg := pkgs[0]
		for _, p := range pkgs {
			if _, ok := files[p]; ok {
				pkg = p
				break
			}
		}
		files[pkg] = append(files[pkg], fw)
	}
	for _, pkg := range sortedKeys(files) {
		deb, version, err := b.fetchDebFrom(a, pkg)
		if err != nil {
			b.logf("firmware: %v", err)
			unknown = append(unknown, files[pkg]...)
			continue
		}
		root, err := b.unpackDeb(deb, false)
		if err != nil {
			return nil, err
		}
		before := len(m.Firmware)
		notThere, err := copyFirmware(t, root, files[pkg], m)
		if err != nil {
			return nil, err
		}
		b.logf("firmware: %d files from %s %s (non-free-firmware)", len(m.Firmware)-before, pkg, version)
		unknown = append(unknown, notThere...)
	}
	sort.Strings(unknown)
	return unknown, nil
}

// copyFirmware adds the named firmware files from an unpacked package to the tree under
// lib/firmware, records them in m.Firmware and returns the names the package lacks. A name that
// is a symlink (intel/ice/ddp/ice.pkg → ice-1.3.30.0.pkg) goes in as a symlink, with the file
// it leads to.
func copyFirmware(t *tree, root string, names []string, m *Media) (missing []string, err error) {
	for _, name := range names {
		added := false
		for _, dir := range []string{"lib/firmware", "usr/lib/firmware"} {
			fwdir := filepath.Join(root, dir)
			if _, err := os.Stat(fwdir); err != nil {
				continue
			}
			if added, err = addFirmwareFile(t, fwdir, name, m, 0); err != nil {
				return nil, err
			}
			if added {
				break
			}
		}
		if !added {
			missing = append(missing, name)
		}
	}
	return missing, nil
}

// addFirmwareFile adds one name below fwdir, following symlinks that stay inside the firmware
// tree (absolute ones are taken relative to it, as the kernel's loader would see them in the
// image); it reports false when the name leads to no regular file there.
func addFirmwareFile(t *tree, fwdir, name string, m *Media, depth int) (bool, error) {
	if depth > 8 || name == "" || name == "." || name == ".." || strings.HasPrefix(name, "../") || path.IsAbs(name) {
		return false, nil
	}
	dst := path.Join("lib/firmware", name)
	if t.has(dst) {
		return true, nil
	}
	src := filepath.Join(fwdir, filepath.FromSlash(name))
	fi, err := os.Lstat(src)
	if err != nil {
		return false, nil
	}
	switch {
	case fi.Mode().IsRegular():
		if err := t.addFile(dst, src, 0o644); err != nil {
			return false, err
		}
	case fi.Mode()&os.ModeSymlink != 0:
		link, err := os.Readlink(src)
		if err != nil {
			return false, err
		}
		target := path.Clean(path.Join(path.Dir(name), link))
		if path.IsAbs(link) {
			rel, ok := strings.CutPrefix(link, "/lib/firmware/")
			if !ok {
				rel, ok = strings.CutPrefix(link, "/usr/lib/firmware/")
			}
			if !ok {
				return false, nil
			}
			target = path.Clean(rel)
		}
		ok, err := addFirmwareFile(t, fwdir, target, m, depth+1)
		if err != nil || !ok {
			return false, err
		}
		// Relative, so the link holds wherever lib/firmware is (the image has it at /lib).
		rel, err := filepath.Rel(path.Dir(name), target)
		if err != nil {
			return false, err
		}
		t.addSymlink(dst, filepath.ToSlash(rel))
	default:
		return false, nil
	}
	m.Firmware = append(m.Firmware, name)
	return true, nil
}

// compressModules compresses each module with zstd into the kernel's cache folder (once per
// kernel package) and returns the compressed file of each.
func (b *builder) compressModules(k *kernel, kdir string, rels []string) (map[string]string, error) {
	out := map[string]string{}
	var todo []string
	for _, rel := range rels {
		z := filepath.Join(k.root, ".zst", rel+".zst")
		out[rel] = z
		if _, err := os.Stat(z); err != nil {
			todo = append(todo, rel)
		}
	}
	if len(todo) == 0 {
		return out, nil
	}
	b.logf("compressing %d modules", len(todo))
	work := make(chan string)
	errs := make(chan error, runtime.NumCPU())
	var wg sync.WaitGroup
	for i := 0; i < runtime.NumCPU(); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBestCompression),
				zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20))
			if err != nil {
				errs <- err
				return
			}
			for rel := range work {
				data, err := os.ReadFile(filepath.Join(kdir, rel))
				if err == nil {
					tmp := fmt.Sprintf("%s.tmp%d", out[rel], os.Getpid()) // builds may share the cache
					if err = writeFile(tmp, enc.EncodeAll(data, nil), 0o644, b.epoch); err == nil {
						err = os.Rename(tmp, out[rel])
					}
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for _, rel := range todo {
		select {
		case work <- rel:
		case err := <-errs:
			close(work)
			wg.Wait()
			return nil, fmt.Errorf("compressing modules: %w", err)
		}
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return nil, fmt.Errorf("compressing modules: %w", err)
	default:
	}
	return out, nil
}

// moduleIndex is what modules.dep, modules.alias, modules.softdep and modules.builtin say.
type moduleIndex struct {
	path     map[string]string   // module name → path relative to lib/modules/KVER
	deps     map[string][]string // path → dependency paths
	softdeps map[string][]string // module name → soft dependency names or aliases
	aliases  [][2]string         // alias pattern, module name
	builtin  map[string]bool
}

func readModuleIndex(kdir string) (*moduleIndex, error) {
	idx := &moduleIndex{path: map[string]string{}, deps: map[string][]string{},
		softdeps: map[string][]string{}, builtin: map[string]bool{}}
	err := eachLine(filepath.Join(kdir, "modules.dep"), func(line string) {
		mod, deps, ok := strings.Cut(line, ":")
		if !ok {
			return
		}
		idx.path[modName(path.Base(mod))] = mod
		idx.deps[mod] = strings.Fields(deps)
	})
	if err != nil {
		return nil, fmt.Errorf("kernel modules index: %w", err)
	}
	_ = eachLine(filepath.Join(kdir, "modules.alias"), func(line string) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "alias" {
			idx.aliases = append(idx.aliases, [2]string{f[1], modName(f[2])})
		}
	})
	_ = eachLine(filepath.Join(kdir, "modules.softdep"), func(line string) {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "softdep" {
			return
		}
		for _, s := range f[2:] {
			if s != "pre:" && s != "post:" {
				idx.softdeps[modName(f[1])] = append(idx.softdeps[modName(f[1])], s)
			}
		}
	})
	_ = eachLine(filepath.Join(kdir, "modules.builtin"), func(line string) {
		idx.builtin[modName(path.Base(line))] = true
	})
	return idx, nil
}

// resolve turns a module name or an alias (e.g. crypto-crc32c) into module names.
func (idx *moduleIndex) resolve(s string) []string {
	if _, ok := idx.path[modName(s)]; ok {
		return []string{modName(s)}
	}
	var out []string
	for _, a := range idx.aliases {
		if ok, _ := path.Match(a[0], s); ok {
			out = append(out, a[1])
		}
	}
	return out
}

// modName normalises a module name or file name: no directory, no .ko suffix, '-' as '_'.
func modName(s string) string {
	s = path.Base(s)
	if i := strings.Index(s, ".ko"); i >= 0 {
		s = s[:i]
	}
	return strings.ReplaceAll(s, "-", "_")
}

// modinfoField returns the values of one field of a module's .modinfo section.
func modinfoField(ko, field string) []string {
	f, err := elf.Open(ko)
	if err != nil {
		return nil
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return nil
	}
	data, err := s.Data()
	if err != nil {
		return nil
	}
	var out []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok && k == field {
			out = append(out, v)
		}
	}
	return out
}

func eachLine(file string, fn func(string)) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fn(sc.Text())
	}
	return sc.Err()
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}
