package client_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/testnet/mgmtsrv"
	"github.com/nbfsm/nbfsm/internal/testnet/relaysrv"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
)

// relayNode is a client whose transitions the test watches (no status
// polling): wait on the records of its machines.
type relayNode struct {
	*node
	watch *fsmwatch.Watch
	trail *trail
}

func startRelayNode(t *testing.T, n *testnet.Network, name string, force bool, types []ice.CandidateType) *relayNode {
	t.Helper()
	return startRelayNodeB(t, n, name, force, types...)
}

func startRelayNodeB(t testing.TB, n *testnet.Network, name string, force bool, types ...ice.CandidateType) *relayNode {
	t.Helper()
	return startRelayNodeSetup(t, n, name, client.Options{ForceRelay: force, CandidateTypes: types}, nil)
}

// trail keeps every transition of a client (cheap, unlike debug logging,
// which hides the races it should show) for a failing test to print.
type trail struct {
	mu  sync.Mutex
	all []fsm.Record
}

func (tr *trail) Observe(r fsm.Record) {
	tr.mu.Lock()
	tr.all = append(tr.all, r)
	tr.mu.Unlock()
}

// dump logs nd's transitions (peers and relays) since its start.
func (nd *relayNode) dump(t testing.TB) {
	t.Helper()
	nd.trail.mu.Lock()
	defer nd.trail.mu.Unlock()
	for _, r := range nd.trail.all {
		if r.Kind == peerfsm.Kind || strings.HasPrefix(r.Machine, relayfsm.ID) || r.Machine == "signal" {
			t.Logf("%s %8v %s: %s --%s--> %s %s", nd.name, r.At.Sub(nd.started).Round(time.Millisecond), r.Machine[:min(len(r.Machine), 12)],
				r.From, r.Event, r.To, r.Cause)
		}
	}
}

// until waits for machine id to enter state s.
func (nd *relayNode) until(t *testing.T, id string, s fsm.State) time.Duration {
	t.Helper()
	if _, err := nd.watch.Until(id, s, wait); err != nil {
		st, _ := nd.c.Status()
		nd.dump(t)
		t.Fatalf("%s: %v; peers %+v relays %+v", nd.name, err, st.Peers, st.Relays)
	}
	return time.Since(nd.started)
}

func ping(t *testing.T, a, b *relayNode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	rtt, err := netping.Ping(ctx, a.c.Net(), addrOf(t, a.node), addrOf(t, b.node), 200*time.Millisecond)
	if err != nil {
		for _, nd := range []*relayNode{a, b} {
			st, _ := nd.c.Status()
			t.Logf("%s: peers %+v relays %+v", nd.name, st.Peers, st.Relays)
			nd.dump(t)
		}
		t.Fatalf("%s → %s: %v", a.name, b.name, err)
	}
	t.Logf("%s → %s over the relay: %v", a.name, b.name, rtt)
}

func peerStatus(t *testing.T, nd *relayNode) engine.PeerStatus {
	t.Helper()
	s, err := nd.c.Status()
	if err != nil || len(s.Peers) != 1 {
		t.Fatalf("%s: %v peers %+v", nd.name, err, s.Peers)
	}
	return s.Peers[0]
}

// (a) One side relay-only (ICE disabled, like NB_FORCE_RELAY) and a normal
// client: both pair over the relay, ping both ways; status shows the relay.
// The first ping comes within the bound stated here (issue 11: it took
// ~21 s in 2 runs of 10, see TestRelayOnlyControllerRelayLate).
func TestRelayOnlyPeer(t *testing.T) {
	const bound = 10 * time.Second // from the start of the clients
	n := startNet(t)
	a := startRelayNode(t, n, "forced", true, nil)
	b := startRelayNode(t, n, "normal", false, nil)
	da := a.until(t, peerfsm.ID(b.key.PublicKey()), peerfsm.RelayOnlyRelayed)
	db := b.until(t, peerfsm.ID(a.key.PublicKey()), peerfsm.RelayOnlyRelayed)
	t.Logf("relay-only path after %v (forced) and %v (normal)", da.Round(time.Millisecond), db.Round(time.Millisecond))
	ping(t, a, b)
	first := time.Since(a.started)
	t.Logf("first ping (forced → normal) %v after start", first.Round(time.Millisecond))
	if first > bound {
		a.dump(t)
		b.dump(t)
		t.Fatalf("first ping %v after start, bound %v", first, bound)
	}
	ping(t, b, a)
	for _, nd := range []*relayNode{a, b} {
		ps := peerStatus(t, nd)
		if ps.Connection != "relayed" || ps.RelayAddress != n.Relay.InstanceAddr() {
			t.Fatalf("%s: peer status %+v", nd.name, ps)
		}
		s, _ := nd.c.Status()
		if len(s.Relays) != 1 || !s.Relays[0].Available || s.Relays[0].URI != n.Relay.URL() || s.Relays[0].Users != 1 {
			t.Fatalf("%s: relays %+v", nd.name, s.Relays)
		}
	}
}

// (b) ICE made impossible (no candidate can be gathered: relay candidates
// only, and management hands out no TURN server): WireGuard goes over the
// NetBird relay, within the bound stated here.
func TestICEImpossibleFallsToRelay(t *testing.T) {
	const bound = 10 * time.Second
	n := startNet(t)
	n.Mgmt.SetNetbirdConfig(&mgmtpb.NetbirdConfig{
		Signal: &mgmtpb.HostConfig{Uri: n.SignalAddr(), Protocol: mgmtpb.HostConfig_HTTP},
	})
	none := []ice.CandidateType{ice.CandidateTypeRelay}
	a := startRelayNode(t, n, "alpha", false, none)
	b := startRelayNode(t, n, "beta", false, none)
	da := a.until(t, peerfsm.ID(b.key.PublicKey()), peerfsm.OverRelay)
	db := b.until(t, peerfsm.ID(a.key.PublicKey()), peerfsm.OverRelay)
	t.Logf("over the relay %v (alpha) and %v (beta) after start", da.Round(time.Millisecond), db.Round(time.Millisecond))
	if da > bound || db > bound {
		a.dump(t)
		b.dump(t)
		t.Fatalf("relay path after %v / %v, bound %v", da, db, bound)
	}
	ping(t, a, b)
	ping(t, b, a)
}

// Issue 11, made deterministic: the normal client (the controller) offers
// before its home relay is up (the relay server holds its AuthResponse), so
// the ForceRelay side pairs over its own home relay on an offer without a
// relay address. Once released, the controller's next offer names that
// same relay: the ForceRelay side must keep its path (it used to move to
// "waiting for the relay", which never became ready again, until the 20 s
// relay deadline: the ~21 s first ping of 2 runs in 10).
func TestRelayOnlyControllerRelayLate(t *testing.T) {
	const bound = 10 * time.Second // from the release; a stall lasted CheckTimeout (20 s) and more
	n := startNet(t)
	kf, kn := newKey(t), newKey(t)
	if !peerfsm.Controlling(kn.PublicKey(), kf.PublicKey()) {
		kf, kn = kn, kf
	}
	release := n.Relay.HoldAuth(relay.HashID(kn.PublicKey().String()))
	defer release()
	a := startRelayNodeWith(t, n, "forced", client.Options{PrivateKey: kf, ForceRelay: true})
	b := startRelayNodeWith(t, n, "normal", client.Options{PrivateKey: kn})
	pa, pb := peerfsm.ID(kn.PublicKey()), peerfsm.ID(kf.PublicKey())
	a.until(t, pa, peerfsm.RelayOnlyRelayed)
	if s, _ := b.c.Status(); len(s.Relays) != 1 || s.Relays[0].Available {
		t.Fatalf("the controller's relay is up before the release: %+v", s.Relays)
	}
	released := time.Now()
	release()
	b.until(t, pb, peerfsm.RelayOnlyRelayed)
	ping(t, a, b)
	first := time.Since(released)
	ping(t, b, a)
	t.Logf("first ping %v after the controller's relay came up", first.Round(time.Millisecond))
	if first > bound {
		a.dump(t)
		b.dump(t)
		t.Fatalf("first ping %v after the release, bound %v", first, bound)
	}
	a.trail.mu.Lock()
	defer a.trail.mu.Unlock()
	for _, r := range a.trail.all {
		if r.Machine == pa && r.From == peerfsm.RelayOnlyRelayed && r.To != peerfsm.RelayOnlyRelayed {
			t.Fatalf("the forced side left its relay path: %s --%s--> %s", r.From, r.Event, r.To)
		}
	}
}

// Issue 11 beside ICE, made deterministic: ICE is impossible and the
// non-controller's home relay is held until it runs its agent, so its offer
// or answer carried no relay address. When its relay comes up it offers
// again with the address; the controller, which acquires a relay only for
// a remote that sent one, then pairs over the relay at once (it used to
// wait for ICE to fail, ~12 s, and a new session: TestICEImpossibleFallsToRelay
// over its bound in 3 runs of 10).
func TestICEImpossibleRelayLate(t *testing.T) {
	const bound = 8 * time.Second // from the release; ICE fails after ~12 s
	n := startNet(t)
	n.Mgmt.SetNetbirdConfig(&mgmtpb.NetbirdConfig{
		Signal: &mgmtpb.HostConfig{Uri: n.SignalAddr(), Protocol: mgmtpb.HostConfig_HTTP},
	})
	kc, ko := newKey(t), newKey(t)
	if !peerfsm.Controlling(kc.PublicKey(), ko.PublicKey()) {
		kc, ko = ko, kc
	}
	release := n.Relay.HoldAuth(relay.HashID(ko.PublicKey().String()))
	defer release()
	none := []ice.CandidateType{ice.CandidateTypeRelay}
	a := startRelayNodeWith(t, n, "controller", client.Options{PrivateKey: kc, CandidateTypes: none})
	b := startRelayNodeWith(t, n, "other", client.Options{PrivateKey: ko, CandidateTypes: none})
	pa, pb := peerfsm.ID(ko.PublicKey()), peerfsm.ID(kc.PublicKey())
	a.until(t, pa, peerfsm.Checking)
	b.until(t, pb, peerfsm.Checking)
	released := time.Now()
	release()
	a.until(t, pa, peerfsm.OverRelay)
	b.until(t, pb, peerfsm.OverRelay)
	d := time.Since(released)
	t.Logf("over the relay %v after the non-controller's relay came up", d.Round(time.Millisecond))
	if d > bound {
		a.dump(t)
		b.dump(t)
		t.Fatalf("relay path %v after the release, bound %v", d, bound)
	}
	ping(t, a, b)
	ping(t, b, a)
}

func newKey(t testing.TB) wgtypes.Key {
	t.Helper()
	k, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// (e) The relay server restarts: both clients re-authenticate and the
// relayed peers recover.
func TestRelayServerRestart(t *testing.T) {
	n := startNet(t)
	a := startRelayNode(t, n, "forced", true, nil)
	b := startRelayNode(t, n, "normal", false, nil)
	pa, pb := peerfsm.ID(b.key.PublicKey()), peerfsm.ID(a.key.PublicKey())
	a.until(t, pa, peerfsm.RelayOnlyRelayed)
	b.until(t, pb, peerfsm.RelayOnlyRelayed)
	ping(t, a, b)
	auths := n.Relay.Auths()
	n.Relay.Stop()
	a.until(t, relayfsm.ID, relayfsm.Backoff)
	b.until(t, relayfsm.ID, relayfsm.Backoff)
	if err := n.Relay.Start(); err != nil {
		t.Fatal(err)
	}
	a.until(t, relayfsm.ID, relayfsm.Connected)
	b.until(t, relayfsm.ID, relayfsm.Connected)
	a.until(t, pa, peerfsm.RelayOnlyRelayed)
	b.until(t, pb, peerfsm.RelayOnlyRelayed)
	// The server counts an auth right after its AuthResponse: wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := n.Relay.Wait(ctx, func(s *relaysrv.Server) bool { return s.Auths() >= auths+2 }); err != nil {
		t.Fatalf("auths %d → %d", auths, n.Relay.Auths())
	}
	ping(t, a, b)
	ping(t, b, a)
}

func startRelayNodeWith(t *testing.T, n *testnet.Network, name string, o client.Options) *relayNode {
	t.Helper()
	return startRelayNodeSetup(t, n, name, o, nil)
}

// startRelayNodeSetup starts a client with o (its key if o.PrivateKey is
// set) after setup has seen it (test hooks that must precede Start).
func startRelayNodeSetup(t testing.TB, n *testnet.Network, name string, o client.Options, setup func(*client.Client)) *relayNode {
	t.Helper()
	key := o.PrivateKey
	if key == (wgtypes.Key{}) {
		var err error
		if key, err = nbcrypto.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	}
	nd := &relayNode{node: &node{name: name, key: key}, watch: fsmwatch.New(1 << 16), trail: &trail{}}
	o.ManagementURL, o.PrivateKey, o.SetupKey = n.ManagementURL(), key, n.SetupKey()
	o.Meta, o.Mode = mgmt.Meta{Hostname: name, GoOS: "linux"}, wgiface.Netstack
	o.Listen, o.Logger = netip.MustParseAddrPort("127.0.0.1:0"), debugLog(name)
	o.Observers = append(o.Observers, nd.watch, nd.trail)
	c, err := client.New(o)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(c)
	}
	nd.c, nd.started = c, time.Now()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return nd
}

// (f) Two relay servers, each client's home on a different one: the
// non-controller opens the controller's relay as a foreign relay (same
// identity, its home kept); when the peer leaves, the foreign connection
// closes after its linger timer.
func TestForeignRelay(t *testing.T) {
	n := startNet(t)
	second := relaysrv.New(relaysrv.Config{Secret: testnet.RelaySecret})
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Stop)
	a := startRelayNodeWith(t, n, "one", client.Options{ForceRelay: true, RelayURLs: []string{n.Relay.URL()}})
	b := startRelayNodeWith(t, n, "two", client.Options{RelayURLs: []string{second.URL()}})
	ctrl, other, ctrlHome, otherHome := a, b, n.Relay, second
	if !peerfsm.Controlling(a.key.PublicKey(), b.key.PublicKey()) {
		ctrl, other, ctrlHome, otherHome = b, a, second, n.Relay
	}
	ctrl.until(t, peerfsm.ID(other.key.PublicKey()), peerfsm.RelayOnlyRelayed)
	other.until(t, peerfsm.ID(ctrl.key.PublicKey()), peerfsm.RelayOnlyRelayed)
	ping(t, a, b)
	ping(t, b, a)
	otherID := relay.HashID(other.key.PublicKey().String())
	if !ctrlHome.Has(otherID) || !otherHome.Has(otherID) {
		t.Fatalf("the non-controller is not on both relays (controller's %v, own %v)", ctrlHome.Has(otherID), otherHome.Has(otherID))
	}
	s, _ := other.c.Status()
	if len(s.Relays) != 2 || !s.Relays[1].Available || s.Relays[1].URI != ctrlHome.InstanceAddr() || s.Relays[1].Users != 1 {
		t.Fatalf("relays %+v", s.Relays)
	}
	// The controller stops and leaves the network map: the foreign relay
	// closes.
	_ = ctrl.c.Close()
	if err := n.Mgmt.RemovePeer(ctrl.key.PublicKey()); err != nil {
		t.Fatal(err)
	}
	other.until(t, relayfsm.ForeignID(ctrlHome.InstanceAddr()), relayfsm.ForeignUnused)
	other.until(t, relayfsm.ForeignID(ctrlHome.InstanceAddr()), relayfsm.ForeignClosed)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := ctrlHome.Wait(ctx, func(s *relaysrv.Server) bool { return !s.Has(otherID) }); err != nil {
		t.Fatal("foreign connection still open on the server")
	}
	if !otherHome.Has(otherID) {
		t.Fatal("home connection lost")
	}
}

// (g) An expired token is refused; a refreshed one (config-only sync)
// works at the next connect.
func TestExpiredRelayTokenThenRefresh(t *testing.T) {
	n := startNet(t)
	n.Mgmt.SetRelay(mgmtsrv.Relay{URLs: []string{n.Relay.URL()}, Secret: testnet.RelaySecret, TTL: -time.Minute})
	a := startRelayNode(t, n, "alpha", false, nil)
	a.until(t, relayfsm.ID, relayfsm.Backoff)
	a.until(t, relayfsm.ID, relayfsm.Connecting)
	a.until(t, relayfsm.ID, relayfsm.Backoff)
	if n.Relay.Refused() < 2 || n.Relay.Auths() != 0 {
		t.Fatalf("refused %d auths %d", n.Relay.Refused(), n.Relay.Auths())
	}
	n.Mgmt.SetRelay(mgmtsrv.Relay{URLs: []string{n.Relay.URL()}, Secret: testnet.RelaySecret, TTL: time.Hour})
	n.Mgmt.RefreshRelayTokens()
	a.until(t, relayfsm.ID, relayfsm.Connected)
	s, _ := a.c.Status()
	if len(s.Relays) != 1 || !s.Relays[0].Available || s.Relays[0].Error != "" {
		t.Fatalf("relays %+v", s.Relays)
	}
}

// (c), in part: with ICE possible, WireGuard goes over the relay first and
// ICE then upgrades the same session to a direct path (no new offer or
// answer in between); traffic passes afterwards. Whether a ping every
// 100 ms loses nothing across the switch is not shown here: on loopback the
// switch comes within milliseconds, before the netstack can ping.
func TestRelayFirstThenDirect(t *testing.T) {
	n := startNet(t)
	// The two see each other only once both relay links are up, so that
	// both offers carry a relay address.
	n.Mgmt.SetTopology(func(_, _ wgtypes.Key) bool { return false })
	a := startRelayNode(t, n, "alpha", false, nil)
	b := startRelayNode(t, n, "beta", false, nil)
	a.until(t, relayfsm.ID, relayfsm.Connected)
	b.until(t, relayfsm.ID, relayfsm.Connected)
	n.Mgmt.SetTopology(nil)
	id := peerfsm.ID(b.key.PublicKey())
	recs, err := a.watch.Until(id, peerfsm.Direct, wait)
	if err != nil {
		t.Fatal(err)
	}
	var path []fsm.State
	sawRelay := false
	for _, r := range recs {
		if r.Machine != id {
			continue
		}
		if r.To == peerfsm.OverRelay {
			sawRelay = true
		}
		if sawRelay && (r.Event == peerfsm.EvOffer || r.Event == peerfsm.EvAnswer) && !r.Internal {
			t.Fatalf("renegotiated between relay and direct: %+v", r)
		}
		if !r.Internal {
			path = append(path, r.To)
		}
	}
	if !sawRelay {
		t.Fatalf("direct without the relay first: %v", path)
	}
	t.Logf("alpha's peer: %v", path)
	ping(t, a, b)
	ping(t, b, a)
}

// debugLog is the clients' logger: none, unless NBFSM_RELAY_DEBUG is set:
// "1" logs everything at debug level (wireguard-go's too, which slows the
// clients enough to hide some races); "fsm" logs the transitions and
// everything at info level and above only; "wg" adds wireguard-go's
// handshake and keepalive lines and the relay bridge's.
func debugLog(name string) *zap.Logger {
	mode := os.Getenv("NBFSM_RELAY_DEBUG")
	if mode == "" {
		return zap.NewNop()
	}
	l, _ := zap.NewDevelopment()
	if mode == "fsm" || mode == "wg" {
		wg := mode == "wg"
		l = l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core { return transitionsOnly{c, wg} }))
	}
	return l.Named(name)
}

// transitionsOnly passes debug entries of the "fsm" loggers (the
// transition trace), with wg wireguard-go's handshake and keepalive lines
// and the relay bridge's, and every entry at info level and above.
type transitionsOnly struct {
	zapcore.Core
	wg bool
}

func (c transitionsOnly) With(f []zapcore.Field) zapcore.Core {
	return transitionsOnly{c.Core.With(f), c.wg}
}

func (c transitionsOnly) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	pass := e.Level >= zapcore.InfoLevel || strings.HasSuffix(e.LoggerName, ".fsm") ||
		c.wg && (strings.Contains(e.Message, "andshake") || strings.Contains(e.Message, "keepalive") ||
			strings.Contains(e.Message, "relay") || strings.Contains(e.Message, "endpoint"))
	if !pass {
		return ce
	}
	return c.Core.Check(e, ce)
}

// echo sends a UDP datagram with a sequence number from a to b's echo
// server every interval (a "ping" that gVisor's ping sockets cannot lose
// on their own: netstack's PingConn misses a wake-up now and then, see
// internal/netping, a UDP socket does not) and records which came back.
type echo struct {
	interval time.Duration
	conn     net.Conn
	srv      net.PacketConn
	stop     chan struct{}
	wg       sync.WaitGroup
	replies  chan struct{} // a token per reply

	mu   sync.Mutex
	sent map[uint64]time.Time
	got  map[uint64]time.Time
}

func startEcho(t *testing.T, a, b *relayNode, interval time.Duration) *echo {
	t.Helper()
	ba := netip.AddrPortFrom(addrOf(t, b.node), 7007)
	srv, err := b.c.Net().ListenUDPAddrPort(ba)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := a.c.Net().DialUDPAddrPort(netip.AddrPortFrom(addrOf(t, a.node), 0), ba)
	if err != nil {
		_ = srv.Close()
		t.Fatal(err)
	}
	e := &echo{interval: interval, conn: conn, srv: srv, stop: make(chan struct{}), replies: make(chan struct{}, 1<<16),
		sent: map[uint64]time.Time{}, got: map[uint64]time.Time{}}
	e.wg.Add(3)
	go func() { // server
		defer e.wg.Done()
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteTo(buf[:n], from)
		}
	}()
	go func() { // replies
		defer e.wg.Done()
		buf := make([]byte, 64)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if n != 8 {
				continue
			}
			seq := binary.BigEndian.Uint64(buf)
			e.mu.Lock()
			_, dup := e.got[seq]
			if !dup {
				e.got[seq] = time.Now()
			}
			e.mu.Unlock()
			if !dup {
				e.replies <- struct{}{}
			}
		}
	}()
	go func() { // the load: one datagram every interval
		defer e.wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		var b [8]byte
		for seq := uint64(1); ; seq++ {
			binary.BigEndian.PutUint64(b[:], seq)
			e.mu.Lock()
			e.sent[seq] = time.Now()
			e.mu.Unlock()
			_, _ = conn.Write(b[:])
			select {
			case <-tick.C:
			case <-e.stop:
				return
			}
		}
	}()
	t.Cleanup(e.close)
	return e
}

// await waits for n more replies.
func (e *echo) await(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for range n {
		select {
		case <-e.replies:
		case <-deadline.C:
			t.Fatalf("echo: %d replies did not come", n)
		}
	}
}

// finish stops sending and waits until every request has its reply or
// grace has passed since the last request; it returns the sequence numbers
// without a reply.
func (e *echo) finish(grace time.Duration) (sent int, lost []uint64) {
	close(e.stop)
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for {
		e.mu.Lock()
		missing := len(e.sent) - len(e.got)
		e.mu.Unlock()
		if missing <= 0 {
			break
		}
		select {
		case <-e.replies:
			continue
		case <-timer.C:
		}
		break
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for seq := range e.sent {
		if _, ok := e.got[seq]; !ok {
			lost = append(lost, seq)
		}
	}
	slices.Sort(lost)
	return len(e.sent), lost
}

// sentAfter is the requests of seqs sent after t0.
func (e *echo) sentAfter(seqs []uint64, t0 time.Time) []uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []uint64
	for _, seq := range seqs {
		if e.sent[seq].After(t0) {
			out = append(out, seq)
		}
	}
	return out
}

// firstReplyAfter is the first reply to a request sent after t0.
func (e *echo) firstReplyAfter(t0 time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var first time.Time
	for seq, at := range e.got {
		if e.sent[seq].After(t0) && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first, !first.IsZero()
}

func (e *echo) close() {
	select {
	case <-e.stop:
	default:
		close(e.stop)
	}
	_ = e.conn.Close()
	_ = e.srv.Close()
	e.wg.Wait()
}

// offerCount counts the OFFER and ANSWER messages the signal server
// forwards between the nodes (it decrypts each with its recipient's key).
type offerCount struct {
	mu sync.Mutex
	n  int
}

func countOffers(t *testing.T, n *testnet.Network, nodes ...*relayNode) *offerCount {
	oc := &offerCount{}
	n.Signal.Tap(func(em *signalpb.EncryptedMessage) {
		for _, nd := range nodes {
			m, err := sigwire.Decode(nd.key, em, func(wgtypes.Key) bool { return true })
			if err != nil {
				continue
			}
			if m.Kind == sigwire.Offer || m.Kind == sigwire.Answer {
				oc.mu.Lock()
				oc.n++
				oc.mu.Unlock()
			}
			return
		}
	})
	t.Cleanup(func() { n.Signal.Tap(nil) })
	return oc
}

func (oc *offerCount) get() int {
	oc.mu.Lock()
	defer oc.mu.Unlock()
	return oc.n
}

// gatedPair starts two clients whose ICE agents are held back (their
// remote candidates withheld until the gates open), that see each other
// only once both relay links are up, so that both offers carry a relay
// address; it returns when both peers run WireGuard over the relay.
func gatedPair(t *testing.T, n *testnet.Network, pathTimeout time.Duration) (a, b *relayNode, gates []*client.ICEGate) {
	t.Helper()
	n.Mgmt.SetTopology(func(_, _ wgtypes.Key) bool { return false })
	setup := func(c *client.Client) {
		gates = append(gates, c.GateICE())
		if pathTimeout > 0 {
			c.SetPeerPathTimeout(pathTimeout)
		}
	}
	a = startRelayNodeSetup(t, n, "alpha", client.Options{}, setup)
	b = startRelayNodeSetup(t, n, "beta", client.Options{}, setup)
	a.until(t, relayfsm.ID, relayfsm.Connected)
	b.until(t, relayfsm.ID, relayfsm.Connected)
	n.Mgmt.SetTopology(nil)
	a.until(t, peerfsm.ID(b.key.PublicKey()), peerfsm.OverRelay)
	b.until(t, peerfsm.ID(a.key.PublicKey()), peerfsm.OverRelay)
	return a, b, gates
}

func wantConnection(t *testing.T, conn string, nodes ...*relayNode) {
	t.Helper()
	for _, nd := range nodes {
		if ps := peerStatus(t, nd); ps.Connection != conn {
			t.Fatalf("%s: connection %q, want %q (%+v)", nd.name, ps.Connection, conn, ps)
		}
	}
}

// (c) ICE possible: WireGuard goes over the relay first, then ICE upgrades
// the same session to a direct path, and a datagram echoed every 100 ms
// across the switch loses none. On loopback ICE would win before the first
// echo, so the test holds ICE back (the remote candidates, on both sides)
// until the relay has carried echoes, then lets it connect.
func TestRelayFirstThenDirectNoLoss(t *testing.T) {
	n := startNet(t)
	a, b, gates := gatedPair(t, n, 0)
	offers := countOffers(t, n, a, b)
	e := startEcho(t, a, b, 100*time.Millisecond)
	e.await(t, 10)
	wantConnection(t, "relayed", a, b)
	// The switch is what is measured: from the relay carrying echoes on.
	// A request sent before the relay path's first WireGuard handshake
	// completed may be lost (seen once in CI: the first echo, under load).
	carried := time.Now()
	before := offers.get()
	for _, g := range gates {
		g.Release()
	}
	da := a.until(t, peerfsm.ID(b.key.PublicKey()), peerfsm.Direct)
	db := b.until(t, peerfsm.ID(a.key.PublicKey()), peerfsm.Direct)
	e.await(t, 20) // two more seconds on the direct path
	sent, lost := e.finish(2 * time.Second)
	across := e.sentAfter(lost, carried)
	t.Logf("direct after %v (alpha) and %v (beta); %d echoes, lost %v (%v of them sent once the relay carried)",
		da.Round(time.Millisecond), db.Round(time.Millisecond), sent, lost, across)
	if len(across) != 0 {
		t.Fatalf("lost %d of %d echoes across the switch: %v", len(across), sent, across)
	}
	wantConnection(t, "direct", a, b)
	if after := offers.get(); after != before {
		t.Fatalf("%d offers/answers during the upgrade, want none", after-before)
	}
}

// (d) The direct path is lost (the shared socket drops every datagram to
// and from the remote's direct address): the relay, kept paired in the
// background, carries the traffic again within the bound below, with no
// new offer or answer. The path check finds the loss after the path timeout
// (75 s by default; shortened here to pathTimeout, with traffic flowing all
// along so that only the fault silences the path) and its probe.
func TestDirectPathLostFallsBackToRelay(t *testing.T) {
	const pathTimeout = 3 * time.Second
	// The path check finds the silence after pathTimeout, probes it (a
	// WireGuard handshake, unanswered here) and falls back ProbeTimeout later.
	const bound = pathTimeout + peerfsm.ProbeTimeout + 2*time.Second
	n := startNet(t)
	a, b, gates := gatedPair(t, n, pathTimeout)
	pa, pb := peerfsm.ID(b.key.PublicKey()), peerfsm.ID(a.key.PublicKey())
	e := startEcho(t, a, b, 100*time.Millisecond)
	e.await(t, 5)
	for _, g := range gates {
		g.Release()
	}
	a.until(t, pa, peerfsm.Direct)
	b.until(t, pb, peerfsm.Direct)
	e.await(t, 10)
	wantConnection(t, "direct", a, b)
	offers := countOffers(t, n, a, b)
	direct := b.c.LocalAddr()
	lostAt := time.Now()
	a.c.Socket().SetFault(func(r netip.AddrPort) bool { return r == direct })
	a.until(t, pa, peerfsm.OverRelay)
	b.until(t, pb, peerfsm.OverRelay)
	e.await(t, 10) // a second of traffic over the relay
	first, ok := e.firstReplyAfter(lostAt)
	if !ok {
		t.Fatal("no echo after the fault")
	}
	t.Logf("direct path lost: echoes over the relay again after %v (bound %v)", first.Sub(lostAt).Round(time.Millisecond), bound)
	if first.Sub(lostAt) > bound {
		t.Fatalf("relay carried traffic %v after the loss, bound %v", first.Sub(lostAt), bound)
	}
	wantConnection(t, "relayed", a, b)
	// The relayed path's own check reads the socket's stamp on the relay
	// bridge: with traffic on it, two more path timeouts pass without a
	// lost session or a new offer.
	e.await(t, int(2*pathTimeout/(100*time.Millisecond))+10)
	wantConnection(t, "relayed", a, b)
	if got := offers.get(); got != 0 {
		t.Fatalf("%d offers/answers after the direct path was lost, want none", got)
	}
}

// Liveness on a relay-only path: the remote's relay connection drops (the
// relay server's fault hook); the relay reports it offline to the peer
// that watches it, which leaves its connected state within the bound below
// (not after a path timer); when the remote is back on the relay the
// relay's online report makes the peer offer again, and they pair.
func TestRelayRemoteOfflineLeavesConnected(t *testing.T) {
	const bound = 2 * time.Second
	n := startNet(t)
	a := startRelayNode(t, n, "forced", true, nil)
	b := startRelayNode(t, n, "normal", false, nil)
	pa, pb := peerfsm.ID(b.key.PublicKey()), peerfsm.ID(a.key.PublicKey())
	a.until(t, pa, peerfsm.RelayOnlyRelayed)
	b.until(t, pb, peerfsm.RelayOnlyRelayed)
	ping(t, a, b)
	bid := relay.HashID(b.key.PublicKey().String())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := n.Relay.Wait(ctx, func(s *relaysrv.Server) bool { return s.Watchers(bid) == 1 }); err != nil {
		t.Fatalf("nobody watches the remote on the relay (%d)", n.Relay.Watchers(bid))
	}
	dropped := time.Now()
	if !n.Relay.DropPeer(bid) {
		t.Fatal("remote not on the relay")
	}
	recs, err := a.watch.Until(pa, peerfsm.RemoteOffline, wait)
	if err != nil {
		t.Fatal(err)
	}
	left := time.Since(dropped)
	last := recs[len(recs)-1]
	t.Logf("left connected %v after the remote's relay connection dropped (bound %v), on %s", left.Round(time.Millisecond), bound, last.Event)
	if last.From != peerfsm.RelayOnlyRelayed || last.Event != relayfsm.EvRemoteOffline || left > bound {
		t.Fatalf("left %s on %s after %v, want %s on %s within %v", last.From, last.Event, left, peerfsm.RelayOnlyRelayed,
			relayfsm.EvRemoteOffline, bound)
	}
	if ps := peerStatus(t, a); ps.Connection != "" {
		t.Fatalf("status while the remote is offline: %+v", ps)
	}
	// The remote's link reconnects; the relay says so; the peer offers.
	recs, err = a.watch.Until(pa, peerfsm.Offering, wait)
	if err != nil {
		t.Fatal(err)
	}
	if last := recs[len(recs)-1]; last.From != peerfsm.RemoteOffline || last.Event != relayfsm.EvRemoteOnline {
		t.Fatalf("left %s on %s, want the relay's online report", last.From, last.Event)
	}
	a.until(t, pa, peerfsm.RelayOnlyRelayed)
	b.until(t, pb, peerfsm.RelayOnlyRelayed)
	ping(t, a, b)
	ping(t, b, a)
}

// (f) with relayServerIP: the controller's home relay calls itself by a
// name that does not resolve; the other side opens it as a foreign relay
// at the IP the controller's offer carried, and they pair.
func TestForeignRelayByRelayServerIP(t *testing.T) {
	n := startNet(t)
	named := relaysrv.New(relaysrv.Config{Secret: testnet.RelaySecret})
	if err := named.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(named.Stop)
	named.SetExposed("rel://relay-named.invalid:" + named.Port()) // .invalid never resolves (RFC 6761)
	k1, _ := nbcrypto.GenerateKey()
	k2, _ := nbcrypto.GenerateKey()
	if !peerfsm.Controlling(k1.PublicKey(), k2.PublicKey()) {
		k1, k2 = k2, k1
	}
	ctrl := startRelayNodeWith(t, n, "ctrl", client.Options{PrivateKey: k1, RelayURLs: []string{named.URL()}})
	other := startRelayNodeWith(t, n, "other", client.Options{PrivateKey: k2, ForceRelay: true, RelayURLs: []string{n.Relay.URL()}})
	other.until(t, relayfsm.ForeignID(named.InstanceAddr()), relayfsm.ForeignUsed)
	ctrl.until(t, peerfsm.ID(k2.PublicKey()), peerfsm.RelayOnlyRelayed)
	other.until(t, peerfsm.ID(k1.PublicKey()), peerfsm.RelayOnlyRelayed)
	ping(t, ctrl, other)
	ping(t, other, ctrl)
	if !named.Has(relay.HashID(k2.PublicKey().String())) {
		t.Fatal("the non-controller is not on the controller's relay")
	}
}
