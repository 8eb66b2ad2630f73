package filter

import "encoding/binary"

// IP protocol numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// TCP flags.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10
	tcpURG = 0x20
)

// Fragment positions.
const (
	fragNone  = iota // a whole datagram
	fragFirst        // offset 0, more fragments follow
	fragLater        // offset > 0: no transport header
)

// packet is what the filter needs of one IP packet; parse fills it.
type packet struct {
	src, dst     addr16
	proto        uint8
	sport, dport uint16 // TCP/UDP ports; 0 otherwise
	icmpType     uint8
	icmpID       uint16 // echo identifier
	flags        uint8  // TCP flags
	frag         uint8
	fragID       uint32
	v6           bool
}

// ICMP message types the filter looks at.
const (
	icmp4EchoReply   = 0
	icmp4Unreachable = 3
	icmp4Echo        = 8
	icmp4TimeExceed  = 11
	icmp6Unreachable = 1
	icmp6TooBig      = 2
	icmp6TimeExceed  = 3
	icmp6ParamProb   = 4
	icmp6Echo        = 128
	icmp6EchoReply   = 129
)

// parse decodes the IP and transport headers of b into p. It reports false
// for what the filter refuses to judge: a truncated or malformed header,
// an IPv6 extension header other than Fragment, a first fragment too short
// for its transport header. Protocols other than TCP, UDP and ICMP parse
// with zero ports (only ProtoAll rules match them).
func parse(b []byte, p *packet) bool {
	*p = packet{}
	if len(b) < 1 {
		return false
	}
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || total > len(b) {
			return false
		}
		p.src = addr16{10: 0xff, 11: 0xff}
		p.dst = p.src
		copy(p.src[12:], b[12:16])
		copy(p.dst[12:], b[16:20])
		p.proto = b[9]
		ff := binary.BigEndian.Uint16(b[6:8])
		off, more := ff&0x1fff, ff&0x2000 != 0
		switch {
		case off > 0:
			p.frag = fragLater
		case more:
			p.frag = fragFirst
		}
		p.fragID = uint32(binary.BigEndian.Uint16(b[4:6]))
		l4 = b[ihl:total]
	case 6:
		if len(b) < 40 {
			return false
		}
		total := 40 + int(binary.BigEndian.Uint16(b[4:6]))
		if total > len(b) {
			return false
		}
		p.v6 = true
		copy(p.src[:], b[8:24])
		copy(p.dst[:], b[24:40])
		p.proto = b[6]
		l4 = b[40:total]
		if p.proto == 44 { // Fragment header (one at most)
			if len(l4) < 8 {
				return false
			}
			fo := binary.BigEndian.Uint16(l4[2:4])
			off, more := fo>>3, fo&1 != 0
			switch {
			case off > 0:
				p.frag = fragLater
			case more:
				p.frag = fragFirst
			}
			p.fragID = binary.BigEndian.Uint32(l4[4:8])
			p.proto = l4[0]
			l4 = l4[8:]
		}
		switch p.proto {
		case 0, 43, 44, 50, 51, 60, 135, 139, 140, 253, 254:
			return false // extension headers the filter does not walk
		}
	default:
		return false
	}
	if p.frag == fragLater {
		return true
	}
	switch p.proto {
	case protoTCP:
		if len(l4) < 20 {
			return false
		}
		p.sport = binary.BigEndian.Uint16(l4[0:2])
		p.dport = binary.BigEndian.Uint16(l4[2:4])
		p.flags = l4[13]
	case protoUDP:
		if len(l4) < 8 {
			return false
		}
		p.sport = binary.BigEndian.Uint16(l4[0:2])
		p.dport = binary.BigEndian.Uint16(l4[2:4])
	case protoICMP, protoICMPv6:
		if (p.proto == protoICMP) == p.v6 || len(l4) < 8 {
			return false // ICMPv4 in IPv6 or the other way round, or truncated
		}
		p.icmpType = l4[0]
		p.icmpID = binary.BigEndian.Uint16(l4[4:6])
	}
	return true
}

// icmpError reports whether p is an ICMP error message, which always passes.
func (p *packet) icmpError() bool {
	switch p.proto {
	case protoICMP:
		return p.icmpType == icmp4Unreachable || p.icmpType == icmp4TimeExceed
	case protoICMPv6:
		switch p.icmpType {
		case icmp6Unreachable, icmp6TooBig, icmp6TimeExceed, icmp6ParamProb:
			return true
		}
	}
	return false
}

// echoRequest and echoReply classify ICMP echo messages of either family.
func (p *packet) echoRequest() bool {
	return p.proto == protoICMP && p.icmpType == icmp4Echo || p.proto == protoICMPv6 && p.icmpType == icmp6Echo
}

func (p *packet) echoReply() bool {
	return p.proto == protoICMP && p.icmpType == icmp4EchoReply || p.proto == protoICMPv6 && p.icmpType == icmp6EchoReply
}

// validTCPFlags rejects combinations no real TCP sends (null, SYN+FIN,
// SYN+RST, FIN+RST, FIN/PSH/URG without ACK).
func validTCPFlags(f uint8) bool {
	switch {
	case f&(tcpFIN|tcpSYN|tcpRST|tcpACK) == 0:
		return false
	case f&(tcpSYN|tcpFIN) == tcpSYN|tcpFIN, f&(tcpSYN|tcpRST) == tcpSYN|tcpRST, f&(tcpFIN|tcpRST) == tcpFIN|tcpRST:
		return false
	case f&(tcpFIN|tcpPSH|tcpURG) != 0 && f&tcpACK == 0:
		return false
	}
	return true
}
