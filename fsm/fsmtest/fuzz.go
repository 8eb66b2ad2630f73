package fsmtest

import (
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
)

// Input decodes fuzz bytes into choices: each IntN takes one byte. When the
// bytes are used up, More is false and IntN returns 0.
type Input struct{ b []byte }

// NewInput returns an Input over b.
func NewInput(b []byte) *Input { return &Input{b: b} }

// More reports whether bytes are left.
func (in *Input) More() bool { return len(in.b) > 0 }

// IntN returns the next byte modulo n (n > 0), 0 when the input is used up.
func (in *Input) IntN(n int) int {
	if len(in.b) == 0 {
		return 0
	}
	v := int(in.b[0])
	in.b = in.b[1:]
	return v % n
}

// Timers is an fsm.TimerFactory whose timers fire only when the test says
// so (Fire). It also keeps the timers that were stopped or fired, to fire
// them again late (FireStale): a timer that fired just as it was cancelled.
type Timers struct {
	armed, done []*FakeTimer
}

// FakeTimer is one timer of Timers.
type FakeTimer struct {
	To      string
	Ev      fsm.Event
	D       time.Duration
	f       func()
	stopped bool
}

// Stop disarms the timer.
func (t *FakeTimer) Stop() bool {
	was := !t.stopped
	t.stopped = true
	return was
}

// AfterFunc arms a timer (fsm.TimerFactory).
func (ts *Timers) AfterFunc(d time.Duration, to string, ev fsm.Event, f func()) fsm.Timer {
	t := &FakeTimer{To: to, Ev: ev, D: d, f: f}
	ts.armed = append(ts.armed, t)
	return t
}

// Live returns the armed timers, oldest first.
func (ts *Timers) Live() []*FakeTimer {
	out := ts.armed[:0]
	for _, t := range ts.armed {
		if t.stopped {
			ts.keep(t)
			continue
		}
		out = append(out, t)
	}
	ts.armed = out
	return out
}

// keep remembers a finished timer for FireStale (the last 16).
func (ts *Timers) keep(t *FakeTimer) {
	if len(ts.done) == 16 {
		ts.done = append(ts.done[:0], ts.done[1:]...)
	}
	ts.done = append(ts.done, t)
}

// Fire fires the i-th armed timer (modulo their number): its event is
// posted to the loop, which the caller drains. It returns the timer, nil
// if none is armed.
func (ts *Timers) Fire(i int) *FakeTimer {
	live := ts.Live()
	if len(live) == 0 {
		return nil
	}
	t := live[i%len(live)]
	t.stopped = true
	t.f()
	return t
}

// FireStale fires again the i-th timer that was stopped or already fired
// (modulo their number): the loop must drop its event. It returns the
// timer, nil if there is none.
func (ts *Timers) FireStale(i int) *FakeTimer {
	ts.Live()
	if len(ts.done) == 0 {
		return nil
	}
	t := ts.done[i%len(ts.done)]
	t.f()
	return t
}

// CheckStep fails t unless, after the step that step() describes, every event the loop delivered had
// a declared outcome (Stats.Unhandled is 0) and every armed timer of every
// machine belongs to a state the machine is in. Only from the goroutine
// that drives the loop (Deliver, Drain).
func CheckStep(t testing.TB, l *fsm.Loop, step func() string) {
	t.Helper()
	if n := l.Stats().Unhandled; n != 0 {
		t.Fatalf("after %s: %d events had no declared outcome", step(), n)
	}
	l.Each(func(n fsm.Node) {
		for _, s := range n.TimerOwners() {
			if !n.In(s) {
				t.Fatalf("after %s: %s in %s has a timer of state %s", step(), n.ID(), n.State(), s)
			}
		}
	})
}

// AssertStaleDropped posts ev with data through w, a Sender of an older
// generation of its machine, drains loop l and fails t unless the loop
// dropped the event (Stats.StaleGen grew by one) and snap, a description of
// the machine and of the effects it asked for, is what it was before.
func AssertStaleDropped(t testing.TB, l *fsm.Loop, w fsm.Sender, ev fsm.Event, data any, snap func() string) {
	t.Helper()
	before, stale := snap(), l.Stats().StaleGen
	if err := w.Post(ev, data); err != nil {
		t.Fatal(err)
	}
	l.Drain()
	if got := l.Stats().StaleGen; got != stale+1 {
		t.Fatalf("%s of generation %d: not dropped as stale (%d stale drops, %d before)", ev, w.Gen(), got, stale)
	}
	if after := snap(); after != before {
		t.Fatalf("%s of generation %d changed the machine:\nbefore %s\nafter  %s", ev, w.Gen(), before, after)
	}
}

// MaxSteps bounds the steps a fuzz target decodes from one input: longer
// inputs add nothing a sequence of this length cannot reach, and keep the
// executions per second up.
const MaxSteps = 200
