package main

import (
	"context"
	"errors"
	"io"
	"os"
	"strings"

	"github.com/cauldron-dr/cauldron/initramfs/boot"
	"github.com/spf13/cobra"
)

func newBoot() *cobra.Command {
	return &cobra.Command{
		Use:   "boot",
		Short: "Run the boot environment (started by the boot image's init; never returns)",
		Long: `boot is what the Cauldron boot image runs as u-root's uinit: it loads the drivers for the
hardware present, lists disks and network interfaces, brings up the network and fetches the
kickstart named on the kernel command line (cauldron.ks=, ip=, cauldron.shell), then offers a menu.
It never exits: outside the boot image it would keep the terminal until reboot or power-off.`,
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// The menu reboots and powers off the machine, and start-up mounts over /run: never on
			// a host by accident. In the image, init (PID 1, /init) is the parent.
			init, _ := os.ReadFile("/proc/1/cmdline")
			if os.Getppid() != 1 || !strings.HasPrefix(string(init), "/init") {
				return errors.New("boot runs only as the boot image's uinit (its parent must be /init, PID 1)")
			}
			boot.Run(cmd.Context(), boot.Options{Version: version, Out: cmd.OutOrStdout(), Recover: bootRecover, Wizard: bootWizard})
			return nil
		},
	}
}

// bootRecover is the boot environment's unattended recovery: the kickstart's own consent line
// is required (nobody may be at the console), and its on-success / on-failure say what next.
func bootRecover(ctx context.Context, name string, data []byte, out io.Writer, env boot.Env) (string, error) {
	ks, err := recoverKickstart(ctx, name, data, recoverOptions{out: out, mountUSB: env.MountUSB, scratch: "/run/cauldron/scratch",
		onTarget: true})
	switch {
	case ks == nil:
		return "shell", err // it did not parse: a technician must look
	case err != nil:
		return string(ks.OnFailure.Action), err
	}
	return string(ks.OnSuccess.Action), nil
}
