package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const kickstartGood = `# web01.ks — recover web01 from last night onto this machine's NVMe disk
repository s3://dr-archive/prod --endpoint https://127.0.0.1:9000 --password-file /run/ks/archive.key
machine web01 --generation latest
freeze-replication
disk disk0 --target /dev/disk/by-id/nvme-SAMSUNG_S64ANS0T --resize proportional
inoculate --drivers /run/media/drivers --enable-inbox storahci,stornvme --disable-services vmware
network --hostname web01-dr --ip 10.1.2.3/24 --gateway 10.1.2.1
target physical
on-success reboot
`

const kickstartBad = `repository s3://dr-archive/prod
disks disk0
disk disk0 --target /dev/sda --resize grow
disk disk0
`

func TestKickstartValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "web01.ks")
	bad := filepath.Join(dir, "bad.ks")
	os.WriteFile(good, []byte(kickstartGood), 0o644)
	os.WriteFile(bad, []byte(kickstartBad), 0o644)

	// A valid file is printed back, defaults written out, and the missing consent noted.
	out := ok(t, nil, "kickstart", "validate", good)
	for _, want := range []string{
		"# " + good + " is valid.",
		"\nfreeze-replication --release remove\n",
		"\ndisk disk0 --target /dev/disk/by-id/nvme-SAMSUNG_S64ANS0T --resize proportional --identity keep\n",
		"\non-failure shell\n",
		"# Note: no `confirm --destroy-data-on-targets` line",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	// What it prints is itself a valid kickstart.
	printed := filepath.Join(dir, "printed.ks")
	os.WriteFile(printed, []byte(out), 0o644)
	ok(t, nil, "kickstart", "validate", printed)

	var res struct {
		Valid     bool
		Kickstart struct {
			Machine struct {
				Name string
				Pos  struct{ Line, Col int }
			}
			Disks []struct{ Source, Resize, Identity string }
		}
	}
	out = ok(t, nil, "kickstart", "validate", "--json", good)
	if err := json.Unmarshal([]byte(out), &res); err != nil || !res.Valid || res.Kickstart.Machine.Name != "web01" ||
		res.Kickstart.Machine.Pos.Line != 3 || len(res.Kickstart.Disks) != 1 || res.Kickstart.Disks[0].Identity != "keep" {
		t.Errorf("--json: %v %+v\n%s", err, res, out)
	}

	// Standard input.
	cmd := exec.Command(bin, "kickstart", "validate", "-")
	cmd.Stdin = strings.NewReader(kickstartGood)
	if b, err := cmd.Output(); err != nil || !strings.HasPrefix(string(b), "# stdin is valid.") {
		t.Errorf("validate -: %v\n%s", err, b)
	}

	// An invalid file: every error on stderr with its position, exit status 2.
	out, errs, code := cauldron(t, nil, "kickstart", "validate", bad)
	want := bad + `:2:1: unknown command "disks"; did you mean "disk"?
` + bad + `:3:39: --resize: want proportional, grow-last or keep, got "grow"
` + bad + `:4:1: disk disk0 given twice (lines 3 and 4)
` + bad + ": missing required command \"machine\" (machine NAME: the name of the machine to recover, as in `cauldron generations`)\n" +
		"cauldron: " + bad + ": 4 errors: not a valid kickstart\n"
	if code != 2 || out != "" || errs != want {
		t.Errorf("exit %d\nstdout %q\nstderr\n%s\nwant\n%s", code, out, errs, want)
	}
	out, _, code = cauldron(t, nil, "kickstart", "validate", "--json", bad)
	var badRes struct {
		Valid  bool
		Errors []struct {
			Pos struct{ Line, Col int }
			Msg string
		}
	}
	if err := json.Unmarshal([]byte(out), &badRes); err != nil || code != 2 || badRes.Valid || len(badRes.Errors) != 4 ||
		badRes.Errors[1].Pos.Line != 3 || badRes.Errors[1].Pos.Col != 39 {
		t.Errorf("--json of a bad file: exit %d, %v %+v\n%s", code, err, badRes, out)
	}

	// Files that cannot be read: one line, exit 1.
	for _, c := range []struct{ arg, want string }{
		{filepath.Join(dir, "none.ks"), "no such file"},
		{dir, "is a directory"},
		{"usb:/web01.ks", "mount the medium"},
	} {
		_, errs, code := cauldron(t, nil, "kickstart", "validate", c.arg)
		if code != 1 || !strings.Contains(errs, c.want) || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("validate %s: exit %d, %q", c.arg, code, errs)
		}
	}
}

func TestKickstartValidateURL(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/web01.ks" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, kickstartGood)
	}))
	defer srv.Close()
	if out := ok(t, nil, "kickstart", "validate", srv.URL+"/web01.ks"); !strings.Contains(out, "machine web01 --generation latest") {
		t.Errorf("validate URL:\n%s", out)
	}
	_, errs, code := cauldron(t, nil, "kickstart", "validate", srv.URL+"/other.ks")
	if code != 1 || !strings.Contains(errs, "404 Not Found: the server has no such file") {
		t.Errorf("exit %d: %s", code, errs)
	}
}
