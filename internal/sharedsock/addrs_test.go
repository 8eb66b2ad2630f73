package sharedsock

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

// TestSetLocalAddresses: the ICE mux gathers on the addresses the monitor
// hands over (the socket's family only, no loopback), and a muxed conn
// still works.
func TestSetLocalAddresses(t *testing.T) {
	bound := listen(t)
	bound.SetLocalAddresses([]netip.Addr{netip.MustParseAddr("198.18.7.7")})
	if got := bound.UDPMux().GetListenAddresses(); len(got) != 1 || got[0].String() != bound.LocalAddr().String() {
		t.Fatalf("a socket bound to one address changed its listen addresses: %v", got)
	}
	s, err := Listen(netip.MustParseAddrPort("0.0.0.0:0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Before the monitor's first list: pion's, less loopback (unless that is
	// all the host has).
	for _, a := range s.UDPMux().GetListenAddresses() {
		if ua := a.(*net.UDPAddr); ua.IP.IsLoopback() && len(s.UDPMux().GetListenAddresses()) > 1 {
			t.Fatalf("listen addresses %v hold loopback beside others", s.UDPMux().GetListenAddresses())
		}
	}
	port := s.LocalAddr().Port()
	s.SetLocalAddresses([]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("198.18.7.7"),
		netip.MustParseAddr("fd00::1"), netip.MustParseAddr("::ffff:10.1.2.3")})
	var got []string
	for _, a := range s.UDPMux().GetListenAddresses() {
		ua := a.(*net.UDPAddr)
		if ua.Port != int(port) {
			t.Fatalf("port %d, want %d", ua.Port, port)
		}
		got = append(got, ua.IP.String())
	}
	if want := []string{"198.18.7.7", "10.1.2.3"}; !slices.Equal(got, want) {
		t.Fatalf("listen addresses %v, want %v", got, want)
	}
	if la := s.LocalAddresses(); len(la) != 2 || la[1] != netip.MustParseAddr("10.1.2.3") {
		t.Fatalf("LocalAddresses %v", la)
	}
	if _, err := s.UDPMux().GetConn("ufrag1", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("198.18.7.7:1"))); err != nil {
		t.Fatalf("GetConn: %v", err)
	}
}
