package link

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
	"github.com/nbfsm/nbfsm/internal/backoff"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A toy link: the shape, an up state, two worker events and a state of its
// own, with a recorder for what its actions do.
const (
	toyUp     fsm.State = "running.session.up"
	toyParked fsm.State = "running.parked"
	evOK      fsm.Event = "ok"
	evFail    fsm.Event = "fail"
	evPark    fsm.Event = "park"
)

type toy struct {
	Core
	policy backoff.Policy
	rec    fsmtest.Recorder
}

func (d *toy) RetryPolicy() (backoff.Policy, *rand.Rand) {
	return d.policy, rand.New(rand.NewPCG(1, 1))
}

var toySpec = fsm.MustCompile(Spec(Own[*toy]{
	Kind:   "toy",
	Name:   "toy",
	Events: []fsm.Event{EvStart, EvStop, evOK, evFail, evPark, EvRetry, EvNetworkUp, EvNetworkDown},
	Quiet:  []fsm.Event{evOK, evFail, evPark},
	Up:     toyUp,
	Open: func(m *fsm.Machine[*toy]) func() {
		m.Data.rec.Record("Open")
		return func() { m.Data.rec.Record("Cancel") }
	},
	Close: func(m *fsm.Machine[*toy], _ fsm.Envelope) { m.Data.rec.Record("Close") },
	Docs:  map[fsm.State]string{Connecting: "toy dialing"},
	States: []fsm.StateDef[*toy]{
		{Name: toyUp, Parent: Session, Doc: "up", Entry: func(m *fsm.Machine[*toy], _ fsm.Envelope) { m.Data.Succeeded() }},
		{Name: toyParked, Parent: Running, Doc: "parked by the user"},
		{Name: Stopped, Entry: func(m *fsm.Machine[*toy], _ fsm.Envelope) { m.Data.rec.Record("Stopped") }},
	},
	Transitions: []fsm.Transition[*toy]{
		{From: Connecting, Event: evOK, To: toyUp},
		{From: Connecting, Event: evFail, To: Backoff, Action: RecordErr[*toy]},
		{From: Session, Event: evPark, To: toyParked},
	},
}))

func TestSpecIsTotal(t *testing.T) { fsmtest.AssertTotal(t, toySpec) }

var errBoom = errors.New("boom")

func TestShape(t *testing.T) {
	e := func(ev fsm.Event, data ...any) fsm.Envelope {
		env := fsm.Envelope{To: "toy", Event: ev}
		if len(data) > 0 {
			env.Data = data[0]
		}
		return env
	}
	tests := []struct {
		name    string
		events  []fsm.Envelope
		want    fsm.State
		effects []string
		timers  int
		dials   int
		attempt int
		lastErr string
	}{
		{name: "idle", want: Idle},
		{name: "idle ignores the rest", events: []fsm.Envelope{e(EvStop), e(EvRetry), e(EvNetworkUp), e(EvNetworkDown), e(evOK), e(evFail, errBoom)}, want: Idle},
		{name: "start opens a session", events: []fsm.Envelope{e(EvStart)}, want: Connecting, effects: []string{"Open"}, dials: 1},
		{name: "start while running: ignored", events: []fsm.Envelope{e(EvStart), e(EvStart)}, want: Connecting, effects: []string{"Open"}, dials: 1},
		{name: "up", events: []fsm.Envelope{e(EvStart), e(evOK)}, want: toyUp, effects: []string{"Open"}, dials: 1},
		{name: "failure: backoff with one timer, error recorded", events: []fsm.Envelope{e(EvStart), e(evFail, errBoom)}, want: Backoff,
			effects: []string{"Open", "Cancel", "Close"}, timers: 1, dials: 1, attempt: 1, lastErr: "boom"},
		{name: "retry opens the next session", events: []fsm.Envelope{e(EvStart), e(evFail, errBoom), e(EvRetry)}, want: Connecting,
			effects: []string{"Open", "Cancel", "Close", "Open"}, dials: 2, attempt: 1, lastErr: "boom"},
		{name: "network-up cuts the backoff short", events: []fsm.Envelope{e(EvStart), e(evFail, errBoom), e(EvNetworkUp)}, want: Connecting,
			effects: []string{"Open", "Cancel", "Close", "Open"}, dials: 2, attempt: 1, lastErr: "boom"},
		{name: "network-down in backoff: still one timer", events: []fsm.Envelope{e(EvStart), e(evFail, errBoom), e(EvNetworkDown)}, want: Backoff,
			effects: []string{"Open", "Cancel", "Close"}, timers: 1, dials: 1, attempt: 1, lastErr: "boom"},
		{name: "network-down while connecting: backoff", events: []fsm.Envelope{e(EvStart), e(EvNetworkDown)}, want: Backoff,
			effects: []string{"Open", "Cancel", "Close"}, timers: 1, dials: 1, attempt: 1},
		{name: "network-up while connecting: ignored", events: []fsm.Envelope{e(EvStart), e(EvNetworkUp)}, want: Connecting,
			effects: []string{"Open"}, dials: 1},
		{name: "network-down while up: kept", events: []fsm.Envelope{e(EvStart), e(evOK), e(EvNetworkDown)}, want: toyUp,
			effects: []string{"Open"}, dials: 1},
		{name: "network-up while up: re-dial", events: []fsm.Envelope{e(EvStart), e(evOK), e(EvNetworkUp)}, want: Connecting,
			effects: []string{"Open", "Cancel", "Close", "Open"}, dials: 2},
		{name: "up again resets the backoff", events: []fsm.Envelope{e(EvStart), e(evFail, errBoom), e(EvRetry), e(evOK)}, want: toyUp,
			effects: []string{"Open", "Cancel", "Close", "Open"}, dials: 2},
		{name: "a state of its own under running", events: []fsm.Envelope{e(EvStart), e(evPark), e(EvRetry), e(EvNetworkUp)}, want: toyParked,
			effects: []string{"Open", "Cancel", "Close"}, dials: 1},
		{name: "stop from backoff: timer gone, amended entry runs", events: []fsm.Envelope{e(EvStart), e(evFail, errBoom), e(EvStop)}, want: Stopped,
			effects: []string{"Open", "Cancel", "Close", "Stopped"}, dials: 1, attempt: 1, lastErr: "boom"},
		{name: "stop while up ends the session", events: []fsm.Envelope{e(EvStart), e(evOK), e(EvStop)}, want: Stopped,
			effects: []string{"Open", "Cancel", "Close", "Stopped"}, dials: 1},
		{name: "start again after stop", events: []fsm.Envelope{e(EvStart), e(EvStop), e(EvStart)}, want: Connecting,
			effects: []string{"Open", "Cancel", "Close", "Stopped", "Open"}, dials: 2},
		{name: "late worker events after stop: ignored", events: []fsm.Envelope{e(EvStart), e(EvStop), e(evOK), e(evFail, errBoom), e(EvRetry)}, want: Stopped,
			effects: []string{"Open", "Cancel", "Close", "Stopped"}, dials: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			timers := &fsmtest.Timers{}
			l := fsm.NewLoop(fsm.Options{Timers: timers})
			m, err := fsm.Add(l, toySpec, "toy", &toy{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Remove("toy")
			for _, ev := range tt.events {
				l.Deliver(ev)
			}
			if m.State() != tt.want {
				t.Errorf("state %s, want %s", m.State(), tt.want)
			}
			if got := m.Data.rec.Take(); !slices.Equal(got, tt.effects) {
				t.Errorf("effects %q, want %q", got, tt.effects)
			}
			if m.Timers() != tt.timers {
				t.Errorf("timers %d, want %d", m.Timers(), tt.timers)
			}
			if c := m.Data.Core; c.Dials != tt.dials || c.Attempt != tt.attempt || c.LastErr != tt.lastErr {
				t.Errorf("core dials %d attempt %d err %q, want %d %d %q", c.Dials, c.Attempt, c.LastErr, tt.dials, tt.attempt, tt.lastErr)
			}
			if s := l.Stats(); s.Unhandled != 0 {
				t.Errorf("unhandled events: %d", s.Unhandled)
			}
		})
	}
}

// The backoff timer follows the link's policy, backoff.Links when it gives
// none, and the attempt count grows with each failure.
func TestBackoffPolicy(t *testing.T) {
	fixed := backoff.Policy{Base: time.Minute, Cap: time.Minute, Min: time.Minute}
	for _, tt := range []struct {
		name   string
		policy backoff.Policy
		lo, hi time.Duration
	}{
		{"own policy", fixed, time.Minute, time.Minute},
		{"zero policy: backoff.Links", backoff.Policy{}, backoff.Links.Min, backoff.Links.Ceiling(0)},
	} {
		timers := &fsmtest.Timers{}
		l := fsm.NewLoop(fsm.Options{Timers: timers})
		m, err := fsm.Add(l, toySpec, "toy", &toy{policy: tt.policy}, nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Deliver(fsm.Envelope{To: "toy", Event: EvStart})
		l.Deliver(fsm.Envelope{To: "toy", Event: evFail, Data: errBoom})
		live := timers.Live()
		if len(live) != 1 || live[0].Ev != EvRetry || live[0].D < tt.lo || live[0].D > tt.hi {
			t.Errorf("%s: timers %+v, want one retry in [%v, %v]", tt.name, live, tt.lo, tt.hi)
		}
		l.Deliver(fsm.Envelope{To: "toy", Event: EvRetry})
		l.Deliver(fsm.Envelope{To: "toy", Event: evFail, Data: errBoom})
		if m.Data.Attempt != 2 {
			t.Errorf("%s: attempt %d after two failures", tt.name, m.Data.Attempt)
		}
		l.Remove("toy")
	}
}

// The shape's states, in order, with an own state amended and the docs
// replaced; the root ignores the shape's events and the link's quiet ones.
func TestSpecLayout(t *testing.T) {
	d := toySpec.Describe()
	var names []fsm.State
	docs := map[fsm.State]string{}
	for _, s := range d.States {
		names = append(names, s.Name)
		docs[s.Name] = s.Doc
	}
	want := []fsm.State{Idle, Running, Session, Connecting, toyUp, toyParked, Backoff, Stopped}
	if !slices.Equal(names, want) {
		t.Fatalf("states %v, want %v", names, want)
	}
	if docs[Connecting] != "toy dialing" || docs[Stopped] != defaultDocs[Stopped] {
		t.Fatalf("docs %v", docs)
	}
	for _, ev := range []fsm.Event{evOK, evFail, EvStop, EvRetry, EvNetworkUp, EvNetworkDown} {
		if !slices.Contains(d.Ignore, ev) {
			t.Errorf("root does not ignore %s", ev)
		}
	}
}

// Wait reports workers that outlive the timeout, and returns once they end.
func TestWorkersWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w Workers
		if !w.Wait(time.Second) {
			t.Fatal("no workers: Wait gave up")
		}
		release := make(chan struct{})
		w.Go(func() { <-release })
		if w.Wait(time.Second) {
			t.Fatal("a blocked worker: Wait said all ended")
		}
		close(release)
		if !w.Wait(time.Hour) {
			t.Fatal("the worker ended: Wait gave up")
		}
	})
}
