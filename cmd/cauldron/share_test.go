package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// runShare runs `share ARGS…` in this process and returns its output and error.
func runShare(t *testing.T, args ...string) (string, error) {
	t.Helper()
	c := newShare()
	var out bytes.Buffer
	c.SetOut(&out)
	c.SetErr(&out)
	c.SetArgs(args)
	c.SilenceUsage, c.SilenceErrors = true, true
	err := c.ExecuteContext(context.Background())
	return out.String(), err
}

func TestShareFlags(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret,x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := shareFlags{user: "tech", passwordFile: pw, domain: "CORP", nfsVersion: "3", readOnly: true}
	o, err := f.options()
	if err != nil {
		t.Fatal(err)
	}
	if o.User != "tech" || o.Password != "s3cret,x" || o.Domain != "CORP" || o.NFSVersion != "3" || !o.ReadOnly {
		t.Errorf("options %+v", o)
	}

	mnt := filepath.Join(dir, "mnt")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"mount", "smb://nas/share", mnt, "--password-file", pw}, "--password-file needs --user"},
		{[]string{"mount", "smb://nas/share", mnt, "--domain", "CORP"}, "--domain needs --user"},
		{[]string{"mount", "smb://nas/share", mnt, "--user", "u", "--password-file", filepath.Join(dir, "none")}, "--password-file: open"},
		{[]string{"mount", "ftp://nas/share", mnt}, `unknown scheme "ftp"`},
		{[]string{"mount", "nfs://10.0.2.2/x", mnt, "--nfs-version", "5"}, `NFS version "5": want 3, 4, 4.0, 4.1 or 4.2`},
		{[]string{"mount", "nfs://10.0.2.2/x"}, "accepts 2 arg(s)"},
		{[]string{"umount", dir}, "nothing is mounted there"},
		{[]string{"umount", "/"}, "not an NFS or SMB share"},
	} {
		out, err := runShare(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("share %s: %v (output %q); want %q", strings.Join(c.args, " "), err, out, c.want)
		}
	}

	// A server that is not there: the message names the URL and the address.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	url := "nfs://127.0.0.1:" + port + "/export"
	if _, err := runShare(t, "mount", url, mnt); err == nil || !strings.Contains(err.Error(), "mounting "+url) ||
		!strings.Contains(err.Error(), "nothing accepts connections on 127.0.0.1:"+port) {
		t.Errorf("share mount to a closed port: %v", err)
	}
}
