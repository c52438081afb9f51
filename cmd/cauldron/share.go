package main

import (
	"fmt"
	"path/filepath"

	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/restore/share"
	"github.com/spf13/cobra"
)

// newShare is `cauldron share`: mount the NFS export or SMB share that holds an archive, from the
// boot environment's shell (package restore/share; the image has no mount.nfs or mount.cifs).
func newShare() *cobra.Command {
	c := &cobra.Command{
		Use:   "share",
		Short: "Mount and unmount NFS exports and SMB shares that hold backup archives",
	}
	c.AddCommand(newShareMount(), newShareUmount())
	return c
}

// shareFlags are `share mount`'s options.
type shareFlags struct {
	user, passwordFile, domain, nfsVersion string
	readOnly                               bool
}

// options turns the flags into share.Options, reading the password file. The password comes
// from a file only: on the command line it would show in the process list and the shell history.
func (f *shareFlags) options() (share.Options, error) {
	o := share.Options{User: f.user, Domain: f.domain, NFSVersion: f.nfsVersion, ReadOnly: f.readOnly}
	if f.passwordFile != "" {
		if f.user == "" {
			return o, fmt.Errorf("--password-file needs --user (without a user the share is mounted as a guest)")
		}
		b, err := archive.ReadPasswordFile(f.passwordFile)
		if err != nil {
			return o, err
		}
		o.Password = string(b)
	}
	if f.domain != "" && f.user == "" {
		return o, fmt.Errorf("--domain needs --user")
	}
	return o, nil
}

func newShareMount() *cobra.Command {
	var f shareFlags
	c := &cobra.Command{
		Use:   "mount URL DIR [--user U --password-file F [--domain D]] [--nfs-version V] [--read-only]",
		Short: "Mount an NFS export or SMB share on a directory",
		Long: `Mount a network share on DIR (made if missing), for a repository or images on a file server.
URL is nfs://HOST[:PORT]/EXPORT[/PATH] or smb://HOST[:PORT]/SHARE[/PATH].

NFS: versions 4.2, 4.1 and 4.0 are tried, then 3 (without locking); --nfs-version picks one (3, 4,
4.0, 4.1, 4.2). A port in the URL is used for NFS and, with version 3, for the MOUNT service too
(for servers without rpcbind). When the server exports only a parent of PATH, the export is
mounted and PATH is found inside it.

SMB: dialects 3.1.1, 3.0 and 2.1 are tried. Without --user the share is mounted as a guest.
The password is read from a file (all of it but a trailing line break; an empty file is
refused), never from the command line. A refused password is not tried again, so that it
cannot lock the account.

The directory that holds the URL's path is printed on the last line.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := f.options()
			if err != nil {
				return err
			}
			o.Log = func(msg string) { fmt.Fprintln(cmd.ErrOrStderr(), "cauldron: share:", msg) }
			dir := args[1]
			sub, err := share.Mount(cmd.Context(), args[0], dir, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "mounted %s on %s\n", args[0], dir)
			if sub != "" {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is at %s\n", args[0], filepath.Join(dir, sub))
			}
			return nil
		},
	}
	c.Flags().StringVar(&f.user, "user", "", "SMB user name (none: guest)")
	c.Flags().StringVar(&f.passwordFile, "password-file", "", "read the SMB password from this file")
	c.Flags().StringVar(&f.domain, "domain", "", "SMB domain (workgroup) of the user")
	c.Flags().StringVar(&f.nfsVersion, "nfs-version", "", "NFS version: 3, 4, 4.0, 4.1 or 4.2 (default: the newest the server speaks)")
	c.Flags().BoolVar(&f.readOnly, "read-only", false, "mount read-only")
	return c
}

func newShareUmount() *cobra.Command {
	return &cobra.Command{
		Use:   "umount DIR",
		Short: "Unmount a share mounted with share mount",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := share.Unmount(args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unmounted %s\n", args[0])
			return nil
		},
	}
}
