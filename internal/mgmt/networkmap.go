package mgmt

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/filter"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// maxEntryText bounds the text of a skipped entry kept for logs and status.
const maxEntryText = 64

// Update is one message of the Sync stream, converted.
type Update struct {
	// Config is the new service config; nil means keep the current one.
	Config *Config
	// Map is the new network map; nil means this update is config-only.
	Map *NetworkMap
	// Checks are the posture checks' file paths (field 6), valid when
	// HasChecks: a message with a network map is the full state, so its
	// checks (none included) replace the last ones; a config-only message
	// changes them only if it carries some.
	Checks    []string
	HasChecks bool
}

// NetworkMap is the typed, validated network map of this peer.
type NetworkMap struct {
	Serial uint64
	// Peer is this peer's own config; zero Address means none was sent
	// (keep the current one).
	Peer PeerConfig
	// Peers is the whole desired set of online remote peers, in server order.
	Peers []RemotePeer
	// Offline are peers to show but not connect.
	Offline []RemotePeer
	// Skipped are the entries left out, with the reason.
	Skipped []Skipped
	// Firewall is the access policy of this peer (fields 8 and 9).
	Firewall Firewall
}

// Firewall is the peer-to-peer access policy of a network map.
type Firewall struct {
	// Managed: the server sent rules or firewallRulesIsEmpty, so inbound
	// traffic is denied unless a rule allows it. False: a legacy server
	// that knows no access control; everything is allowed.
	Managed bool
	// Rules are the valid rules, in server order (In and Out).
	Rules []filter.Rule
	// Skipped are the rules left out, with the reason (ErrBadRule or
	// ErrUnsupportedRule).
	Skipped []Skipped
}

// Reasons for skipping a firewall rule (Firewall.Skipped).
var (
	// ErrBadRule: a rule's peer address, port, direction or action does
	// not parse.
	ErrBadRule = errors.New("mgmt: bad firewall rule")
	// ErrUnsupportedRule: a rule for a protocol nbfsm does not filter
	// (UNKNOWN, CUSTOM, NETBIRD_SSH), skipped as the official client does.
	ErrUnsupportedRule = errors.New("mgmt: unsupported firewall rule")
)

// RemotePeer is one remote peer of the map.
type RemotePeer struct {
	Key          wgtypes.Key    // public key
	AllowedIPs   []netip.Prefix // masked, in server order
	FQDN         string
	AgentVersion string // the remote's reported NetBird version
}

// Skipped is an entry of the map or config that was left out.
type Skipped struct {
	Entry  string // the key or URI text, truncated
	Reason error  // wraps ErrBadKey, ErrBadCIDR, ErrOwnKey, ErrDuplicatePeer or ErrBadHost
}

func (s Skipped) String() string { return fmt.Sprintf("%q: %v", s.Entry, s.Reason) }

// ConvertNetworkMap converts the NetworkMap of resp for the peer whose public
// key is own. It is pure. It returns (nil, nil) when resp carries no
// NetworkMap (a config-only update) and an error wrapping ErrBadPeerConfig
// when the map's own peer config is unusable; bad remote entries are skipped,
// never fatal. The rules are in the package doc.
func ConvertNetworkMap(own wgtypes.Key, resp *mgmtpb.SyncResponse) (*NetworkMap, error) {
	nm := resp.GetNetworkMap()
	if nm == nil {
		return nil, nil
	}
	out := &NetworkMap{Serial: nm.GetSerial()}

	pc := nm.GetPeerConfig()
	if pc == nil {
		pc = resp.GetPeerConfig() // deprecated copy, filled by old servers
	}
	if pc != nil {
		p, err := convertPeerConfig(pc)
		if err != nil {
			return nil, fmt.Errorf("mgmt: network map serial %d: %w", out.Serial, err)
		}
		out.Peer = p
	}

	remotes := nm.GetRemotePeers()
	if len(remotes) == 0 && !nm.GetRemotePeersIsEmpty() {
		remotes = resp.GetRemotePeers() // deprecated copy, see package doc
	}

	seen := make(map[wgtypes.Key]struct{}, len(remotes)+len(nm.GetOfflinePeers()))
	out.Peers = convertPeers(own, remotes, seen, &out.Skipped)
	out.Offline = convertPeers(own, nm.GetOfflinePeers(), seen, &out.Skipped)
	out.Firewall = convertFirewall(nm.GetFirewallRules(), nm.GetFirewallRulesIsEmpty())
	return out, nil
}

// convertFirewall converts fields 8 and 9 (shared/protocol/FIREWALL.md §2):
// no rules and no empty flag is a legacy server; otherwise the policy is
// managed, and a rule that does not convert is skipped with its reason (so
// a map whose every rule is bad denies everything new, as upstream).
func convertFirewall(in []*mgmtpb.FirewallRule, empty bool) Firewall {
	fw := Firewall{Managed: len(in) > 0 || empty}
	for i, pb := range in {
		r, err := ConvertFirewallRule(pb)
		if err != nil {
			fw.Skipped = append(fw.Skipped, Skipped{Entry: truncate(fmt.Sprintf("rule %d %s", i, pb.GetPeerIP())), Reason: err})
			continue
		}
		fw.Rules = append(fw.Rules, r)
	}
	return fw
}

// ConvertFirewallRule converts one rule as the official client reads it:
//   - peer: the first sourcePrefixes entry (compact form: 4 or 16 address
//     bytes and a prefix length; the length is ignored), else PeerIP text;
//     0.0.0.0 and :: mean any peer;
//   - protocol ALL, TCP, UDP or ICMP; other protocols are ErrUnsupportedRule;
//   - ports (TCP and UDP only): PortInfo.port when not 0, PortInfo.range
//     when both ends are not 0 (inclusive; start > end is ErrBadRule), a
//     range with a 0 end is every port; else the Port text when not empty
//     (1..65535); else every port.
func ConvertFirewallRule(pb *mgmtpb.FirewallRule) (filter.Rule, error) {
	var r filter.Rule
	peer, err := rulePeer(pb)
	if err != nil {
		return r, err
	}
	r.Peer = peer
	switch pb.GetDirection() {
	case mgmtpb.RuleDirection_IN:
		r.Direction = filter.In
	case mgmtpb.RuleDirection_OUT:
		r.Direction = filter.Out
	default:
		return r, fmt.Errorf("%w: direction %d", ErrBadRule, pb.GetDirection())
	}
	switch pb.GetAction() {
	case mgmtpb.RuleAction_ACCEPT:
		r.Action = filter.Accept
	case mgmtpb.RuleAction_DROP:
		r.Action = filter.Drop
	default:
		return r, fmt.Errorf("%w: action %d", ErrBadRule, pb.GetAction())
	}
	switch pb.GetProtocol() {
	case mgmtpb.RuleProtocol_ALL:
		r.Protocol = filter.ProtoAll
	case mgmtpb.RuleProtocol_TCP:
		r.Protocol = filter.ProtoTCP
	case mgmtpb.RuleProtocol_UDP:
		r.Protocol = filter.ProtoUDP
	case mgmtpb.RuleProtocol_ICMP:
		r.Protocol = filter.ProtoICMP
	default:
		return r, fmt.Errorf("%w: protocol %v", ErrUnsupportedRule, pb.GetProtocol())
	}
	if r.Protocol == filter.ProtoTCP || r.Protocol == filter.ProtoUDP {
		if r.Ports, err = rulePorts(pb); err != nil {
			return r, err
		}
	}
	r.PolicyID = truncate(string(pb.GetPolicyID()))
	return r, nil
}

func rulePeer(pb *mgmtpb.FirewallRule) (netip.Addr, error) {
	if sp := pb.GetSourcePrefixes(); len(sp) > 0 {
		b := sp[0]
		var a netip.Addr
		switch len(b) {
		case 5:
			a = netip.AddrFrom4([4]byte(b[:4]))
		case 17:
			a = netip.AddrFrom16([16]byte(b[:16]))
		default:
			return netip.Addr{}, fmt.Errorf("%w: source prefix of %d bytes", ErrBadRule, len(b))
		}
		if int(b[len(b)-1]) > a.BitLen() {
			return netip.Addr{}, fmt.Errorf("%w: source prefix length %d", ErrBadRule, b[len(b)-1])
		}
		return a.Unmap(), nil // v4-mapped is IPv4, as upstream's compact decoding
	}
	a, err := netip.ParseAddr(pb.GetPeerIP())
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%w: peer IP %q", ErrBadRule, truncate(pb.GetPeerIP()))
	}
	return a.Unmap(), nil
}

func rulePorts(pb *mgmtpb.FirewallRule) (filter.PortRange, error) {
	pi := pb.GetPortInfo()
	if p := pi.GetPort(); p != 0 {
		if p > 65535 {
			return filter.PortRange{}, fmt.Errorf("%w: port %d", ErrBadRule, p)
		}
		return filter.PortRange{First: uint16(p), Last: uint16(p)}, nil
	}
	if rg := pi.GetRange(); rg != nil {
		if rg.GetStart() == 0 || rg.GetEnd() == 0 {
			return filter.PortRange{}, nil // management's "all ports"
		}
		if rg.GetStart() > rg.GetEnd() || rg.GetEnd() > 65535 {
			return filter.PortRange{}, fmt.Errorf("%w: port range %d-%d", ErrBadRule, rg.GetStart(), rg.GetEnd())
		}
		return filter.PortRange{First: uint16(rg.GetStart()), Last: uint16(rg.GetEnd())}, nil
	}
	if s := pb.GetPort(); s != "" {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil || p == 0 {
			return filter.PortRange{}, fmt.Errorf("%w: port %q", ErrBadRule, truncate(s))
		}
		return filter.PortRange{First: uint16(p), Last: uint16(p)}, nil
	}
	return filter.PortRange{}, nil
}

// convertPeers converts a list of remote peers, skipping bad entries and keys
// already in seen (which it extends).
func convertPeers(own wgtypes.Key, in []*mgmtpb.RemotePeerConfig, seen map[wgtypes.Key]struct{}, skipped *[]Skipped) []RemotePeer {
	out := make([]RemotePeer, 0, len(in))
	for _, pb := range in {
		p, err := convertPeer(own, pb, seen)
		if err != nil {
			*skipped = append(*skipped, Skipped{Entry: truncate(pb.GetWgPubKey()), Reason: err})
			continue
		}
		seen[p.Key] = struct{}{}
		out = append(out, p)
	}
	return out
}

func convertPeer(own wgtypes.Key, pb *mgmtpb.RemotePeerConfig, seen map[wgtypes.Key]struct{}) (RemotePeer, error) {
	key, err := nbcrypto.ParseKey(pb.GetWgPubKey())
	if err != nil {
		return RemotePeer{}, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if key == own {
		return RemotePeer{}, ErrOwnKey
	}
	if _, dup := seen[key]; dup {
		return RemotePeer{}, ErrDuplicatePeer
	}
	ips := make([]netip.Prefix, 0, len(pb.GetAllowedIps()))
	for _, s := range pb.GetAllowedIps() {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return RemotePeer{}, fmt.Errorf("%w: %q: %w", ErrBadCIDR, truncate(s), err)
		}
		ips = append(ips, p.Masked())
	}
	return RemotePeer{
		Key:          key,
		AllowedIPs:   ips,
		FQDN:         pb.GetFqdn(),
		AgentVersion: pb.GetAgentVersion(),
	}, nil
}

// truncate bounds text taken from the wire before it is kept or logged.
func truncate(s string) string {
	if len(s) <= maxEntryText {
		return s
	}
	return s[:maxEntryText] + "…"
}
