package kickstart

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse: Parse never panics; it returns a kickstart or an *ErrorList, never both and never
// neither; errors are sorted with positions inside the input; and a kickstart survives Format and
// Parse unchanged.
func FuzzParse(f *testing.F) {
	f.Add(designExample)
	f.Add(base + "disk disk0 --target size:1G-2T --resize=keep\nignoredisk --drives sda,serial:x\n")
	f.Add(base + "network --device eth0 --ip 10.0.0.2/8 --gateway 10.0.0.1 --nameserver 1.1.1.1\n")
	f.Add(base + "target vm --hypervisor libvirt --memory 2G --output-dir /o\ndisk d --size 3G\n")
	f.Add(base + "freeze-replication --release resume\ninoculate --skip\nconfirm --destroy-data-on-targets\n")
	f.Add("machine \"a\\\"b\" 'c' \\\n --generation 2026-01-02T03:04\nrepository usb:/r # c\n")
	f.Add("repository s3://bkt/p --endpoint https://h --insecure-tls\nmachine m\nreport --to usb:/r\n")
	f.Fuzz(func(t *testing.T, src string) {
		ks, err := Parse("f.ks", strings.NewReader(src))
		if err != nil {
			var list *ErrorList
			if ks != nil || !errors.As(err, &list) || len(list.Errors) == 0 {
				t.Fatalf("kickstart %v with error %v", ks, err)
			}
			lines := strings.Count(src, "\n") + 1
			for i, e := range list.Errors {
				if e.Pos.Line < 0 || e.Pos.Line > lines || e.Pos.Line > 0 && e.Pos.Col < 1 || e.Msg == "" {
					t.Fatalf("error %q at %v outside the input (%d lines)", e.Msg, e.Pos, lines)
				}
				if i > 0 {
					p := list.Errors[i-1].Pos
					if e.Pos.Line > 0 && (p.Line > e.Pos.Line || p.Line == e.Pos.Line && p.Col > e.Pos.Col) || p.Line == 0 && e.Pos.Line > 0 {
						t.Fatalf("errors not sorted: %v before %v", p, e.Pos)
					}
				}
			}
			return
		}
		if ks == nil {
			t.Fatal("no kickstart and no error")
		}
		text := ks.Format()
		again, err := Parse("f.ks", strings.NewReader(text))
		if err != nil {
			t.Fatalf("Format wrote what Parse refuses:\n%s\n%v", text, err)
		}
		a, b := *ks, *again
		clearPos(&a)
		clearPos(&b)
		if !reflect.DeepEqual(&a, &b) {
			t.Fatalf("round trip changed it:\n%s\n got %#v\nwant %#v", text, &b, &a)
		}
	})
}
