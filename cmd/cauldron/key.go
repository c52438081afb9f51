package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/cauldron-dr/cauldron/restore/archive"
	"github.com/cauldron-dr/cauldron/tib"
	"github.com/spf13/cobra"
)

func newKey() *cobra.Command {
	c := &cobra.Command{
		Use:   "key",
		Short: "List, add and remove an encrypted repository's keys (passwords)",
		Long: `An encrypted repository's master key is stored once per password, each in a key file of
its own (keys/ID). Any of them opens the repository. key list shows them, key add stores the
master key under one more password, key remove removes one, key passwd changes the password of
the key that opened the session. Adding and removing keys takes the repository's exclusive lock.
An unencrypted repository has no keys, and a server run with --append-only refuses new ones.`,
	}
	c.AddCommand(newKeyList(), newKeyAdd(false), newKeyAdd(true), newKeyRemove())
	return c
}

// keyJSON is one key file in `key list --json` (restic's field names, and longId and
// unusable).
type keyJSON struct {
	Current  bool   `json:"current"`
	ID       string `json:"id"`
	LongID   string `json:"longId"`
	UserName string `json:"userName,omitempty"`
	HostName string `json:"hostName,omitempty"`
	Created  string `json:"created,omitempty"`
	Unusable string `json:"unusable,omitempty"`
}

func shortKeyID(id string) string { return id[:min(8, len(id))] }

func newKeyList() *cobra.Command {
	var f repoFlags
	var asJSON bool
	c := &cobra.Command{
		Use:   "list --repo DIR [--json]",
		Short: "List the key files; * marks the one that opened this session",
		Long: `List every key file: its ID, the user and host that added it (the user when recorded),
and when. * marks the key that the password given opened. A key file that cannot be used (not a
key file, an unknown key derivation, parameters outside the bounds every client checks) is listed
with the reason; remove it with key remove.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.openEncrypted(cmd)
			if err != nil {
				return err
			}
			keys, err := r.Keys(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				out := make([]keyJSON, 0, len(keys))
				for _, k := range keys {
					j := keyJSON{Current: k.Current, ID: shortKeyID(k.ID), LongID: k.ID, UserName: k.Username, HostName: k.Hostname}
					if !k.Created.IsZero() {
						j.Created = tib.FormatTime(k.Created)
					}
					if k.Unusable != nil {
						j.Unusable = k.Unusable.Error()
					}
					out = append(out, j)
				}
				return printJSON(out)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, " ID\tUSER\tHOST\tCREATED\t")
			for _, k := range keys {
				mark := " "
				if k.Current {
					mark = "*"
				}
				if k.Unusable != nil {
					fmt.Fprintf(w, "%s%s\t\t\t\tunusable: %v\n", mark, shortKeyID(k.ID), k.Unusable)
					continue
				}
				fmt.Fprintf(w, "%s%s\t%s\t%s\t%s\t\n", mark, shortKeyID(k.ID), dash(k.Username), dash(k.Hostname), tib.FormatTime(k.Created))
			}
			return w.Flush()
		},
	}
	f.register(c)
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// newKeyAdd is `key add` or, with passwd, `key passwd`: both store the master key under a new
// password; passwd then removes the key that opened the session.
func newKeyAdd(passwd bool) *cobra.Command {
	var f repoFlags
	var newFile string
	c := &cobra.Command{
		Use:   "add --repo DIR [--new-password-file FILE]",
		Short: "Add a key for a new password (the others keep working)",
		Long: `Store the repository's master key under a new password, in a new key file, with the same
key derivation (Argon2id) parameters as init. The new password is read from
--new-password-file FILE (- for standard input), or asked twice on a terminal; never from the
command line or the environment ($CAULDRON_PASSWORD is the current password).`,
		Args: cobra.NoArgs,
	}
	if passwd {
		c.Use = "passwd --repo DIR [--new-password-file FILE]"
		c.Short = "Change the password: add a key for the new one, then remove the one in use"
		c.Long = `Change the password of the key that opened the session: a key file for the new password is
written first, then the old key file is removed, so that an interruption leaves both passwords
working, never neither. Other keys are unchanged: when the old password also opens another key
file, passwd names it and exits non-zero (remove it with key remove). The new password is read from
--new-password-file FILE (- for standard input), or asked twice on a terminal; never from the
command line or the environment ($CAULDRON_PASSWORD is the current password).`
	}
	c.RunE = func(cmd *cobra.Command, args []string) error {
		if newFile == "-" && f.passwordFile == "-" {
			return errors.New("--password-file - and --new-password-file - both read standard input: give one of them a file")
		}
		r, err := f.openEncrypted(cmd)
		if err != nil {
			return err
		}
		pw, err := archive.NewPassword("--new-password-file", newFile)
		if err != nil {
			return err
		}
		old := r.KeyName()
		if !passwd {
			name, err := r.AddKey(cmd.Context(), pw)
			if err != nil {
				return err
			}
			fmt.Printf("added key %s (keys/%s)\n", shortKeyID(name), name)
			return nil
		}
		name, err := r.ChangePassword(cmd.Context(), pw)
		if err != nil {
			return err
		}
		fmt.Printf("added key %s (keys/%s) and removed key %s (keys/%s)\n", shortKeyID(name), name, shortKeyID(old), old)
		still, err := r.KeysOpenedBy(cmd.Context(), f.password)
		if err != nil {
			return fmt.Errorf("the password is changed, but whether the old one opens other key files is unknown: %w", err)
		}
		if len(still) > 0 {
			return fmt.Errorf("the old password still opens the repository through key file(s) %s: remove them with `cauldron key remove ID` if it must no longer open it",
				"keys/"+strings.Join(still, ", keys/"))
		}
		fmt.Println("the password is changed")
		return nil
	}
	f.register(c)
	c.Flags().StringVar(&newFile, "new-password-file", "", "read the new password from this file, - for standard input (else asked twice on a terminal)")
	return c
}

func newKeyRemove() *cobra.Command {
	var f repoFlags
	c := &cobra.Command{
		Use:   "remove --repo DIR ID",
		Short: "Remove a key file (not the one in use, not the last usable one)",
		Long: `Remove the key file ID (its whole name or a prefix only it has, as key list shows). The key
that opened the session (marked * by key list) and the last usable key are refused: open the
repository with another password to remove a key, or use key passwd to replace the one in use.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := f.openEncrypted(cmd)
			if err != nil {
				return err
			}
			name, err := r.RemoveKey(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Printf("removed key %s (keys/%s)\n", shortKeyID(name), name)
			return nil
		},
	}
	f.register(c)
	return c
}

// openEncrypted opens the repository for a key command, refusing an unencrypted one before
// anything else is asked.
func (f *repoFlags) openEncrypted(cmd *cobra.Command) (*tib.Repository, error) {
	r, err := f.open(cmd)
	if err != nil {
		return nil, err
	}
	if !r.Config().Encrypted {
		return nil, fmt.Errorf("%s: %w", r.Location(), tib.ErrUnencrypted)
	}
	return r, nil
}
