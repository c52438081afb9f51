package tui

import (
	"fmt"
	"net/netip"
	"strings"

	tea "charm.land/bubbletea/v2"
)

// Screen 1, network: the interfaces with their link state; DHCP or a static address per
// interface when the boot environment owns the network. Only needed when the archive is reached
// over the network, so Enter moves on at once.

type netScreen struct {
	loading bool
	nics    []NIC
	err     error
	sel     int
	form    bool     // the static-address form is open
	fields  [3]field // address/prefix, gateway, name servers
	focus   int
	busy    string
	lines   []string // what configuring said
}

type nicsMsg struct {
	nics []NIC
	err  error
}

type netDoneMsg struct {
	line string
	err  error
}

func (s *netScreen) focused() *field {
	if s.form {
		return &s.fields[s.focus]
	}
	return nil
}

func (m *Model) enterNetwork() tea.Cmd {
	m.net.loading = true
	return m.listNICs()
}

func (m *Model) listNICs() tea.Cmd {
	n, ctx := m.env.Network, m.ctx
	return safe(func() tea.Msg {
		nics, err := n.Interfaces(ctx)
		return nicsMsg{nics, err}
	})
}

func (m *Model) updateNetwork(msg tea.Msg) tea.Cmd {
	s := &m.net
	switch msg := msg.(type) {
	case nicsMsg:
		s.loading, s.nics, s.err = false, msg.nics, msg.err
		s.sel = min(s.sel, max(len(s.nics)-1, 0))
		return nil
	case netDoneMsg:
		s.busy = ""
		if msg.err != nil {
			m.message = "!" + msg.err.Error()
		} else {
			s.lines = append(s.lines, msg.line)
			m.message = msg.line
		}
		return m.listNICs()
	case tea.KeyPressMsg:
		if s.busy != "" {
			return nil // one configuration at a time
		}
		if s.form {
			return m.networkForm(msg)
		}
		managed := m.env.Network.Managed()
		switch {
		case m.isKey(msg, keys.Up):
			s.sel = max(s.sel-1, 0)
		case m.isKey(msg, keys.Down):
			s.sel = min(s.sel+1, max(len(s.nics)-1, 0))
		case m.isKey(msg, keys.Enter):
			return m.goTo(scrArchive)
		case m.isKey(msg, keys.Back):
			return m.back()
		case msg.String() == "r":
			s.loading = true
			return m.listNICs()
		case (msg.String() == "d" || msg.String() == "s") && managed != "":
			m.message = "!" + managed
		case msg.String() == "d" && len(s.nics) > 0:
			nic := s.nics[s.sel]
			s.busy = "asking for an address by DHCP on " + nic.Name + "..."
			return m.configure(NetConfig{Device: nic.Name, DHCP: true})
		case msg.String() == "s" && len(s.nics) > 0:
			s.form, s.focus = true, 0
			s.fields = [3]field{{limit: 64}, {limit: 64}, {limit: 128}}
		}
	}
	return nil
}

func (m *Model) configure(c NetConfig) tea.Cmd {
	n, ctx := m.env.Network, m.ctx
	return safe(func() tea.Msg {
		line, err := n.Configure(ctx, c)
		return netDoneMsg{line, err}
	})
}

func (m *Model) networkForm(k tea.KeyPressMsg) tea.Cmd {
	s := &m.net
	switch {
	case m.isKey(k, keys.Back):
		s.form = false
		m.message = ""
	case m.isKey(k, keys.Tab), m.isKey(k, keys.Down):
		s.focus = (s.focus + 1) % len(s.fields)
	case m.isKey(k, keys.ShiftTab), m.isKey(k, keys.Up):
		s.focus = (s.focus + len(s.fields) - 1) % len(s.fields)
	case m.isKey(k, keys.Enter):
		c, err := parseStatic(s.nics[s.sel].Name, s.fields[0].value, s.fields[1].value, s.fields[2].value)
		if err != nil {
			m.message = "!" + err.Error()
			return nil
		}
		s.form = false
		s.busy = "setting " + c.Address.String() + " on " + c.Device + "..."
		return m.configure(c)
	default:
		s.fields[s.focus].handle(k.String(), k.Text)
	}
	return nil
}

// parseStatic checks the static form: ADDRESS/PREFIX, an optional gateway inside that network,
// optional name servers separated by commas or spaces.
func parseStatic(dev, addr, gw, dns string) (NetConfig, error) {
	c := NetConfig{Device: dev}
	p, err := netip.ParsePrefix(strings.TrimSpace(addr))
	if err != nil {
		return c, fmt.Errorf("address: give ADDRESS/PREFIX, such as 10.1.2.3/24 (%q)", addr)
	}
	c.Address = p
	if gw = strings.TrimSpace(gw); gw != "" {
		g, err := netip.ParseAddr(gw)
		if err != nil {
			return c, fmt.Errorf("gateway: %q is not an address", gw)
		}
		if !p.Masked().Contains(g) {
			return c, fmt.Errorf("gateway %s is not in %s", g, p.Masked())
		}
		c.Gateway = g
	}
	for _, d := range strings.FieldsFunc(dns, func(r rune) bool { return r == ',' || r == ' ' }) {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return c, fmt.Errorf("name server: %q is not an address", d)
		}
		c.DNS = append(c.DNS, a)
	}
	return c, nil
}

func (m *Model) viewNetwork() (string, string) {
	s, t := &m.net, m.theme
	var b strings.Builder
	managed := m.env.Network.Managed()
	b.WriteString("The archive may be on this machine's disks or USB sticks (no network needed), or\n" +
		"on a server: then bring up an interface here first.\n\n")
	if managed != "" {
		b.WriteString(t.Warn(managed) + "\n\n")
	}
	switch {
	case s.loading:
		b.WriteString("Looking for network interfaces...\n")
	case s.err != nil:
		b.WriteString(t.Bad("Listing the interfaces failed: "+s.err.Error()) + "\n")
	case len(s.nics) == 0:
		b.WriteString("No network interfaces were found (the driver may be missing).\n")
	default:
		b.WriteString(fmt.Sprintf("  %-12s %-17s %-5s %-12s %s\n", "interface", "MAC", "link", "driver", "addresses"))
		for i, n := range s.nics {
			link := "down"
			if n.Link {
				link = "up"
			}
			addrs := strings.Join(n.Addrs, " ")
			if addrs == "" {
				addrs = "-"
			}
			b.WriteString(t.row(i == s.sel, fmt.Sprintf("%-12s %-17s %-5s %-12s %s", n.Name, orDash(n.MAC), link, orDash(n.Driver), addrs)) + "\n")
		}
	}
	if s.busy != "" {
		b.WriteString("\n" + s.busy + "\n")
	}
	if s.form {
		b.WriteString("\nStatic address for " + s.nics[s.sel].Name + ":\n")
		labels := []string{"address/prefix", "gateway", "name servers"}
		for i, l := range labels {
			b.WriteString(fmt.Sprintf("  %-15s %s\n", l, s.fields[i].view(t, i == s.focus, 40)))
		}
		return b.String(), "enter apply  tab next field  esc close"
	}
	for _, l := range s.lines {
		b.WriteString(l + "\n")
	}
	if managed != "" {
		return b.String(), "enter continue  r refresh  esc leave"
	}
	return b.String(), "enter continue  d DHCP  s static  r refresh  esc leave"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
