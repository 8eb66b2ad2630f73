package relayfsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
	"github.com/nbfsm/nbfsm/internal/relay"
)

// fuzzEffects hands out Senders like fakeEffects and counts, per sender,
// whether its worker still runs (started, not cancelled).
type fuzzEffects struct {
	fakeEffects
	senders []fsm.Sender // every worker's (home and foreign), oldest first
	live    map[string]int
}

func (f *fuzzEffects) Connect(w fsm.Sender, urls []string, tok Token) func() {
	f.fakeEffects.Connect(w, urls, tok)
	f.senders = append(f.senders, w)
	f.live[w.To()]++
	return func() { f.Record("Cancel"); f.live[w.To()]-- }
}

const farAddr, far2Addr = "rel://far:1", "rel://far2:1"

var remoteR = relay.HashID("cmVtb3Rl")

// fuzzPayloads are the data an event may carry: right, wrong and none.
var fuzzPayloads = []any{nil, cfgA, cfgA2, noToken, upNil, Up{Addr: farAddr, URL: farAddr},
	Use{Peer: "peer/x", Addr: farAddr}, Use{Peer: "peer/y", Addr: farAddr}, Use{Peer: "peer/x"},
	Use{Peer: "peer/y", Addr: far2Addr, Remote: remoteR}, Use{Peer: "peer/z", Addr: upNil.Addr},
	errBoom, farAddr, []relay.PeerID{remoteR}, "junk", 7}

// FuzzRelayLink drives the home relay link and its foreign relay machines
// with a sequence decoded from the input, one step per op byte:
//
//	0 ev pl  the engine (or a peer) delivers events[ev] with fuzzPayloads[pl]
//	1 i ev pl  the i-th worker (home or foreign, any generation) posts
//	         workerEvents[ev] with fuzzPayloads[pl]; an old generation's is dropped
//	2 i      the i-th armed timer fires
//	3 i      the i-th cancelled or fired timer fires (late)
//	4 i ev pl  the i-th foreign machine is delivered foreignEvents[ev]
//
// After every step: every event had a declared outcome, every armed timer
// belongs to a state its machine is in; each machine runs one worker
// exactly while it holds a connection attempt (home: session; foreign:
// open); the home link arms one timer in connected (the health deadline)
// and in backoff, none elsewhere; a connected foreign relay arms its health
// deadline, plus the linger timer while unused, and is unused exactly when
// it has no users; no closed foreign machine outlives the step (the home
// link reaps it).
func FuzzRelayLink(f *testing.F) {
	f.Add([]byte{0, 0, 1, 1, 0, 0, 4, 0, 0, 11, 6, 1, 1, 0, 5, 0, 0, 12, 6, 2, 0})
	f.Add([]byte{0, 0, 1, 1, 0, 0, 4, 0, 0, 11, 6, 0, 0, 12, 6, 2, 1, 2, 0, 3, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fsmtest.NewInput(data)
		ts := &fsmtest.Timers{}
		fx := &fuzzEffects{live: map[string]int{}}
		l := fsm.NewLoop(fsm.Options{Timers: ts, Mailbox: 64})
		m, err := New(l, &Link{Effects: fx, Rand: rand.New(rand.NewPCG(1, 1))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Remove(ID)
		var step, op, a, b, c int
		did := func() string {
			return fmt.Sprintf("step %d (op %d %d %d %d), home in %s", step, op, a, b, c, m.State())
		}
		for step = 1; in.More() && step <= fsmtest.MaxSteps; step++ {
			op, a, b, c = in.IntN(5), in.IntN(256), in.IntN(256), in.IntN(256)
			pl := fuzzPayloads[c%len(fuzzPayloads)]
			switch op {
			case 0:
				l.Deliver(fsm.Envelope{To: ID, Event: events[a%len(events)], Data: pl})
				l.Drain()
			case 1:
				if n := len(fx.senders); n > 0 {
					_ = fx.senders[a%n].Post(workerEvents[b%len(workerEvents)], pl)
					l.Drain()
				}
			case 2:
				ts.Fire(a)
				l.Drain()
			case 3:
				ts.FireStale(a)
				l.Drain()
			case 4:
				if fs := m.Data.Foreign(); len(fs) > 0 {
					l.Deliver(fsm.Envelope{To: fs[a%len(fs)].ID(), Event: foreignEvents[b%len(foreignEvents)], Data: pl})
					l.Drain()
				}
			}
			fsmtest.CheckStep(t, l, did)
			checkRelayMachines(t, m, fx, did)
			fx.Take()
		}
	})
}

func checkRelayMachines(t *testing.T, m *fsm.Machine[*Link], fx *fuzzEffects, did func() string) {
	t.Helper()
	if want := b2i(m.In(Session)); fx.live[ID] != want {
		t.Fatalf("after %s: home link runs %d workers, want %d", did(), fx.live[ID], want)
	}
	if want := b2i(m.In(Connected) || m.In(Backoff)); m.Timers() != want {
		t.Fatalf("after %s: home link in %s arms %d timers, want %d", did(), m.State(), m.Timers(), want)
	}
	for _, f := range m.Data.Foreign() {
		if f.In(ForeignClosed) {
			t.Fatalf("after %s: foreign %s closed but not reaped", did(), f.ID())
		}
		if want := b2i(f.In(Open)); fx.live[f.ID()] != want {
			t.Fatalf("after %s: foreign %s in %s runs %d workers, want %d", did(), f.ID(), f.State(), fx.live[f.ID()], want)
		}
		if want := b2i(f.In(ForeignUp)) + b2i(f.In(ForeignUnused)); f.Timers() != want {
			t.Fatalf("after %s: foreign %s in %s arms %d timers, want %d", did(), f.ID(), f.State(), f.Timers(), want)
		}
		if f.In(ForeignUp) && f.In(ForeignUnused) != (f.Data.Users() == 0) {
			t.Fatalf("after %s: foreign %s in %s has %d users", did(), f.ID(), f.State(), f.Data.Users())
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A foreign relay's health deadline, re-armed by a health check while used,
// survives the move to unused and back: a silent server is still noticed
// (FuzzRelayLink found the deadline cancelled with the used state).
func TestForeignHealthDeadlineSurvivesUnusedAndBack(t *testing.T) {
	ts := &fsmtest.Timers{}
	fx := &fuzzEffects{live: map[string]int{}}
	l := fsm.NewLoop(fsm.Options{Timers: ts, Mailbox: 64})
	m, err := New(l, &Link{Effects: fx, Rand: rand.New(rand.NewPCG(1, 1))}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Remove(ID)
	use := Use{Peer: "peer/x", Addr: farAddr}
	l.Deliver(fsm.Envelope{To: ID, Event: EvAcquire, Data: use})
	l.Drain()
	fs := m.Data.Foreign()
	if len(fs) != 1 || len(fx.senders) != 1 {
		t.Fatalf("foreign machines %d, workers %d", len(fs), len(fx.senders))
	}
	f, w := fs[0], fx.senders[0]
	steps := []struct {
		do     func()
		state  fsm.State
		timers int
	}{
		{func() { _ = w.Post(EvUp, Up{Addr: farAddr, URL: farAddr}); l.Drain() }, ForeignUsed, 1},
		{func() { _ = w.Post(EvHealth, nil); l.Drain() }, ForeignUsed, 1},
		{func() { l.Deliver(fsm.Envelope{To: f.ID(), Event: EvRelease, Data: use}) }, ForeignUnused, 2},
		{func() { l.Deliver(fsm.Envelope{To: f.ID(), Event: EvAcquire, Data: use}) }, ForeignUsed, 1},
	}
	for i, s := range steps {
		s.do()
		if f.State() != s.state || f.Timers() != s.timers {
			t.Fatalf("step %d: %s with %d timers, want %s with %d", i, f.State(), f.Timers(), s.state, s.timers)
		}
	}
	if tm := ts.Fire(0); tm == nil || tm.Ev != EvSilent {
		t.Fatalf("armed timer %+v, want the health deadline", tm)
	}
	l.Drain()
	if len(m.Data.Foreign()) != 0 {
		t.Fatalf("a silent foreign relay was kept: %s", f.State())
	}
}
