package filter

import (
	"net/netip"
	"testing"
)

// benchFilter has the rules of a mid-size network: 100 peers with an SSH
// rule each, one of them (A) with a range too, and a wildcard ICMP rule.
func benchFilter() *Filter {
	var rules []Rule
	for i := range 100 {
		a := netip.AddrFrom4([4]byte{100, 64, 1, byte(i)})
		rules = append(rules, in(Rule{Peer: a, Protocol: ProtoTCP, Ports: PortRange{22, 22}}))
	}
	rules = append(rules,
		in(Rule{Peer: ipA, Protocol: ProtoTCP, Ports: PortRange{22, 22}}),
		in(Rule{Peer: ipA, Protocol: ProtoUDP, Ports: PortRange{5000, 6000}}),
		in(Rule{Peer: ipA, Action: Drop, Protocol: ProtoTCP, Ports: PortRange{23, 23}}),
		in(Rule{Peer: netip.IPv4Unspecified(), Protocol: ProtoICMP}))
	f := New()
	f.SetPolicy(Policy{Mode: Enforce, Rules: rules})
	return f
}

// One op is one inbound packet of an established TCP flow this peer
// started (the bulk of a download): a flow-table hit.
func BenchmarkInboundTracked(b *testing.B) {
	f := benchFilter()
	now := f.Now()
	f.Outbound(tcp(ipB, ipA, 50000, 443, tcpSYN), now)
	f.Inbound(tcp(ipA, ipB, 443, 50000, tcpSYN|tcpACK), now)
	pkt := tcp(ipA, ipB, 443, 50000, tcpACK|tcpPSH)
	pkt = append(pkt, make([]byte, 1200)...)
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		if !f.Inbound(pkt, now) {
			b.Fatal("dropped")
		}
	}
}

// One op is one inbound UDP datagram judged by the rules (a range rule of
// a peer with several rules) and tracked: a flow-table hit after the first.
func BenchmarkInboundRuleUDP(b *testing.B) {
	f := benchFilter()
	now := f.Now()
	pkt := udp(ipA, ipB, 40000, 5500)
	b.ReportAllocs()
	for b.Loop() {
		if !f.Inbound(pkt, now) {
			b.Fatal("dropped")
		}
	}
}

// One op is one inbound packet no rule allows: a flow-table miss, the
// rules, the drop counter.
func BenchmarkInboundDenied(b *testing.B) {
	f := benchFilter()
	now := f.Now()
	pkt := tcp(ipA, ipB, 40000, 80, tcpSYN)
	b.ReportAllocs()
	for b.Loop() {
		if f.Inbound(pkt, now) {
			b.Fatal("passed")
		}
	}
}

// One op is one outbound packet of an established flow (a table update).
func BenchmarkOutbound(b *testing.B) {
	f := benchFilter()
	now := f.Now()
	f.Outbound(tcp(ipB, ipA, 50000, 443, tcpSYN), now)
	pkt := tcp(ipB, ipA, 50000, 443, tcpACK)
	b.ReportAllocs()
	for b.Loop() {
		f.Outbound(pkt, now)
	}
}

// One op is a batch of 64 tracked inbound packets through FilterInbound
// (the clock is read once per batch).
func BenchmarkFilterInboundBatch64(b *testing.B) {
	f := benchFilter()
	now := f.Now()
	f.Outbound(tcp(ipB, ipA, 50000, 443, tcpSYN), now)
	f.Inbound(tcp(ipA, ipB, 443, 50000, tcpSYN|tcpACK), now)
	pkt := append(make([]byte, 16), tcp(ipA, ipB, 443, 50000, tcpACK)...)
	bufs := make([][]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		for i := range bufs {
			bufs[i] = pkt
		}
		if f.FilterInbound(bufs, 16) != 64 {
			b.Fatal("dropped")
		}
	}
}
