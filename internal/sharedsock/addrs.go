package sharedsock

import (
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/pion/ice/v2"
)

// addrMux is the ICE mux with listen addresses that follow the host: pion
// reads the host's addresses once, when the mux is made; the network monitor
// hands new ones to SetLocalAddresses and the next agents gather host
// candidates on them.
//
// A socket bound to an unspecified address gathers no host candidate on a
// loopback address: it is never signalled (no remote peer is on this host's
// loopback), and pion's checks from it leave through the socket like the
// real host candidate's, so a pair selected on it would show a loopback
// local endpoint for a path that is not. A socket bound to loopback (the
// in-process test network) keeps its one address.
type addrMux struct {
	*ice.UniversalUDPMuxDefault
	addrs atomic.Pointer[[]net.Addr] // nil: pion's own list, less loopback
}

// GetListenAddresses implements ice.UDPMux.
func (m *addrMux) GetListenAddresses() []net.Addr {
	if p := m.addrs.Load(); p != nil {
		return *p
	}
	return withoutLoopback(m.UniversalUDPMuxDefault.GetListenAddresses())
}

// withoutLoopback leaves the loopback addresses out of pion's list, unless
// they are all it has (a socket bound to loopback, or a host without any
// other address).
func withoutLoopback(all []net.Addr) []net.Addr {
	out := make([]net.Addr, 0, len(all))
	for _, a := range all {
		if ua, ok := a.(*net.UDPAddr); !ok || !ua.IP.IsLoopback() {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

// SetLocalAddresses replaces the addresses ICE agents gather host
// candidates on (the socket's port on each). Addresses of the other IP
// family than the socket's, loopback and IPv6 link-local ones are left out. A
// socket bound to one address keeps that one.
func (s *Socket) SetLocalAddresses(addrs []netip.Addr) {
	if !s.local.Addr().IsUnspecified() {
		return
	}
	v4 := s.local.Addr().Is4()
	list := make([]net.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() != v4 || a.IsUnspecified() || a.IsLoopback() || (a.Is6() && a.IsLinkLocalUnicast()) {
			continue
		}
		list = append(list, net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, s.local.Port())))
	}
	s.muxView.addrs.Store(&list)
}

// LocalAddresses returns the addresses agents gather host candidates on.
func (s *Socket) LocalAddresses() []netip.Addr {
	var out []netip.Addr
	for _, a := range s.muxView.GetListenAddresses() {
		if ua, ok := a.(*net.UDPAddr); ok {
			out = append(out, ua.AddrPort().Addr().Unmap())
		}
	}
	return out
}
