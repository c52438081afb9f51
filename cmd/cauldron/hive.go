package main

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode/utf16"

	"github.com/cauldron-dr/cauldron/inoculate/regf"
	"github.com/spf13/cobra"
)

// newHive is `cauldron hive`: offline Windows registry hives (check, export, import, get, set,
// delete, replay), on top of inoculate/regf.
func newHive() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hive",
		Short: "Read, check and edit offline Windows registry hives",
	}
	cmd.AddCommand(newHiveCheck(), newHiveExport(), newHiveImport(), newHiveGet(), newHiveSet(),
		newHiveDelete(), newHiveReplay())
	return cmd
}

func newHiveCheck() *cobra.Command {
	return &cobra.Command{
		Use:   "check HIVE",
		Short: "Check a hive against Windows' rules; exit status 0 only for a valid, clean hive",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := regf.Open(args[0])
			if err != nil {
				return err
			}
			probs := h.Check()
			for _, p := range probs {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			if len(probs) > 0 {
				return fmt.Errorf("%s: %d problem(s)", args[0], len(probs))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: ok\n", args[0])
			return nil
		},
	}
}

func newHiveExport() *cobra.Command {
	return &cobra.Command{
		Use:   "export HIVE [KEY]",
		Short: "Print a key and everything below it as .reg text (as hivexregedit --export does)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := regf.Open(args[0])
			if err != nil {
				return err
			}
			key := `\`
			if len(args) == 2 {
				key = args[1]
			}
			return h.Export(cmd.OutOrStdout(), key)
		},
	}
}

// openForEdit opens a hive that is about to be changed. A dirty hive has its transaction logs
// replayed first (the edit then writes the recovered data too); without good logs it is refused,
// since editing it would silently drop the changes only the logs hold.
func openForEdit(path string, out io.Writer) (*regf.Hive, error) {
	h, err := regf.Open(path)
	if err != nil {
		return nil, err
	}
	if h.Dirty() {
		n, err := h.ReplayFiles(path)
		if err != nil {
			return nil, fmt.Errorf("%w; refusing to edit %s", err, path)
		}
		fmt.Fprintf(out, "%s was dirty: replayed %d log entries or pages from its transaction logs\n", path, n)
	}
	if probs := h.Check(); len(probs) > 0 {
		return nil, fmt.Errorf("%s fails the checker, refusing to edit it: %v (and %d more)", path, probs[0], len(probs)-1)
	}
	return h, nil
}

// saveChecked checks the edited hive before writing it, so a bug can never reach the disk.
func saveChecked(h *regf.Hive) error {
	if probs := h.Check(); len(probs) > 0 {
		return fmt.Errorf("the edited hive fails the checker, not writing it: %v", probs[0])
	}
	return h.Save("")
}

func newHiveImport() *cobra.Command {
	var prefix string
	cmd := &cobra.Command{
		Use:   "import HIVE FILE.reg",
		Short: "Merge .reg text into a hive, creating parent keys",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[1])
			if err != nil {
				return err
			}
			defer f.Close()
			ops, err := regf.ParseReg(f, prefix)
			if err != nil {
				return fmt.Errorf("%s: %w", args[1], err)
			}
			h, err := openForEdit(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := h.Import(ops); err != nil {
				return fmt.Errorf("%s: %w", args[1], err)
			}
			return saveChecked(h)
		},
	}
	cmd.Flags().StringVar(&prefix, "prefix", "", `strip this prefix from key paths (e.g. 'HKEY_LOCAL_MACHINE\SYSTEM')`)
	return cmd
}

func newHiveGet() *cobra.Command {
	return &cobra.Command{
		Use:   `get HIVE 'KEY\PATH' [VALUE]`,
		Short: "Print a value (strings as text, numbers in decimal, else hex), or a key's values and subkeys",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := regf.Open(args[0])
			if err != nil {
				return err
			}
			k, err := h.Lookup(args[1])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(args) == 3 {
				v, ok, err := k.Value(args[2])
				if err != nil {
					return err
				}
				if !ok {
					return fmt.Errorf("%s has no value %q", args[1], args[2])
				}
				d, err := v.Data()
				if err != nil {
					return err
				}
				fmt.Fprintln(out, formatValue(v.Type(), d))
				return nil
			}
			vals, err := k.Values()
			if err != nil {
				return err
			}
			for _, v := range vals {
				d, err := v.Data()
				if err != nil {
					return err
				}
				fmt.Fprintf(out, "%q %s %s\n", v.Name(), typeName(v.Type()), strings.ReplaceAll(formatValue(v.Type(), d), "\n", " "))
			}
			subs, err := k.Subkeys()
			if err != nil {
				return err
			}
			for _, s := range subs {
				fmt.Fprintf(out, "%s\\\n", s.Name())
			}
			return nil
		},
	}
}

var typeNames = map[string]uint32{
	"REG_NONE": regf.RegNone, "REG_SZ": regf.RegSz, "REG_EXPAND_SZ": regf.RegExpandSz,
	"REG_BINARY": regf.RegBinary, "REG_DWORD": regf.RegDword, "REG_MULTI_SZ": regf.RegMultiSz,
	"REG_QWORD": regf.RegQword,
}

func typeName(t uint32) string {
	for n, v := range typeNames {
		if v == t {
			return n
		}
	}
	return fmt.Sprintf("0x%x", t)
}

func utf16String(d []byte) string {
	u := make([]uint16, len(d)/2)
	for i := range u {
		u[i] = binary.LittleEndian.Uint16(d[2*i:])
	}
	return string(utf16.Decode(u))
}

func formatValue(t uint32, d []byte) string {
	switch {
	case (t == regf.RegSz || t == regf.RegExpandSz) && len(d)%2 == 0:
		return strings.TrimRight(utf16String(d), "\x00")
	case t == regf.RegMultiSz && len(d)%2 == 0:
		return strings.Join(strings.Split(strings.TrimRight(utf16String(d), "\x00"), "\x00"), "\n")
	case t == regf.RegDword && len(d) == 4:
		return strconv.FormatUint(uint64(binary.LittleEndian.Uint32(d)), 10)
	case t == regf.RegQword && len(d) == 8:
		return strconv.FormatUint(binary.LittleEndian.Uint64(d), 10)
	}
	return hex.EncodeToString(d)
}

func utf16z(s string) []byte {
	var b []byte
	for _, u := range utf16.Encode([]rune(s)) {
		b = binary.LittleEndian.AppendUint16(b, u)
	}
	return append(b, 0, 0)
}

// parseData turns command-line DATA into value bytes for TYPE.
func parseData(typ string, data []string) (uint32, []byte, error) {
	t, ok := typeNames[strings.ToUpper(typ)]
	if !ok {
		return 0, nil, fmt.Errorf("unknown type %q (REG_SZ, REG_EXPAND_SZ, REG_MULTI_SZ, REG_DWORD, REG_QWORD, REG_BINARY, REG_NONE)", typ)
	}
	one := func() (string, error) {
		if len(data) != 1 {
			return "", fmt.Errorf("%s takes exactly one DATA argument, got %d", typ, len(data))
		}
		return data[0], nil
	}
	switch t {
	case regf.RegSz, regf.RegExpandSz:
		s, err := one()
		return t, utf16z(s), err
	case regf.RegMultiSz:
		var b []byte
		for _, s := range data {
			if s == "" {
				return 0, nil, fmt.Errorf("REG_MULTI_SZ strings cannot be empty (an empty string ends the list)")
			}
			b = append(b, utf16z(s)...)
		}
		return t, append(b, 0, 0), nil
	case regf.RegDword, regf.RegQword:
		s, err := one()
		if err != nil {
			return 0, nil, err
		}
		bits := 32
		if t == regf.RegQword {
			bits = 64
		}
		v, err := strconv.ParseUint(s, 0, bits)
		if err != nil {
			return 0, nil, fmt.Errorf("%s: %w", typ, err)
		}
		if t == regf.RegDword {
			return t, binary.LittleEndian.AppendUint32(nil, uint32(v)), nil
		}
		return t, binary.LittleEndian.AppendUint64(nil, v), nil
	case regf.RegBinary, regf.RegNone:
		h := strings.NewReplacer(",", "", " ", "", ":", "").Replace(strings.Join(data, ""))
		b, err := hex.DecodeString(h)
		if err != nil {
			return 0, nil, fmt.Errorf("%s DATA must be hex bytes: %w", typ, err)
		}
		if b == nil {
			b = []byte{}
		}
		return t, b, nil
	}
	return 0, nil, fmt.Errorf("unsupported type %q", typ)
}

func newHiveSet() *cobra.Command {
	return &cobra.Command{
		Use:   `set HIVE 'KEY\PATH' NAME TYPE DATA...`,
		Short: "Set a value (the key is created if missing); NAME '' is the default value",
		Args:  cobra.MinimumNArgs(4),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, d, err := parseData(args[3], args[4:])
			if err != nil {
				return err
			}
			h, err := openForEdit(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if err := h.SetValue(args[1], args[2], t, d); err != nil {
				return err
			}
			return saveChecked(h)
		},
	}
}

func newHiveDelete() *cobra.Command {
	return &cobra.Command{
		Use:   `delete HIVE 'KEY\PATH' [VALUE]`,
		Short: "Delete a value, or a key with everything below it",
		Args:  cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := openForEdit(args[0], cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			if len(args) == 3 {
				err = h.DeleteValue(args[1], args[2])
			} else {
				err = h.DeleteKey(args[1])
			}
			if err != nil {
				return err
			}
			return saveChecked(h)
		},
	}
}

func newHiveReplay() *cobra.Command {
	return &cobra.Command{
		Use:   "replay HIVE",
		Short: "Apply HIVE.LOG1/.LOG2 to a dirty hive and leave it clean (logs emptied)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			h, err := regf.Open(args[0])
			if err != nil {
				return err
			}
			if !h.Dirty() {
				fmt.Fprintf(cmd.OutOrStdout(), "%s is clean: nothing to replay\n", args[0])
				return nil
			}
			n, err := h.ReplayFiles(args[0])
			if err != nil {
				return err
			}
			if err := saveChecked(h); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: replayed %d log entries or pages; the hive is clean\n", args[0], n)
			return nil
		},
	}
}
