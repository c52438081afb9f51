package kickstart

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// errorsOf parses src and returns its errors as text; the test fails when it parses.
func errorsOf(t *testing.T, src string) []string {
	t.Helper()
	ks, err := Parse("t.ks", strings.NewReader(src))
	var list *ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("%s\nparsed (%v): %+v", src, err, ks)
	}
	if ks != nil {
		t.Errorf("a kickstart came back with the errors")
	}
	var out []string
	for _, e := range list.Errors {
		out = append(out, e.Error())
	}
	return out
}

// TestBadInput gives each mistake its exact message and position. Sources that do not begin with
// "repository" get "repository /r\nmachine m\n" in front, so their lines start at 3.
func TestBadInput(t *testing.T) {
	for _, c := range []struct {
		src  string
		want []string
	}{
		// Commands and the file as a whole.
		{"", []string{
			`t.ks: missing required command "repository" (repository URL|PATH: where the repository is: an absolute path, usb:/PATH, http(s)://…, s3://BUCKET/PREFIX, nfs://SERVER/EXPORT/PATH or smb://SERVER/SHARE/PATH)`,
			"t.ks: missing required command \"machine\" (machine NAME: the name of the machine to recover, as in `cauldron generations`)"}},
		{"repository /r\ndisks disk0", []string{
			`t.ks:2:1: unknown command "disks"; did you mean "disk"?`,
			"t.ks: missing required command \"machine\" (machine NAME: the name of the machine to recover, as in `cauldron generations`)"}},
		{"reboot", []string{`t.ks:3:1: unknown command "reboot"; did you mean "on-success reboot"?`}},
		{"clearpart --all", []string{`t.ks:3:1: unknown command "clearpart"; partitions come from the captured generation; map disks with "disk SOURCE --target …"`}},
		{"frobnicate", []string{`t.ks:3:1: unknown command "frobnicate"`}},
		{"%post\necho hi\n%end", []string{
			`t.ks:3:1: sections such as %pre, %post and %packages are not part of Cauldron kickstarts, got "%post"`,
			`t.ks:4:1: unknown command "echo"`,
			`t.ks:5:1: sections such as %pre, %post and %packages are not part of Cauldron kickstarts, got "%end"`}},
		{"--target /dev/sda", []string{"t.ks:3:1: a line begins with a command, got option --target"}},
		{"repository /r\nmachine a\nmachine b", []string{"t.ks:3:1: machine given twice (lines 2 and 3)"}},
		{"disk disk0 --target /dev/sda\non-success reboot\n\ndisk disk0", []string{"t.ks:6:1: disk disk0 given twice (lines 3 and 6)"}},
		// Options.
		{"disk disk0 --taget /dev/sda", []string{"t.ks:3:12: unknown option --taget for disk; did you mean --target?"}},
		{"disk disk0 --hostname x", []string{"t.ks:3:12: --hostname is an option of network, not of disk"}},
		{"disk disk0 --frob", []string{"t.ks:3:12: unknown option --frob for disk; it takes --target, --resize, --identity, --size"}},
		{"on-success reboot --now", []string{"t.ks:3:19: unknown option --now for on-success (on-success takes no options)"}},
		{"disk disk0 -t /dev/sda", []string{"t.ks:3:12: -t: options begin with two dashes; quote a value that begins with a dash"}},
		{"disk disk0 -target /dev/sda", []string{"t.ks:3:12: -target: options begin with two dashes (--target); quote a value that begins with a dash"}},
		{"inoculate --skip=yes", []string{"t.ks:3:11: --skip takes no value (it is a flag: give it, or leave it out)"}},
		{"disk disk0 --target", []string{"t.ks:3:20: --target: want a value (DEVICE|PATH|serial:S|wwn:W|size:…) at the end of the line"}},
		{"disk disk0 --target --resize keep", []string{"t.ks:3:21: --target: want a value (DEVICE|PATH|serial:S|wwn:W|size:…), got option --resize"}},
		{"disk disk0 --target= ", []string{"t.ks:3:12: --target: empty value; want DEVICE|PATH|serial:S|wwn:W|size:…"}},
		{`disk disk0 --target ""`, []string{"t.ks:3:21: --target: empty value; want DEVICE|PATH|serial:S|wwn:W|size:…"}},
		{"disk disk0 --resize keep --resize=grow-last", []string{"t.ks:3:26: --resize given twice (at 3:12 and 3:26)"}},
		{"disk", []string{"t.ks:3:5: disk: want SOURCE (the disk's name in the generation, such as disk0)"}},
		{"disk disk0 disk1", []string{`t.ks:3:12: disk: unexpected argument "disk1" (disk takes one SOURCE)`}},
		{"freeze-replication now", []string{`t.ks:3:20: freeze-replication takes no arguments, got "now"`}},
		// Values.
		{"disk disk0 --resize grow", []string{`t.ks:3:21: --resize: want proportional, grow-last or keep, got "grow"`}},
		{"disk disk0 --resize=grow", []string{`t.ks:3:21: --resize: want proportional, grow-last or keep, got "grow"`}},
		{"disk disk0 --identity=new", []string{`t.ks:3:23: --identity: want keep or renew, got "new"`}},
		{"disk disk0 --target sdb", []string{`t.ks:3:21: --target: want an absolute path (/dev/… or an image file), serial:S, wwn:W, size:biggest, size:smallest or size:MIN-MAX, got "sdb"; did you mean "/dev/sdb"?`}},
		{"disk disk0 --target serial:", []string{"t.ks:3:21: --target: serial:: empty; want serial:VALUE as `cauldron layout show` prints it"}},
		{"disk disk0 --target size:big", []string{`t.ks:3:21: --target: "size:big": want size:biggest, size:smallest or size:MIN-MAX (such as size:450G-520G)`}},
		{"disk disk0 --target size:500G-400G", []string{`t.ks:3:21: --target: "size:500G-400G": the smallest size is bigger than the biggest`}},
		{"disk disk0 --target size:1X-2G", []string{`t.ks:3:21: --target: "size:1X-2G": "1X": unknown unit "X"; want K, M, G, T (powers of 1024) or KB, MB, GB, TB (powers of 1000)`}},
		{"disk disk0 --size 10G", []string{"t.ks:3:12: --size sets the size of a new VM disk; with target physical the target disk's own size counts"}},
		{"target vm --output-dir /o\ndisk disk0 --size 1K", []string{"t.ks:4:19: --size: 1K is smaller than 1 MiB"}},
		{"disk disk0 --target /dev/sda\ndisk disk1 --target=/dev/sda", []string{"t.ks:4:21: target /dev/sda given twice (disk disk0 on line 3 and disk disk1 on line 4)"}},
		{"disk disk0 --target size:biggest\ndisk disk1 --target size:BIGGEST", []string{"t.ks:4:21: target size:biggest given twice (disk disk0 on line 3 and disk disk1 on line 4)"}},
		{"ignoredisk --drives sda,serial:X\ndisk disk0 --target /dev/sda", []string{"t.ks:4:21: --target /dev/sda is listed in ignoredisk --drives (line 3)"}},
		{"ignoredisk --drives sda,,size:biggest", []string{
			`t.ks:3:25: --drives: empty item in the list "sda,,size:biggest"`,
			`t.ks:3:26: --drives: "size:biggest": size: cannot name a disk here; want an absolute path (/dev/…), serial:S or wwn:W`}},
		{"ignoredisk", []string{"t.ks:3:1: ignoredisk: want --drives DISK,DISK… (disks never to touch)"}},
		{"target vm --output-dir /o\ndisk disk0 --target serial:X", []string{"t.ks:4:21: --target serial:X picks a disk of this machine; target vm writes image files: give a path or leave --target out"}},
		// repository
		{"repository repo\nmachine m", []string{`t.ks:1:12: repository: "repo" is not an absolute path; want an absolute path, usb:/PATH, http(s)://…, s3://BUCKET/PREFIX, nfs://SERVER/EXPORT or smb://SERVER/SHARE`}},
		{"repository ftp://x/y\nmachine m", []string{`t.ks:1:12: repository: "ftp://x/y": ftp is not supported; want an absolute path, usb:/PATH, http(s)://…, s3://BUCKET/PREFIX, nfs://SERVER/EXPORT or smb://SERVER/SHARE`}},
		{"repository cdrom:/r\nmachine m", []string{`t.ks:1:12: repository: "cdrom:/r": cdrom locations cannot be used here; want an absolute path, usb:/PATH, http(s)://…, s3://BUCKET/PREFIX, nfs://SERVER/EXPORT or smb://SERVER/SHARE`}},
		{"repository s3://Bad_Bucket/x\nmachine m", []string{`t.ks:1:12: repository: S3 location "s3://Bad_Bucket/x": bucket name "Bad_Bucket": upper-case letters are not allowed ('B' at position 1)`}},
		{"repository https://user:pw@h/r\nmachine m", []string{`t.ks:1:12: repository: "https://user:xxxxx@h/r" carries a user name or password in the URL; keep secrets out of locations (they show in logs and kickstart files)`}},
		{"repository http:///r\nmachine m", []string{`t.ks:1:12: repository: "http:///r" names no host`}},
		{"repository /r --password-file pw --password-env=PW\nmachine m", []string{
			`t.ks:1:31: --password-file: want an absolute path (it is read inside the boot environment, which has no working directory of yours), got "pw"`,
			"t.ks:1:34: give --password-file or --password-env, not both"}},
		{"repository /r --password-env 1PW\nmachine m", []string{`t.ks:1:30: --password-env: want the name of an environment variable (letters, digits, _), got "1PW"`}},
		{"repository s3://bkt --endpoint ftp://h\nmachine m", []string{`t.ks:1:32: --endpoint: "ftp://h": ftp is not supported; want http(s)://…`}},
		{"repository /r --endpoint https://x\nmachine m", []string{"t.ks:1:15: --endpoint is for s3:// repositories (an S3-compatible server's URL), not for /r"}},
		{"repository s3://bkt --endpoint minio:9000\nmachine m", []string{`t.ks:1:32: --endpoint: want the server's URL, such as https://minio:9000, got "minio:9000"`}},
		{"repository http://h/r --insecure-tls\nmachine m", []string{"t.ks:1:23: --insecure-tls: http://h/r is not reached over TLS, so there is no certificate to skip checking"}},
		{"repository s3://bkt --endpoint http://h --insecure-tls\nmachine m", []string{"t.ks:1:41: --insecure-tls: s3://bkt is not reached over TLS, so there is no certificate to skip checking"}},
		{"repository nfs:///export\nmachine m", []string{`t.ks:1:12: repository: "nfs:///export" names no server`}},
		{"repository nfs://filer\nmachine m", []string{`t.ks:1:12: repository: "nfs://filer" names no export; want nfs://SERVER/EXPORT/PATH`}},
		{"repository smb://filer/\nmachine m", []string{`t.ks:1:12: repository: "smb://filer/" names no share; want smb://SERVER/SHARE/PATH`}},
		{"repository smb://bob:pw@filer/s\nmachine m", []string{`t.ks:1:12: repository: "smb://bob:xxxxx@filer/s" carries a user name or password in the URL; keep secrets out of locations (use --credentials-file)`}},
		{"repository smb://filer/s?x=1\nmachine m", []string{`t.ks:1:12: repository: "smb://filer/s?x=1": a share URL takes no ?query or #fragment`}},
		{"repository /r --credentials-file /c\nmachine m", []string{"t.ks:1:15: --credentials-file is for s3:// (access keys), smb:// and http(s):// (user name and password) repositories, not for /r"}},
		{"repository smb://f/s --credentials-file c\nmachine m", []string{`t.ks:1:41: --credentials-file: want an absolute path (it is read inside the boot environment, which has no working directory of yours), got "c"`}},
		// machine
		{"repository /r\nmachine a/b", []string{`t.ks:2:9: machine name: "a/b": control characters and slashes are not allowed`}},
		{"repository /r\nmachine m --generation yesterday", []string{`t.ks:2:24: --generation: want latest, a generation ID (at least 4 hex digits) or a time such as 2026-11-21T02:00:00Z, got "yesterday"`}},
		{"repository /r\nmachine m --generation abc", []string{`t.ks:2:24: --generation: want at least 4 hex digits of a generation ID, got "abc"`}},
		{"repository /r\nmachine m --generation 2026-13-01", []string{`t.ks:2:24: --generation: want latest, a generation ID (at least 4 hex digits) or a time such as 2026-11-21T02:00:00Z, got "2026-13-01"`}},
		{"repository /r\nmachine", []string{"t.ks:2:8: machine: want NAME (the name of the machine to recover, as in `cauldron generations`)"}},
		// freeze-replication
		{"freeze-replication --release keep", []string{`t.ks:3:30: --release: want remove or resume, got "keep"`}},
		// inoculate
		{"inoculate --skip --drivers /d --hardware nvme", []string{
			"t.ks:3:18: inoculate --skip leaves the restored system as it was; --drivers would change it",
			"t.ks:3:31: inoculate --skip leaves the restored system as it was; --hardware would change it"}},
		{"inoculate --drivers drivers", []string{`t.ks:3:21: --drivers: want an absolute path (it is read inside the boot environment, which has no working directory of yours), got "drivers"`}},
		{"inoculate --hardware virtio", []string{`t.ks:3:22: --hardware: want detect, kvm-virtio-blk, kvm-virtio-scsi, vmware-pvscsi, hyperv, ahci or nvme, got "virtio"`}},
		{"inoculate --enable-inbox storahci,stor/nvme", []string{`t.ks:3:35: --enable-inbox: want a driver's service name such as storahci or stornvme, got "stor/nvme"`}},
		{"inoculate --disable-services vmware,virtualbox", []string{`t.ks:3:37: --disable-services: want vmware, hyperv or xen, got "virtualbox"`}},
		// network
		{"network", []string{"t.ks:3:1: network without options changes nothing; give --hostname, --bootproto or --ip"}},
		{"network --ip 10.1.2.3", []string{`t.ks:3:14: --ip: want ADDR/PREFIX such as 10.1.2.3/24, got "10.1.2.3" (the prefix length is missing)`}},
		{"network --ip 10.1.2.300/24", []string{`t.ks:3:14: --ip: want ADDR/PREFIX such as 10.1.2.3/24, got "10.1.2.300/24"`}},
		{"network --bootproto dhcp --ip 10.1.2.3/24", []string{"t.ks:3:26: --ip gives a static address, but --bootproto is dhcp"}},
		{"network --bootproto static", []string{"t.ks:3:9: --bootproto static needs --ip ADDR/PREFIX"}},
		{"network --bootproto bootp", []string{`t.ks:3:21: --bootproto: want dhcp or static, got "bootp"`}},
		{"network --ip 10.1.2.3/24 --gateway 10.1.3.1", []string{"t.ks:3:36: --gateway 10.1.3.1 is outside the network of --ip 10.1.2.3/24"}},
		{"network --ip 10.1.2.3/24 --gateway 10.1.2.3", []string{"t.ks:3:36: --gateway 10.1.2.3 is the address itself"}},
		{"network --ip 10.1.2.3/24 --gateway 2001:db8::1", []string{"t.ks:3:36: --gateway 2001:db8::1 and --ip 10.1.2.3/24 are not of the same IP version"}},
		{"network --gateway 10.1.2.1", []string{"t.ks:3:9: --gateway needs a static address (--ip ADDR/PREFIX)"}},
		{"network --gateway gw", []string{
			"t.ks:3:9: --gateway needs a static address (--ip ADDR/PREFIX)",
			`t.ks:3:19: --gateway: want an IP address, got "gw"`}},
		{"network --nameserver 10.0.0.1,dns", []string{`t.ks:3:31: --nameserver: want an IP address, got "dns"`}},
		{"network --hostname web_01", []string{`t.ks:3:20: --hostname: want a host name (letters, digits and hyphens, dot-separated labels of at most 63), got "web_01"`}},
		{"network --device 52:54:00:zz:00:01 --hostname h", []string{`t.ks:3:18: --device: "52:54:00:zz:00:01" is not a MAC address`}},
		{"network --device a/b --hostname h", []string{`t.ks:3:18: --device: want an interface name (at most 15 letters, digits, '.', '-', '_') or a MAC address, got "a/b"`}},
		{"network --activate --hostname h", []string{"t.ks:3:9: --activate configures the boot environment: it needs --bootproto dhcp or --ip ADDR/PREFIX"}},
		{"network --device eth0 --bootproto dhcp\nnetwork --device=eth0 --hostname h", []string{"t.ks:4:1: network --device eth0 given twice (lines 3 and 4)"}},
		{"network --bootproto dhcp\nnetwork --ip 10.0.0.2/8", []string{"t.ks:4:1: two network commands without --device (lines 3 and 4): name the interface of each"}},
		{"network --device a --hostname h1\nnetwork --device b --hostname h2", []string{"t.ks:4:1: network --hostname given twice (lines 3 and 4): a system has one host name"}},
		// target
		{"target cloud", []string{`t.ks:3:8: target: want physical or vm, got "cloud"`}},
		{"target physical --format qcow2", []string{"t.ks:3:17: --format is for target vm; target physical writes the machine's own disks"}},
		{"target vm", []string{"t.ks:3:1: target vm: want --output-dir DIR (where the disk images are written)"}},
		{"target vm --hypervisor vsphere --format qcow2 --output-dir /o", []string{"t.ks:3:41: --format qcow2: vsphere takes vmdk disks"}},
		{"target vm --hypervisor kvm --output-dir /o", []string{`t.ks:3:24: --hypervisor: want libvirt or vsphere, got "kvm"`}},
		{"target vm --uri qemu:///system --output-dir /o", []string{"t.ks:3:11: --uri is the hypervisor's address: give --hypervisor too"}},
		{"target vm --hypervisor libvirt --uri localhost --output-dir /o", []string{`t.ks:3:38: --uri: want a connection URI such as qemu:///system or https://vcenter.example/sdk, got "localhost"`}},
		{"target vm --cpus 0 --memory 100M --output-dir o", []string{
			`t.ks:3:18: --cpus: want a number from 1 to 1024, got "0"`,
			"t.ks:3:29: --memory: 100M is less than 128 MiB",
			`t.ks:3:47: --output-dir: want an absolute path (it is read inside the boot environment, which has no working directory of yours), got "o"`}},
		{"target vm --memory 1000000000 --output-dir /o", []string{"t.ks:3:20: --memory: 1000000000 is not a whole number of MiB"}},
		{"target vm --memory lots --output-dir /o", []string{`t.ks:3:20: --memory: want a size such as 500G, 480GB or 1.5T, got "lots"`}},
		// on-success, on-failure, confirm, report
		{"on-success halt", []string{`t.ks:3:12: on-success: want reboot, poweroff or shell, got "halt"`}},
		{"on-failure reboot", []string{`t.ks:3:12: on-failure: want shell or poweroff, got "reboot" (rebooting after a failure would start the recovery again, and again)`}},
		{"on-failure", []string{"t.ks:3:11: on-failure: want shell|poweroff (shell or poweroff)"}},
		{"confirm", []string{"t.ks:3:1: confirm: write `confirm --destroy-data-on-targets`, so that the consent says what it consents to"}},
		{"confirm --yes", []string{"t.ks:3:9: unknown option --yes for confirm; it takes --destroy-data-on-targets"}},
		{"report", []string{"t.ks:3:1: report: want --to PATH|usb:/PATH (where to copy the report and the log)"}},
		{"report --to http://h/r", []string{`t.ks:3:13: --to: "http://h/r": http locations cannot be used here; want an absolute path or usb:/PATH`}},
		{"report --to /r\nreport --to /r/", []string{"t.ks:4:1: report --to /r given twice (lines 3 and 4)"}},
		// Lexical errors spoil only their line.
		{"disk disk0 --target \"/dev/sda\ndisks", []string{
			`t.ks:3:21: unterminated double quote: a quoted value must close on its line (end the line with \ inside "…" to continue it)`,
			`t.ks:4:1: unknown command "disks"; did you mean "disk"?`}},
	} {
		src := c.src
		if !strings.HasPrefix(src, "repository") && src != "" {
			src = "repository /r\nmachine m\n" + src
		}
		if got := errorsOf(t, src); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s\n got %q\nwant %q", src, got, c.want)
		}
	}
}

func TestManyErrors(t *testing.T) {
	var b strings.Builder
	for i := 0; i < MaxErrors+10; i++ {
		fmt.Fprintf(&b, "bogus%d\n", i)
	}
	_, err := Parse("t.ks", strings.NewReader(b.String()))
	var list *ErrorList
	if !errors.As(err, &list) {
		t.Fatal(err)
	}
	// 35 unknown commands and 2 missing ones: 25 listed, 12 counted.
	if len(list.Errors) != MaxErrors || list.Omitted != 12 {
		t.Fatalf("%d listed, %d omitted", len(list.Errors), list.Omitted)
	}
	for i, e := range list.Errors {
		if e.Pos.Line != i+1 {
			t.Fatalf("error %d at line %d: not sorted", i, e.Pos.Line)
		}
	}
	if !strings.HasSuffix(err.Error(), "\n(and 12 more)") {
		t.Errorf("the message does not say how many more: %q", err.Error()[len(err.Error())-40:])
	}
}

func TestTooBig(t *testing.T) {
	got := errorsOf(t, strings.Repeat("# padding\n", MaxSize/10+1))
	if want := []string{"t.ks: larger than 1024 KiB: not a kickstart file"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q", got)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("device gone") }

func TestReadError(t *testing.T) {
	_, err := Parse("t.ks", failingReader{})
	var list *ErrorList
	if err == nil || errors.As(err, &list) || err.Error() != "reading t.ks: device gone" {
		t.Errorf("got %v", err)
	}
}
