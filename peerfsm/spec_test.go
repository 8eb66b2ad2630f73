package peerfsm

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
	"github.com/nbfsm/nbfsm/internal/sigwire"
)

type fakeICE struct{ fx *fakeEffects }

func (h fakeICE) AddRemoteCandidate(c string) { h.fx.Record("AddCandidate", c) }
func (h fakeICE) Stop()                       { h.fx.Record("StopICE") }

type fakeEffects struct {
	fsmtest.Recorder
	n        int
	now      time.Time
	lastRecv time.Time
	// relayRecv is the socket's stamp on the relay bridge.
	relayRecv time.Time
	// roamed is WireGuard's endpoint after the remote changed address,
	// roamedRecv the last receive from it.
	roamed     netip.AddrPort
	roamedRecv time.Time
	// setErrs are what the next SetPeer calls return, one each (nil:
	// queued); reporters are the Posters SetPeer was handed, oldest first.
	setErrs   []error
	reporters []Poster
}

func (f *fakeEffects) NewCredentials() Credentials {
	f.n++
	return Credentials{Ufrag: fmt.Sprintf("L%d", f.n), Pwd: "localpwd", SessionID: []byte{byte(f.n)}}
}

func (f *fakeEffects) Send(_ fsm.Sender, m sigwire.Message) {
	switch m.Kind {
	case sigwire.Candidate:
		f.Record("Send", m.Kind, m.Candidate)
	default:
		f.Record("Send", m.Kind, m.Ufrag)
	}
}

func (f *fakeEffects) StartICE(_ fsm.Sender, a Agent) ICEHandle {
	if a.NoTURN {
		f.Record("StartICE", a.Local.Ufrag+"/"+a.Remote.Ufrag, fmt.Sprintf("controlling=%v", a.Controlling), fmt.Sprintf("pending=%d", len(a.Candidates)), "no-turn")
	} else {
		f.Record("StartICE", a.Local.Ufrag+"/"+a.Remote.Ufrag, fmt.Sprintf("controlling=%v", a.Controlling), fmt.Sprintf("pending=%d", len(a.Candidates)))
	}
	return fakeICE{f}
}

func (f *fakeEffects) SetPeer(r Poster, p WGPeer) error {
	f.reporters = append(f.reporters, r)
	switch {
	case p.Relay != nil && p.Probe:
		f.Record("SetPeer", "relay", "probe")
	case p.Relay != nil:
		f.Record("SetPeer", "relay")
	case p.Endpoint.IsValid():
		f.Record("SetPeer", p.Endpoint)
	case p.Keepalive > 0:
		f.Record("SetPeer", "keepalive")
	default:
		f.Record("SetPeer")
	}
	if len(f.setErrs) > 0 {
		err := f.setErrs[0]
		f.setErrs = f.setErrs[1:]
		return err
	}
	return nil
}

func (f *fakeEffects) RemovePeer(wgtypes.Key) error { f.Record("RemovePeer"); return nil }

// failLater posts a configuration failure through the i-th reporter (-1:
// the newest), as the configuration worker does.
func (f *fakeEffects) failLater(i int) {
	if i < 0 {
		i += len(f.reporters)
	}
	_ = f.reporters[i].Post(EvWGFailed, errBoom)
}

func (f *fakeEffects) HoldPath(Credentials, netip.AddrPort) func() {
	f.Record("HoldPath")
	return func() { f.Record("ReleasePath") }
}

func (f *fakeEffects) LastReceive(a netip.AddrPort) time.Time {
	if f.roamed.IsValid() && a == f.roamed {
		return f.roamedRecv
	}
	return f.lastRecv
}
func (f *fakeEffects) RelayLastReceive(wgtypes.Key) time.Time     { return f.relayRecv }
func (f *fakeEffects) CurrentEndpoint(wgtypes.Key) netip.AddrPort { return f.roamed }
func (f *fakeEffects) Probe(wgtypes.Key)                          { f.Record("Probe") }
func (f *fakeEffects) Now() time.Time                             { return f.now }

type relayConn struct{ fakeNetConn }

func TestSpecIsTotal(t *testing.T) { fsmtest.AssertTotal(t, Spec) }

// TestClosedIgnoresEverything: closed inherits the root's ignores and
// lists what a member handles; together they must be every event, so that
// a removed peer does nothing whatever arrives late.
func TestClosedIgnoresEverything(t *testing.T) {
	n := 0
	for _, o := range Spec.Outcomes() {
		if o.State != Closed {
			continue
		}
		n++
		if o.Kind != fsm.Ignored || len(o.Guarded) > 0 {
			t.Errorf("closed × %s: %s at %s (guards %v), want ignored", o.Event, o.Kind, o.At, o.Guarded)
		}
	}
	if n != len(events) {
		t.Errorf("closed has %d outcomes, want one per event (%d)", n, len(events))
	}
}

var (
	keyLow  = wgtypes.Key{0x04} // "B..."
	keyHigh = wgtypes.Key{0x80} // "g..."
	remote  = netip.MustParseAddrPort("198.18.0.2:51820")
	direct  = Pair{LocalType: "host", RemoteType: "host", Remote: remote}
	relayed = Pair{Relayed: true, LocalType: "relay", RemoteType: "host", Conn: relayConn{}}
)

func offer(ufrag string, sid ...byte) fsm.Envelope {
	return fsm.Envelope{Event: EvOffer, Data: sigwire.Message{Kind: sigwire.Offer, Ufrag: ufrag, Pwd: "remotepwd", SessionID: sid}}
}

func answer(ufrag string, sid ...byte) fsm.Envelope {
	return fsm.Envelope{Event: EvAnswer, Data: sigwire.Message{Kind: sigwire.Answer, Ufrag: ufrag, Pwd: "remotepwd", SessionID: sid}}
}

func cand(c string) fsm.Envelope {
	return fsm.Envelope{Event: EvCandidate, Data: sigwire.Message{Kind: sigwire.Candidate, Candidate: c}}
}

func e(ev fsm.Event, data ...any) fsm.Envelope {
	env := fsm.Envelope{Event: ev}
	if len(data) > 0 {
		env.Data = data[0]
	}
	return env
}

func TestTransitions(t *testing.T) {
	unparked := []string{"Send offer L1"}
	tests := []struct {
		name string
		own  wgtypes.Key // default keyHigh: this side controls
		// lastRecv is when WireGuard last heard from the remote (zero: never).
		lastRecv time.Time
		events   []fsm.Envelope
		want     fsm.State
		effects  []string
		timers   int
		// setErrs: what SetPeer returns, call by call; fail: after the
		// events, the configuration worker posts a failure through the
		// reporter of that SetPeer call (1-based; 0: none; -1: the newest).
		setErrs []error
		fail    int
		lastErr string
	}{
		{name: "parked holds nothing", want: Parked},
		{name: "unpark offers", events: []fsm.Envelope{e(EvUnpark)}, want: Offering, effects: unparked, timers: 1},
		{name: "unanswered offer is resent", events: []fsm.Envelope{e(EvUnpark), e(EvResend), e(EvResend)}, want: Offering,
			effects: []string{"Send offer L1", "Send offer L1", "Send offer L1"}, timers: 1},
		{name: "unanswered offers end in waiting, no timer", events: []fsm.Envelope{e(EvUnpark), e(EvResend), e(EvResend), e(EvResend), e(EvResend)},
			want: Waiting, effects: []string{"Send offer L1", "Send offer L1", "Send offer L1", "Send offer L1"}, timers: 0},
		{name: "waiting: the remote's offer is answered", events: []fsm.Envelope{e(EvUnpark), e(EvResend), e(EvResend), e(EvResend), e(EvResend), offer("R1", 9)},
			want: Checking, effects: []string{"Send offer L1", "Send offer L1", "Send offer L1", "Send offer L1", "SetPeer", "Send answer L2",
				"StartICE L2/R1 controlling=true pending=0"}, timers: 1},
		{name: "waiting: a late answer is taken", events: []fsm.Envelope{e(EvUnpark), e(EvResend), e(EvResend), e(EvResend), e(EvResend), answer("R1", 9)},
			want: Checking, effects: []string{"Send offer L1", "Send offer L1", "Send offer L1", "Send offer L1", "SetPeer",
				"StartICE L1/R1 controlling=true pending=0"}, timers: 1},
		{name: "waiting: network-up offers again", events: []fsm.Envelope{e(EvUnpark), e(EvResend), e(EvResend), e(EvResend), e(EvResend), e(EvNetworkUp)},
			want: Offering, effects: []string{"Send offer L1", "Send offer L1", "Send offer L1", "Send offer L1", "Send offer L1"}, timers: 1},
		{name: "waiting: a map change offers again", events: []fsm.Envelope{e(EvUnpark), e(EvResend), e(EvResend), e(EvResend), e(EvResend),
			e(EvUpdate, []netip.Prefix{netip.MustParsePrefix("100.64.0.9/32")})},
			want: Offering, effects: []string{"Send offer L1", "Send offer L1", "Send offer L1", "Send offer L1", "Send offer L1"}, timers: 1},
		{name: "answer starts ICE", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9)}, want: Checking,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0"}, timers: 1},
		{name: "controlled side", own: keyLow, events: []fsm.Envelope{e(EvUnpark), answer("R1", 9)}, want: Checking,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=false pending=0"}, timers: 1},
		{name: "crossing offer is answered with our credentials", events: []fsm.Envelope{e(EvUnpark), offer("R1", 9)}, want: Checking,
			effects: []string{"Send offer L1", "SetPeer", "Send answer L1", "StartICE L1/R1 controlling=true pending=0"}, timers: 1},
		{name: "offer while parked: answered at once", events: []fsm.Envelope{offer("R1", 9)}, want: Checking,
			effects: []string{"SetPeer", "Send answer L1", "StartICE L1/R1 controlling=true pending=0"}, timers: 1},
		{name: "offer without session id ignored", events: []fsm.Envelope{offer("R1")}, want: Parked},
		{name: "early candidates kept for the agent", events: []fsm.Envelope{cand("c1"), e(EvUnpark), cand("c2"), answer("R1", 9), cand("c3")},
			want: Checking, effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=2", "AddCandidate c3"}, timers: 1},
		{name: "local candidates sent after the exchange", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvLocalCandidate, "cand-x")},
			want: Checking, effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "Send candidate cand-x"}, timers: 1},
		{name: "repeated offer answered, agent kept", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), offer("R1", 9)}, want: Checking,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "Send answer L1"}, timers: 1},
		{name: "repeated answer ignored", events: []fsm.Envelope{e(EvUnpark), offer("R1", 9), answer("R1", 9)}, want: Checking,
			effects: []string{"Send offer L1", "SetPeer", "Send answer L1", "StartICE L1/R1 controlling=true pending=0"}, timers: 1},
		{name: "new remote session rebuilds local session", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), offer("R2", 10)}, want: Checking,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer", "SetPeer", "Send answer L2", "StartICE L2/R2 controlling=true pending=0"}, timers: 1},
		{name: "new answer restarts the agent, same local credentials", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), answer("R2", 10)},
			want: Checking, effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer", "SetPeer", "StartICE L1/R2 controlling=true pending=0"}, timers: 1},
		{name: "direct pair: controlling sets endpoint, closes agent, holds path",
			events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct)}, want: Direct,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer 198.18.0.2:51820", "StopICE", "HoldPath"}, timers: 1},
		{name: "direct pair: controlled side sets keepalive only", own: keyLow,
			events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct)}, want: Direct,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=false pending=0", "SetPeer keepalive", "StopICE", "HoldPath"}, timers: 2},
		{name: "direct pair: controlled side initiates when the controller is silent", own: keyLow,
			events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct), e(EvHandshakeDue)}, want: Direct,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=false pending=0", "SetPeer keepalive", "StopICE", "HoldPath", "SetPeer 198.18.0.2:51820"}, timers: 2}, // the event is delivered, not fired: its timer stays
		{name: "direct pair: controlled side leaves a handshake that arrived alone", own: keyLow, lastRecv: time.Unix(1001, 0),
			events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct), e(EvHandshakeDue)}, want: Direct,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=false pending=0", "SetPeer keepalive", "StopICE", "HoldPath"}, timers: 2},
		{name: "relayed pair keeps the agent", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, relayed)}, want: Relayed,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer relay"}},
		{name: "connected stays connected when signal drops",
			events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, relayed), e(EvPark)}, want: Relayed,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer relay"}},
		{name: "path lost with signal up → backoff",
			events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, relayed), e(EvICEFailed, errors.New("failed"))}, want: Backoff,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer relay", "StopICE", "RemovePeer"}, timers: 1},
		{name: "path lost with signal down → parked, nothing armed",
			events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, relayed), e(EvPark), e(EvICEFailed, errors.New("failed"))}, want: Parked,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer relay", "StopICE", "RemovePeer"}},
		{name: "signal down while offering → parked", events: []fsm.Envelope{e(EvUnpark), e(EvPark)}, want: Parked, effects: unparked},
		{name: "signal down while checking → parked, agent stopped", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvPark)}, want: Parked,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer"}},
		{name: "checks time out → backoff", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvCheckTimeout)}, want: Backoff,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer"}, timers: 1},
		{name: "backoff → new session", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvCheckTimeout), e(EvRetry)}, want: Offering,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer", "Send offer L2"}, timers: 1},
		{name: "backoff parks when signal drops", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvCheckTimeout), e(EvPark)}, want: Parked,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer"}},
		{name: "go-idle closes the session", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvGoIdle)}, want: Idle,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer"}},
		{name: "idle ignores unpark, answers an offer", events: []fsm.Envelope{e(EvUnpark), e(EvGoIdle), e(EvUnpark), offer("R3", 3)}, want: Checking,
			effects: []string{"Send offer L1", "SetPeer", "Send answer L2", "StartICE L2/R3 controlling=true pending=0"}, timers: 1},
		{name: "allowed IPs change while checking reconfigures WireGuard", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvUpdate, []netip.Prefix{netip.MustParsePrefix("100.64.0.9/32")})},
			want: Checking, effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer"}, timers: 1},
		{name: "allowed IPs change while parked: kept for later", events: []fsm.Envelope{e(EvUpdate, []netip.Prefix{netip.MustParsePrefix("100.64.0.9/32")})},
			want: Parked, effects: []string{}},
		{name: "removed: closed, WireGuard peer removed", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct), e(EvRemove)},
			want: Closed, effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer 198.18.0.2:51820", "StopICE", "HoldPath", "ReleasePath", "RemovePeer"}},
		{name: "closed ignores everything", events: []fsm.Envelope{e(EvRemove), offer("R1", 1), e(EvUnpark)}, want: Closed, effects: []string{}},

		// A failed WireGuard configuration or relay bridge (Effects.SetPeer).
		{name: "WireGuard refuses the key: backoff, the error in status", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9)},
			setErrs: []error{errBoom}, want: Backoff, lastErr: "errBoom", timers: 1,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer"}},
		{name: "the worker fails the endpoint later: backoff", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct)},
			fail: -1, want: Backoff, lastErr: "errBoom", timers: 1,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer 198.18.0.2:51820", "StopICE", "HoldPath", "ReleasePath", "RemovePeer"}},
		{name: "a failure after a stopped agent still counts (same WireGuard peer)", own: keyLow,
			events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct)}, fail: 2, want: Backoff, lastErr: "errBoom", timers: 1,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=false pending=0", "SetPeer keepalive", "StopICE", "HoldPath", "ReleasePath", "RemovePeer"}},
		{name: "a late failure of a removed WireGuard peer is ignored", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), answer("R2", 7)},
			fail: 1, want: Checking, timers: 1,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer", "SetPeer", "StartICE L1/R2 controlling=true pending=0"}},
		{name: "a failure while signal is down parks", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct), e(EvPark)},
			fail: -1, want: Parked, lastErr: "errBoom",
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer 198.18.0.2:51820", "StopICE", "HoldPath", "ReleasePath", "RemovePeer"}},
		{name: "a failure after the session ended is late", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvGoIdle)},
			fail: 1, want: Idle,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "StopICE", "RemovePeer"}},
		{name: "a TURN pair that cannot be bridged: backoff", events: []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, relayed)},
			setErrs: []error{nil, fmt.Errorf("%w: no socket", ErrRelayBridge)}, want: Backoff, lastErr: "peerfsm: relay bridge failed: no socket", timers: 1,
			effects: []string{"Send offer L1", "SetPeer", "StartICE L1/R1 controlling=true pending=0", "SetPeer relay", "StopICE", "RemovePeer"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			own := tt.own
			if own == (wgtypes.Key{}) {
				own = keyHigh
			}
			fx := &fakeEffects{now: time.Unix(1000, 0), lastRecv: tt.lastRecv, setErrs: tt.setErrs}
			l := fsm.NewLoop(fsm.Options{})
			m, err := Add(l, &Peer{Own: own, Remote: keyMid, Effects: fx, Rand: rand.New(rand.NewPCG(1, 1)), SignalUp: true}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Remove(m.ID())
			fx.Take() // the initial SetPeer
			for _, ev := range tt.events {
				ev.To = m.ID()
				l.Deliver(ev)
			}
			if tt.fail != 0 {
				i := tt.fail - 1
				if tt.fail < 0 {
					i = tt.fail
				}
				fx.failLater(i)
				l.Drain()
			}
			if m.State() != tt.want {
				t.Errorf("state %s, want %s", m.State(), tt.want)
			}
			if got := fx.Take(); !slices.Equal(got, tt.effects) {
				t.Errorf("effects\n got %q\nwant %q", got, tt.effects)
			}
			if m.Timers() != tt.timers {
				t.Errorf("timers %d, want %d", m.Timers(), tt.timers)
			}
			if s := l.Stats(); s.Unhandled != 0 {
				t.Errorf("unhandled: %d", s.Unhandled)
			}
			if tt.lastErr != "" && m.Data.LastErr != tt.lastErr {
				t.Errorf("last error %q, want %q", m.Data.LastErr, tt.lastErr)
			}
		})
	}
}

// keyMid sorts between keyLow and keyHigh in base64.
var keyMid = wgtypes.Key{0x40} // "Q..."

func TestControlling(t *testing.T) {
	if !Controlling(keyHigh, keyMid) || Controlling(keyLow, keyMid) {
		t.Fatalf("role by base64 comparison: %s %s %s", keyLow, keyMid, keyHigh)
	}
}

func TestPathVerdict(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name       string
		now, last  time.Time
		since      time.Time
		wantAlive  bool
		wantNextAt time.Duration
	}{
		{"recent traffic", t0.Add(80 * time.Second), t0.Add(70 * time.Second), t0, true, PathTimeout - 10*time.Second},
		{"silent too long", t0.Add(200 * time.Second), t0.Add(100 * time.Second), t0, false, 0},
		{"nothing yet, young path", t0.Add(10 * time.Second), time.Time{}, t0, true, PathTimeout - 10*time.Second},
		{"nothing ever", t0.Add(PathTimeout), time.Time{}, t0, false, 0},
	}
	for _, tt := range tests {
		alive, next := PathVerdict(tt.now, tt.last, tt.since, PathTimeout)
		if alive != tt.wantAlive || next != tt.wantNextAt {
			t.Errorf("%s: alive=%v next=%v, want %v %v", tt.name, alive, next, tt.wantAlive, tt.wantNextAt)
		}
	}
}

func TestDirectPathCheck(t *testing.T) {
	fx := &fakeEffects{now: time.Unix(1000, 0)}
	l := fsm.NewLoop(fsm.Options{})
	m, _ := Add(l, &Peer{Own: keyHigh, Remote: keyMid, Effects: fx, SignalUp: true}, nil)
	defer l.Remove(m.ID())
	for _, ev := range []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct)} {
		ev.To = m.ID()
		l.Deliver(ev)
	}
	fx.Take()
	// Keepalives keep arriving: the check re-arms itself, once.
	fx.now = fx.now.Add(PathTimeout)
	fx.lastRecv = fx.now.Add(-5 * time.Second)
	l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPathCheck})
	if m.State() != Direct || m.Timers() != 1 {
		t.Fatalf("state %s timers %d", m.State(), m.Timers())
	}
	// Then silence: a probe first, and silence after it too.
	fx.now = fx.now.Add(2 * PathTimeout)
	l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPathCheck})
	if got := fx.Take(); m.State() != Direct || m.Timers() != 1 || !slices.Equal(got, []string{"Probe"}) {
		t.Fatalf("silent: state %s timers %d effects %q, want a probe", m.State(), m.Timers(), got)
	}
	fx.now = fx.now.Add(ProbeTimeout)
	l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPathCheck})
	if m.State() != Backoff {
		t.Fatalf("state %s after silence", m.State())
	}
	if got := fx.Take(); !slices.Equal(got, []string{"ReleasePath", "RemovePeer"}) {
		t.Fatalf("effects %q", got)
	}
}

// Issue 13 (the soak): an idle direct pair where only one side's
// persistent keepalive fires (wireguard-go restarts a side's keepalive
// timer on what it receives, so the other stays silent for as long as the
// pair is idle). The silent side's path check must not take the live path
// down: it probes (a WireGuard handshake), the remote's response arrives,
// and the path stays, its check re-armed for a whole timeout; a later
// silence is probed again.
func TestSilentDirectPathProbedNotLost(t *testing.T) {
	fx := &fakeEffects{now: time.Unix(1000, 0)}
	l := fsm.NewLoop(fsm.Options{})
	m, _ := Add(l, &Peer{Own: keyHigh, Remote: keyMid, Effects: fx, SignalUp: true}, nil)
	defer l.Remove(m.ID())
	for _, ev := range []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct)} {
		ev.To = m.ID()
		l.Deliver(ev)
	}
	fx.Take()
	for round := range 3 {
		// Nothing from the remote for a whole path timeout.
		fx.now = fx.now.Add(PathTimeout)
		l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPathCheck})
		if got := fx.Take(); m.State() != Direct || !slices.Equal(got, []string{"Probe"}) {
			t.Fatalf("round %d: silent path: %s, effects %q, want a probe", round, m.State(), got)
		}
		// The handshake response arrives within the probe's time.
		fx.lastRecv = fx.now.Add(10 * time.Millisecond)
		fx.now = fx.now.Add(ProbeTimeout)
		l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPathCheck})
		if got := fx.Take(); m.State() != Direct || m.Timers() != 1 || len(got) != 0 {
			t.Fatalf("round %d: answered probe: %s, %d timers, effects %q", round, m.State(), m.Timers(), got)
		}
		// The check re-armed for a timeout from the response: the next
		// round starts there.
		fx.now = fx.lastRecv
	}
}

// A direct path follows WireGuard's roaming: a remote that changed address
// (NAT rebinding) is not torn down while WireGuard receives from it at its
// new address; it is when that falls silent too.
func TestDirectPathFollowsRoaming(t *testing.T) {
	fx := &fakeEffects{now: time.Unix(1000, 0)}
	l := fsm.NewLoop(fsm.Options{})
	m, err := Add(l, &Peer{Own: keyHigh, Remote: keyMid, Effects: fx, Rand: rand.New(rand.NewPCG(1, 1)), SignalUp: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Remove(m.ID())
	for _, ev := range []fsm.Envelope{e(EvUnpark), answer("R1", 9), e(EvICEConnected, direct)} {
		ev.To = m.ID()
		l.Deliver(ev)
	}
	fx.Take()
	// The pair's address has been silent for a whole timeout; WireGuard
	// has roamed to a new one that just carried a keepalive.
	fx.now = fx.now.Add(PathTimeout + time.Second)
	fx.roamed, fx.roamedRecv = netip.MustParseAddrPort("198.18.0.77:40000"), fx.now
	l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPathCheck})
	if m.State() != Direct || m.Data.Pair.Remote != fx.roamed || m.Timers() != 1 {
		t.Fatalf("after roaming: %s, pair %s, %d timers", m.State(), m.Data.Pair.Remote, m.Timers())
	}
	if got := fx.Take(); !slices.Equal(got, []string{"ReleasePath", "HoldPath"}) {
		t.Fatalf("effects %q", got)
	}
	// The new address falls silent too, and stays so after the probe:
	// the path is lost.
	fx.now = fx.now.Add(PathTimeout + time.Second)
	l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPathCheck})
	fx.now = fx.now.Add(ProbeTimeout)
	l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPathCheck})
	if m.State() != Backoff {
		t.Fatalf("silent at the roamed address too: %s", m.State())
	}
}
