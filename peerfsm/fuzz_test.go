package peerfsm

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
	"github.com/nbfsm/nbfsm/internal/sigwire"
)

// fuzzEffects records like fakeEffects, keeps every Sender it was handed
// and counts what the machine holds: running agents, the WireGuard peer,
// held direct paths.
type fuzzEffects struct {
	fakeEffects
	senders           []fsm.Sender // oldest first
	agents, wg, paths int
}

type fuzzICE struct {
	fx      *fuzzEffects
	stopped bool
}

func (h *fuzzICE) AddRemoteCandidate(c string) { h.fx.Record("AddCandidate", c) }
func (h *fuzzICE) Stop() {
	h.fx.Record("StopICE")
	if !h.stopped {
		h.stopped = true
		h.fx.agents--
	}
}

func (f *fuzzEffects) Send(w fsm.Sender, m sigwire.Message) {
	f.fakeEffects.Send(w, m)
	f.senders = append(f.senders, w)
}

func (f *fuzzEffects) StartICE(w fsm.Sender, a Agent) ICEHandle {
	f.fakeEffects.StartICE(w, a)
	f.senders = append(f.senders, w)
	f.agents++
	return &fuzzICE{fx: f}
}

func (f *fuzzEffects) SetPeer(r Poster, p WGPeer) error {
	f.wg = 1
	return f.fakeEffects.SetPeer(r, p)
}
func (f *fuzzEffects) RemovePeer(k wgtypes.Key) error { f.wg = 0; return f.fakeEffects.RemovePeer(k) }
func (f *fuzzEffects) HoldPath(c Credentials, a netip.AddrPort) func() {
	f.fakeEffects.HoldPath(c, a)
	f.paths++
	return func() { f.Record("ReleasePath"); f.paths-- }
}

// fuzzPayloads are the data an event may carry: right, wrong and none.
var fuzzPayloads = []any{nil, offer("R1", 9).Data, offer("R2", 10).Data, offer("R1").Data, answer("R1", 9).Data,
	answer("R3").Data, sigwire.Message{Kind: sigwire.Answer}, cand("c1").Data, sigwire.Message{}, direct, relayed,
	errBoom, "cand-x", []netip.Prefix{netip.MustParsePrefix("100.64.0.9/32")}, 7}

var (
	errBoom      = fmt.Errorf("errBoom")
	workerEvents = []fsm.Event{EvLocalCandidate, EvICEConnected, EvICEFailed, EvSendFailed}
)

// FuzzPeer drives a peer machine with a sequence decoded from the input:
// the first byte picks the ICE role, then three bytes a step (op, a, b):
//
//	0  the engine or signal delivers events[a] with fuzzPayloads[b]
//	1  the newest worker (send or ICE) posts workerEvents[a] with fuzzPayloads[b]
//	2  the a-th armed timer fires
//	3  the a-th cancelled or fired timer fires (late)
//	4  the a-th worker posts events[b]; if its generation is old, nothing
//	   may change
//	5  a seconds pass; b%4: nothing arrives, the remote's pair address
//	   carries a datagram, WireGuard roamed to an address that does, the
//	   relay bridge carries one
//	6  the a-th WireGuard configuration so far fails (the worker posts
//	   EvWGFailed through its reporter: current or late)
//	7  the next SetPeer fails at once: b%2 a relay bridge, or WireGuard
//
// After every step: every event had a declared outcome, every armed timer
// belongs to a state the machine is in, a parked peer holds no timer, an
// ICE agent runs exactly in checking and relayed, the WireGuard peer
// exists exactly in session.ice, a direct path is held exactly in direct.
func FuzzPeer(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fsmtest.NewInput(data)
		own := []wgtypes.Key{keyHigh, keyLow}[in.IntN(2)]
		ts := &fsmtest.Timers{}
		fx := &fuzzEffects{fakeEffects: fakeEffects{now: time.Unix(1000, 0)}}
		l := fsm.NewLoop(fsm.Options{Timers: ts, Mailbox: 8})
		m, err := Add(l, &Peer{Own: own, Remote: keyMid, Effects: fx, Rand: rand.New(rand.NewPCG(1, 1))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Remove(m.ID())
		snap := func() string {
			return fmt.Sprintf("%s gen=%d timers=%d %+v effects=%q", m.State(), m.Gen(), m.Timers(), *m.Data, fx.Take())
		}
		var step, op, a, b int
		did := func() string { return fmt.Sprintf("step %d (op %d %d %d), in %s", step, op, a, b, m.State()) }
		for step = 1; in.More() && step <= fsmtest.MaxSteps; step++ {
			op, a, b = in.IntN(8), in.IntN(256), in.IntN(256)
			switch op {
			case 0:
				l.Deliver(fsm.Envelope{To: m.ID(), Event: events[a%len(events)], Data: fuzzPayloads[b%len(fuzzPayloads)]})
			case 1:
				if n := len(fx.senders); n > 0 {
					_ = fx.senders[n-1].Post(workerEvents[a%len(workerEvents)], fuzzPayloads[b%len(fuzzPayloads)])
					l.Drain()
				}
			case 2:
				ts.Fire(a)
				l.Drain()
			case 3:
				ts.FireStale(a)
				l.Drain()
			case 4:
				if len(fx.senders) > 0 {
					if w := fx.senders[a%len(fx.senders)]; w.Gen() != m.Gen() {
						fsmtest.AssertStaleDropped(t, l, w, events[b%len(events)], fuzzPayloads[b%len(fuzzPayloads)], snap)
					}
				}
			case 5:
				fx.now = fx.now.Add(time.Duration(a) * time.Second)
				switch b % 4 {
				case 1:
					fx.lastRecv = fx.now
				case 2:
					fx.roamed, fx.roamedRecv = netip.MustParseAddrPort("198.18.0.77:40000"), fx.now
				case 3:
					fx.relayRecv = fx.now
				}
			case 6:
				if len(fx.reporters) > 0 {
					fx.failLater(a % len(fx.reporters))
					l.Drain()
				}
			case 7:
				err := error(errBoom)
				if b%2 == 0 {
					err = fmt.Errorf("%w: %w", ErrRelayBridge, errBoom)
				}
				fx.setErrs = append(fx.setErrs, err)
			}
			fsmtest.CheckStep(t, l, did)
			if m.In(Parked) && m.Timers() != 0 {
				t.Fatalf("after %s: parked with %d timers", did(), m.Timers())
			}
			if want := b2i(m.In(Checking) || m.In(Relayed)); fx.agents != want {
				t.Fatalf("after %s: %d ICE agents running, want %d", did(), fx.agents, want)
			}
			if want := b2i(m.In(ICE)); fx.wg != want {
				t.Fatalf("after %s: WireGuard peer %d, want %d", did(), fx.wg, want)
			}
			if want := b2i(m.In(Direct)); fx.paths != want {
				t.Fatalf("after %s: %d direct paths held, want %d", did(), fx.paths, want)
			}
			fx.Take()
		}
	})
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
