package kickstart

import (
	"fmt"
	"strings"
)

// Format writes k as a kickstart with every default spelled out: what Cauldron will do, in the
// format the technician wrote. Parsing the result gives k again (positions aside).
func (k *Kickstart) Format() string {
	var b strings.Builder
	cmd := func(words ...string) {
		b.WriteString(strings.Join(words, " "))
		b.WriteByte('\n')
	}
	opt := func(words *[]string, name, value string) {
		if value != "" {
			*words = append(*words, "--"+name, quote(value))
		}
	}
	flag := func(words *[]string, name string, on bool) {
		if on {
			*words = append(*words, "--"+name)
		}
	}

	r := k.Repository
	w := []string{"repository", quote(r.Location.String())}
	opt(&w, "password-file", r.PasswordFile)
	opt(&w, "password-env", r.PasswordEnv)
	opt(&w, "endpoint", r.Endpoint)
	flag(&w, "insecure-tls", r.InsecureTLS)
	opt(&w, "credentials-file", r.CredentialsFile)
	cmd(w...)

	cmd("machine", quote(k.Machine.Name), "--generation", quote(k.Machine.Generation.String()))
	if k.Replication != nil {
		cmd("freeze-replication", "--release", string(k.Replication.Release))
	}
	for _, d := range k.Disks {
		w := []string{"disk", quote(d.Source)}
		opt(&w, "target", d.Target.String())
		opt(&w, "resize", string(d.Resize))
		opt(&w, "identity", string(d.Identity))
		if d.Size != 0 {
			opt(&w, "size", formatSize(d.Size))
		}
		cmd(w...)
	}
	if k.IgnoreDisk != nil {
		var drives []string
		for _, s := range k.IgnoreDisk.Drives {
			drives = append(drives, s.String())
		}
		cmd("ignoredisk", "--drives", quote(strings.Join(drives, ",")))
	}
	in := k.Inoculate
	if in.Skip {
		cmd("inoculate", "--skip")
	} else {
		w := []string{"inoculate"}
		for _, d := range in.Drivers {
			opt(&w, "drivers", d)
		}
		opt(&w, "hardware", string(in.Hardware))
		opt(&w, "enable-inbox", strings.Join(in.EnableInbox, ","))
		opt(&w, "disable-services", strings.Join(in.DisableServices, ","))
		cmd(w...)
	}
	for _, n := range k.Networks {
		w := []string{"network"}
		opt(&w, "device", n.Device)
		opt(&w, "bootproto", string(n.BootProto))
		if n.IP.IsValid() {
			opt(&w, "ip", n.IP.String())
		}
		if n.Gateway.IsValid() {
			opt(&w, "gateway", n.Gateway.String())
		}
		for _, a := range n.Nameservers {
			opt(&w, "nameserver", a.String())
		}
		opt(&w, "hostname", n.Hostname)
		flag(&w, "activate", n.Activate)
		cmd(w...)
	}
	t := k.Target
	w = []string{"target", string(t.Kind)}
	if t.Kind == TargetVM {
		opt(&w, "hypervisor", string(t.Hypervisor))
		opt(&w, "uri", t.URI)
		opt(&w, "format", string(t.Format))
		opt(&w, "name", t.Name)
		if t.CPUs != 0 {
			opt(&w, "cpus", fmt.Sprint(t.CPUs))
		}
		if t.Memory != 0 {
			opt(&w, "memory", formatSize(t.Memory))
		}
		opt(&w, "output-dir", t.OutputDir)
	}
	cmd(w...)
	cmd("on-success", string(k.OnSuccess.Action))
	cmd("on-failure", string(k.OnFailure.Action))
	if k.Confirm != nil {
		cmd("confirm", "--destroy-data-on-targets")
	}
	for _, r := range k.Reports {
		cmd("report", "--to", quote(r.To.String()))
	}
	return b.String()
}
