package mgmtfsm

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
	"github.com/nbfsm/nbfsm/internal/mgmt"
)

// fuzzEffects records like fakeEffects, keeps every worker's Sender and
// counts the workers that run (started, not cancelled).
type fuzzEffects struct {
	fakeEffects
	senders []fsm.Sender // oldest first
	live    int
}

func (f *fuzzEffects) worker(w fsm.Sender) func() {
	f.senders = append(f.senders, w)
	f.live++
	return func() { f.Record("Cancel"); f.live-- }
}

func (f *fuzzEffects) FetchKey(w fsm.Sender) func() { f.fakeEffects.FetchKey(w); return f.worker(w) }
func (f *fuzzEffects) Sync(w fsm.Sender, k wgtypes.Key) func() {
	f.fakeEffects.Sync(w, k)
	return f.worker(w)
}
func (f *fuzzEffects) Login(w fsm.Sender, k wgtypes.Key, setupKey string) func() {
	f.fakeEffects.Login(w, k, setupKey)
	return f.worker(w)
}

// fuzzPayloads are the data an event may carry: right, wrong and none.
var fuzzPayloads = []any{nil, srvKey, loginRes, (*mgmt.LoginResult)(nil), errBoom, mapUpdate(1), mapUpdate(2),
	mapUpdate(3), mgmt.Update{Config: &mgmt.Config{}}, mgmt.Update{}, "setup-key", "", 7}

// FuzzMgmtLink drives the management link with a sequence decoded from
// the input, three bytes a step (op, a, b):
//
//	0  the engine delivers events[a] with fuzzPayloads[b]
//	1  the newest worker posts workerEvents[a] with fuzzPayloads[b]
//	2  the a-th armed timer fires
//	3  the a-th cancelled or fired timer fires (late)
//	4  the a-th worker posts events[b]; if its generation is old, nothing
//	   may change
//
// After every step: every event had a declared outcome, every armed timer
// belongs to a state the machine is in, one worker runs exactly while in a
// session, one timer is armed exactly while in backoff (none in
// needs-login: no retry storm), and the applied map serial never goes down.
func FuzzMgmtLink(f *testing.F) {
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
		var serial uint64
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
						fsmtest.AssertStaleDropped(t, l, w, events[b%len(events)], fuzzPayloads[b%len(fuzzPayloads)], snap)
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
			applied, _ := m.Data.Maps.Last()
			if applied < serial {
				t.Fatalf("after %s: applied serial went down from %d to %d", did(), serial, applied)
			}
			serial = applied
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
