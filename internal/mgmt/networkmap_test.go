package mgmt

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/filter"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// key is a private key made of one repeated byte, for reproducible tests.
func key(b byte) wgtypes.Key {
	var k wgtypes.Key
	for i := range k {
		k[i] = b
	}
	return k
}

var (
	ownPriv = key(0x01)
	own     = ownPriv.PublicKey()
	peerA   = key(0x0a).PublicKey()
	peerB   = key(0x0b).PublicKey()
	peerC   = key(0x0c).PublicKey()
)

func rp(k wgtypes.Key, ips ...string) *mgmtpb.RemotePeerConfig {
	return &mgmtpb.RemotePeerConfig{WgPubKey: k.String(), AllowedIps: ips, Fqdn: "p.netbird.cloud", AgentVersion: "0.44.0"}
}

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

func want(k wgtypes.Key, ips ...string) RemotePeer {
	return RemotePeer{Key: k, AllowedIPs: pfx(ips...), FQDN: "p.netbird.cloud", AgentVersion: "0.44.0"}
}

var ownConfig = &mgmtpb.PeerConfig{Address: "100.91.205.61/16", Fqdn: "me.netbird.cloud", Mtu: 1280, LazyConnectionEnabled: true}

var ownPeer = PeerConfig{Address: netip.MustParsePrefix("100.91.205.61/16"), FQDN: "me.netbird.cloud", MTU: 1280, LazyConnection: true}

func TestConvertNetworkMap(t *testing.T) {
	long := strings.Repeat("x", 200)
	tests := []struct {
		name        string
		resp        *mgmtpb.SyncResponse
		wantNil     bool
		wantErr     error
		wantPeer    PeerConfig
		wantPeers   []RemotePeer
		wantOffline []RemotePeer
		wantSkipped []error
	}{
		{
			name:    "no network map: config only",
			resp:    &mgmtpb.SyncResponse{NetbirdConfig: &mgmtpb.NetbirdConfig{}},
			wantNil: true,
		},
		{
			name:    "nil response",
			resp:    nil,
			wantNil: true,
		},
		{
			name: "full map",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial: 7, PeerConfig: ownConfig,
				RemotePeers:  []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32"), rp(peerB, "100.91.205.63/32", "10.1.0.0/16")},
				OfflinePeers: []*mgmtpb.RemotePeerConfig{rp(peerC, "100.91.205.64/32")},
			}},
			wantPeer:    ownPeer,
			wantPeers:   []RemotePeer{want(peerA, "100.91.205.62/32"), want(peerB, "100.91.205.63/32", "10.1.0.0/16")},
			wantOffline: []RemotePeer{want(peerC, "100.91.205.64/32")},
		},
		{
			name: "bad entries skipped, rest applies",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial: 8, PeerConfig: ownConfig,
				RemotePeers: []*mgmtpb.RemotePeerConfig{
					{WgPubKey: "not-a-key", AllowedIps: []string{"100.91.205.70/32"}},
					{WgPubKey: long},
					rp(peerA, "100.91.205.62/32"),
					rp(peerB, "100.91.205.63"), // no prefix length
					rp(own, "100.91.205.61/32"),
					rp(peerA, "100.91.205.99/32"), // duplicate
					rp(peerC, "300.1.1.1/32"),
				},
				OfflinePeers: []*mgmtpb.RemotePeerConfig{
					rp(peerA, "100.91.205.62/32"), // also online
					rp(peerB, "100.91.205.63/32"),
				},
			}},
			wantPeer:    ownPeer,
			wantPeers:   []RemotePeer{want(peerA, "100.91.205.62/32")},
			wantOffline: []RemotePeer{want(peerB, "100.91.205.63/32")},
			wantSkipped: []error{ErrBadKey, ErrBadKey, ErrBadCIDR, ErrOwnKey, ErrDuplicatePeer, ErrBadCIDR, ErrDuplicatePeer},
		},
		{
			name: "allowed IPs are masked, IPv6 kept",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial:      1,
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/16", "fd00::1/64")},
			}},
			wantPeers: []RemotePeer{want(peerA, "100.91.0.0/16", "fd00::/64")},
		},
		{
			name: "remotePeersIsEmpty: empty set even if the deprecated copy is not",
			resp: &mgmtpb.SyncResponse{
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")},
				NetworkMap:  &mgmtpb.NetworkMap{Serial: 3, PeerConfig: ownConfig, RemotePeersIsEmpty: true},
			},
			wantPeer:  ownPeer,
			wantPeers: []RemotePeer{},
		},
		{
			name: "absent list without flag: deprecated copy used",
			resp: &mgmtpb.SyncResponse{
				PeerConfig:  ownConfig,
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")},
				NetworkMap:  &mgmtpb.NetworkMap{Serial: 4},
			},
			wantPeer:  ownPeer,
			wantPeers: []RemotePeer{want(peerA, "100.91.205.62/32")},
		},
		{
			name:      "absent everywhere: empty set, no own config",
			resp:      &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{Serial: 5}},
			wantPeers: []RemotePeer{},
		},
		{
			name: "map list wins over deprecated copy",
			resp: &mgmtpb.SyncResponse{
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerB, "100.91.205.63/32")},
				NetworkMap:  &mgmtpb.NetworkMap{Serial: 6, RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")}},
			},
			wantPeers: []RemotePeer{want(peerA, "100.91.205.62/32")},
		},
		{
			name: "bad own address rejects the map",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial: 9, PeerConfig: &mgmtpb.PeerConfig{Address: "100.91.205.61"},
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")},
			}},
			wantErr: ErrBadPeerConfig,
		},
		{
			name: "negative MTU rejects the map",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial: 10, PeerConfig: &mgmtpb.PeerConfig{Address: "100.91.205.61/16", Mtu: -1},
			}},
			wantErr: ErrBadPeerConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nm, err := ConvertNetworkMap(own, tt.resp)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil || tt.wantNil {
				if nm != nil {
					t.Fatalf("map = %+v, want nil", nm)
				}
				return
			}
			if nm.Serial != tt.resp.GetNetworkMap().GetSerial() {
				t.Errorf("serial %d", nm.Serial)
			}
			if nm.Peer != tt.wantPeer {
				t.Errorf("peer %+v, want %+v", nm.Peer, tt.wantPeer)
			}
			if !reflect.DeepEqual(nm.Peers, tt.wantPeers) {
				t.Errorf("peers\n got %+v\nwant %+v", nm.Peers, tt.wantPeers)
			}
			if len(tt.wantOffline) > 0 || len(nm.Offline) > 0 {
				if !reflect.DeepEqual(nm.Offline, tt.wantOffline) {
					t.Errorf("offline\n got %+v\nwant %+v", nm.Offline, tt.wantOffline)
				}
			}
			if len(nm.Skipped) != len(tt.wantSkipped) {
				t.Fatalf("skipped %v, want %d entries", nm.Skipped, len(tt.wantSkipped))
			}
			for i, s := range nm.Skipped {
				if !errors.Is(s.Reason, tt.wantSkipped[i]) {
					t.Errorf("skipped[%d] = %v, want %v", i, s, tt.wantSkipped[i])
				}
				if len(s.Entry) > maxEntryText+len("…") {
					t.Errorf("skipped[%d] entry not truncated: %d bytes", i, len(s.Entry))
				}
			}
		})
	}
}

// TestConvertNetworkMapIsPure: converting does not change the input and the
// result shares no slices with it.
func TestConvertNetworkMapIsPure(t *testing.T) {
	resp := &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
		Serial: 1, RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")},
	}}
	a, _ := ConvertNetworkMap(own, resp)
	b, _ := ConvertNetworkMap(own, resp)
	a.Peers[0].AllowedIPs[0] = netip.MustParsePrefix("10.0.0.0/8")
	if b.Peers[0].AllowedIPs[0].String() != "100.91.205.62/32" {
		t.Fatal("two conversions share memory")
	}
	if resp.NetworkMap.RemotePeers[0].AllowedIps[0] != "100.91.205.62/32" {
		t.Fatal("input changed")
	}
}

func TestConvertFirewallRule(t *testing.T) {
	ip := netip.MustParseAddr
	compact4 := []byte{100, 64, 0, 7, 32}
	compact6 := append(netip.MustParseAddr("fd00::7").AsSlice(), 128)
	mapped := append(netip.AddrFrom16(ip("100.64.0.8").As16()).AsSlice(), 128)
	rng := func(a, b uint32) *mgmtpb.PortInfo {
		return &mgmtpb.PortInfo{PortSelection: &mgmtpb.PortInfo_Range_{Range: &mgmtpb.PortInfo_Range{Start: a, End: b}}}
	}
	port := func(p uint32) *mgmtpb.PortInfo {
		return &mgmtpb.PortInfo{PortSelection: &mgmtpb.PortInfo_Port{Port: p}}
	}
	tcp := mgmtpb.RuleProtocol_TCP
	tests := []struct {
		name string
		in   *mgmtpb.FirewallRule
		want filter.Rule
		err  error
	}{
		{"tcp port text", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, Port: "22", PolicyID: []byte("p1")},
			filter.Rule{Peer: ip("100.64.0.2"), Protocol: filter.ProtoTCP, Ports: filter.PortRange{First: 22, Last: 22}, PolicyID: "p1"}, nil},
		{"udp range, drop, out", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Direction: mgmtpb.RuleDirection_OUT, Action: mgmtpb.RuleAction_DROP, Protocol: mgmtpb.RuleProtocol_UDP, PortInfo: rng(5000, 6000)},
			filter.Rule{Peer: ip("100.64.0.2"), Direction: filter.Out, Action: filter.Drop, Protocol: filter.ProtoUDP, Ports: filter.PortRange{First: 5000, Last: 6000}}, nil},
		{"range 0-0 is every port", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, PortInfo: rng(0, 0)},
			filter.Rule{Peer: ip("100.64.0.2"), Protocol: filter.ProtoTCP}, nil},
		{"portinfo port wins over text", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, Port: "80", PortInfo: port(443)},
			filter.Rule{Peer: ip("100.64.0.2"), Protocol: filter.ProtoTCP, Ports: filter.PortRange{First: 443, Last: 443}}, nil},
		{"portinfo port 0 falls back to text", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, Port: "80", PortInfo: port(0)},
			filter.Rule{Peer: ip("100.64.0.2"), Protocol: filter.ProtoTCP, Ports: filter.PortRange{First: 80, Last: 80}}, nil},
		{"icmp ignores ports", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: mgmtpb.RuleProtocol_ICMP, Port: "80"},
			filter.Rule{Peer: ip("100.64.0.2"), Protocol: filter.ProtoICMP}, nil},
		{"all, wildcard", &mgmtpb.FirewallRule{PeerIP: "0.0.0.0", Protocol: mgmtpb.RuleProtocol_ALL},
			filter.Rule{Peer: ip("0.0.0.0"), Protocol: filter.ProtoAll}, nil},
		{"sourcePrefixes v4 wins over PeerIP", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", SourcePrefixes: [][]byte{compact4}, Protocol: mgmtpb.RuleProtocol_ALL},
			filter.Rule{Peer: ip("100.64.0.7"), Protocol: filter.ProtoAll}, nil},
		{"sourcePrefixes v6", &mgmtpb.FirewallRule{PeerIP: "::", SourcePrefixes: [][]byte{compact6}, Protocol: mgmtpb.RuleProtocol_ALL},
			filter.Rule{Peer: ip("fd00::7"), Protocol: filter.ProtoAll}, nil},
		{"sourcePrefixes v4-mapped is unmapped", &mgmtpb.FirewallRule{SourcePrefixes: [][]byte{mapped}, Protocol: mgmtpb.RuleProtocol_ALL},
			filter.Rule{Peer: ip("100.64.0.8"), Protocol: filter.ProtoAll}, nil},
		{"sourcePrefixes wildcard", &mgmtpb.FirewallRule{SourcePrefixes: [][]byte{{0, 0, 0, 0, 0}}, Protocol: mgmtpb.RuleProtocol_ALL},
			filter.Rule{Peer: ip("0.0.0.0"), Protocol: filter.ProtoAll}, nil},
		{"bad compact length", &mgmtpb.FirewallRule{SourcePrefixes: [][]byte{{1, 2, 3}}, Protocol: tcp}, filter.Rule{}, ErrBadRule},
		{"bad compact prefix length", &mgmtpb.FirewallRule{SourcePrefixes: [][]byte{{1, 2, 3, 4, 33}}, Protocol: tcp}, filter.Rule{}, ErrBadRule},
		{"bad peer IP", &mgmtpb.FirewallRule{PeerIP: "100.64.0", Protocol: tcp}, filter.Rule{}, ErrBadRule},
		{"CIDR as peer IP", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2/32", Protocol: tcp}, filter.Rule{}, ErrBadRule},
		{"empty peer IP", &mgmtpb.FirewallRule{Protocol: tcp}, filter.Rule{}, ErrBadRule},
		{"bad port text", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, Port: "ssh"}, filter.Rule{}, ErrBadRule},
		{"port 0 text", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, Port: "0"}, filter.Rule{}, ErrBadRule},
		{"port too big", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, PortInfo: port(70000)}, filter.Rule{}, ErrBadRule},
		{"inverted range", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, PortInfo: rng(90, 80)}, filter.Rule{}, ErrBadRule},
		{"range end too big", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, PortInfo: rng(80, 65536)}, filter.Rule{}, ErrBadRule},
		{"unknown direction", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, Direction: 7}, filter.Rule{}, ErrBadRule},
		{"unknown action", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: tcp, Action: 7}, filter.Rule{}, ErrBadRule},
		{"custom protocol", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: mgmtpb.RuleProtocol_CUSTOM}, filter.Rule{}, ErrUnsupportedRule},
		{"netbird ssh", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: mgmtpb.RuleProtocol_NETBIRD_SSH}, filter.Rule{}, ErrUnsupportedRule},
		{"unknown protocol", &mgmtpb.FirewallRule{PeerIP: "100.64.0.2"}, filter.Rule{}, ErrUnsupportedRule},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ConvertFirewallRule(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err == nil && got != tt.want {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConvertFirewall(t *testing.T) {
	good := &mgmtpb.FirewallRule{PeerIP: "100.64.0.2", Protocol: mgmtpb.RuleProtocol_ALL}
	bad := &mgmtpb.FirewallRule{PeerIP: "x", Protocol: mgmtpb.RuleProtocol_ALL}
	tests := []struct {
		name          string
		rules         []*mgmtpb.FirewallRule
		empty         bool
		managed       bool
		kept, skipped int
	}{
		{"legacy server: neither rules nor flag", nil, false, false, 0, 0},
		{"empty flag: deny all", nil, true, true, 0, 0},
		{"rules", []*mgmtpb.FirewallRule{good, bad, good}, false, true, 2, 1},
		{"only bad rules: still managed", []*mgmtpb.FirewallRule{bad}, false, true, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{Serial: 1, FirewallRules: tt.rules, FirewallRulesIsEmpty: tt.empty}}
			nm, err := ConvertNetworkMap(own, resp)
			if err != nil {
				t.Fatal(err)
			}
			fw := nm.Firewall
			if fw.Managed != tt.managed || len(fw.Rules) != tt.kept || len(fw.Skipped) != tt.skipped {
				t.Fatalf("firewall %+v", fw)
			}
			for _, s := range fw.Skipped {
				if !errors.Is(s.Reason, ErrBadRule) || !strings.HasPrefix(s.Entry, "rule ") {
					t.Fatalf("skipped %v", s)
				}
			}
		})
	}
}
