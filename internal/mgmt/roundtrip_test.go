package mgmt_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/grpcdial"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/testnet"
)

// deadline bounds every wait: a failure deadline, never an expectation.
const deadline = 30 * time.Second

// peer is one registered client of the test network.
type peer struct {
	priv  wgtypes.Key
	c     *mgmt.Client
	login *mgmt.LoginResult
}

// register runs the two-step registration of PROTOCOL.md §3 as the
// management link machine will: login without a setup key, learn that the
// key is unknown, log in again with the setup key.
func register(ctx context.Context, t *testing.T, n *testnet.Network, name string) *peer {
	t.Helper()
	priv, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c, err := mgmt.Dial(n.ManagementURL(), priv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	meta := mgmt.Meta{Hostname: name, GoOS: "linux"}

	sk, err := c.ServerKey(ctx)
	if err != nil {
		t.Fatalf("%s: server key: %v", name, err)
	}
	if _, err := c.Login(ctx, sk, "", meta); !errors.Is(err, mgmt.ErrNotRegistered) {
		t.Fatalf("%s: login of an unknown key = %v, want ErrNotRegistered", name, err)
	}
	if _, err := c.Login(ctx, sk, "not-the-setup-key", meta); !errors.Is(err, mgmt.ErrSetupKeyRejected) {
		t.Fatalf("%s: login with a wrong setup key = %v, want ErrSetupKeyRejected", name, err)
	}
	res, err := c.Login(ctx, sk, n.SetupKey(), meta)
	if err != nil {
		t.Fatalf("%s: login with the setup key: %v", name, err)
	}
	if !res.Peer.Address.IsValid() {
		t.Fatalf("%s: no overlay address in %+v", name, res.Peer)
	}
	if res.Config.Signal.URI == "" {
		t.Fatalf("%s: no signal server in %+v", name, res.Config)
	}
	// A registered key logs in without the setup key from now on.
	if _, err := c.Login(ctx, sk, "", meta); err != nil {
		t.Fatalf("%s: second login: %v", name, err)
	}
	return &peer{priv: priv, c: c, login: res}
}

// waitForPeer receives updates until the map lists want, and returns it.
func waitForPeer(t *testing.T, s *mgmt.SyncStream, want wgtypes.Key) *mgmt.NetworkMap {
	t.Helper()
	type res struct {
		u   mgmt.Update
		err error
	}
	for {
		ch := make(chan res, 1)
		go func() { u, err := s.Recv(); ch <- res{u, err} }()
		var r res
		select {
		case r = <-ch:
		case <-time.After(deadline):
			s.Close()
			<-ch
			t.Fatalf("no network map listing %v", want)
		}
		if r.err != nil {
			t.Fatalf("Recv: %v", r.err)
		}
		if r.u.Map == nil {
			continue
		}
		for _, p := range r.u.Map.Peers {
			if p.Key == want {
				return r.u.Map
			}
		}
	}
}

func TestRoundTripRegisterAndSync(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	a := register(ctx, t, n, "peer-a")
	b := register(ctx, t, n, "peer-b")
	if a.login.Peer.Address == b.login.Peer.Address {
		t.Fatalf("both peers got %v", a.login.Peer.Address)
	}

	for _, tt := range []struct {
		name     string
		self     *peer
		other    *peer
		selfName string
	}{
		{"a sees b", a, b, "peer-a"},
		{"b sees a", b, a, "peer-b"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sk, err := tt.self.c.ServerKey(ctx) // fetched again before every Sync
			if err != nil {
				t.Fatal(err)
			}
			s, err := tt.self.c.Sync(ctx, sk, mgmt.Meta{Hostname: tt.selfName, GoOS: "linux"})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			m := waitForPeer(t, s, tt.other.priv.PublicKey())
			if m.Peer.Address.IsValid() && m.Peer.Address != tt.self.login.Peer.Address {
				t.Errorf("map address %v, login address %v", m.Peer.Address, tt.self.login.Peer.Address)
			}
			var got mgmt.RemotePeer
			for _, p := range m.Peers {
				if p.Key == tt.self.priv.PublicKey() {
					t.Fatal("the map lists the peer itself")
				}
				if p.Key == tt.other.priv.PublicKey() {
					got = p
				}
			}
			wantIP := tt.other.login.Peer.Address.Addr()
			found := false
			for _, ip := range got.AllowedIPs {
				if ip.Contains(wantIP) {
					found = true
				}
			}
			if !found {
				t.Errorf("allowed IPs %v of the other peer do not cover its address %v", got.AllowedIPs, wantIP)
			}
			if len(m.Skipped) != 0 {
				t.Errorf("skipped entries from a clean server: %v", m.Skipped)
			}
		})
	}
}

// recvUpdate runs Recv with a failure deadline.
func recvUpdate(t *testing.T, s *mgmt.SyncStream) (mgmt.Update, error) {
	t.Helper()
	type res struct {
		u   mgmt.Update
		err error
	}
	ch := make(chan res, 1)
	go func() { u, err := s.Recv(); ch <- res{u, err} }()
	select {
	case r := <-ch:
		return r.u, r.err
	case <-time.After(deadline):
		s.Close()
		<-ch
		t.Fatal("Recv never returned")
		return mgmt.Update{}, nil
	}
}

// TestRoundTripServerRestart: a restart ends the stream (retryable), calls
// fail fast while the server is down, a fresh Client works as soon as it is
// back, the old server key
// is refused, the new key works for the registered peer without a setup
// key, and serials keep going up.
func TestRoundTripServerRestart(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	a := register(ctx, t, n, "peer-a")
	b := register(ctx, t, n, "peer-b")
	meta := mgmt.Meta{Hostname: "peer-a", GoOS: "linux"}

	oldKey, err := a.c.ServerKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.c.Sync(ctx, oldKey, meta)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	first := waitForPeer(t, s, b.priv.PublicKey())

	n.Mgmt.Stop()
	if _, err := recvUpdate(t, s); !errors.Is(err, mgmt.ErrStreamClosed) || !grpcdial.Retryable(err) {
		t.Fatalf("Recv across a server stop = %v, want retryable ErrStreamClosed", err)
	}
	if _, err := a.c.ServerKey(ctx); !errors.Is(err, mgmt.ErrUnavailable) || !grpcdial.Retryable(err) {
		t.Fatalf("ServerKey of a stopped server = %v, want retryable ErrUnavailable", err)
	}
	if err := n.Mgmt.Start(); err != nil {
		t.Fatal(err)
	}

	// The next attempt dials a fresh Client, as the link machine does after
	// a transport failure (Dial does no I/O).
	c, err := mgmt.Dial(n.ManagementURL(), a.priv)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Login(ctx, oldKey, "", meta); !errors.Is(err, mgmt.ErrRequestRejected) || grpcdial.Retryable(err) {
		t.Fatalf("Login sealed to the old server key = %v, want ErrRequestRejected", err)
	}
	newKey, err := c.ServerKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newKey == oldKey {
		t.Fatal("the server key survived a restart")
	}
	if _, err := c.Login(ctx, newKey, "", meta); err != nil {
		t.Fatalf("Login after restart: %v", err)
	}
	s2, err := c.Sync(ctx, newKey, meta)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if m := waitForPeer(t, s2, b.priv.PublicKey()); m.Serial < first.Serial {
		t.Fatalf("serial went down across a restart: %d < %d", m.Serial, first.Serial)
	}
}

// TestRoundTripCraftedMaps pushes crafted maps through the real server:
// bad entries are skipped with the rest applied, stale serials dropped,
// config-only updates delivered.
func TestRoundTripCraftedMaps(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	a := register(ctx, t, n, "peer-a")
	b := register(ctx, t, n, "peer-b")
	sk, err := a.c.ServerKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s, err := a.c.Sync(ctx, sk, mgmt.Meta{Hostname: "peer-a", GoOS: "linux"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitForPeer(t, s, b.priv.PublicKey())

	base := n.Mgmt.Serial() + 100
	bKey := b.priv.PublicKey().String()
	crafted := &mgmtpb.NetworkMap{
		Serial: base,
		RemotePeers: []*mgmtpb.RemotePeerConfig{
			{WgPubKey: "definitely not a key", AllowedIps: []string{"100.64.0.9/32"}},
			{WgPubKey: bKey, AllowedIps: []string{"100.64.0.3/32"}},
			{WgPubKey: a.priv.PublicKey().String(), AllowedIps: []string{"100.64.0.2/32"}},
			{WgPubKey: bKey, AllowedIps: []string{"100.64.0.4/32"}},
		},
	}
	stale := &mgmtpb.NetworkMap{Serial: base - 1, RemotePeersIsEmpty: true}
	newer := &mgmtpb.NetworkMap{Serial: base + 1, RemotePeersIsEmpty: true}
	for _, nm := range []*mgmtpb.NetworkMap{crafted, stale, newer} {
		if err := n.Mgmt.PushMap(a.priv.PublicKey(), nm); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Mgmt.PushSync(a.priv.PublicKey(), &mgmtpb.SyncResponse{NetbirdConfig: &mgmtpb.NetbirdConfig{
		Signal: &mgmtpb.HostConfig{Uri: n.SignalAddr(), Protocol: mgmtpb.HostConfig_HTTP},
		Relay:  &mgmtpb.RelayConfig{Urls: []string{"rel://127.0.0.1:1"}, TokenPayload: "rotated"},
	}}); err != nil {
		t.Fatal(err)
	}

	u, err := recvUpdate(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if u.Map == nil || u.Map.Serial != base || len(u.Map.Peers) != 1 || u.Map.Peers[0].Key != b.priv.PublicKey() || len(u.Map.Skipped) != 3 {
		t.Fatalf("crafted map delivered as %+v", u.Map)
	}
	u, err = recvUpdate(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if u.Map == nil || u.Map.Serial != base+1 || len(u.Map.Peers) != 0 {
		t.Fatalf("after the stale map: %+v, want serial %d with no peers", u.Map, base+1)
	}
	u, err = recvUpdate(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if u.Map != nil || u.Config == nil || u.Config.Relay.TokenPayload != "rotated" {
		t.Fatalf("config-only update delivered as %+v", u)
	}
	if st := a.c.Stats(); st.StaleMaps < 1 || st.SkippedEntries < 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRoundTripLogout: Logout deregisters the peer; its next login without
// a setup key is refused, a second Logout too.
func TestRoundTripLogout(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	p := register(ctx, t, n, "leaver")
	sk, err := p.c.ServerKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.c.Logout(ctx, sk); err != nil {
		t.Fatalf("Logout: %v", err)
	}
	if len(n.Mgmt.Peers()) != 0 {
		t.Fatalf("peer still registered: %+v", n.Mgmt.Peers())
	}
	if _, err := p.c.Login(ctx, sk, "", mgmt.Meta{Hostname: "leaver", GoOS: "linux"}); !errors.Is(err, mgmt.ErrNotRegistered) {
		t.Fatalf("login after logout = %v, want ErrNotRegistered", err)
	}
	if err := p.c.Logout(ctx, sk); !errors.Is(err, mgmt.ErrNotRegistered) {
		t.Fatalf("second Logout = %v, want ErrNotRegistered", err)
	}
}
