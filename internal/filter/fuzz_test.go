package filter

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the parser and to both directions of
// a filter with rules. Nothing may panic; a packet that parses must carry
// the header fields at their wire offsets; a packet the parser refuses must
// be dropped inbound in Enforce mode.
//
// Seeds are added here (f.Add) from the packet builders of the tests.
func FuzzParse(f *testing.F) {
	frag6 := tcp(ip6A, ip6B, 1, 22, tcpSYN)
	frag6 = append(frag6[:40:40], append([]byte{protoTCP, 0, 0, 1, 0, 0, 0, 9}, frag6[40:]...)...)
	frag6[6] = 44
	binary.BigEndian.PutUint16(frag6[4:6], uint16(len(frag6)-40))
	for _, seed := range [][]byte{
		tcp(ipA, ipB, 40000, 22, tcpSYN), tcp(ip6A, ip6B, 1, 22, tcpSYN|tcpACK),
		udp(ipA, ipB, 1, 53), udp(ip6A, ip6B, 1, 53),
		icmp(ipA, ipB, icmp4Echo, 7), icmp(ip6A, ip6B, icmp4EchoReply, 7), icmp(ipA, ipB, icmp4Unreachable, 0),
		fragment4(udp(ipA, ipB, 1, 53), 3, true), fragment4(udp(ipA, ipB, 1, 53), 3, false), frag6,
		ip(47, ipA, ipB, make([]byte, 4)), {0x45}, {0x60},
	} {
		f.Add(seed)
	}
	flt := New()
	flt.SetPolicy(Policy{Mode: Enforce, Rules: []Rule{
		in(Rule{Peer: ipA, Protocol: ProtoTCP, Ports: PortRange{20, 30}}),
		in(Rule{Peer: netip.IPv4Unspecified(), Protocol: ProtoICMP}),
		in(Rule{Peer: ip6A, Action: Drop, Protocol: ProtoUDP}),
	}})
	f.Fuzz(func(t *testing.T, b []byte) {
		var p packet
		ok := parse(b, &p)
		now := flt.Now()
		passed := flt.Inbound(b, now)
		flt.Outbound(b, now)
		if !ok {
			if passed {
				t.Fatal("a packet the parser refused passed")
			}
			return
		}
		switch b[0] >> 4 {
		case 4:
			if !netip.AddrFrom16(p.src).Unmap().Is4() || [4]byte(b[12:16]) != netip.AddrFrom16(p.src).Unmap().As4() ||
				p.proto != b[9] || p.v6 {
				t.Fatalf("v4 header misread: %+v", p)
			}
		case 6:
			if [16]byte(b[8:24]) != p.src || [16]byte(b[24:40]) != p.dst || !p.v6 {
				t.Fatalf("v6 header misread: %+v", p)
			}
		default:
			t.Fatalf("version %d parsed", b[0]>>4)
		}
		if p.frag == fragLater && (p.sport != 0 || p.dport != 0) {
			t.Fatal("later fragment with ports")
		}
	})
}
