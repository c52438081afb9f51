package kickstart

// The commands and their options. This table drives the parser's checks (unknown commands and
// options, flags versus options with a value, repetition, the number of positional arguments) and
// a test holds docs/kickstart.md to it: every command and option here has its entry there.

// OptionSpec is one option of a command.
type OptionSpec struct {
	Name   string // without the leading dashes
	Arg    string // the value's placeholder in messages and the reference; "" for a flag
	Repeat bool   // may be given more than once
}

// CommandSpec is one command.
type CommandSpec struct {
	Name     string
	Args     string // the positional arguments' placeholder; "" when the command takes none
	ArgsHelp string // what the positional argument is, for "missing" messages
	MinArgs  int
	MaxArgs  int
	Once     bool // may appear once in a file
	Required bool // must appear
	Options  []OptionSpec
}

// Commands returns the table of commands, in the order the reference describes them.
func Commands() []CommandSpec {
	out := make([]CommandSpec, len(commands))
	for i, c := range commands {
		c.Options = append([]OptionSpec(nil), c.Options...)
		out[i] = c
	}
	return out
}

var commands = []CommandSpec{
	{Name: "repository", Args: "URL|PATH", ArgsHelp: "where the repository is: an absolute path, usb:/PATH, http(s)://…, s3://BUCKET/PREFIX, nfs://SERVER/EXPORT/PATH or smb://SERVER/SHARE/PATH",
		MinArgs: 1, MaxArgs: 1, Once: true, Required: true, Options: []OptionSpec{
			{Name: "password-file", Arg: "PATH"},
			{Name: "password-env", Arg: "NAME"},
			{Name: "endpoint", Arg: "URL"},
			{Name: "insecure-tls"},
			{Name: "credentials-file", Arg: "PATH"},
		}},
	{Name: "machine", Args: "NAME", ArgsHelp: "the name of the machine to recover, as in `cauldron generations`",
		MinArgs: 1, MaxArgs: 1, Once: true, Required: true, Options: []OptionSpec{
			{Name: "generation", Arg: "latest|ID|TIME"},
		}},
	{Name: "freeze-replication", Once: true, Options: []OptionSpec{
		{Name: "release", Arg: "remove|resume"},
	}},
	{Name: "disk", Args: "SOURCE", ArgsHelp: "the disk's name in the generation, such as disk0",
		MinArgs: 1, MaxArgs: 1, Options: []OptionSpec{
			{Name: "target", Arg: "DEVICE|PATH|serial:S|wwn:W|size:…"},
			{Name: "resize", Arg: "proportional|grow-last|keep"},
			{Name: "identity", Arg: "keep|renew"},
			{Name: "size", Arg: "SIZE"},
		}},
	{Name: "ignoredisk", Once: true, Options: []OptionSpec{
		{Name: "drives", Arg: "DISK,DISK…"},
	}},
	{Name: "inoculate", Once: true, Options: []OptionSpec{
		{Name: "drivers", Arg: "DIR", Repeat: true},
		{Name: "hardware", Arg: "detect|kvm-virtio-blk|kvm-virtio-scsi|vmware-pvscsi|hyperv|ahci|nvme"},
		{Name: "enable-inbox", Arg: "NAME,NAME…"},
		{Name: "disable-services", Arg: "vmware,hyperv,xen"},
		{Name: "skip"},
	}},
	{Name: "network", Options: []OptionSpec{
		{Name: "device", Arg: "NAME|MAC"},
		{Name: "bootproto", Arg: "dhcp|static"},
		{Name: "ip", Arg: "ADDR/PREFIX"},
		{Name: "gateway", Arg: "ADDR"},
		{Name: "nameserver", Arg: "ADDR[,ADDR…]", Repeat: true},
		{Name: "hostname", Arg: "NAME"},
		{Name: "activate"},
	}},
	{Name: "target", Args: "physical|vm", ArgsHelp: "physical or vm",
		MinArgs: 1, MaxArgs: 1, Once: true, Options: []OptionSpec{
			{Name: "hypervisor", Arg: "libvirt|vsphere"},
			{Name: "uri", Arg: "URI"},
			{Name: "format", Arg: "raw|qcow2|vmdk|vhdx"},
			{Name: "name", Arg: "NAME"},
			{Name: "cpus", Arg: "N"},
			{Name: "memory", Arg: "SIZE"},
			{Name: "output-dir", Arg: "DIR"},
		}},
	{Name: "on-success", Args: "reboot|poweroff|shell", ArgsHelp: "reboot, poweroff or shell",
		MinArgs: 1, MaxArgs: 1, Once: true},
	{Name: "on-failure", Args: "shell|poweroff", ArgsHelp: "shell or poweroff",
		MinArgs: 1, MaxArgs: 1, Once: true},
	{Name: "confirm", Once: true, Options: []OptionSpec{
		{Name: "destroy-data-on-targets"},
	}},
	{Name: "report", Options: []OptionSpec{
		{Name: "to", Arg: "PATH|usb:/PATH"},
	}},
}

func findCommand(name string) *CommandSpec {
	for i := range commands {
		if commands[i].Name == name {
			return &commands[i]
		}
	}
	return nil
}

func (c *CommandSpec) option(name string) *OptionSpec {
	for i := range c.Options {
		if c.Options[i].Name == name {
			return &c.Options[i]
		}
	}
	return nil
}

// anacondaHints answer the commands a technician brings from anaconda's kickstart.
var anacondaHints = map[string]string{
	"reboot":    `did you mean "on-success reboot"?`,
	"poweroff":  `did you mean "on-success poweroff"?`,
	"shutdown":  `did you mean "on-success poweroff"?`,
	"halt":      `did you mean "on-success poweroff"?`,
	"url":       `the archive is named by "repository URL|PATH"`,
	"nfs":       `the archive is named by "repository URL|PATH"`,
	"harddrive": `the archive is named by "repository URL|PATH"`,
	"part":      `partitions come from the captured generation; map disks with "disk SOURCE --target …"`,
	"partition": `partitions come from the captured generation; map disks with "disk SOURCE --target …"`,
	"clearpart": `partitions come from the captured generation; map disks with "disk SOURCE --target …"`,
	"autopart":  `partitions come from the captured generation; map disks with "disk SOURCE --target …"`,
	"zerombr":   `partitions come from the captured generation; map disks with "disk SOURCE --target …"`,
}

// suggest returns the candidate closest to s when it is close enough to be a slip of the
// keyboard, else "".
func suggest(s string, candidates []string) string {
	maxD := 1
	switch {
	case len(s) > 8:
		maxD = 3
	case len(s) > 4:
		maxD = 2
	}
	best, bestD := "", maxD+1
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	// A prefix is a likely slip too ("gen" for "generation").
	if best == "" && len(s) >= 3 {
		for _, c := range candidates {
			if len(c) > len(s) && c[:len(s)] == s {
				return c
			}
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
