package filter

import (
	"fmt"
	"net/netip"
)

// Protocol is the protocol a rule matches.
type Protocol uint8

const (
	// ProtoAll matches every packet, whatever its protocol and ports.
	ProtoAll Protocol = iota
	ProtoTCP
	ProtoUDP
	// ProtoICMP matches ICMPv4 and ICMPv6, any type.
	ProtoICMP
)

func (p Protocol) String() string {
	switch p {
	case ProtoAll:
		return "all"
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	case ProtoICMP:
		return "icmp"
	default:
		return fmt.Sprintf("proto(%d)", uint8(p))
	}
}

// Action is what a matching rule does.
type Action uint8

const (
	Accept Action = iota
	Drop
)

func (a Action) String() string {
	if a == Drop {
		return "drop"
	}
	return "accept"
}

// Direction of a rule: In rules name the source of inbound traffic; Out
// rules name the destination of outbound traffic (ignored: outbound is
// never restricted, see the package doc).
type Direction uint8

const (
	In Direction = iota
	Out
)

func (d Direction) String() string {
	if d == Out {
		return "out"
	}
	return "in"
}

// PortRange is an inclusive range of ports; the zero value is every port.
type PortRange struct{ First, Last uint16 }

// Any reports whether r is every port.
func (r PortRange) Any() bool { return r == PortRange{} }

// Contains reports whether p is in r.
func (r PortRange) Contains(p uint16) bool { return r.Any() || p >= r.First && p <= r.Last }

func (r PortRange) String() string {
	switch {
	case r.Any():
		return "*"
	case r.First == r.Last:
		return fmt.Sprint(r.First)
	default:
		return fmt.Sprintf("%d-%d", r.First, r.Last)
	}
}

// Rule is one access rule. For an In rule, Peer is the source of the
// traffic and Ports constrains the local destination port (TCP and UDP
// only; ignored for ProtoAll and ProtoICMP).
type Rule struct {
	// Peer is the remote peer's overlay address; the unspecified address
	// (0.0.0.0 or ::) means any peer.
	Peer      netip.Addr
	Direction Direction
	Action    Action
	Protocol  Protocol
	Ports     PortRange
	// PolicyID names the policy rule, for logs.
	PolicyID string
}

func (r Rule) String() string {
	peer := r.Peer.String()
	if r.Peer.IsUnspecified() {
		peer = "any"
	}
	return fmt.Sprintf("%s %s %s %s port %s", r.Direction, r.Action, peer, r.Protocol, r.Ports)
}

// Mode is how the filter treats inbound traffic (see the package doc).
type Mode uint8

const (
	// Off: no filtering, no tracking.
	Off Mode = iota
	// AllowAll: every inbound packet passes; outbound flows are tracked.
	AllowAll
	// Enforce: tracked flows and what the rules accept pass; the rest is
	// dropped.
	Enforce
)

func (m Mode) String() string {
	switch m {
	case Off:
		return "off"
	case AllowAll:
		return "allow-all"
	case Enforce:
		return "enforce"
	default:
		return fmt.Sprintf("mode(%d)", uint8(m))
	}
}

// Policy is what a network map (and the user's switches) ask of the filter.
type Policy struct {
	Mode Mode
	// Rules apply in Enforce mode; Out rules are ignored.
	Rules []Rule
}

// addr16 is an address as 16 bytes, IPv4 in its IPv4-mapped form: a cheap,
// pointer-free map key.
type addr16 [16]byte

func addrKey(a netip.Addr) addr16 { return addr16(a.As16()) }

// matcher is one compiled rule: what it matches, not whose it is.
type matcher struct {
	proto Protocol
	ports PortRange
}

func (m matcher) match(p *packet) bool {
	switch m.proto {
	case ProtoAll:
		return true
	case ProtoICMP:
		return p.proto == protoICMP || p.proto == protoICMPv6
	case ProtoTCP:
		return p.proto == protoTCP && m.ports.Contains(p.dport)
	case ProtoUDP:
		return p.proto == protoUDP && m.ports.Contains(p.dport)
	}
	return false
}

// peerRules are the rules of one source, split by action.
type peerRules struct {
	drop, accept []matcher
}

func anyMatch(ms []matcher, p *packet) bool {
	for i := range ms {
		if ms[i].match(p) {
			return true
		}
	}
	return false
}

// ruleSet is a compiled Policy; it is never modified once published.
type ruleSet struct {
	mode  Mode
	exact map[addr16]*peerRules
	any   peerRules
	n     int // In rules compiled
}

// compile builds the rule set of p. Rules with an invalid peer address are
// left out (mgmt has validated them already); Out rules are ignored.
func compile(p Policy) *ruleSet {
	rs := &ruleSet{mode: p.Mode, exact: map[addr16]*peerRules{}}
	if p.Mode != Enforce {
		return rs
	}
	for _, r := range p.Rules {
		if r.Direction != In || !r.Peer.IsValid() {
			continue
		}
		m := matcher{proto: r.Protocol, ports: r.Ports}
		if m.proto == ProtoAll || m.proto == ProtoICMP {
			m.ports = PortRange{}
		}
		if m.ports.First > m.ports.Last {
			continue
		}
		pr := &rs.any
		if !r.Peer.Unmap().IsUnspecified() {
			k := addrKey(r.Peer.Unmap())
			if pr = rs.exact[k]; pr == nil {
				pr = &peerRules{}
				rs.exact[k] = pr
			}
		}
		if r.Action == Drop {
			pr.drop = append(pr.drop, m)
		} else {
			pr.accept = append(pr.accept, m)
		}
		rs.n++
	}
	return rs
}

// allows applies the rules to a packet no flow accounts for: DROP rules
// first (exact source, then any), then ACCEPT rules (exact, then any).
func (rs *ruleSet) allows(p *packet) bool {
	pr := rs.exact[p.src]
	if pr != nil && anyMatch(pr.drop, p) || anyMatch(rs.any.drop, p) {
		return false
	}
	return pr != nil && anyMatch(pr.accept, p) || anyMatch(rs.any.accept, p)
}
