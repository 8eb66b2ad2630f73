package mgmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/filter"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// FuzzNetworkMap feeds ConvertNetworkMap and the config conversion with
// arbitrary SyncResponse bytes. They must never panic, a rejected map must
// be ErrBadPeerConfig, and an accepted one must hold unique, valid peers,
// none of them us, usable firewall rules, and account for every input entry
// and rule (kept or skipped).
//
// The seed corpus is in testdata/fuzz/FuzzNetworkMap; regenerate it with
// NBFSM_WRITE_CORPUS=1 go test -run TestWriteNetworkMapCorpus.
func FuzzNetworkMap(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp mgmtpb.SyncResponse
		if proto.Unmarshal(data, &resp) != nil {
			return
		}
		cfg := convertConfig(resp.GetNetbirdConfig())
		for _, s := range cfg.Skipped {
			if !errors.Is(s.Reason, ErrBadHost) {
				t.Fatalf("config entry skipped for an untyped reason: %v", s)
			}
		}
		nm, err := ConvertNetworkMap(own, &resp)
		if err != nil {
			if !errors.Is(err, ErrBadPeerConfig) || nm != nil {
				t.Fatalf("rejected with %v (map %v)", err, nm)
			}
			return
		}
		if (nm == nil) != (resp.GetNetworkMap() == nil) {
			t.Fatalf("map %v for NetworkMap %v", nm, resp.GetNetworkMap())
		}
		if nm == nil {
			return
		}
		checkMap(t, &resp, nm)
	})
}

func checkMap(t *testing.T, resp *mgmtpb.SyncResponse, nm *NetworkMap) {
	t.Helper()
	seen := map[wgtypes.Key]bool{}
	for _, list := range [][]RemotePeer{nm.Peers, nm.Offline} {
		for _, p := range list {
			if p.Key == own || seen[p.Key] {
				t.Fatalf("peer %v is us or listed twice", p.Key)
			}
			seen[p.Key] = true
			for _, ip := range p.AllowedIPs {
				if !ip.IsValid() || ip != ip.Masked() {
					t.Fatalf("allowed IP %v invalid or not masked", ip)
				}
			}
		}
	}
	for _, s := range nm.Skipped {
		if !errors.Is(s.Reason, ErrBadKey) && !errors.Is(s.Reason, ErrBadCIDR) &&
			!errors.Is(s.Reason, ErrOwnKey) && !errors.Is(s.Reason, ErrDuplicatePeer) {
			t.Fatalf("entry skipped for an untyped reason: %v", s)
		}
		if len(s.Entry) > maxEntryText+len("…") {
			t.Fatalf("skipped entry text not truncated: %d bytes", len(s.Entry))
		}
	}
	m := resp.GetNetworkMap()
	checkFirewall(t, m, nm.Firewall)
	online := len(m.GetRemotePeers())
	if online == 0 && !m.GetRemotePeersIsEmpty() {
		online = len(resp.GetRemotePeers())
	}
	if got, want := len(nm.Peers)+len(nm.Offline)+len(nm.Skipped), online+len(m.GetOfflinePeers()); got != want {
		t.Fatalf("%d entries kept or skipped, %d in the input", got, want)
	}
}

// checkFirewall: every input rule is kept or skipped for a typed reason,
// kept rules are usable by the filter, and Managed follows fields 8 and 9.
func checkFirewall(t *testing.T, m *mgmtpb.NetworkMap, fw Firewall) {
	t.Helper()
	if got, want := len(fw.Rules)+len(fw.Skipped), len(m.GetFirewallRules()); got != want {
		t.Fatalf("%d rules kept or skipped, %d in the input", got, want)
	}
	if fw.Managed != (len(m.GetFirewallRules()) > 0 || m.GetFirewallRulesIsEmpty()) {
		t.Fatalf("managed %v for %d rules, empty flag %v", fw.Managed, len(m.GetFirewallRules()), m.GetFirewallRulesIsEmpty())
	}
	for _, r := range fw.Rules {
		if !r.Peer.IsValid() || r.Peer.Is4In6() || r.Peer.Zone() != "" || r.Ports.First > r.Ports.Last ||
			(r.Ports.First == 0) != (r.Ports.Last == 0) ||
			!r.Ports.Any() && r.Protocol != filter.ProtoTCP && r.Protocol != filter.ProtoUDP ||
			r.Protocol > filter.ProtoICMP || r.Action > filter.Drop || r.Direction > filter.Out {
			t.Fatalf("unusable rule kept: %+v", r)
		}
	}
	for _, s := range fw.Skipped {
		if !errors.Is(s.Reason, ErrBadRule) && !errors.Is(s.Reason, ErrUnsupportedRule) {
			t.Fatalf("rule skipped for an untyped reason: %v", s)
		}
		if len(s.Entry) > maxEntryText+len("…") {
			t.Fatalf("skipped rule text not truncated: %d bytes", len(s.Entry))
		}
	}
	// The filter compiles whatever was kept.
	f := filter.New()
	f.SetPolicy(filter.Policy{Mode: filter.Enforce, Rules: fw.Rules})
}

// networkMapSeeds are the committed seed inputs.
func networkMapSeeds() map[string]*mgmtpb.SyncResponse {
	cfg := &mgmtpb.NetbirdConfig{
		Signal: &mgmtpb.HostConfig{Uri: "198.18.0.1:10000", Protocol: mgmtpb.HostConfig_HTTP},
		Stuns:  []*mgmtpb.HostConfig{{Uri: "stun:198.18.0.1:3478"}},
		Turns:  []*mgmtpb.ProtectedHostConfig{{HostConfig: &mgmtpb.HostConfig{Uri: "turn:198.18.0.1:3478"}, User: "u", Password: "p"}},
		Relay:  &mgmtpb.RelayConfig{Urls: []string{"rel://198.18.0.1:80"}, TokenPayload: "x", TokenSignature: "y"},
	}
	full := mapMsg(7, peerA, peerB)
	full.NetbirdConfig = cfg
	full.NetworkMap.OfflinePeers = []*mgmtpb.RemotePeerConfig{rp(peerC, "100.91.205.64/32")}
	bad := mapMsg(8, peerA)
	bad.NetworkMap.RemotePeers = append(bad.NetworkMap.RemotePeers,
		&mgmtpb.RemotePeerConfig{WgPubKey: "not-a-key"}, rp(peerB, "100.91.205.63"), rp(own, "100.91.205.61/32"),
		rp(peerA, "100.91.205.62/32"), rp(peerC, "fd00::1/64", "10.0.0.0/8"))
	fw := mapMsg(10, peerA)
	fw.NetworkMap.FirewallRules = []*mgmtpb.FirewallRule{
		{PeerIP: "100.91.205.62", Protocol: mgmtpb.RuleProtocol_TCP, Port: "22", PolicyID: []byte("policy-1")},
		{PeerIP: "100.91.205.62", Protocol: mgmtpb.RuleProtocol_UDP, PortInfo: &mgmtpb.PortInfo{PortSelection: &mgmtpb.PortInfo_Range_{Range: &mgmtpb.PortInfo_Range{Start: 5000, End: 6000}}}},
		{PeerIP: "100.91.205.62", Direction: mgmtpb.RuleDirection_OUT, Action: mgmtpb.RuleAction_DROP, Protocol: mgmtpb.RuleProtocol_ICMP},
		{PeerIP: "0.0.0.0", SourcePrefixes: [][]byte{{0, 0, 0, 0, 0}}, Protocol: mgmtpb.RuleProtocol_ALL},
		{PeerIP: "::", SourcePrefixes: [][]byte{append(make([]byte, 16), 0)}, Protocol: mgmtpb.RuleProtocol_TCP, PortInfo: &mgmtpb.PortInfo{PortSelection: &mgmtpb.PortInfo_Port{Port: 443}}},
		{PeerIP: "bad", Protocol: mgmtpb.RuleProtocol_TCP, Port: "x"},
		{PeerIP: "100.91.205.62", Protocol: mgmtpb.RuleProtocol_CUSTOM},
	}
	return map[string]*mgmtpb.SyncResponse{
		"firewall":    fw,
		"fw-empty":    {NetworkMap: &mgmtpb.NetworkMap{Serial: 11, FirewallRulesIsEmpty: true}},
		"full":        full,
		"bad-entries": bad,
		"empty-flag":  {RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")}, NetworkMap: &mgmtpb.NetworkMap{Serial: 3, RemotePeersIsEmpty: true}},
		"deprecated":  {PeerConfig: ownConfig, RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")}, NetworkMap: &mgmtpb.NetworkMap{Serial: 4}},
		"bad-own":     {NetworkMap: &mgmtpb.NetworkMap{Serial: 9, PeerConfig: &mgmtpb.PeerConfig{Address: "100.91.205.61"}}},
		"config-only": {NetbirdConfig: cfg},
		"bad-config":  {NetbirdConfig: &mgmtpb.NetbirdConfig{Signal: &mgmtpb.HostConfig{Uri: "no-port"}, Stuns: []*mgmtpb.HostConfig{{Uri: "http://x"}}}},
	}
}

// TestWriteNetworkMapCorpus writes the seed corpus; it only runs on request.
func TestWriteNetworkMapCorpus(t *testing.T) {
	if os.Getenv("NBFSM_WRITE_CORPUS") == "" {
		t.Skip("set NBFSM_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzNetworkMap")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzNetworkMap")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, resp := range networkMapSeeds() {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNetworkMapSeedsAreChecked runs the fuzz checks on the seeds directly,
// with the outcome each seed is meant to have.
func TestNetworkMapSeedsAreChecked(t *testing.T) {
	wantErr := map[string]error{"bad-own": ErrBadPeerConfig}
	for name, resp := range networkMapSeeds() {
		nm, err := ConvertNetworkMap(own, resp)
		if !errors.Is(err, wantErr[name]) {
			t.Fatalf("%s: %v", name, err)
		}
		if nm != nil {
			checkMap(t, resp, nm)
		}
	}
}
