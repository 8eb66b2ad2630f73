package client_test

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/ice/v2"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/peerfsm"
)

const wait = 30 * time.Second // failure deadline, not an expectation

type node struct {
	name    string
	key     wgtypes.Key
	c       *client.Client
	started time.Time
	changes *fsmwatch.Changes // a token per transition of the client's loop
}

func startNode(t testing.TB, n *testnet.Network, name string, types []ice.CandidateType) *node {
	t.Helper()
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return startNodeWithKey(t, n, name, key, types)
}

func startNodeWithKey(t testing.TB, n *testnet.Network, name string, key wgtypes.Key, types []ice.CandidateType) *node {
	t.Helper()
	changes := fsmwatch.NewChanges()
	c, err := client.New(client.Options{
		ManagementURL: n.ManagementURL(), PrivateKey: key, SetupKey: n.SetupKey(),
		Meta: mgmt.Meta{Hostname: name, GoOS: "linux"}, Mode: wgiface.Netstack,
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: zap.NewNop(), CandidateTypes: types,
		Observers: []fsm.Observer{changes},
	})
	if err != nil {
		t.Fatal(err)
	}
	nd := &node{name: name, key: key, c: c, started: time.Now(), changes: changes}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return nd
}

// until waits until ok holds for nd's status, checked again after each
// transition of its loop (no clock of its own).
func (nd *node) until(t testing.TB, what string, timeout time.Duration, ok func(engine.Status) bool) {
	t.Helper()
	var last engine.Status
	err := nd.changes.Wait(context.Background(), timeout, func() (bool, error) {
		s, err := nd.c.Status()
		last = s
		return err == nil && ok(s), err
	})
	if err != nil {
		t.Fatalf("%s: %s: %v (engine %s signal %s mgmt %s peers %+v)", nd.name, what, err, last.State, last.Signal.State,
			last.Management.State, last.Peers)
	}
}

// waitPeers waits until every node has want peers in state in.
func waitPeers(t *testing.T, nodes []*node, want int, in fsm.State) {
	t.Helper()
	end := time.Now().Add(wait)
	for _, nd := range nodes {
		nd.until(t, fmt.Sprintf("%d peers %s", want, in), time.Until(end), func(s engine.Status) bool {
			n := 0
			for _, p := range s.Peers {
				if p.State == in || len(p.State) > len(in) && p.State[:len(in)+1] == in+"." {
					n++
				}
			}
			return n == want
		})
	}
}

func addrOf(t testing.TB, nd *node) netip.Addr {
	s, err := nd.c.Status()
	if err != nil || !s.Address.IsValid() {
		t.Fatalf("%s has no address: %v", nd.name, err)
	}
	return s.Address.Addr()
}

// pingAll pings every ordered pair and returns the slowest first reply.
func pingAll(t *testing.T, nodes []*node) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			rtt, err := netping.Ping(ctx, a.c.Net(), addrOf(t, a), addrOf(t, b), 200*time.Millisecond)
			cancel()
			if err != nil {
				t.Fatalf("%s → %s: %v", a.name, b.name, err)
			}
			t.Logf("%s → %s: echo reply in %v", a.name, b.name, rtt)
		}
	}
}

func startNet(t testing.TB) *testnet.Network {
	t.Helper()
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// Three engines join with a setup key, connect all pairs directly and pass
// traffic both ways; the time from start to the first packet through each
// tunnel is printed (the official client needs 6.4 s median).
func TestThreeEnginesDirect(t *testing.T) {
	n := startNet(t)
	var nodes []*node
	for _, name := range []string{"alpha", "beta", "gamma"} {
		nodes = append(nodes, startNode(t, n, name, nil))
	}
	// Time to first packet: ping as soon as each node has a netstack.
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			a.until(t, "an interface", wait, func(engine.Status) bool { return a.c.Net() != nil })
			b.until(t, "an address", wait, func(s engine.Status) bool { return s.Address.IsValid() })
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			_, err := netping.Ping(ctx, a.c.Net(), addrOf(t, a), addrOf(t, b), 100*time.Millisecond)
			cancel()
			if err != nil {
				t.Fatalf("%s → %s: %v", a.name, b.name, err)
			}
			t.Logf("first packet %s → %s: %v after %s started", a.name, b.name, time.Since(a.started).Round(time.Millisecond), a.name)
		}
	}
	waitPeers(t, nodes, 2, peerfsm.Connected)
	pingAll(t, nodes)
}

// With host candidates blocked, the path goes through the test network's
// TURN server: connected.relayed, and traffic passes.
func TestTwoEnginesRelayed(t *testing.T) {
	n := startNet(t)
	relay := []ice.CandidateType{ice.CandidateTypeRelay}
	nodes := []*node{startNode(t, n, "alpha", relay), startNode(t, n, "beta", relay)}
	waitPeers(t, nodes, 1, peerfsm.Relayed)
	pingAll(t, nodes)
}

// Signal stopped while connected: both stay connected and traffic keeps
// passing. A client restarted while signal is down parks its peers with no
// timer armed.
func TestSignalDownKeepsTunnels(t *testing.T) {
	n := startNet(t)
	nodes := []*node{startNode(t, n, "alpha", nil), startNode(t, n, "beta", nil)}
	waitPeers(t, nodes, 1, peerfsm.Direct)
	n.Signal.Stop()
	for _, nd := range nodes {
		nd.until(t, "signal down", wait, func(s engine.Status) bool { return s.State == engine.SignalDown })
	}
	waitPeers(t, nodes, 1, peerfsm.Direct)
	pingAll(t, nodes)

	// Restart beta (same key) while signal is down: its peer machine parks,
	// with no timer armed.
	_ = nodes[1].c.Close()
	beta := startNodeWithKey(t, n, "beta", nodes[1].key, nil)
	beta.until(t, "its peer parked after a restart", wait, func(s engine.Status) bool {
		return len(s.Peers) == 1 && s.Peers[0].State == peerfsm.Parked
	})
	s, err := beta.c.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Peers {
		if p.Timers != 0 {
			t.Fatalf("parked peer holds %d timers", p.Timers)
		}
	}
	if s.Loop.TimersArmed > 2 { // at most the two links' own
		t.Fatalf("%d timers armed with every peer parked", s.Loop.TimersArmed)
	}
}

// Two engines get IPv6 overlay addresses (they declare capability 2) and
// ping each other over them through the tunnel, both ways.
func TestIPv6Overlay(t *testing.T) {
	n := startNet(t)
	nodes := []*node{startNode(t, n, "alpha", nil), startNode(t, n, "beta", nil)}
	waitPeers(t, nodes, 1, peerfsm.Direct)
	v6 := func(nd *node) netip.Addr {
		s, err := nd.c.Status()
		if err != nil || !s.AddressV6.IsValid() || !s.AddressV6.Addr().Is6() {
			t.Fatalf("%s has no IPv6 overlay address: %v %v", nd.name, s.AddressV6, err)
		}
		return s.AddressV6.Addr()
	}
	for _, pair := range [][2]*node{{nodes[0], nodes[1]}, {nodes[1], nodes[0]}} {
		a, b := pair[0], pair[1]
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		rtt, err := netping.Ping(ctx, a.c.Net(), v6(a), v6(b), 200*time.Millisecond)
		cancel()
		if err != nil {
			t.Fatalf("%s → %s over IPv6: %v", a.name, b.name, err)
		}
		t.Logf("%s (%v) → %s (%v): echo reply in %v", a.name, v6(a), b.name, v6(b), rtt)
	}
}
