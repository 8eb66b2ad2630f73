package signalfsm

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

// fakeEffects records Connect calls and the cancels of their workers.
type fakeEffects struct {
	fsmtest.Recorder
	last fsm.Sender
}

func (f *fakeEffects) Connect(w fsm.Sender, srv Server) func() {
	f.Record("Connect", srv.Addr)
	f.last = w
	return func() { f.Record("Cancel") }
}

func TestSpecIsTotal(t *testing.T) { fsmtest.AssertTotal(t, Spec) }

var (
	srvA    = Server{Addr: "127.0.0.1:1"}
	srvB    = Server{Addr: "127.0.0.1:2"}
	errBoom = errors.New("errBoom")
)

func ev(e fsm.Event, data ...any) fsm.Envelope {
	env := fsm.Envelope{To: ID, Event: e}
	if len(data) > 0 {
		env.Data = data[0]
	}
	return env
}

func TestTransitions(t *testing.T) {
	tests := []struct {
		name    string
		events  []fsm.Envelope
		want    fsm.State
		effects []string
		timers  int
		dials   int
	}{
		{name: "idle", want: Idle},
		{name: "start dials", events: []fsm.Envelope{ev(EvStart, srvA)}, want: Connecting,
			effects: []string{"Connect 127.0.0.1:1"}, dials: 1},
		{name: "registered header → connected", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvUp)}, want: Connected,
			effects: []string{"Connect 127.0.0.1:1"}, dials: 1},
		{name: "dial fails → backoff with one timer", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvConnectFailed, errBoom)},
			want: Backoff, effects: []string{"Connect 127.0.0.1:1", "Cancel"}, timers: 1, dials: 1},
		{name: "stream closes → backoff", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvUp), ev(EvStreamClosed, errBoom)},
			want: Backoff, effects: []string{"Connect 127.0.0.1:1", "Cancel"}, timers: 1, dials: 1},
		{name: "retry timer → new session", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvConnectFailed, errBoom), ev(EvRetry)},
			want: Connecting, effects: []string{"Connect 127.0.0.1:1", "Cancel", "Connect 127.0.0.1:1"}, dials: 2},
		{name: "network-up cuts backoff short", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvConnectFailed, errBoom), ev(EvNetworkUp)},
			want: Connecting, effects: []string{"Connect 127.0.0.1:1", "Cancel", "Connect 127.0.0.1:1"}, dials: 2},
		{name: "network-down while dialing → backoff, no burst", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvNetworkDown)},
			want: Backoff, effects: []string{"Connect 127.0.0.1:1", "Cancel"}, timers: 1, dials: 1},
		{name: "network-down in backoff: still one timer", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvNetworkDown), ev(EvNetworkDown)},
			want: Backoff, effects: []string{"Connect 127.0.0.1:1", "Cancel"}, timers: 1, dials: 1},
		{name: "network-down while connected: keep the stream", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvUp), ev(EvNetworkDown)},
			want: Connected, effects: []string{"Connect 127.0.0.1:1"}, dials: 1},
		{name: "network-up while connected: re-dial", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvUp), ev(EvNetworkUp)},
			want: Connecting, effects: []string{"Connect 127.0.0.1:1", "Cancel", "Connect 127.0.0.1:1"}, dials: 2},
		{name: "new server re-dials", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvUp), ev(EvServer, srvB)},
			want: Connecting, effects: []string{"Connect 127.0.0.1:1", "Cancel", "Connect 127.0.0.1:2"}, dials: 2},
		{name: "same server: nothing", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvUp), ev(EvServer, srvA)},
			want: Connected, effects: []string{"Connect 127.0.0.1:1"}, dials: 1},
		{name: "new server during backoff dials at once", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvConnectFailed, errBoom), ev(EvServer, srvB)},
			want: Connecting, effects: []string{"Connect 127.0.0.1:1", "Cancel", "Connect 127.0.0.1:2"}, dials: 2},
		{name: "stop cancels the worker", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvUp), ev(EvStop)},
			want: Stopped, effects: []string{"Connect 127.0.0.1:1", "Cancel"}, dials: 1},
		{name: "stop cancels the timer", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvConnectFailed, errBoom), ev(EvStop)},
			want: Stopped, effects: []string{"Connect 127.0.0.1:1", "Cancel"}, dials: 1},
		{name: "restart after stop", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvStop), ev(EvStart, srvB)},
			want: Connecting, effects: []string{"Connect 127.0.0.1:1", "Cancel", "Connect 127.0.0.1:2"}, dials: 2},
		{name: "retry in connected is ignored", events: []fsm.Envelope{ev(EvStart, srvA), ev(EvUp), ev(EvRetry)},
			want: Connected, effects: []string{"Connect 127.0.0.1:1"}, dials: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := &fakeEffects{}
			l := fsm.NewLoop(fsm.Options{})
			m, err := New(l, &Link{Effects: fx, Rand: rand.New(rand.NewPCG(1, 1))}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Remove(ID)
			for _, e := range tt.events {
				l.Deliver(e)
			}
			if m.State() != tt.want {
				t.Errorf("state %s, want %s", m.State(), tt.want)
			}
			if got := fx.Take(); !slices.Equal(got, tt.effects) {
				t.Errorf("effects %q, want %q", got, tt.effects)
			}
			if m.Timers() != tt.timers {
				t.Errorf("timers %d, want %d", m.Timers(), tt.timers)
			}
			if m.Data.Dials != tt.dials {
				t.Errorf("dials %d, want %d", m.Data.Dials, tt.dials)
			}
			if s := l.Stats(); s.Unhandled != 0 {
				t.Errorf("unhandled events: %d", s.Unhandled)
			}
		})
	}
}

// A worker of an earlier session cannot touch the current one.
func TestLateWorkerEventsDropped(t *testing.T) {
	fx := &fakeEffects{}
	l := fsm.NewLoop(fsm.Options{})
	m, _ := New(l, &Link{Effects: fx}, nil)
	defer l.Remove(ID)
	l.Deliver(ev(EvStart, srvA))
	first := fx.last
	l.Deliver(ev(EvConnectFailed, errBoom))
	l.Deliver(ev(EvRetry))
	// The first session's worker reports late, through its own Sender.
	ctx := fsm.Envelope{To: ID, Event: EvUp, Gen: first.Gen()}
	l.Deliver(ctx)
	if m.State() != Connecting {
		t.Fatalf("state %s: a stale worker event was applied", m.State())
	}
	if l.Stats().StaleGen != 1 {
		t.Fatalf("stale gen %d", l.Stats().StaleGen)
	}
}
