package share

import (
	"net"
	"reflect"
	"strings"
	"testing"
)

func mustParse(t *testing.T, s string) *URL {
	t.Helper()
	u, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestNFSAttempts(t *testing.T) {
	u := mustParse(t, "nfs://filer:20490/export/dr/web01")
	ip, client := net.ParseIP("10.0.2.2"), net.ParseIP("10.0.2.15")
	if got, want := nfsPaths(u.Path), []string{"/export/dr/web01", "/export/dr", "/export"}; !reflect.DeepEqual(got, want) {
		t.Errorf("nfsPaths = %q, want %q", got, want)
	}

	a := nfsAttempt(u, ip, client, "3", "/export/dr")
	want := attempt{label: "NFSv3 /export/dr", fstype: "nfs", source: "filer:/export/dr",
		data:    "vers=3,proto=tcp,addr=10.0.2.2,nolock,mountproto=tcp,mountaddr=10.0.2.2,port=20490,mountport=20490",
		mounted: "/export/dr", sub: "web01", version: "3"}
	if a != want {
		t.Errorf("NFSv3 attempt:\n got %+v\nwant %+v", a, want)
	}
	a = nfsAttempt(u, ip, client, "4.2", u.Path)
	want = attempt{label: "NFSv4.2 /export/dr/web01", fstype: "nfs4", source: "filer:/export/dr/web01",
		data: "vers=4.2,proto=tcp,addr=10.0.2.2,clientaddr=10.0.2.15,port=20490", mounted: "/export/dr/web01", version: "4.2"}
	if a != want {
		t.Errorf("NFSv4.2 attempt:\n got %+v\nwant %+v", a, want)
	}

	// No port: rpcbind finds the services (no port= options); IPv6 needs tcp6.
	u = mustParse(t, "nfs://[fd00::2]/srv")
	a = nfsAttempt(u, net.ParseIP("fd00::2"), net.ParseIP("fd00::f"), "3", "/srv")
	if a.source != "[fd00::2]:/srv" || a.data != "vers=3,proto=tcp6,addr=fd00::2,nolock,mountproto=tcp6,mountaddr=fd00::2" {
		t.Errorf("NFSv3 over IPv6: %+v", a)
	}
	a = nfsAttempt(u, net.ParseIP("fd00::2"), net.ParseIP("fd00::f"), "4.0", "/srv")
	if a.data != "vers=4.0,proto=tcp6,addr=fd00::2,clientaddr=fd00::f" {
		t.Errorf("NFSv4.0 over IPv6: %+v", a)
	}
}

func TestNFSVersions(t *testing.T) {
	for v, want := range map[string][]string{
		"": {"4.2", "4.1", "4.0", "3"}, "3": {"3"}, "4": {"4.2", "4.1", "4.0"}, "4.1": {"4.1"},
	} {
		got, err := versionsFor(v)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("versionsFor(%q) = %q, %v; want %q", v, got, err, want)
		}
	}
	for _, v := range []string{"2", "4.3", "v3", "nfs4"} {
		if _, err := versionsFor(v); err == nil || !strings.Contains(err.Error(), "want 3, 4, 4.0, 4.1 or 4.2") {
			t.Errorf("versionsFor(%q): %v", v, err)
		}
	}
}

func TestSMBAttempts(t *testing.T) {
	u := mustParse(t, "smb://nas:4450/backup/dr/web01")
	ip := net.ParseIP("10.0.2.2")
	got := smbAttempts(u, ip, Options{User: "tech", Password: "p,w,,x", Domain: "CORP"})
	if len(got) != 3 {
		t.Fatalf("%d attempts, want one per dialect: %+v", len(got), got)
	}
	want := attempt{label: "SMB 3.1.1 as tech", fstype: "cifs", source: "//nas/backup",
		data:    "vers=3.1.1,ip=10.0.2.2,port=4450,uid=0,gid=0,user=tech,domain=CORP,pass=p,,w,,,,x",
		mounted: "backup", sub: "dr/web01", version: "3.1.1"}
	if got[0] != want {
		t.Errorf("first attempt:\n got %+v\nwant %+v", got[0], want)
	}
	if got[1].version != "3.0" || got[2].version != "2.1" || !strings.HasPrefix(got[2].data, "vers=2.1,") {
		t.Errorf("dialect order: %+v", got)
	}

	// A guest: anonymous, then the user "guest", in each dialect.
	got = smbAttempts(mustParse(t, "smb://nas/pub"), ip, Options{})
	var labels []string
	for _, a := range got {
		labels = append(labels, a.label)
		if a.anonymous != strings.Contains(a.data, "user=,pass=") {
			t.Errorf("%s: anonymous=%v data %q", a.label, a.anonymous, a.data)
		}
	}
	if want := []string{"SMB 3.1.1 anonymous", "SMB 3.1.1 as guest", "SMB 3.0 anonymous", "SMB 3.0 as guest",
		"SMB 2.1 anonymous", "SMB 2.1 as guest"}; !reflect.DeepEqual(labels, want) {
		t.Errorf("guest attempts %q, want %q", labels, want)
	}
	if got[1].data != "vers=3.1.1,ip=10.0.2.2,uid=0,gid=0,user=guest,pass=" {
		t.Errorf("guest data %q", got[1].data)
	}
}

func TestCheckOptions(t *testing.T) {
	smb := mustParse(t, "smb://nas/share")
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{User: "a", Password: "b\x00c"}, "the password contains a control character"},
		{Options{User: "a\nb"}, "the user name contains a control character"},
		{Options{Password: "x"}, "a password or domain without a user name"},
		{Options{NFSVersion: "5"}, `NFS version "5"`},
	} {
		if err := checkOptions(smb, c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("checkOptions(%+v): %v, want %q", c.o, err, c.want)
		}
	}
	if err := checkOptions(smb, Options{User: "a", Password: "p,; \"'", Domain: "D"}); err != nil {
		t.Error(err)
	}
	// NFS ignores the SMB credentials.
	if err := checkOptions(mustParse(t, "nfs://h/x"), Options{Password: "x"}); err != nil {
		t.Error(err)
	}
}
