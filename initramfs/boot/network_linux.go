package boot

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"

	"github.com/u-root/u-root/pkg/dhclient"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinksUp brings every NIC up (so that its carrier can be read) and waits up to wait for carriers.
func LinksUp(nics []NIC, wait time.Duration) {
	for _, n := range nics {
		if l, err := netlink.LinkByName(n.Name); err == nil {
			_ = netlink.LinkSetUp(l)
		}
	}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		all := true
		for _, n := range nics {
			if readAttr("/sys/class/net/"+n.Name, "carrier") != "1" {
				all = false
			}
		}
		if all {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Configure sets up the network as the command line asks: a static address, or DHCP on every
// NIC with a link. It returns one line per configured interface.
func Configure(ctx context.Context, c Cmdline, nics []NIC) ([]string, error) {
	if c.Static != nil {
		return configureStatic(c.Static, nics)
	}
	if !c.DHCP() {
		return nil, nil
	}
	var links []netlink.Link
	for _, n := range nics {
		if readAttr("/sys/class/net/"+n.Name, "carrier") != "1" {
			continue
		}
		if l, err := netlink.LinkByName(n.Name); err == nil {
			links = append(links, l)
		}
	}
	if len(links) == 0 {
		return nil, fmt.Errorf("network: no interface has a link; DHCP not tried")
	}
	// dhclient logs through the standard logger; the console has the summary lines instead.
	log.SetOutput(io.Discard)
	// DHCP transaction IDs come from crypto/rand, which fails its request instead of waiting
	// while the kernel's random pool is not ready — seconds after boot on machines without
	// RDRAND (and under emulation). Wait for the pool first.
	var one [1]byte
	_, _ = unix.Getrandom(one[:], 0)
	var lines []string
	var firstErr error
	for r := range dhclient.SendRequests(ctx, links, true, false, dhclient.Config{Timeout: 4 * time.Second, Retries: 3}, 5*time.Second) {
		name := r.Interface.Attrs().Name
		if r.Err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("network: DHCP on %s: %w", name, r.Err)
			}
			continue
		}
		if err := r.Lease.Configure(); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("network: configuring %s: %w", name, err)
			}
			continue
		}
		if p, ok := r.Lease.(*dhclient.Packet4); ok {
			ns, sl, dom := p.GatherDNSSettings()
			_ = os.MkdirAll("/etc", 0o755)
			_ = dhclient.WriteDNSSettings(ns, sl, dom, "/etc/resolv.conf")
			lines = append(lines, fmt.Sprintf("cauldron: network %s %s dhcp", name, p.Lease()))
		}
	}
	if len(lines) > 0 {
		return lines, nil
	}
	return nil, firstErr
}

func configureStatic(st *StaticIP, nics []NIC) ([]string, error) {
	dev := st.Device
	if dev == "" {
		for _, n := range nics {
			if readAttr("/sys/class/net/"+n.Name, "carrier") == "1" {
				dev = n.Name
				break
			}
		}
		if dev == "" {
			return nil, fmt.Errorf("network: ip= names no device and no interface has a link")
		}
	}
	l, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("network: ip= device %q: %w", dev, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("network: bringing up %s: %w", dev, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: st.Address, Mask: st.Mask}}
	if err := netlink.AddrReplace(l, addr); err != nil {
		return nil, fmt.Errorf("network: address %s on %s: %w", addr.IPNet, dev, err)
	}
	if st.Gateway != nil {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: st.Gateway}); err != nil {
			return nil, fmt.Errorf("network: default route via %s on %s: %w", st.Gateway, dev, err)
		}
	}
	line := fmt.Sprintf("cauldron: network %s %s static", dev, addr.IPNet)
	if st.Gateway != nil {
		line += " gateway " + st.Gateway.String()
	}
	if len(st.DNS) > 0 {
		_ = os.MkdirAll("/etc", 0o755)
		if err := os.WriteFile("/etc/resolv.conf", []byte(resolvConf(st.DNS)), 0o644); err != nil {
			return nil, fmt.Errorf("network: writing /etc/resolv.conf: %w", err)
		}
		line += " dns " + resolvList(st.DNS)
	}
	if st.Hostname != "" {
		if err := unix.Sethostname([]byte(st.Hostname)); err != nil {
			return nil, fmt.Errorf("network: host name %q: %w", st.Hostname, err)
		}
	}
	return []string{line}, nil
}
