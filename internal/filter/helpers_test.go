package filter

import (
	"encoding/binary"
	"net/netip"
)

var (
	ipA  = netip.MustParseAddr("100.64.0.1") // a remote peer
	ipB  = netip.MustParseAddr("100.64.0.2") // this peer
	ipC  = netip.MustParseAddr("100.64.0.3") // another remote peer
	ip6A = netip.MustParseAddr("fd00::1")
	ip6B = netip.MustParseAddr("fd00::2")
)

// ip builds an IPv4 or IPv6 packet around an L4 payload.
func ip(proto uint8, src, dst netip.Addr, l4 []byte) []byte {
	if src.Is4() {
		b := make([]byte, 20+len(l4))
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
		b[8] = 64
		b[9] = proto
		s, d := src.As4(), dst.As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		copy(b[20:], l4)
		return b
	}
	if proto == protoICMP {
		proto = protoICMPv6
	}
	b := make([]byte, 40+len(l4))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(len(l4)))
	b[6] = proto
	b[7] = 64
	s, d := src.As16(), dst.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	copy(b[40:], l4)
	return b
}

func tcp(src, dst netip.Addr, sport, dport uint16, flags uint8) []byte {
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	l4[12] = 5 << 4
	l4[13] = flags
	return ip(protoTCP, src, dst, l4)
}

func udp(src, dst netip.Addr, sport, dport uint16) []byte {
	l4 := make([]byte, 8+4)
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	return ip(protoUDP, src, dst, l4)
}

// icmp builds an ICMP message; typ is the v4 type, mapped for v6.
func icmp(src, dst netip.Addr, typ uint8, id uint16) []byte {
	if !src.Is4() {
		typ = map[uint8]uint8{icmp4Echo: icmp6Echo, icmp4EchoReply: icmp6EchoReply, icmp4Unreachable: icmp6Unreachable, icmp4TimeExceed: icmp6TimeExceed}[typ]
	}
	l4 := make([]byte, 8+8)
	l4[0] = typ
	binary.BigEndian.PutUint16(l4[4:], id)
	return ip(protoICMP, src, dst, l4)
}

// fragment turns an IPv4 packet into a fragment: first (offset 0, MF) or a
// later one (offset 8 bytes, no transport header).
func fragment4(b []byte, id uint16, first bool) []byte {
	b = append([]byte(nil), b...)
	binary.BigEndian.PutUint16(b[4:6], id)
	if first {
		binary.BigEndian.PutUint16(b[6:8], 0x2000)
	} else {
		binary.BigEndian.PutUint16(b[6:8], 1) // offset 8, last
		b = b[:28]
		binary.BigEndian.PutUint16(b[2:4], 28)
	}
	return b
}

// fakeClock is a manual clock for expiry tests.
type fakeClock struct{ t int64 }

func (c *fakeClock) now() int64 { return c.t }

func newTestFilter(p Policy) (*Filter, *fakeClock) {
	f := New()
	c := &fakeClock{t: 1}
	f.clock = c.now
	f.SetPolicy(p)
	return f, c
}

func in(r Rule) Rule { r.Direction = In; return r }
