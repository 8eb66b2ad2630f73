package relayfsm

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

// fakeEffects records Connect calls and the cancels of their workers.
type fakeEffects struct {
	fsmtest.Recorder
	last fsm.Sender
}

func (f *fakeEffects) Connect(w fsm.Sender, urls []string, tok Token) func() {
	f.Record("Connect", strings.Join(urls, ","), tok.Payload)
	f.last = w
	return func() { f.Record("Cancel") }
}

func TestSpecIsTotal(t *testing.T)        { fsmtest.AssertTotal(t, Spec) }
func TestForeignSpecIsTotal(t *testing.T) { fsmtest.AssertTotal(t, ForeignSpec) }

var (
	cfgA    = Config{URLs: []string{"rel://a:1"}, Token: Token{Payload: "100", Signature: "s1"}}
	cfgA2   = Config{Token: Token{Payload: "200", Signature: "s2"}} // a refresh: token only
	noToken = Config{URLs: []string{"rel://a:1"}}
	errBoom = errors.New("errBoom")
	upNil   = Up{Addr: "rel://a-instance:1", URL: "rel://a:1"}
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
		{name: "start dials", events: []fsm.Envelope{ev(EvStart, cfgA)}, want: Connecting,
			effects: []string{"Connect rel://a:1 100"}, dials: 1},
		{name: "start without token waits", events: []fsm.Envelope{ev(EvStart, noToken)}, want: Unconfigured},
		{name: "config with token leaves unconfigured", events: []fsm.Envelope{ev(EvStart, noToken), ev(EvConfig, cfgA)},
			want: Connecting, effects: []string{"Connect rel://a:1 100"}, dials: 1},
		{name: "up → connected, one health deadline", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvUp, upNil)},
			want: Connected, effects: []string{"Connect rel://a:1 100"}, timers: 1, dials: 1},
		{name: "health check re-arms in place", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvUp, upNil), ev(EvHealth), ev(EvHealth)},
			want: Connected, effects: []string{"Connect rel://a:1 100"}, timers: 1, dials: 1},
		{name: "silent server → backoff", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvUp, upNil), ev(EvSilent)},
			want: Backoff, effects: []string{"Connect rel://a:1 100", "Cancel"}, timers: 1, dials: 1},
		{name: "dial fails → backoff with one timer", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvConnectFailed, errBoom)},
			want: Backoff, effects: []string{"Connect rel://a:1 100", "Cancel"}, timers: 1, dials: 1},
		{name: "connection closes → backoff", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvUp, upNil), ev(EvClosed, errBoom)},
			want: Backoff, effects: []string{"Connect rel://a:1 100", "Cancel"}, timers: 1, dials: 1},
		{name: "retry timer → new session", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvConnectFailed, errBoom), ev(EvRetry)},
			want: Connecting, effects: []string{"Connect rel://a:1 100", "Cancel", "Connect rel://a:1 100"}, dials: 2},
		{name: "network-up cuts backoff short", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvConnectFailed, errBoom), ev(EvNetworkUp)},
			want: Connecting, effects: []string{"Connect rel://a:1 100", "Cancel", "Connect rel://a:1 100"}, dials: 2},
		{name: "network-down while dialing → backoff", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvNetworkDown)},
			want: Backoff, effects: []string{"Connect rel://a:1 100", "Cancel"}, timers: 1, dials: 1},
		{name: "network-down while connected: keep it", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvUp, upNil), ev(EvNetworkDown)},
			want: Connected, effects: []string{"Connect rel://a:1 100"}, timers: 1, dials: 1},
		{name: "network-up while connected: re-dial", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvUp, upNil), ev(EvNetworkUp)},
			want: Connecting, effects: []string{"Connect rel://a:1 100", "Cancel", "Connect rel://a:1 100"}, dials: 2},
		{name: "refreshed token: connection kept, used at the next connect",
			events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvUp, upNil), ev(EvConfig, cfgA2), ev(EvClosed, errBoom), ev(EvRetry)},
			want:   Connecting, effects: []string{"Connect rel://a:1 100", "Cancel", "Connect rel://a:1 200"}, dials: 2},
		{name: "stop cancels the worker", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvUp, upNil), ev(EvStop)},
			want: Stopped, effects: []string{"Connect rel://a:1 100", "Cancel"}, dials: 1},
		{name: "stop cancels the timer", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvConnectFailed, errBoom), ev(EvStop)},
			want: Stopped, effects: []string{"Connect rel://a:1 100", "Cancel"}, dials: 1},
		{name: "restart after stop", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvStop), ev(EvStart, cfgA)},
			want: Connecting, effects: []string{"Connect rel://a:1 100", "Cancel", "Connect rel://a:1 100"}, dials: 2},
		{name: "late health check in backoff is ignored", events: []fsm.Envelope{ev(EvStart, cfgA), ev(EvConnectFailed, errBoom), ev(EvHealth)},
			want: Backoff, effects: []string{"Connect rel://a:1 100", "Cancel"}, timers: 1, dials: 1},
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
	l.Deliver(ev(EvStart, cfgA))
	first := fx.last
	l.Deliver(ev(EvConnectFailed, errBoom))
	l.Deliver(ev(EvRetry))
	l.Deliver(fsm.Envelope{To: ID, Event: EvUp, Gen: first.Gen()})
	if m.State() != Connecting {
		t.Fatalf("state %s: a stale worker event was applied", m.State())
	}
	if l.Stats().StaleGen != 1 {
		t.Fatalf("stale gen %d", l.Stats().StaleGen)
	}
}
