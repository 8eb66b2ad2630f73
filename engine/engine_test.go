package engine

import (
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

func pfx(s string) []netip.Prefix { return []netip.Prefix{netip.MustParsePrefix(s)} }

func TestReconcile(t *testing.T) {
	a, b, c := peerKey(1), peerKey(2), peerKey(3)
	cur := map[wgtypes.Key][]netip.Prefix{a: pfx("100.64.0.1/32"), b: pfx("100.64.0.2/32")}
	tests := []struct {
		name                   string
		desired                []mgmt.RemotePeer
		add, remove, change, n int
	}{
		{"unchanged", []mgmt.RemotePeer{{Key: a, AllowedIPs: pfx("100.64.0.1/32")}, {Key: b, AllowedIPs: pfx("100.64.0.2/32")}}, 0, 0, 0, 2},
		{"added", []mgmt.RemotePeer{{Key: a, AllowedIPs: pfx("100.64.0.1/32")}, {Key: b, AllowedIPs: pfx("100.64.0.2/32")}, {Key: c, AllowedIPs: pfx("100.64.0.3/32")}}, 1, 0, 0, 2},
		{"removed", []mgmt.RemotePeer{{Key: a, AllowedIPs: pfx("100.64.0.1/32")}}, 0, 1, 0, 1},
		{"changed", []mgmt.RemotePeer{{Key: a, AllowedIPs: pfx("100.64.0.9/32")}, {Key: b, AllowedIPs: pfx("100.64.0.2/32")}}, 0, 0, 1, 1},
		{"all gone", nil, 0, 2, 0, 0},
	}
	for _, tt := range tests {
		p := Reconcile(cur, tt.desired)
		if len(p.Add) != tt.add || len(p.Remove) != tt.remove || len(p.Change) != tt.change || p.Same != tt.n {
			t.Errorf("%s: plan %+v", tt.name, p)
		}
	}
}

// start brings an engine (loop not running: events are delivered in the
// test goroutine) to running with signal down.
func start(t *testing.T, fp *fakePeers) *Engine {
	t.Helper()
	e, err := newTestEngine(fp)
	if err != nil {
		t.Fatal(err)
	}
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: EvStart})
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyLogin, Data: login})
	if !e.m.In(SignalDown) {
		t.Fatalf("engine in %s", e.m.State())
	}
	t.Cleanup(func() { l.Deliver(fsm.Envelope{To: ID, Event: EvStop}) })
	return e
}

func signalUp(e *Engine) {
	e.Loop().Deliver(fsm.Envelope{To: signalfsm.ID, Event: signalfsm.EvUp, Gen: e.sig.Gen()})
}

func TestMapCreatesParkedPeers(t *testing.T) {
	fp := &fakePeers{}
	e := start(t, fp)
	e.Loop().Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 3)})
	n := 0
	e.m.Children(peerfsm.Kind, func(c fsm.Node) bool {
		n++
		if c.State() != peerfsm.Parked {
			t.Errorf("%s in %s with signal down", c.ID(), c.State())
		}
		return true
	})
	if n != 3 || !e.Known(peerKey(2)) || e.Known(peerKey(7)) {
		t.Fatalf("children %d", n)
	}
	if fp.offered() != 0 {
		t.Fatal("parked peers offered")
	}
}

func TestUnchangedMapTouchesNoPeer(t *testing.T) {
	const n = 10000
	e := start(t, &fakePeers{})
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, n)})
	before := l.Stats()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(2, n)})
	after := l.Stats()
	if d := after.Dispatched - before.Dispatched; d != 1 {
		t.Fatalf("reconciling an unchanged %d-peer map dispatched %d events (want 1: the map itself)", n, d)
	}
	// One change touches one peer.
	nm := networkMap(3, n)
	nm.Peers[17].AllowedIPs = pfx("100.127.0.1/32")
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: nm})
	if d := l.Stats().Dispatched - after.Dispatched; d != 2 {
		t.Fatalf("one changed peer: %d events dispatched (want 2)", d)
	}
}

func TestRemovedPeerIsClosedAndReaped(t *testing.T) {
	e := start(t, &fakePeers{})
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 3)})
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(2, 2)})
	if l.Machine(peerfsm.ID(peerKey(2))) != nil || e.Known(peerKey(2)) {
		t.Fatal("removed peer still present")
	}
	if l.Machine(peerfsm.ID(peerKey(1))) == nil {
		t.Fatal("kept peer gone")
	}
}

func TestStrangersCreateNoState(t *testing.T) {
	e := start(t, &fakePeers{})
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 2)})
	stranger := peerKey(99)
	if e.Known(stranger) {
		t.Fatal("stranger known")
	}
	machines := l.Len()
	// What the signal worker would post if a stranger's message got past
	// the Known filter: dropped and counted, no machine created.
	ev, _ := peerfsm.EventFor(sigwire.Offer)
	l.Deliver(fsm.Envelope{To: peerfsm.ID(stranger), Event: ev, Data: sigwire.Message{From: stranger, Kind: sigwire.Offer}})
	if l.Len() != machines || l.Stats().UnknownTarget != 1 {
		t.Fatalf("machines %d → %d, unknown %d", machines, l.Len(), l.Stats().UnknownTarget)
	}
}

func TestSignalDownParksAllButConnected(t *testing.T) {
	fp := &fakePeers{}
	e := start(t, fp)
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 3)})
	signalUp(e)
	// Peer 0 connects (as its ICE worker would report).
	p0 := peerfsm.ID(peerKey(0))
	pm := l.Machine(p0).(*fsm.Machine[*peerfsm.Peer])
	l.Deliver(fsm.Envelope{To: p0, Event: peerfsm.EvAnswer, Data: sigwire.Message{Kind: sigwire.Answer, Ufrag: "r", Pwd: "rp", SessionID: []byte{1}}})
	l.Deliver(fsm.Envelope{To: p0, Event: peerfsm.EvICEConnected, Gen: pm.Gen(), Data: peerfsm.Pair{Relayed: true}})
	if pm.State() != peerfsm.Relayed {
		t.Fatalf("peer 0 in %s", pm.State())
	}
	// Signal drops.
	l.Deliver(fsm.Envelope{To: signalfsm.ID, Event: signalfsm.EvStreamClosed})
	if !e.m.In(SignalDown) {
		t.Fatalf("engine in %s", e.m.State())
	}
	e.m.Children(peerfsm.Kind, func(c fsm.Node) bool {
		want := peerfsm.Parked
		if c.ID() == p0 {
			want = peerfsm.Relayed
		}
		if c.State() != want {
			t.Errorf("%s in %s, want %s", c.ID(), c.State(), want)
		}
		return true
	})
}

// Unparking 1000 peers is paced: a burst, then a batch per tick; every peer
// has offered within the documented bound, and no tick releases more than a
// batch.
func TestUnparkIsPaced(t *testing.T) {
	const n = 1000
	synctest.Test(t, func(t *testing.T) {
		fp := &fakePeers{}
		e, err := newTestEngine(fp)
		if err != nil {
			t.Fatal(err)
		}
		l := e.Loop()
		l.Deliver(fsm.Envelope{To: ID, Event: EvStart})
		l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyLogin, Data: login})
		l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, n)})
		l.Deliver(fsm.Envelope{To: signalfsm.ID, Event: signalfsm.EvUp, Gen: e.sig.Gen()})
		if got := fp.offered(); got != UnparkBurst {
			t.Fatalf("burst: %d offers, want %d", got, UnparkBurst)
		}
		if err := e.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		_ = l.Post(fsm.Envelope{To: ID, Event: EvStart}) // ignored: already running
		start := time.Now()
		prev := fp.offered()
		for fp.offered() < n {
			time.Sleep(UnparkTick)
			synctest.Wait()
			if d := fp.offered() - prev; d > UnparkBatch {
				t.Fatalf("a tick released %d peers", d)
			}
			prev = fp.offered()
			if time.Since(start) > time.Minute {
				t.Fatalf("only %d of %d offered after a minute", prev, n)
			}
		}
		took := time.Since(start)
		bound := time.Duration((n-UnparkBurst+UnparkBatch-1)/UnparkBatch) * UnparkTick
		t.Logf("%d parked peers: all offered %v after signal up (bound %v), at most %d per %v", n, took, bound, UnparkBatch, UnparkTick)
		if took > bound {
			t.Fatalf("took %v, bound %v", took, bound)
		}
		var st fsm.State
		_ = l.Do(func() { st = e.m.State() })
		if st != Steady {
			t.Fatalf("engine in %s", st)
		}
		e.Stop()
	})
}

func TestMergeConfig(t *testing.T) {
	cur := &mgmt.Config{Signal: mgmt.HostConfig{URI: "s:1"}, STUNs: []mgmt.HostConfig{{URI: "stun:a:1"}},
		TURNs: []mgmt.TURNConfig{{URI: "turn:a:1", User: "u", Password: "old"}}}
	tests := []struct {
		name      string
		upd       mgmt.Config
		signal    string
		turnPass  string
		stunCount int
	}{
		{"empty update keeps everything", mgmt.Config{}, "s:1", "old", 1},
		{"rotated TURN credentials", mgmt.Config{TURNs: []mgmt.TURNConfig{{URI: "turn:a:1", User: "u", Password: "new"}}}, "s:1", "new", 1},
		{"new signal", mgmt.Config{Signal: mgmt.HostConfig{URI: "s:2"}}, "s:2", "old", 1},
	}
	for _, tt := range tests {
		got := MergeConfig(cur, tt.upd)
		if got.Signal.URI != tt.signal || got.TURNs[0].Password != tt.turnPass || len(got.STUNs) != tt.stunCount {
			t.Errorf("%s: %+v", tt.name, got)
		}
	}
	if got := MergeConfig(nil, mgmt.Config{Signal: mgmt.HostConfig{URI: "x:1"}}); got.Signal.URI != "x:1" {
		t.Errorf("from nil: %+v", got)
	}
}

func TestStatusSnapshot(t *testing.T) {
	e := start(t, &fakePeers{})
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(4, 2)})
	ctx := t.Context()
	if err := e.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	s, err := e.Status()
	if err != nil {
		t.Fatal(err)
	}
	if s.State != SignalDown || s.Serial != 4 || len(s.Peers) != 2 || s.Address != login.Peer.Address ||
		s.Signal.State != signalfsm.Connecting || s.Peers[0].State != peerfsm.Parked {
		t.Fatalf("status %+v", s)
	}
}

func peersIn(e *Engine, s fsm.State) int {
	n := 0
	e.m.Children(peerfsm.Kind, func(c fsm.Node) bool {
		if c.In(s) {
			n++
		}
		return true
	})
	return n
}

// Issue 10, bug 1: a re-login (needs-login, then a new setup key) while
// signal stays connected left the peers that were offering parked for good:
// entering running raised signal-up ahead of signal-down's park broadcast.
func TestReloginWithSignalConnectedStrandsNoPeer(t *testing.T) {
	fp := &fakePeers{}
	e := start(t, fp)
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 3)})
	signalUp(e)
	if n := peersIn(e, peerfsm.Offering); n != 3 {
		t.Fatalf("%d of 3 peers offering", n)
	}
	l.Deliver(fsm.Envelope{To: ID, Event: EvNeedsLogin})
	l.Deliver(fsm.Envelope{To: ID, Event: EvSetupKey, Data: "new-key"})
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyLogin, Data: login})
	if !e.m.In(Steady) {
		t.Fatalf("engine in %s after the re-login, signal %s", e.m.State(), e.sig.State())
	}
	if n := peersIn(e, peerfsm.Parked); n != 0 {
		t.Fatalf("%d peers parked with signal connected", n)
	}
}

// Found by the model check: signal going down while the engine waits for
// a new setup key left peers offering into a dead signal link.
func TestSignalDownInNeedsLoginParksPeers(t *testing.T) {
	e := start(t, &fakePeers{})
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 3)})
	signalUp(e)
	l.Deliver(fsm.Envelope{To: ID, Event: EvNeedsLogin})
	l.Deliver(fsm.Envelope{To: signalfsm.ID, Event: signalfsm.EvStreamClosed, Gen: e.sig.Gen()})
	if n := peersIn(e, peerfsm.Parked); n != 3 {
		t.Fatalf("%d of 3 peers parked with signal down in %s", n, e.m.State())
	}
	// Signal back, then the login: every peer is released.
	l.Deliver(fsm.Envelope{To: signalfsm.ID, Event: signalfsm.EvRetry})
	e.sig.Loop().Drain()
	signalUp(e)
	l.Deliver(fsm.Envelope{To: ID, Event: EvSetupKey, Data: "new-key"})
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyLogin, Data: login})
	if n := peersIn(e, peerfsm.Offering); n != 3 || !e.m.In(Steady) {
		t.Fatalf("%d of 3 peers offering, engine %s, signal %s", n, e.m.State(), e.sig.State())
	}
}

// Issue 10, bug 2: a parked peer that accepts the remote's offer before its
// unpark turn never learnt that signal is up; its next ICE failure parked
// it after the unpark queue had drained, for good. Now a peer that enters
// parked while signal is up is queued again.
func TestPeerParkedAfterItsTurnIsQueuedAgain(t *testing.T) {
	fp := &fakePeers{}
	e, err := New(Config{PrivateKey: ownKey, Mgmt: &fakeMgmt{}, Signal: &fakeSignal{}, Peers: fp, UnparkBurst: 1, UnparkBatch: 1})
	if err != nil {
		t.Fatal(err)
	}
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: EvStart})
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyLogin, Data: login})
	t.Cleanup(func() { l.Deliver(fsm.Envelope{To: ID, Event: EvStop}) })
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 2)})
	signalUp(e)
	p1 := peerfsm.ID(peerKey(1))
	pm := l.Machine(p1).(*fsm.Machine[*peerfsm.Peer])
	if pm.State() != peerfsm.Parked || !e.m.In(Unparking) {
		t.Fatalf("peer 1 in %s, engine %s: want it waiting for its turn", pm.State(), e.m.State())
	}
	// The remote offers before peer 1's turn: it answers and checks.
	l.Deliver(fsm.Envelope{To: p1, Event: peerfsm.EvOffer,
		Data: sigwire.Message{Kind: sigwire.Offer, Ufrag: "r", Pwd: "rp", SessionID: []byte{7}}})
	if pm.State() != peerfsm.Checking {
		t.Fatalf("peer 1 in %s after the offer", pm.State())
	}
	l.Deliver(fsm.Envelope{To: ID, Event: EvUnparkTick}) // its turn: it is busy, the queue drains
	if !e.m.In(Steady) {
		t.Fatalf("engine in %s", e.m.State())
	}
	l.Deliver(fsm.Envelope{To: p1, Event: peerfsm.EvICEFailed, Gen: pm.Gen()})
	if pm.State() != peerfsm.Offering {
		t.Fatalf("peer 1 in %s after its ICE failure with signal up (engine %s)", pm.State(), e.m.State())
	}
}

// Offers wait for events: a peer whose offers went unanswered waits with
// no timer; network-up makes it offer again.
func TestWaitingPeersOfferOnNetworkUp(t *testing.T) {
	e := start(t, &fakePeers{})
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 2)})
	signalUp(e)
	for range peerfsm.MaxOffers {
		e.m.Children(peerfsm.Kind, func(c fsm.Node) bool {
			l.Deliver(fsm.Envelope{To: c.ID(), Event: peerfsm.EvResend})
			return true
		})
	}
	if n := peersIn(e, peerfsm.Waiting); n != 2 {
		t.Fatalf("%d of 2 peers waiting", n)
	}
	timers := 0
	e.m.Children(peerfsm.Kind, func(c fsm.Node) bool { timers += c.Timers(); return true })
	if timers != 0 {
		t.Fatalf("waiting peers hold %d timers", timers)
	}
	// Network-up re-dials signal (its stream may be bound to an address
	// that is gone): the peers are parked, then released when it is back.
	l.Deliver(fsm.Envelope{To: ID, Event: EvNetworkChanged, Data: true})
	signalUp(e)
	if n := peersIn(e, peerfsm.Offering); n != 2 {
		t.Fatalf("%d of 2 peers offering after network-up (engine %s, signal %s)", n, e.m.State(), e.sig.State())
	}
}

type fakePlane struct{ fail error }

func (f *fakePlane) Up(_, _ netip.Prefix, _ int) (Interface, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	return nopIface{}, nil
}

type nopIface struct{}

func (nopIface) Install()                      {}
func (nopIface) Close() error                  { return nil }
func (f *fakePlane) SetConfig(mgmt.Config)     {}
func (f *fakePlane) SetFirewall(mgmt.Firewall) {}

// Failures are states: an interface that cannot be created at login shows
// in the engine's state and status, no peer offers, one timer retries.
func TestInterfaceFailureIsAState(t *testing.T) {
	fp, dp := &fakePeers{}, &fakePlane{fail: errors.New("no TUN")}
	// The worker that creates the interface runs in place; its result waits
	// in the mailbox for Drain.
	e, err := New(Config{PrivateKey: ownKey, Mgmt: &fakeMgmt{}, Signal: &fakeSignal{}, Peers: fp, Dataplane: dp,
		Go: func(f func()) { f() }})
	if err != nil {
		t.Fatal(err)
	}
	l := e.Loop()
	l.Deliver(fsm.Envelope{To: ID, Event: EvStart})
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyLogin, Data: login})
	t.Cleanup(func() { l.Deliver(fsm.Envelope{To: ID, Event: EvStop}) })
	l.Deliver(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: networkMap(1, 3)})
	if !e.m.In(Configuring) {
		t.Fatalf("engine in %s while the interface is being created", e.m.State())
	}
	l.Drain()
	if !e.m.In(IfaceFailed) || e.m.Timers() != 1 || e.snapshot().Interface == "" {
		t.Fatalf("engine %s, %d timers, status %q", e.m.State(), e.m.Timers(), e.snapshot().Interface)
	}
	if e.sig.In(signalfsm.Running) || fp.offered() != 0 || peersIn(e, peerfsm.Parked) != 3 {
		t.Fatalf("signal %s, %d offers, %d parked: nothing should run without an interface", e.sig.State(), fp.offered(), peersIn(e, peerfsm.Parked))
	}
	l.Deliver(fsm.Envelope{To: ID, Event: EvIfaceRetry}) // still failing: back, with a new timer
	l.Drain()
	if !e.m.In(IfaceFailed) || e.m.Timers() != 1 {
		t.Fatalf("engine %s, %d timers after a failed retry", e.m.State(), e.m.Timers())
	}
	dp.fail = nil
	l.Deliver(fsm.Envelope{To: ID, Event: EvIfaceRetry})
	l.Drain()
	if !e.m.In(SignalDown) || !e.sig.In(signalfsm.Running) || e.snapshot().Interface != "" || e.m.Timers() != 0 {
		t.Fatalf("engine %s, signal %s, status %q after the interface came up", e.m.State(), e.sig.State(), e.snapshot().Interface)
	}
	signalUp(e)
	if n := peersIn(e, peerfsm.Offering); n != 3 {
		t.Fatalf("%d of 3 peers offering", n)
	}
}

// Start and Stop may race from any goroutines: one Start wins, every Stop
// returns once the loop has ended (run with -race).
func TestStartStopRaceFree(t *testing.T) {
	for range 20 {
		e, err := newTestEngine(&fakePeers{})
		if err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 4)
		done := make(chan struct{}, 4)
		for range 2 {
			go func() { errs <- e.Start(t.Context()) }()
			go func() { e.Stop(); done <- struct{}{} }()
		}
		ok := 0
		for range 2 {
			if err := <-errs; err == nil {
				ok++
			} else if !errors.Is(err, ErrRunning) && !errors.Is(err, fsm.ErrStopped) {
				t.Fatal(err)
			}
			<-done
		}
		if ok > 1 {
			t.Fatalf("%d Starts succeeded", ok)
		}
		e.Stop()
	}
}
