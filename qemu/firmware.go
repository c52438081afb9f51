package qemu

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// FirmwareFiles are OVMF's two flash images: Code (read-only) and the template of its variable
// store, Vars, of which every VM gets its own writable copy (OVMF writes boot entries into it,
// and two VMs sharing one would corrupt it).
type FirmwareFiles struct {
	Code, Vars string
}

// ovmfCandidates lists, per firmware, where distributions put matching code and variable
// files, best first. The 4 MiB builds come before the 2 MiB ones, and a code file is only ever
// paired with a variable store of the same build (mixing sizes makes QEMU refuse the flash).
var ovmfCandidates = map[Firmware][]FirmwareFiles{
	UEFI: {
		{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},     // Debian 12, Ubuntu
		{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},           // older Debian
		{"/usr/share/edk2/ovmf/OVMF_CODE.fd", "/usr/share/edk2/ovmf/OVMF_VARS.fd"}, // Fedora
		{"/usr/share/edk2-ovmf/x64/OVMF_CODE.fd", "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd"},
	},
	SecureBoot: {
		// Debian's Secure Boot build with Microsoft's keys enrolled: what a real PC ships, so
		// shim signed by Microsoft is what boots.
		{"/usr/share/OVMF/OVMF_CODE_4M.secboot.fd", "/usr/share/OVMF/OVMF_VARS_4M.ms.fd"},
		{"/usr/share/OVMF/OVMF_CODE.secboot.fd", "/usr/share/OVMF/OVMF_VARS.ms.fd"},
		{"/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd", "/usr/share/edk2/ovmf/OVMF_VARS.secboot.fd"},
	},
}

// ErrMissing is wrapped by errors about a missing emulator or firmware.
var ErrMissing = errors.New("qemu: prerequisite missing")

// FindFirmware returns the OVMF files for UEFI or SecureBoot. The environment variables
// CAULDRON_OVMF_CODE and CAULDRON_OVMF_VARS (UEFI) or CAULDRON_OVMF_SECBOOT_CODE and
// CAULDRON_OVMF_SECBOOT_VARS (SecureBoot) override the search. BIOS needs no files (QEMU
// carries SeaBIOS) and returns empty FirmwareFiles.
func FindFirmware(f Firmware) (FirmwareFiles, error) {
	var envCode, envVars string
	switch f {
	case BIOS:
		return FirmwareFiles{}, nil
	case UEFI:
		envCode, envVars = "CAULDRON_OVMF_CODE", "CAULDRON_OVMF_VARS"
	case SecureBoot:
		envCode, envVars = "CAULDRON_OVMF_SECBOOT_CODE", "CAULDRON_OVMF_SECBOOT_VARS"
	default:
		return FirmwareFiles{}, fmt.Errorf("%w: unknown firmware %d", ErrConfig, int(f))
	}
	if code, vars := os.Getenv(envCode), os.Getenv(envVars); code != "" || vars != "" {
		ff := FirmwareFiles{code, vars}
		if err := ff.check(); err != nil {
			return FirmwareFiles{}, fmt.Errorf("%w: %s/%s: %v", ErrMissing, envCode, envVars, err)
		}
		return ff, nil
	}
	var tried []string
	for _, ff := range ovmfCandidates[f] {
		if ff.check() == nil {
			return ff, nil
		}
		tried = append(tried, ff.Code)
	}
	return FirmwareFiles{}, fmt.Errorf("%w: no OVMF for %s (install Debian's ovmf package; looked for %s)",
		ErrMissing, f, strings.Join(tried, ", "))
}

func (ff FirmwareFiles) check() error {
	if ff.Code == "" || ff.Vars == "" {
		return errors.New("need both the code and the variable file")
	}
	for _, p := range []string{ff.Code, ff.Vars} {
		if err := regularFile(p); err != nil {
			return err
		}
	}
	return nil
}

// FindQEMU returns the path of the emulator binary (name, or $CAULDRON_QEMU, or
// qemu-system-x86_64).
func FindQEMU(name string) (string, error) {
	if name == "" {
		name = os.Getenv("CAULDRON_QEMU")
	}
	if name == "" {
		name = "qemu-system-x86_64"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%w: %s not found (install Debian's qemu-system-x86): %v", ErrMissing, name, err)
	}
	return p, nil
}

// iPXEROMDirs are where QEMU finds the option ROMs of its NICs (Debian's ipxe-qemu).
var iPXEROMDirs = []string{"/usr/lib/ipxe/qemu", "/usr/share/qemu", "/usr/share/ipxe"}

// FindPXEROM checks that QEMU's iPXE option ROM for a NIC model is installed: without it QEMU
// starts, but the NIC cannot boot.
func FindPXEROM(model string) (string, error) {
	name := map[string]string{
		"virtio-net-pci": "efi-virtio.rom", "e1000": "efi-e1000.rom", "e1000e": "efi-e1000e.rom",
		"rtl8139": "efi-rtl8139.rom", "vmxnet3": "efi-vmxnet3.rom",
	}[model]
	if name == "" {
		return "", fmt.Errorf("%w: no iPXE ROM known for NIC model %q", ErrConfig, model)
	}
	for _, d := range iPXEROMDirs {
		p := filepath.Join(d, name)
		if regularFile(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: %s not found in %s (install Debian's ipxe-qemu)", ErrMissing, name, strings.Join(iPXEROMDirs, ", "))
}

// copyFile copies src to a new file dst (mode 0600).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
