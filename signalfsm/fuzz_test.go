package signalfsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

// fuzzEffects hands out Senders like fakeEffects and counts the workers
// that run (started, not cancelled).
type fuzzEffects struct {
	fakeEffects
	senders []fsm.Sender // every worker's, oldest first
	live    int
}

func (f *fuzzEffects) Connect(w fsm.Sender, srv Server) func() {
	f.fakeEffects.Connect(w, srv)
	f.senders = append(f.senders, w)
	f.live++
	return func() { f.Record("Cancel"); f.live-- }
}

// fuzzPayloads are the data an event may carry: right, wrong and none.
var fuzzPayloads = []any{nil, srvA, srvB, Server{}, errBoom, "junk", 7}

// FuzzSignalLink drives the signal link with a sequence decoded from the
// input, one step per op byte:
//
//	0 ev pl  the engine delivers events[ev] with fuzzPayloads[pl]
//	1 ev pl  the newest worker posts workerEvents[ev]
//	2 i      the i-th armed timer fires
//	3 i      the i-th cancelled or fired timer fires (late)
//	4 i ev   the i-th worker posts events[ev]; if its generation is old,
//	         nothing may change
//
// After every step: every event had a declared outcome, every armed timer
// belongs to a state the machine is in, one worker runs exactly while in
// a session, and one timer is armed exactly while in backoff.
func FuzzSignalLink(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fsmtest.NewInput(data)
		ts := &fsmtest.Timers{}
		fx := &fuzzEffects{}
		l := fsm.NewLoop(fsm.Options{Timers: ts, Mailbox: 8})
		m, err := New(l, &Link{Effects: fx, Rand: rand.New(rand.NewPCG(1, 1))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Remove(ID)
		snap := func() string {
			return fmt.Sprintf("%s gen=%d timers=%d %+v effects=%q", m.State(), m.Gen(), m.Timers(), *m.Data, fx.Take())
		}
		var step, op, a, b int
		did := func() string { return fmt.Sprintf("step %d (op %d %d %d), in %s", step, op, a, b, m.State()) }
		for step = 1; in.More() && step <= fsmtest.MaxSteps; step++ {
			op, a, b = in.IntN(5), in.IntN(256), in.IntN(256)
			switch op {
			case 0:
				l.Deliver(fsm.Envelope{To: ID, Event: events[a%len(events)], Data: fuzzPayloads[b%len(fuzzPayloads)]})
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
						fsmtest.AssertStaleDropped(t, l, w, events[b%len(events)], errBoom, snap)
					}
				}
			}
			fsmtest.CheckStep(t, l, did)
			if want := b2i(m.In(Session)); fx.live != want {
				t.Fatalf("after %s: %d workers running, want %d", did(), fx.live, want)
			}
			if want := b2i(m.In(Backoff)); m.Timers() != want {
				t.Fatalf("after %s: %d timers armed, want %d", did(), m.Timers(), want)
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
