package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/cauldron-dr/cauldron/initramfs/boot"
	"github.com/cauldron-dr/cauldron/tui"
	"github.com/spf13/cobra"
)

func newWizard() *cobra.Command {
	var f repoFlags
	var targets, ascii, exportDir, scratch string
	var media []string
	c := &cobra.Command{
		Use:   "wizard [--repo DIR|URL] [--targets PATH,PATH]",
		Short: "Recover a machine interactively (the recovery wizard)",
		Long: `wizard walks a technician through a recovery on the terminal: network, archive, machine and
generation, disk mapping, options, a summary confirmed by typing ERASE, progress and the result.
It builds the same plan a kickstart builds (and can export that kickstart).

--targets limits the disks offered as targets to the given paths (devices or image files);
without it, this machine's disks are offered. The boot medium, the archive's disk and disks in
use are shown but can never be chosen.
The look is plain ASCII on dumb, vt100 and serial terminals; --ascii 1 or 0 forces it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The same inoculation as `cauldron recover` (the kickstart's way).
			env := tui.Env{ExportDir: exportDir, Scratch: scratch}
			if f.repo != "" {
				sp, err := f.spec()
				if err != nil {
					return err
				}
				env.Repo, env.RepoSpec = sp.Location.String(), sp
			}
			if cmd.Flags().Changed("media") {
				env.MediaRoots = []string{}
				for _, m := range media {
					if m != "" {
						env.MediaRoots = append(env.MediaRoots, m)
					}
				}
			}
			if targets != "" {
				env.Targets = []string{}
				for _, t := range strings.Split(targets, ",") {
					if t = strings.TrimSpace(t); t != "" {
						env.Targets = append(env.Targets, t)
					}
				}
			}
			// The wizard asks for the password itself; one given beforehand is tried first.
			src := f.passwordSource()
			src.Prompt = nil
			pw, err := src.Password(false)
			if err != nil {
				return err
			}
			env.Password = pw
			res, err := tui.Run(cmd.Context(), env, tui.Console{ASCII: ascii})
			return wizardEnded(cmd.OutOrStdout(), res, err)
		},
	}
	f.register(c)
	c.Flags().StringVar(&targets, "targets", "", "offer only these disks or image files as targets (comma-separated paths)")
	c.Flags().StringSliceVar(&media, "media", nil, "look for archives on media mounted under these folders (default /media, /mnt, /run/media, /run/cauldron)")
	c.Flags().StringVar(&ascii, "ascii", "", "plain ASCII look: 1 always, 0 never (default: decided from TERM and the console)")
	c.Flags().StringVar(&exportDir, "export-dir", "", "where exported kickstarts and saved reports go by default (default: the working directory)")
	c.Flags().StringVar(&scratch, "scratch", "", "directory for volumes that must be shrunk before they fit (default: the temporary directory)")
	return c
}

// wizardEnded prints what the wizard leaves behind on the terminal (the report stays in the
// scrollback) and turns its outcome into the command's error.
func wizardEnded(out io.Writer, res tui.Result, err error) error {
	var pe *tui.PanicError
	if errors.As(err, &pe) {
		return err
	}
	if res.Report != nil {
		res.Report.WriteText(out)
	}
	if err != nil {
		return err
	}
	if res.RunErr != nil {
		return fmt.Errorf("recovery failed: %w", res.RunErr)
	}
	return nil
}

// bootWizard is the wizard as the boot environment runs it: the boot network helpers, and
// reboot, power off and shell as the end actions. It returns the action chosen ("reboot",
// "poweroff", "shell"); after a panic the action is "shell" and the error says where the
// details were logged.
func bootWizard(ctx context.Context, out io.Writer, media <-chan struct{}) (string, error) {
	env := tui.Env{Network: &bootNetwork{}, Actions: []string{"reboot", "poweroff", "shell"}, ExportDir: "/run",
		Controllers: bootControllers, OnTarget: true,
		// The archive screen looks at attached media once the boot environment has mounted them.
		Archives: func(ctx context.Context) ([]tui.Archive, error) {
			select {
			case <-media:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return tui.FindArchives(ctx, tui.DefaultMediaRoots)
		}}
	res, err := tui.Run(ctx, env, tui.Console{LogDir: "/run"})
	if err != nil {
		return "shell", err
	}
	if res.Report != nil {
		res.Report.WriteText(out)
	}
	return res.Action, nil
}

// bootNetwork is tui.Network over the boot environment's helpers (initramfs/boot).
type bootNetwork struct{}

func (*bootNetwork) Managed() string { return "" }

func (*bootNetwork) Interfaces(ctx context.Context) ([]tui.NIC, error) {
	// Only reads: the boot environment brought every link up at start (boot.LinksUp), and
	// Configure brings up the one it configures.
	nics, err := boot.ListNICs("/sys")
	if err != nil {
		return nil, err
	}
	var out []tui.NIC
	for _, n := range nics {
		t := tui.NIC{Name: n.Name, MAC: n.MAC, Driver: n.Driver, Link: n.Link}
		if i, err := net.InterfaceByName(n.Name); err == nil {
			if addrs, err := i.Addrs(); err == nil {
				for _, a := range addrs {
					t.Addrs = append(t.Addrs, a.String())
				}
			}
		}
		out = append(out, t)
	}
	return out, nil
}

func (*bootNetwork) Configure(ctx context.Context, c tui.NetConfig) (string, error) {
	nics, err := boot.ListNICs("/sys")
	if err != nil {
		return "", err
	}
	var nic []boot.NIC
	for _, n := range nics {
		if n.Name == c.Device {
			nic = append(nic, n)
		}
	}
	if len(nic) == 0 {
		return "", fmt.Errorf("no interface %s", c.Device)
	}
	// A cable plugged in since start: bring the link up and give the carrier a moment.
	boot.LinksUp(nic, 2*time.Second)
	cl := boot.Cmdline{IP: "dhcp"}
	if !c.DHCP {
		a := c.Address
		st := &boot.StaticIP{Address: net.IP(a.Addr().AsSlice()), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen()), Device: c.Device}
		if c.Gateway.IsValid() {
			st.Gateway = net.IP(c.Gateway.AsSlice())
		}
		cl = boot.Cmdline{IP: "static", Static: st}
		if len(c.DNS) > 0 {
			var b strings.Builder
			for _, d := range c.DNS {
				fmt.Fprintf(&b, "nameserver %s\n", d)
			}
			_ = os.MkdirAll("/etc", 0o755)
			if err := os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644); err != nil {
				return "", err
			}
		}
	}
	lines, err := boot.Configure(ctx, cl, nic)
	if err != nil {
		return "", err
	}
	return strings.TrimPrefix(strings.Join(lines, "; "), "cauldron: "), nil
}

// bootControllers names the storage controllers' drivers with their disks, for the options.
func bootControllers() []string {
	disks, err := boot.ListDisks("/sys")
	if err != nil {
		return nil
	}
	by := map[string][]string{}
	var order []string
	for _, d := range disks {
		if d.Optical || d.Driver == "" {
			continue
		}
		if _, ok := by[d.Driver]; !ok {
			order = append(order, d.Driver)
		}
		by[d.Driver] = append(by[d.Driver], d.Name)
	}
	var out []string
	for _, drv := range order {
		out = append(out, fmt.Sprintf("%s (%s)", drv, strings.Join(by[drv], ", ")))
	}
	return out
}
