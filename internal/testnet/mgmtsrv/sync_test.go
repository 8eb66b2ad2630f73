package mgmtsrv

import (
	"errors"
	"slices"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

func TestSyncFullStateThenPushes(t *testing.T) {
	s := startServer(t, Config{})
	alice, bob := newClient(t, s.Addr()), newClient(t, s.Addr())
	alice.mustRegister("alice")
	sa := alice.sync(meta("alice"))

	first := sa.mustRecv()
	nm := first.GetNetworkMap()
	switch {
	case !proto.Equal(first.GetNetbirdConfig(), testConfig):
		t.Fatalf("first message config = %v", first.GetNetbirdConfig())
	case nm.GetPeerConfig().GetAddress() != "100.64.0.1/10":
		t.Fatalf("first map address = %q", nm.GetPeerConfig().GetAddress())
	case !nm.GetRemotePeersIsEmpty() || len(nm.GetRemotePeers()) != 0 || !first.GetRemotePeersIsEmpty():
		t.Fatalf("alone: remotePeers = %v, isEmpty = %v", nm.GetRemotePeers(), nm.GetRemotePeersIsEmpty())
	case nm.GetSerial() == 0 || nm.GetSerial() != s.Serial():
		t.Fatalf("first serial = %d, server serial %d", nm.GetSerial(), s.Serial())
	case !proto.Equal(first.GetPeerConfig(), nm.GetPeerConfig()):
		t.Fatalf("deprecated peerConfig copy = %v", first.GetPeerConfig())
	}
	serial := nm.GetSerial()

	// Bob joins: alice gets a push with a higher serial that lists bob.
	bob.mustRegister("bob")
	push := sa.mustRecv().GetNetworkMap()
	if push.GetSerial() <= serial {
		t.Fatalf("push serial %d, not above %d", push.GetSerial(), serial)
	}
	serial = push.GetSerial()
	if push.GetRemotePeersIsEmpty() || len(push.GetRemotePeers()) != 1 {
		t.Fatalf("alice's map after bob joined: %v", push)
	}
	rp := push.GetRemotePeers()[0]
	if rp.GetWgPubKey() != bob.pub().String() || !slices.Equal(rp.GetAllowedIps(), []string{"100.64.0.2/32"}) ||
		rp.GetAgentVersion() != "0.40.0" || rp.GetFqdn() != "bob."+DefaultDNSDomain {
		t.Fatalf("bob as seen by alice: %v", rp)
	}

	// Bob's own first message shows alice, at the current serial.
	sb := bob.sync(meta("bob"))
	bm := sb.mustRecv().GetNetworkMap()
	if got := remoteKeys(bm); !slices.Equal(got, []string{alice.pub().String()}) || bm.GetSerial() != serial {
		t.Fatalf("bob's first map: remotes %v serial %d (want serial %d)", got, bm.GetSerial(), serial)
	}

	// Bob leaves: his stream ends, alice is alone again.
	if err := s.RemovePeer(bob.pub()); err != nil {
		t.Fatal(err)
	}
	sb.wantEnd(codes.PermissionDenied)
	last := sa.mustRecv().GetNetworkMap()
	if last.GetSerial() <= serial || !last.GetRemotePeersIsEmpty() || len(last.GetRemotePeers()) != 0 {
		t.Fatalf("alice's map after bob left: %v", last)
	}
	if _, err := bob.login("", meta("bob")); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("removed bob logs in: %v", err)
	}
	if err := s.RemovePeer(bob.pub()); !errors.Is(err, ErrUnknownPeer) {
		t.Fatalf("RemovePeer twice = %v", err)
	}
	if got := s.Syncs(); got != 2 {
		t.Fatalf("Syncs = %d, want 2", got)
	}
}

func TestSyncValidation(t *testing.T) {
	s := startServer(t, Config{})
	known := newClient(t, s.Addr())
	known.mustRegister("known")
	stranger := newClient(t, s.Addr())
	tests := []struct {
		name string
		c    *client
		meta *mgmtpb.PeerSystemMeta
		want codes.Code
	}{
		{"no meta", known, nil, codes.FailedPrecondition},
		{"empty hostname", known, meta(""), codes.Internal},
		{"unregistered peer", stranger, meta("stranger"), codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.sync(tt.meta).wantEnd(tt.want)
		})
	}
	if got := s.Connected(); len(got) != 0 {
		t.Fatalf("Connected = %v after refused syncs", got)
	}
}

func TestSyncMetaChangeIsPushed(t *testing.T) {
	s := startServer(t, Config{})
	alice, bob := newClient(t, s.Addr()), newClient(t, s.Addr())
	alice.mustRegister("alice")
	bob.mustRegister("bob")
	sa := alice.sync(meta("alice"))
	before := sa.mustRecv().GetNetworkMap()

	m := meta("bobby")
	m.NetbirdVersion = "0.50.1"
	bob.sync(m).mustRecv()
	after := sa.mustRecv().GetNetworkMap()
	rp := after.GetRemotePeers()[0]
	if after.GetSerial() <= before.GetSerial() || rp.GetAgentVersion() != "0.50.1" || rp.GetFqdn() != "bobby."+DefaultDNSDomain {
		t.Fatalf("after bob's meta changed: serial %d→%d, %v", before.GetSerial(), after.GetSerial(), rp)
	}
}

func TestTopology(t *testing.T) {
	var aliceKey wgtypes.Key
	// Nobody sees alice, alice sees everyone.
	hideAlice := func(a, b wgtypes.Key) bool { return b != aliceKey }
	s := startServer(t, Config{})
	alice, bob, carol := newClient(t, s.Addr()), newClient(t, s.Addr()), newClient(t, s.Addr())
	aliceKey = alice.pub()
	for _, c := range []struct {
		c    *client
		name string
	}{{alice, "alice"}, {bob, "bob"}, {carol, "carol"}} {
		c.c.mustRegister(c.name)
	}
	sa, sb := alice.sync(meta("alice")), bob.sync(meta("bob"))
	if got := len(sa.mustRecv().GetNetworkMap().GetRemotePeers()); got != 2 {
		t.Fatalf("all-to-all: alice sees %d", got)
	}
	if got := len(sb.mustRecv().GetNetworkMap().GetRemotePeers()); got != 2 {
		t.Fatalf("all-to-all: bob sees %d", got)
	}

	s.SetTopology(hideAlice)
	am, bm := sa.mustRecv().GetNetworkMap(), sb.mustRecv().GetNetworkMap()
	if got := remoteKeys(am); len(got) != 2 {
		t.Fatalf("alice sees %v, want bob and carol", got)
	}
	if got := remoteKeys(bm); !slices.Equal(got, []string{carol.pub().String()}) {
		t.Fatalf("bob sees %v, want carol only", got)
	}

	s.SetTopology(func(a, b wgtypes.Key) bool { return false })
	for _, st := range []*clientSync{sa, sb} {
		nm := st.mustRecv().GetNetworkMap()
		if !nm.GetRemotePeersIsEmpty() || len(nm.GetRemotePeers()) != 0 {
			t.Fatalf("isolated: %v", nm)
		}
	}

	s.SetTopology(nil)
	if got := len(sb.mustRecv().GetNetworkMap().GetRemotePeers()); got != 2 {
		t.Fatalf("back to all-to-all: bob sees %d", got)
	}
}

func TestInitialTopology(t *testing.T) {
	s := startServer(t, Config{Topology: func(a, b wgtypes.Key) bool { return false }})
	alice, bob := newClient(t, s.Addr()), newClient(t, s.Addr())
	alice.mustRegister("alice")
	bob.mustRegister("bob")
	if nm := alice.sync(meta("alice")).mustRecv().GetNetworkMap(); !nm.GetRemotePeersIsEmpty() {
		t.Fatalf("isolated by Config.Topology: %v", nm)
	}
}

func TestPushCraftedMessages(t *testing.T) {
	s := startServer(t, Config{})
	alice, bob := newClient(t, s.Addr()), newClient(t, s.Addr())
	alice.mustRegister("alice")
	bob.mustRegister("bob")
	sa := alice.sync(meta("alice"))
	sa.mustRecv()

	crafted := &mgmtpb.NetworkMap{
		Serial:      1,
		PeerConfig:  &mgmtpb.PeerConfig{Address: "100.64.9.9/10"},
		RemotePeers: []*mgmtpb.RemotePeerConfig{{WgPubKey: "junk", AllowedIps: []string{"10.0.0.1/32"}}},
	}
	if err := s.PushMap(alice.pub(), crafted); err != nil {
		t.Fatal(err)
	}
	got := sa.mustRecv()
	if !proto.Equal(got.GetNetworkMap(), crafted) || got.GetNetbirdConfig() != nil {
		t.Fatalf("crafted map arrived as %v", got)
	}

	cfg := &mgmtpb.NetbirdConfig{Relay: &mgmtpb.RelayConfig{Urls: []string{"rel://127.0.0.1:1"}, TokenPayload: "p"}}
	if err := s.PushSync(alice.pub(), &mgmtpb.SyncResponse{NetbirdConfig: cfg}); err != nil {
		t.Fatal(err)
	}
	if got := sa.mustRecv(); got.GetNetworkMap() != nil || !proto.Equal(got.GetNetbirdConfig(), cfg) {
		t.Fatalf("crafted config-only message arrived as %v", got)
	}

	if err := s.PushMap(bob.pub(), crafted); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("PushMap to a peer without stream = %v", err)
	}

	// SetNetbirdConfig pushes a config-only message and is handed out later.
	s.SetNetbirdConfig(cfg)
	if got := sa.mustRecv(); got.GetNetworkMap() != nil || !proto.Equal(got.GetNetbirdConfig(), cfg) {
		t.Fatalf("SetNetbirdConfig pushed %v", got)
	}
	if resp, err := bob.login("", meta("bob")); err != nil || !proto.Equal(resp.GetNetbirdConfig(), cfg) {
		t.Fatalf("login after SetNetbirdConfig: %v, %v", resp, err)
	}
}

func TestNewerSyncReplacesOlder(t *testing.T) {
	s := startServer(t, Config{})
	alice := newClient(t, s.Addr())
	alice.mustRegister("alice")
	older := alice.sync(meta("alice"))
	older.mustRecv()
	newer := alice.sync(meta("alice"))
	newer.mustRecv()
	older.wantEnd(codes.Aborted)
	if got := s.Connected(); len(got) != 1 || got[0] != alice.pub() {
		t.Fatalf("Connected = %v", got)
	}
	if err := s.PushMap(alice.pub(), &mgmtpb.NetworkMap{Serial: 99}); err != nil {
		t.Fatal(err)
	}
	if got := newer.mustRecv().GetNetworkMap().GetSerial(); got != 99 {
		t.Fatalf("newer stream got serial %d", got)
	}
}

func TestCloseStreams(t *testing.T) {
	s := startServer(t, Config{})
	alice := newClient(t, s.Addr())
	alice.mustRegister("alice")
	sa := alice.sync(meta("alice"))
	sa.mustRecv()
	s.CloseStreams()
	sa.wantEnd(codes.Unavailable)
	if got := s.Connected(); len(got) != 0 {
		t.Fatalf("Connected = %v", got)
	}
	alice.sync(meta("alice")).mustRecv() // still serving
}

func TestClientCancelEndsStream(t *testing.T) {
	s := startServer(t, Config{})
	alice := newClient(t, s.Addr())
	alice.mustRegister("alice")
	sa := alice.sync(meta("alice"))
	sa.mustRecv()
	sa.cancel()
	sa.wantEnd(codes.Canceled)
}

func TestStopStartSamePortNewKey(t *testing.T) {
	s := startServer(t, Config{})
	addr, key1 := s.Addr(), s.ServerKey()
	alice := newClient(t, addr)
	alice.mustRegister("alice")
	sa := alice.sync(meta("alice"))
	serial := sa.mustRecv().GetNetworkMap().GetSerial()

	s.Stop()
	sa.wantEnd(codes.Unavailable)
	if _, err := alice.stub.IsHealthy(alice.ctx, &mgmtpb.Empty{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("isHealthy while stopped = %v", err)
	}
	s.Stop() // idempotent

	if err := s.Start(); err != nil {
		t.Fatalf("Start again: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("Start of a running server succeeded")
	}
	if s.Addr() != addr {
		t.Fatalf("Addr = %s after restart, want %s", s.Addr(), addr)
	}
	key2 := alice.serverKey()
	if key2 == key1 || key2 != s.ServerKey() {
		t.Fatalf("server key after restart: %s (before %s, ServerKey %s)", key2, key1, s.ServerKey())
	}
	// The registry survived: no setup key needed; the serial did not reset.
	if _, err := alice.login("", meta("alice")); err != nil {
		t.Fatalf("login after restart: %v", err)
	}
	if got := alice.sync(meta("alice")).mustRecv().GetNetworkMap().GetSerial(); got < serial {
		t.Fatalf("serial after restart %d < %d", got, serial)
	}
	newClient(t, addr).mustRegister("bob")
	if got := s.Serial(); got <= serial {
		t.Fatalf("serial %d did not rise above %d after a join", got, serial)
	}
}

// SetFirewall: no hook is a legacy server; a hook's rules reach each peer,
// with sourcePrefixes only for a peer that declares capability 1, and an
// empty result sets firewallRulesIsEmpty.
func TestFirewall(t *testing.T) {
	s := startServer(t, Config{})
	alice, bob := newClient(t, s.Addr()), newClient(t, s.Addr())
	alice.mustRegister("alice")
	bob.mustRegister("bob")
	bobMeta := meta("bob")
	bobMeta.Capabilities = []mgmtpb.PeerCapability{mgmtpb.PeerCapability_PeerCapabilitySourcePrefixes}
	sa, sb := alice.sync(meta("alice")), bob.sync(bobMeta)
	for _, st := range []*clientSync{sa, sb} {
		if nm := st.mustRecv().GetNetworkMap(); len(nm.GetFirewallRules()) != 0 || nm.GetFirewallRulesIsEmpty() {
			t.Fatalf("legacy server sent firewall fields: %v", nm)
		}
	}
	// Alice may reach bob on TCP/22; nothing else.
	s.SetFirewall(func(p PeerInfo, all []PeerInfo) []*mgmtpb.FirewallRule {
		if p.Hostname != "bob" {
			return nil
		}
		var rules []*mgmtpb.FirewallRule
		for _, q := range all {
			if q.Hostname == "alice" {
				rules = append(rules, &mgmtpb.FirewallRule{PeerIP: q.Address.String(), Protocol: mgmtpb.RuleProtocol_TCP, Port: "22"})
			}
		}
		return rules
	})
	am, bm := sa.mustRecv().GetNetworkMap(), sb.mustRecv().GetNetworkMap()
	if len(am.GetFirewallRules()) != 0 || !am.GetFirewallRulesIsEmpty() {
		t.Fatalf("alice's firewall: %v", am)
	}
	rules := bm.GetFirewallRules()
	if len(rules) != 1 || bm.GetFirewallRulesIsEmpty() || rules[0].GetPeerIP() != "100.64.0.1" ||
		len(rules[0].GetSourcePrefixes()) != 1 || !slices.Equal(rules[0].GetSourcePrefixes()[0], []byte{100, 64, 0, 1, 32}) {
		t.Fatalf("bob's firewall: %v", bm)
	}
	s.SetFirewall(nil)
	if nm := sb.mustRecv().GetNetworkMap(); len(nm.GetFirewallRules()) != 0 || nm.GetFirewallRulesIsEmpty() {
		t.Fatalf("back to legacy: %v", nm)
	}
}
