package share

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want URL
	}{
		{"nfs://10.0.2.2/export", URL{Scheme: NFS, Host: "10.0.2.2", Path: "/export"}},
		{"nfs://10.0.2.2:2049/export/archives/", URL{Scheme: NFS, Host: "10.0.2.2", Port: 2049, Path: "/export/archives"}},
		{"NFS://filer.example.com//srv//dr/./web01", URL{Scheme: NFS, Host: "filer.example.com", Path: "/srv/dr/web01"}},
		{"nfs://[fd00::5]:20490/x", URL{Scheme: NFS, Host: "fd00::5", Port: 20490, Path: "/x"}},
		{"smb://nas/backup", URL{Scheme: SMB, Host: "nas", Share: "backup"}},
		{"smb://nas:4450/backup/dr/web01", URL{Scheme: SMB, Host: "nas", Port: 4450, Share: "backup", Path: "dr/web01"}},
		{"smb://nas/Backup$/a%20b", URL{Scheme: SMB, Host: "nas", Share: "Backup$", Path: "a b"}},
		{"smb://my_nas.local./share", URL{Scheme: SMB, Host: "my_nas.local.", Share: "share"}},
	} {
		u, err := Parse(c.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", c.in, err)
			continue
		}
		if *u != c.want {
			t.Errorf("Parse(%q) = %+v, want %+v", c.in, *u, c.want)
		}
		// The canonical form parses to the same.
		again, err := Parse(u.String())
		if err != nil || *again != *u {
			t.Errorf("Parse(%q) (String of %q) = %+v, %v", u.String(), c.in, again, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "no share URL given"},
		{"/mnt/archive", "want nfs://HOST/EXPORT or smb://HOST/SHARE"},
		{"http://10.0.2.2/x", `unknown scheme "http"`},
		{"cifs://nas/share", "write smb://"},
		{"nfs:///export", "no server name"},
		{"nfs://10.0.2.2", "no export path"},
		{"nfs://10.0.2.2/", "no export path"},
		{"smb://nas", "no share name"},
		{"smb://nas/", "no share name"},
		{"nfs://10.0.2.2:0/x", `port "0" is not a number from 1 to 65535`},
		{"nfs://10.0.2.2:70000/x", `port "70000"`},
		{"nfs://10.0.2.2:/x", "empty port"},
		{"nfs://10.0.2.2:ab/x", "invalid port"},
		{"smb://user:secret@nas/share", "user name or password in the URL is not used"},
		{"smb://nas/share?vers=1.0", "query"},
		{"smb://nas/share#x", "fragment"},
		{"nfs://10.0.2.2/export/../etc", "may not contain .."},
		{`smb://nas/share\dir`, `use / between path elements`},
		{"smb://nas/a:b", `share name "a:b" contains ':'`},
		{"smb://nas/" + strings.Repeat("s", 81), "longer than SMB allows"},
		{"nfs://bad host/x", "invalid character"},
		{"nfs://ho$t/x", `host "ho$t" is not a valid name`},
		{"nfs://[fe80::1%25eth0]/x", "zoned IPv6"},
		{"nfs://10.0.2.2/a\tb", "control character"},
		{"nfs://10.0.2.2/\xff", "UTF-8"},
		{"nfs://10.0.2.2/%00", "NUL"},
		{"nfs://10.0.2.2/" + strings.Repeat("d/", 600), "longer than NFS allows"},
	} {
		_, err := Parse(c.in)
		if err == nil {
			t.Errorf("Parse(%q): no error, want %q", c.in, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q): %v, want it to say %q", c.in, err, c.want)
		}
		if c.in != "" && !strings.Contains(err.Error(), "share URL") {
			t.Errorf("Parse(%q): %v does not name the URL", c.in, err)
		}
	}
}

// FuzzParse checks that Parse never panics, and that what it accepts is well-formed and comes
// back the same from its own String.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"nfs://10.0.2.2:2049/export/a", "smb://nas/share/dir", "smb://[::1]:445/s",
		"nfs://h/%2e%2e/x", "smb://u@h/s", "nfs://h:1/a//b/./c/", "cifs://x/y", "smb://h/s?x#y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := Parse(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "share URL") && !strings.HasPrefix(err.Error(), "no share URL") {
				t.Fatalf("Parse(%q): error %q does not name the URL", s, err)
			}
			return
		}
		switch u.Scheme {
		case NFS:
			if !strings.HasPrefix(u.Path, "/") || u.Share != "" {
				t.Fatalf("Parse(%q): NFS URL %+v", s, u)
			}
		case SMB:
			if u.Share == "" || strings.HasPrefix(u.Path, "/") {
				t.Fatalf("Parse(%q): SMB URL %+v", s, u)
			}
		default:
			t.Fatalf("Parse(%q): scheme %q", s, u.Scheme)
		}
		if u.Host == "" || u.Port < 0 || u.Port > 65535 {
			t.Fatalf("Parse(%q): host %q port %d", s, u.Host, u.Port)
		}
		for _, e := range strings.Split(u.Path, "/") {
			if e == ".." {
				t.Fatalf("Parse(%q): path %q has ..", s, u.Path)
			}
		}
		again, err := Parse(u.String())
		if err != nil {
			t.Fatalf("Parse(%q) gave %q, which does not parse: %v", s, u.String(), err)
		}
		if *again != *u {
			t.Fatalf("Parse(%q) = %+v; its String %q parses to %+v", s, u, u.String(), again)
		}
	})
}
