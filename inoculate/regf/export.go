package regf

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"
)

// Export writes the key at path and everything below it as .reg text ("Windows Registry Editor
// Version 5.00") in exactly the form hivexregedit --export produces, so the two can be compared
// byte for byte: keys as [\path], subkeys and values sorted by name in code-point order, values
// as dword:xxxxxxxx (REG_DWORD of 4 bytes) or hex(T):xx,xx,… on one line, and each name printed
// as Latin-1 bytes when all its characters are below U+0100, else as UTF-8 (what Perl's print
// does with a character string on a raw handle).
func (h *Hive) Export(w io.Writer, path string) error {
	k, err := h.Lookup(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	bw.WriteString("Windows Registry Editor Version 5.00\n\n")
	h.exportBudget = len(h.buf) / (4 + nkName)
	if err := exportKey(bw, k, k.Path(), map[uint32]bool{}); err != nil {
		return err
	}
	return bw.Flush()
}

func exportKey(w *bufio.Writer, k Key, path string, seen map[uint32]bool) error {
	// A damaged hive can list a key below itself (a loop), or list one key under several
	// parents, which hivexregedit prints each time, and so do we; the total is bounded by the
	// number of key cells the file could hold, so the output stays finite.
	if seen[k.off] {
		return cellErr(k.off, "key %s is listed below itself", path)
	}
	seen[k.off] = true
	defer delete(seen, k.off)
	if k.h.exportBudget--; k.h.exportBudget < 0 {
		return cellErr(k.off, "more keys are listed than the hive can hold")
	}
	w.WriteString("[")
	w.WriteString(perlBytes(path))
	w.WriteString("]\n")
	vals, err := k.Values()
	if err != nil {
		return err
	}
	type nv struct {
		name string
		typ  uint32
		data []byte
	}
	var vs []nv
	for _, v := range vals {
		d, err := v.Data()
		if err != nil {
			return err
		}
		vs = append(vs, nv{v.Name(), v.Type(), d})
	}
	sort.SliceStable(vs, func(i, j int) bool { return vs[i].name < vs[j].name })
	for _, v := range vs {
		if v.name == "" {
			w.WriteString("@=")
		} else {
			w.WriteString(`"`)
			w.WriteString(perlBytes(escapeQuotes(v.name)))
			w.WriteString(`"=`)
		}
		if v.typ == RegDword && len(v.data) == 4 {
			fmt.Fprintf(w, "dword:%08x\n", le32(v.data))
			continue
		}
		fmt.Fprintf(w, "hex(%x):", v.typ)
		for i, b := range v.data {
			if i > 0 {
				w.WriteByte(',')
			}
			const hexd = "0123456789abcdef"
			w.WriteByte(hexd[b>>4])
			w.WriteByte(hexd[b&15])
		}
		w.WriteByte('\n')
	}
	w.WriteString("\n")
	subs, err := k.Subkeys()
	if err != nil {
		return err
	}
	type nk struct {
		name string
		k    Key
	}
	ns := make([]nk, len(subs))
	for i, s := range subs {
		ns[i] = nk{s.Name(), s}
	}
	sort.SliceStable(ns, func(i, j int) bool { return ns[i].name < ns[j].name })
	for _, s := range ns {
		p := path + `\` + s.name
		if path == `\` {
			p = `\` + s.name
		}
		if err := exportKey(w, s.k, p, seen); err != nil {
			return err
		}
	}
	return nil
}

func escapeQuotes(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return strings.ReplaceAll(s, `"`, `\"`)
}

// perlBytes encodes s as Perl prints a character string to a handle without an encoding layer.
func perlBytes(s string) string {
	for _, r := range s {
		if r > 0xFF {
			return s
		}
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		b = append(b, byte(r))
	}
	return string(b)
}
