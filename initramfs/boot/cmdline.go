package boot

import (
	"fmt"
	"net"
	"strings"
)

// Cmdline is what the kernel command line asks of the boot environment.
type Cmdline struct {
	// Kickstart is the cauldron.ks= value: an http(s) URL, cdrom:/PATH, usb:/PATH or a path
	// inside the image. Empty: no unattended recovery.
	Kickstart string
	// Shell is cauldron.shell: start a shell before anything else.
	Shell bool
	// IP is the ip= value as given ("dhcp", "off", or the kernel's static form).
	IP string
	// Static is the parsed static form of IP, nil for dhcp/off/absent.
	Static *StaticIP
	// NoNet is cauldron.nonet: never bring up the network (not even DHCP in the background).
	NoNet bool
}

// StaticIP is the kernel's ip=CLIENT:SERVER:GATEWAY:NETMASK:HOSTNAME:DEVICE:AUTOCONF:DNS0:DNS1
// form, of which the boot environment uses all but SERVER and AUTOCONF.
type StaticIP struct {
	Address  net.IP
	Mask     net.IPMask
	Gateway  net.IP
	Hostname string
	Device   string   // empty: the first NIC with a link
	DNS      []net.IP // name servers, for archive and kickstart URLs that name a host
}

// ParseCmdline reads the options Cauldron knows from a kernel command line (/proc/cmdline).
// Unknown words belong to the kernel and are ignored; a malformed Cauldron option is an error
// naming it, so that a typo in a PXE config is seen on the console instead of silently ignored.
func ParseCmdline(s string) (Cmdline, error) {
	var c Cmdline
	for _, w := range splitCmdline(s) {
		key, val, hasVal := strings.Cut(w, "=")
		switch key {
		case "cauldron.ks":
			if !hasVal || val == "" {
				return c, fmt.Errorf("kernel command line: cauldron.ks needs a location (URL, cdrom:/PATH, usb:/PATH)")
			}
			c.Kickstart = val
		case "cauldron.shell":
			c.Shell = true
		case "cauldron.nonet":
			c.NoNet = true
		case "ip":
			c.IP = val
			switch val {
			case "", "dhcp", "on", "any", "off", "none":
			default:
				st, err := parseStaticIP(val)
				if err != nil {
					return c, fmt.Errorf("kernel command line: ip=%s: %w", val, err)
				}
				c.Static = st
			}
		default:
			if strings.HasPrefix(key, "cauldron.") {
				return c, fmt.Errorf("kernel command line: unknown option %q (known: cauldron.ks=, cauldron.shell, cauldron.nonet)", key)
			}
		}
	}
	return c, nil
}

// DHCP says whether the command line asks for DHCP (explicitly, or by giving no ip= at all).
func (c Cmdline) DHCP() bool {
	switch c.IP {
	case "", "dhcp", "on", "any":
		return !c.NoNet
	}
	return false
}

// splitCmdline splits like the kernel: on spaces, with double quotes grouping (and removed).
func splitCmdline(s string) []string {
	var out []string
	var b strings.Builder
	quoted, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			quoted = !quoted
			have = true
		case !quoted && (r == ' ' || r == '\t' || r == '\n'):
			if have {
				out = append(out, b.String())
				b.Reset()
				have = false
			}
		default:
			b.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, b.String())
	}
	return out
}

func parseStaticIP(v string) (*StaticIP, error) {
	f := strings.Split(v, ":")
	if len(f) < 4 {
		return nil, fmt.Errorf("want dhcp or CLIENT::GATEWAY:NETMASK[:HOSTNAME[:DEVICE[:AUTOCONF[:DNS0[:DNS1]]]]]")
	}
	st := &StaticIP{}
	if st.Address = net.ParseIP(f[0]).To4(); st.Address == nil {
		return nil, fmt.Errorf("client address %q is not an IPv4 address", f[0])
	}
	if f[2] != "" {
		if st.Gateway = net.ParseIP(f[2]).To4(); st.Gateway == nil {
			return nil, fmt.Errorf("gateway %q is not an IPv4 address", f[2])
		}
	}
	switch m := net.ParseIP(f[3]).To4(); {
	case m != nil:
		st.Mask = net.IPMask(m)
		if ones, bits := st.Mask.Size(); ones == 0 && bits == 0 {
			return nil, fmt.Errorf("netmask %q is not contiguous", f[3])
		}
	default:
		var n int
		if _, err := fmt.Sscanf(f[3], "%d", &n); err != nil || n < 0 || n > 32 || fmt.Sprint(n) != f[3] {
			return nil, fmt.Errorf("netmask %q is neither a dotted mask nor a prefix length", f[3])
		}
		st.Mask = net.CIDRMask(n, 32)
	}
	if len(f) > 4 {
		st.Hostname = f[4]
	}
	if len(f) > 5 {
		st.Device = f[5]
	}
	for i := 7; i < len(f) && i <= 8; i++ {
		if f[i] == "" {
			continue
		}
		ns := net.ParseIP(f[i]).To4()
		if ns == nil {
			return nil, fmt.Errorf("name server %q is not an IPv4 address", f[i])
		}
		st.DNS = append(st.DNS, ns)
	}
	return st, nil
}

// resolvConf is /etc/resolv.conf naming the given name servers.
func resolvConf(servers []net.IP) string {
	var b strings.Builder
	for _, s := range servers {
		b.WriteString("nameserver " + s.String() + "\n")
	}
	return b.String()
}

// resolvList is the name servers as the console shows them.
func resolvList(servers []net.IP) string {
	s := make([]string, len(servers))
	for i, ns := range servers {
		s[i] = ns.String()
	}
	return strings.Join(s, ",")
}
