package kickstart

import (
	"fmt"
	"io"
	"net/netip"
	"path"
	"strconv"
	"strings"

	"github.com/cauldron-dr/cauldron/partition"
	"github.com/cauldron-dr/cauldron/restore/archive"
)

// MaxSize is the largest kickstart Parse reads. A kickstart is a few lines; anything bigger is
// the wrong file (a disk image, a log) and is refused rather than read into memory.
const MaxSize = 1 << 20

// Parse reads a kickstart. name is how messages name the file (a path, a URL, "stdin"). On any
// problem it returns a nil Kickstart and an *ErrorList with every problem found; an error
// reading r is returned as it is.
func Parse(name string, r io.Reader) (*Kickstart, error) {
	src, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	p := &parser{file: name, errs: &errorSink{}, once: map[string]Pos{}, diskIndex: map[string]int{}, reportAt: map[Location]Pos{}}
	if len(src) > MaxSize {
		p.errs.add(Pos{File: name}, "larger than %d KiB: not a kickstart file", MaxSize>>10)
		return nil, p.errs.list()
	}
	p.ks = &Kickstart{File: name}
	for _, l := range lex(name, src, p.errs) {
		if !l.broken {
			p.line(l)
		}
	}
	p.finish()
	if l := p.errs.list(); l != nil {
		return nil, l
	}
	return p.ks, nil
}

type parser struct {
	file string
	errs *errorSink
	ks   *Kickstart
	once map[string]Pos // commands that may appear once → where they did

	// Facts kept for the checks across commands.
	identitySet []bool // per disk: --identity given
	diskTarget  []Pos  // per disk: position of its --target value
	diskSizePos []Pos  // per disk: position of --size, when given
	drivesAt    []Pos  // per ignoredisk drive: its position
	hasTarget   bool
	diskIndex   map[string]int   // disk source → its index in Disks
	reportAt    map[Location]Pos // report destination → where first given
}

func (p *parser) errorf(at Pos, format string, a ...any) { p.errs.add(at, format, a...) }

// use is one option as given on a line.
type use struct {
	opt   word // the option word (for its position)
	value word // the value, for options that take one
}

// invocation is a line checked against the command's spec: positional arguments and options.
type invocation struct {
	spec *CommandSpec
	cmd  word
	args []word
	opts map[string][]use
}

func (inv *invocation) has(name string) bool { return len(inv.opts[name]) > 0 }

// value returns the value of a non-repeatable option and whether it was given.
func (inv *invocation) value(name string) (word, bool) {
	u := inv.opts[name]
	if len(u) == 0 {
		return word{}, false
	}
	return u[len(u)-1].value, true
}

// optPos is where option name was written (zero when absent).
func (inv *invocation) optPos(name string) Pos {
	if u := inv.opts[name]; len(u) > 0 {
		return u[0].opt.start
	}
	return Pos{}
}

func commandNames() []string {
	var s []string
	for _, c := range commands {
		s = append(s, c.Name)
	}
	return s
}

// line checks a line against the table, then hands it to its command.
func (p *parser) line(l line) {
	cmd := l.words[0]
	if cmd.isOption() {
		p.errorf(cmd.start, "a line begins with a command, got option %s", cmd.text)
		return
	}
	spec := findCommand(cmd.text)
	if spec == nil {
		p.unknownCommand(cmd)
		return
	}
	inv := &invocation{spec: spec, cmd: cmd, opts: map[string][]use{}}
	ok := true
	words := l.words[1:]
	for i := 0; i < len(words); i++ {
		w := words[i]
		if !w.isOption() {
			if w.lit >= 1 && len(w.text) > 1 && w.text[0] == '-' {
				ok = false
				msg := fmt.Sprintf("%s: options begin with two dashes", w.text)
				if o := spec.option(strings.TrimLeft(w.text, "-")); o != nil {
					msg += fmt.Sprintf(" (--%s)", o.Name)
				}
				p.errorf(w.start, "%s; quote a value that begins with a dash", msg)
				continue
			}
			inv.args = append(inv.args, w)
			continue
		}
		name, inline, hasInline := strings.Cut(w.text[2:], "=")
		o := spec.option(name)
		if o == nil {
			ok = false
			p.unknownOption(spec, w, name)
			continue
		}
		u := use{opt: w}
		switch {
		case o.Arg == "" && hasInline:
			ok = false
			p.errorf(w.start, "--%s takes no value (it is a flag: give it, or leave it out)", name)
			continue
		case o.Arg == "":
		case hasInline:
			u.value = w.sub(2 + len([]rune(name)) + 1)
			if inline == "" {
				ok = false
				p.errorf(w.start, "--%s: empty value; want %s", name, o.Arg)
				continue
			}
		case i+1 < len(words) && !words[i+1].isOption():
			i++
			u.value = words[i]
			if u.value.text == "" {
				ok = false
				p.errorf(u.value.start, "--%s: empty value; want %s", name, o.Arg)
				continue
			}
		case i+1 < len(words):
			ok = false
			p.errorf(words[i+1].start, "--%s: want a value (%s), got option %s", name, o.Arg, words[i+1].text)
			continue
		default:
			ok = false
			p.errorf(w.posAt(len([]rune(w.text))), "--%s: want a value (%s) at the end of the line", name, o.Arg)
			continue
		}
		if prev := inv.opts[name]; len(prev) > 0 && !o.Repeat {
			ok = false
			a := prev[0].opt.start
			p.errorf(w.start, "--%s given twice (at %d:%d and %d:%d)", name, a.Line, a.Col, w.start.Line, w.start.Col)
			continue
		}
		inv.opts[name] = append(inv.opts[name], u)
	}
	// After a bad option the words that follow may be its value: counting them as arguments
	// would only add noise.
	switch {
	case !ok:
	case len(inv.args) < spec.MinArgs:
		ok = false
		end := l.words[len(l.words)-1]
		p.errorf(end.posAt(len([]rune(end.text))), "%s: want %s (%s)", spec.Name, spec.Args, spec.ArgsHelp)
	case len(inv.args) > spec.MaxArgs:
		ok = false
		extra := inv.args[spec.MaxArgs]
		if spec.MaxArgs == 0 {
			p.errorf(extra.start, "%s takes no arguments, got %q", spec.Name, extra.text)
		} else {
			p.errorf(extra.start, "%s: unexpected argument %q (%s takes one %s)", spec.Name, extra.text, spec.Name, spec.Args)
		}
	}
	if spec.Once {
		if first, seen := p.once[spec.Name]; seen {
			p.errorf(cmd.start, "%s given twice (lines %d and %d)", spec.Name, first.Line, cmd.start.Line)
			return
		}
		p.once[spec.Name] = cmd.start
	}
	if !ok {
		return
	}
	p.build(inv)
}

func (p *parser) unknownCommand(cmd word) {
	if strings.HasPrefix(cmd.text, "%") {
		p.errorf(cmd.start, "sections such as %%pre, %%post and %%packages are not part of Cauldron kickstarts, got %q", cmd.text)
		return
	}
	msg := fmt.Sprintf("unknown command %q", cmd.text)
	if h, ok := anacondaHints[strings.ToLower(cmd.text)]; ok {
		msg += "; " + h
	} else if s := suggest(strings.ToLower(cmd.text), commandNames()); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	p.errorf(cmd.start, "%s", msg)
}

func (p *parser) unknownOption(spec *CommandSpec, w word, name string) {
	msg := fmt.Sprintf("unknown option --%s for %s", name, spec.Name)
	var names []string
	for _, o := range spec.Options {
		names = append(names, o.Name)
	}
	var owners []string
	for _, c := range commands {
		if c.option(name) != nil {
			owners = append(owners, c.Name)
		}
	}
	switch {
	case len(owners) > 0:
		msg = fmt.Sprintf("--%s is an option of %s, not of %s", name, orList(owners), spec.Name)
	case len(names) == 0:
		msg += fmt.Sprintf(" (%s takes no options)", spec.Name)
	default:
		if s := suggest(name, names); s != "" {
			msg += fmt.Sprintf("; did you mean --%s?", s)
		} else {
			msg += "; it takes --" + strings.Join(names, ", --")
		}
	}
	p.errorf(w.start, "%s", msg)
}

// enum checks v against values, case-insensitively, and returns the value as listed.
func (p *parser) enum(what string, v word, values ...string) (string, bool) {
	for _, s := range values {
		if strings.EqualFold(v.text, s) {
			return s, true
		}
	}
	p.errorf(v.start, "%s: want %s, got %q", what, orList(values), v.text)
	return "", false
}

// absPath checks that an option's value is an absolute path and returns it cleaned.
func (p *parser) absPath(opt string, v word) (string, bool) {
	if !strings.HasPrefix(v.text, "/") {
		p.errorf(v.start, "--%s: want an absolute path (it is read inside the boot environment, which has no working directory of yours), got %q", opt, v.text)
		return "", false
	}
	return path.Clean(v.text), true
}

// list splits a comma-separated value into its items, keeping each item's position; empty
// items are errors.
func (p *parser) list(opt string, v word) []word {
	var out []word
	r := []rune(v.text)
	start := 0
	for i := 0; i <= len(r); i++ {
		if i < len(r) && r[i] != ',' {
			continue
		}
		item := word{text: string(r[start:i]), start: v.posAt(start), at: v.at[min(start, len(v.at)):min(i, len(v.at))]}
		if item.text == "" {
			p.errorf(v.posAt(start), "--%s: empty item in the list %q", opt, v.text)
		} else {
			out = append(out, item)
		}
		start = i + 1
	}
	return out
}

func (p *parser) build(inv *invocation) {
	switch inv.spec.Name {
	case "repository":
		p.repository(inv)
	case "machine":
		p.machine(inv)
	case "freeze-replication":
		r := &Replication{Pos: inv.cmd.start, Release: ReleaseRemove}
		if v, ok := inv.value("release"); ok {
			s, _ := p.enum("--release", v, string(ReleaseRemove), string(ReleaseResume))
			r.Release = Release(s)
		}
		p.ks.Replication = r
	case "disk":
		p.disk(inv)
	case "ignoredisk":
		p.ignoredisk(inv)
	case "inoculate":
		p.inoculate(inv)
	case "network":
		p.network(inv)
	case "target":
		p.target(inv)
	case "on-success":
		s, _ := p.enum("on-success", inv.args[0], string(ActionReboot), string(ActionPoweroff), string(ActionShell))
		p.ks.OnSuccess = EndAction{Pos: inv.cmd.start, Action: Action(s)}
	case "on-failure":
		if strings.EqualFold(inv.args[0].text, "reboot") {
			p.errorf(inv.args[0].start, "on-failure: want shell or poweroff, got \"reboot\" (rebooting after a failure would start the recovery again, and again)")
			return
		}
		s, _ := p.enum("on-failure", inv.args[0], string(ActionShell), string(ActionPoweroff))
		p.ks.OnFailure = EndAction{Pos: inv.cmd.start, Action: Action(s)}
	case "confirm":
		if !inv.has("destroy-data-on-targets") {
			p.errorf(inv.cmd.start, "confirm: write `confirm --destroy-data-on-targets`, so that the consent says what it consents to")
			return
		}
		p.ks.Confirm = &Confirm{Pos: inv.cmd.start}
	case "report":
		v, ok := inv.value("to")
		if !ok {
			p.errorf(inv.cmd.start, "report: want --to PATH|usb:/PATH (where to copy the report and the log)")
			return
		}
		l, err := archive.ParseLocation(v.text, LocationPath, LocationUSB)
		if err != nil {
			p.errorf(v.start, "--to: %v", err)
			return
		}
		if first, dup := p.reportAt[l]; dup {
			p.errorf(inv.cmd.start, "report --to %s given twice (lines %d and %d)", l, first.Line, inv.cmd.start.Line)
			return
		}
		p.reportAt[l] = inv.cmd.start
		p.ks.Reports = append(p.ks.Reports, Report{Pos: inv.cmd.start, To: l})
	default:
		panic("kickstart: command without a builder: " + inv.spec.Name)
	}
}

func (p *parser) repository(inv *invocation) {
	r := Repository{Pos: inv.cmd.start}
	loc, err := archive.ParseLocation(inv.args[0].text)
	if err != nil {
		p.errorf(inv.args[0].start, "repository: %v", err)
	}
	r.Location = loc
	if v, ok := inv.value("password-file"); ok {
		r.PasswordFile, _ = p.absPath("password-file", v)
	}
	if v, ok := inv.value("password-env"); ok {
		if envName.MatchString(v.text) {
			r.PasswordEnv = v.text
		} else {
			p.errorf(v.start, "--password-env: want the name of an environment variable (letters, digits, _), got %q", v.text)
		}
	}
	if inv.has("password-file") && inv.has("password-env") {
		p.errorf(inv.optPos("password-env"), "give --password-file or --password-env, not both")
	}
	if v, ok := inv.value("endpoint"); ok {
		r.Endpoint = v.text
	}
	r.InsecureTLS = inv.has("insecure-tls")
	if v, ok := inv.value("credentials-file"); ok {
		r.CredentialsFile, _ = p.absPath("credentials-file", v)
	}
	// Whether the options fit the location is the archive's rule, the same for the command line.
	for _, e := range r.Spec().Check() {
		at := inv.optPos(e.Option)
		if v, ok := inv.value(e.Option); ok && e.InValue {
			at = v.start
		}
		if e.Option == "endpoint" && e.InValue {
			r.Endpoint = ""
		}
		p.errorf(at, "%s", e.Msg)
	}
	p.ks.Repository = r
}

func (p *parser) machine(inv *invocation) {
	m := Machine{Pos: inv.cmd.start, Generation: GenerationRef{Kind: GenerationLatest, Pos: Pos{File: p.file}}}
	if err := checkName(inv.args[0].text); err != nil {
		p.errorf(inv.args[0].start, "machine name: %v", err)
	}
	m.Name = inv.args[0].text
	if v, ok := inv.value("generation"); ok {
		g, err := parseGeneration(v.text)
		if err != nil {
			p.errorf(v.start, "--generation: %v", err)
		}
		g.Pos = v.start
		m.Generation = g
	}
	p.ks.Machine = m
}

func (p *parser) disk(inv *invocation) {
	d := Disk{Pos: inv.cmd.start, Source: inv.args[0].text}
	if err := checkName(d.Source); err != nil {
		p.errorf(inv.args[0].start, "disk name: %v", err)
	}
	var targetAt, sizeAt Pos
	if v, ok := inv.value("target"); ok {
		sel, err := parseSelector(v.text, false, true)
		if err != nil {
			p.errorf(v.start, "--target: %v", err)
		}
		d.Target, targetAt = sel, v.start
	}
	if v, ok := inv.value("resize"); ok {
		s, _ := p.enum("--resize", v, string(partition.ResizeProportional), string(partition.ResizeGrowLast), string(partition.ResizeKeep))
		d.Resize = partition.ResizeMode(s)
	}
	if v, ok := inv.value("identity"); ok {
		s, _ := p.enum("--identity", v, string(partition.IdentityKeep), string(partition.IdentityRenew))
		d.Identity = partition.IdentityMode(s)
	}
	if v, ok := inv.value("size"); ok {
		n, err := parseSize(v.text)
		switch {
		case err != nil:
			p.errorf(v.start, "--size: %v", err)
		case n < 1<<20:
			p.errorf(v.start, "--size: %s is smaller than 1 MiB", v.text)
		}
		d.Size, sizeAt = n, inv.optPos("size")
	}
	if i, dup := p.diskIndex[d.Source]; dup {
		p.errorf(inv.cmd.start, "disk %s given twice (lines %d and %d)", d.Source, p.ks.Disks[i].Pos.Line, d.Pos.Line)
		return
	}
	p.diskIndex[d.Source] = len(p.ks.Disks)
	p.ks.Disks = append(p.ks.Disks, d)
	p.identitySet = append(p.identitySet, inv.has("identity"))
	p.diskTarget = append(p.diskTarget, targetAt)
	p.diskSizePos = append(p.diskSizePos, sizeAt)
}

func (p *parser) ignoredisk(inv *invocation) {
	v, ok := inv.value("drives")
	if !ok {
		p.errorf(inv.cmd.start, "ignoredisk: want --drives DISK,DISK… (disks never to touch)")
		return
	}
	ig := &IgnoreDisk{Pos: inv.cmd.start}
	for _, item := range p.list("drives", v) {
		sel, err := parseSelector(item.text, true, false)
		if err != nil {
			p.errorf(item.start, "--drives: %v", err)
			continue
		}
		ig.Drives = append(ig.Drives, sel)
		p.drivesAt = append(p.drivesAt, item.start)
	}
	p.ks.IgnoreDisk = ig
}

var disableServices = []string{"vmware", "hyperv", "xen"}

func (p *parser) inoculate(inv *invocation) {
	in := Inoculate{Pos: inv.cmd.start, Hardware: HardwareDetect}
	if inv.has("skip") {
		for _, o := range inv.spec.Options {
			if o.Name != "skip" && inv.has(o.Name) {
				p.errorf(inv.optPos(o.Name), "inoculate --skip leaves the restored system as it was; --%s would change it", o.Name)
			}
		}
		in.Skip = true
	}
	for _, u := range inv.opts["drivers"] {
		if dir, ok := p.absPath("drivers", u.value); ok {
			in.Drivers = append(in.Drivers, dir)
		}
	}
	if v, ok := inv.value("hardware"); ok {
		s, _ := p.enum("--hardware", v, string(HardwareDetect), string(HardwareVirtioBlk), string(HardwareVirtioSCSI),
			string(HardwareVMwarePVSCSI), string(HardwareHyperV), string(HardwareAHCI), string(HardwareNVMe))
		in.Hardware = Hardware(s)
	}
	if v, ok := inv.value("enable-inbox"); ok {
		for _, item := range p.list("enable-inbox", v) {
			if !driverName.MatchString(item.text) {
				p.errorf(item.start, "--enable-inbox: want a driver's service name such as storahci or stornvme, got %q", item.text)
				continue
			}
			in.EnableInbox = appendNew(in.EnableInbox, strings.ToLower(item.text))
		}
	}
	if v, ok := inv.value("disable-services"); ok {
		for _, item := range p.list("disable-services", v) {
			if s, ok := p.enum("--disable-services", item, disableServices...); ok {
				in.DisableServices = appendNew(in.DisableServices, s)
			}
		}
	}
	p.ks.Inoculate = in
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

func (p *parser) network(inv *invocation) {
	n := Network{Pos: inv.cmd.start, Activate: inv.has("activate")}
	if v, ok := inv.value("device"); ok {
		dev, err := parseDevice(v.text)
		if err != nil {
			p.errorf(v.start, "--device: %v", err)
		}
		n.Device = dev
	}
	if v, ok := inv.value("bootproto"); ok {
		s, _ := p.enum("--bootproto", v, string(BootProtoDHCP), string(BootProtoStatic))
		n.BootProto = BootProto(s)
	}
	if v, ok := inv.value("ip"); ok {
		pre, err := netip.ParsePrefix(v.text)
		switch {
		case err != nil && !strings.Contains(v.text, "/"):
			p.errorf(v.start, "--ip: want ADDR/PREFIX such as 10.1.2.3/24, got %q (the prefix length is missing)", v.text)
		case err != nil:
			p.errorf(v.start, "--ip: want ADDR/PREFIX such as 10.1.2.3/24, got %q", v.text)
		case pre.Addr().Zone() != "":
			p.errorf(v.start, "--ip: an address with a zone (%%%s) cannot be configured", pre.Addr().Zone())
		default:
			n.IP = pre
		}
		switch n.BootProto {
		case BootProtoDHCP:
			p.errorf(inv.optPos("ip"), "--ip gives a static address, but --bootproto is dhcp")
		case BootProtoUnchanged:
			n.BootProto = BootProtoStatic
		}
	}
	if v, ok := inv.value("gateway"); ok {
		gw, err := netip.ParseAddr(v.text)
		switch {
		case err != nil:
			p.errorf(v.start, "--gateway: want an IP address, got %q", v.text)
		case n.IP.IsValid() && gw.Is4() != n.IP.Addr().Is4():
			p.errorf(v.start, "--gateway %s and --ip %s are not of the same IP version", gw, n.IP)
		case n.IP.IsValid() && gw == n.IP.Addr():
			p.errorf(v.start, "--gateway %s is the address itself", gw)
		case n.IP.IsValid() && n.IP.Bits() < n.IP.Addr().BitLen() && !n.IP.Masked().Contains(gw):
			p.errorf(v.start, "--gateway %s is outside the network of --ip %s", gw, n.IP)
		default:
			n.Gateway = gw
		}
		if n.BootProto != BootProtoStatic {
			p.errorf(inv.optPos("gateway"), "--gateway needs a static address (--ip ADDR/PREFIX)")
		}
	}
	for _, u := range inv.opts["nameserver"] {
		for _, item := range p.list("nameserver", u.value) {
			a, err := netip.ParseAddr(item.text)
			if err != nil {
				p.errorf(item.start, "--nameserver: want an IP address, got %q", item.text)
				continue
			}
			n.Nameservers = append(n.Nameservers, a)
		}
	}
	if v, ok := inv.value("hostname"); ok {
		if err := checkHostname(v.text); err != nil {
			p.errorf(v.start, "--hostname: %v", err)
		}
		n.Hostname = v.text
	}
	if n.BootProto == BootProtoStatic && !n.IP.IsValid() && !inv.has("ip") {
		p.errorf(inv.optPos("bootproto"), "--bootproto static needs --ip ADDR/PREFIX")
	}
	if n.Activate && n.BootProto == BootProtoUnchanged {
		p.errorf(inv.optPos("activate"), "--activate configures the boot environment: it needs --bootproto dhcp or --ip ADDR/PREFIX")
	}
	if len(inv.opts) == 0 {
		p.errorf(inv.cmd.start, "network without options changes nothing; give --hostname, --bootproto or --ip")
	}
	p.ks.Networks = append(p.ks.Networks, n)
}

var hypervisorFormats = map[Hypervisor][]string{
	HypervisorNone:    {string(FormatRaw), string(FormatQCOW2), string(FormatVMDK), string(FormatVHDX)},
	HypervisorLibvirt: {string(FormatQCOW2), string(FormatRaw)},
	HypervisorVSphere: {string(FormatVMDK)},
}

func (p *parser) target(inv *invocation) {
	p.hasTarget = true
	s, ok := p.enum("target", inv.args[0], string(TargetPhysical), string(TargetVM))
	if !ok {
		return
	}
	t := Target{Pos: inv.cmd.start, Kind: TargetKind(s)}
	if t.Kind == TargetPhysical {
		for _, o := range inv.spec.Options {
			if inv.has(o.Name) {
				p.errorf(inv.optPos(o.Name), "--%s is for target vm; target physical writes the machine's own disks", o.Name)
			}
		}
		p.ks.Target = t
		return
	}
	if v, ok := inv.value("hypervisor"); ok {
		s, _ := p.enum("--hypervisor", v, string(HypervisorLibvirt), string(HypervisorVSphere))
		t.Hypervisor = Hypervisor(s)
	}
	if v, ok := inv.value("uri"); ok {
		if t.Hypervisor == HypervisorNone && !inv.has("hypervisor") {
			p.errorf(inv.optPos("uri"), "--uri is the hypervisor's address: give --hypervisor too")
		}
		if !strings.Contains(v.text, ":") {
			p.errorf(v.start, "--uri: want a connection URI such as qemu:///system or https://vcenter.example/sdk, got %q", v.text)
		}
		t.URI = v.text
	}
	formats := hypervisorFormats[t.Hypervisor]
	t.Format = DiskFormat(formats[0])
	if v, ok := inv.value("format"); ok {
		if s, ok := p.enum("--format", v, string(FormatRaw), string(FormatQCOW2), string(FormatVMDK), string(FormatVHDX)); ok {
			t.Format = DiskFormat(s)
			if !containsFold(formats, s) {
				p.errorf(v.start, "--format %s: %s takes %s disks", s, t.Hypervisor, orList(formats))
			}
		}
	}
	if v, ok := inv.value("name"); ok {
		if err := checkName(v.text); err != nil {
			p.errorf(v.start, "--name: %v", err)
		}
		t.Name = v.text
	}
	if v, ok := inv.value("cpus"); ok {
		n, err := strconv.Atoi(v.text)
		if err != nil || n < 1 || n > 1024 {
			p.errorf(v.start, "--cpus: want a number from 1 to 1024, got %q", v.text)
		}
		t.CPUs = n
	}
	if v, ok := inv.value("memory"); ok {
		n, err := parseSize(v.text)
		switch {
		case err != nil:
			p.errorf(v.start, "--memory: %v", err)
		case n < 128<<20:
			p.errorf(v.start, "--memory: %s is less than 128 MiB", v.text)
		case n%(1<<20) != 0:
			p.errorf(v.start, "--memory: %s is not a whole number of MiB", v.text)
		}
		t.Memory = n
	}
	if v, ok := inv.value("output-dir"); ok {
		t.OutputDir, _ = p.absPath("output-dir", v)
	} else {
		p.errorf(inv.cmd.start, "target vm: want --output-dir DIR (where the disk images are written)")
	}
	p.ks.Target = t
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// finish runs the checks across commands and fills in the defaults.
func (p *parser) finish() {
	ks := p.ks
	for _, c := range commands {
		if _, seen := p.once[c.Name]; c.Required && !seen {
			p.errorf(Pos{File: p.file}, "missing required command %q (%s %s: %s)", c.Name, c.Name, c.Args, c.ArgsHelp)
		}
	}
	// Defaults are placed at the file as a whole, so that a message about one still names it.
	file := Pos{File: p.file}
	if !p.hasTarget {
		ks.Target = Target{Pos: file, Kind: TargetPhysical}
	}
	if ks.Target.Kind == TargetVM && ks.Target.Name == "" {
		ks.Target.Name = ks.Machine.Name
	}
	if ks.Inoculate.Hardware == "" {
		ks.Inoculate = Inoculate{Pos: file, Hardware: HardwareDetect}
	}
	if ks.OnSuccess.Action == "" {
		ks.OnSuccess = EndAction{Pos: file, Action: ActionReboot}
	}
	if ks.OnFailure.Action == "" {
		ks.OnFailure = EndAction{Pos: file, Action: ActionShell}
	}
	// A copy that runs beside its original gets new identities unless told otherwise.
	ks.AutoResize, ks.AutoIdentity = partition.ResizeProportional, partition.IdentityKeep
	if ks.Replication != nil && ks.Replication.Release == ReleaseResume {
		ks.AutoIdentity = partition.IdentityRenew
	}
	taken := map[DiskSelector]int{} // target → the disk that has it
	ignored := map[DiskSelector]Pos{}
	if ks.IgnoreDisk != nil {
		for j, sel := range ks.IgnoreDisk.Drives {
			ignored[sel] = p.drivesAt[j]
		}
	}
	for i := range ks.Disks {
		d := &ks.Disks[i]
		if d.Resize == "" {
			d.Resize = ks.AutoResize
		}
		if !p.identitySet[i] {
			d.Identity = ks.AutoIdentity
		}
		p.checkDiskTarget(i, taken, ignored)
	}
	p.checkNetworks()
}

// checkDiskTarget checks disk i's target against the disks before it (taken), ignoredisk and the
// target kind.
func (p *parser) checkDiskTarget(i int, taken map[DiskSelector]int, ignored map[DiskSelector]Pos) {
	ks := p.ks
	d := &ks.Disks[i]
	if ks.Target.Kind == TargetVM {
		if d.Target.By != SelectAuto && d.Target.By != SelectPath {
			p.errorf(p.diskTarget[i], "--target %s picks a disk of this machine; target vm writes image files: give a path or leave --target out", d.Target)
		}
	} else if d.Size != 0 {
		p.errorf(p.diskSizePos[i], "--size sets the size of a new VM disk; with target physical the target disk's own size counts")
	}
	if d.Target.By == SelectAuto {
		return
	}
	if j, dup := taken[d.Target]; dup {
		o := ks.Disks[j]
		p.errorf(p.diskTarget[i], "target %s given twice (disk %s on line %d and disk %s on line %d)",
			d.Target, o.Source, o.Pos.Line, d.Source, d.Pos.Line)
		return
	}
	taken[d.Target] = i
	if at, ok := ignored[d.Target]; ok {
		p.errorf(p.diskTarget[i], "--target %s is listed in ignoredisk --drives (line %d)", d.Target, at.Line)
	}
}

// checkNetworks checks the network commands against each other: one per device, at most one
// without a device when it sets an address, one host name.
func (p *parser) checkNetworks() {
	devices := map[string]Pos{}
	var noDevice, hostname *Network
	for i := range p.ks.Networks {
		n := &p.ks.Networks[i]
		if n.Device != "" {
			if first, dup := devices[n.Device]; dup {
				p.errorf(n.Pos, "network --device %s given twice (lines %d and %d)", n.Device, first.Line, n.Pos.Line)
			}
			devices[n.Device] = n.Pos
		} else if noDevice == nil {
			noDevice = n
		} else if noDevice.BootProto != BootProtoUnchanged || n.BootProto != BootProtoUnchanged {
			p.errorf(n.Pos, "two network commands without --device (lines %d and %d): name the interface of each", noDevice.Pos.Line, n.Pos.Line)
		}
		if n.Hostname != "" {
			if hostname != nil {
				p.errorf(n.Pos, "network --hostname given twice (lines %d and %d): a system has one host name", hostname.Pos.Line, n.Pos.Line)
			} else {
				hostname = n
			}
		}
	}
}
