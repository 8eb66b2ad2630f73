package fsm_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
	ex "github.com/nbfsm/nbfsm/fsm/example"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

// runLoop starts l.Run in a goroutine and returns a function that stops it
// and waits for it.
func runLoop(l *fsm.Loop) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	return func() { cancel(); <-done }
}

func TestTimerFiresAsEvent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := fsm.NewLoop(fsm.Options{})
		m, _ := fsm.Add(l, ex.LampSpec, "lamp", &ex.Lamp{}, nil)
		stop := runLoop(l)
		defer stop()
		if err := l.Post(fsm.Envelope{To: "lamp", Event: ex.Switch}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(ex.AutoOffAfter - time.Second)
		synctest.Wait()
		var st fsm.State
		_ = l.Do(func() { st = m.State() })
		if st != ex.Dim {
			t.Fatalf("before deadline: %s", st)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		_ = l.Do(func() { st = m.State() })
		if st != ex.Off {
			t.Fatalf("after deadline: %s", st)
		}
		if s := l.Stats(); s.TimersFired != 1 || s.TimersArmed != 0 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestTimerCancelledOnExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := fsm.NewLoop(fsm.Options{})
		fsm.Add(l, ex.LampSpec, "lamp", &ex.Lamp{}, nil)
		stop := runLoop(l)
		defer stop()
		_ = l.Post(fsm.Envelope{To: "lamp", Event: ex.Switch})
		time.Sleep(time.Minute)
		_ = l.Post(fsm.Envelope{To: "lamp", Event: ex.Switch}) // off: leaves on, cancels its timer
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		if s := l.Stats(); s.TimersFired != 0 || s.TimersArmed != 0 || s.Dispatched != 2 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// A timer that fired (its event already in the mailbox) and was cancelled
// before the event was processed must never be delivered.
func TestCancelledTimerNeverFiresEvenIfQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := fsm.NewLoop(fsm.Options{})
		lamp := &ex.Lamp{}
		m, _ := fsm.Add(l, ex.LampSpec, "lamp", lamp, nil)
		l.Deliver(fsm.Envelope{To: "lamp", Event: ex.Switch}) // arms auto-off
		time.Sleep(ex.AutoOffAfter + time.Second)             // fires: event waits in the mailbox
		synctest.Wait()
		l.Deliver(fsm.Envelope{To: "lamp", Event: ex.Switch}) // off: cancels the already-fired timer
		l.Deliver(fsm.Envelope{To: "lamp", Event: ex.Switch}) // on again: a new timer
		stop := runLoop(l)                                    // now the stale auto-off is processed
		synctest.Wait()
		var st fsm.State
		var s fsm.Stats
		_ = l.Do(func() { st, s = m.State(), l.Stats() })
		stop()
		if st != ex.Dim {
			t.Fatalf("state %s: the cancelled timer switched the lamp off", st)
		}
		if s.StaleTimer != 1 || s.TimersFired != 0 || s.TimersArmed != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// parkedSpec is the shape of a parked peer: a state with no timer.
var parkedSpec = fsm.MustCompile(fsm.Spec[struct{}]{
	Kind: "parked", Initial: "parked", Events: []fsm.Event{"unpark"},
	States: []fsm.StateDef[struct{}]{
		{Name: "parked"},
		{Name: "active", Entry: func(m *fsm.Machine[struct{}], _ fsm.Envelope) { m.After(time.Second, "unpark", nil) },
			Ignore: []fsm.Event{"unpark"}},
	},
	Transitions: []fsm.Transition[struct{}]{{From: "parked", Event: "unpark", To: "active"}},
})

func TestIdleParkedMachinesCostNothing(t *testing.T) {
	const n = 10000
	synctest.Test(t, func(t *testing.T) {
		l := fsm.NewLoop(fsm.Options{})
		for i := range n {
			if _, err := fsm.Add(l, parkedSpec, "m"+itoa(i), struct{}{}, nil); err != nil {
				t.Fatal(err)
			}
		}
		stop := runLoop(l)
		defer stop()
		synctest.Wait()
		before := fsmtest.BubbleGoroutines()
		time.Sleep(24 * time.Hour)
		synctest.Wait()
		after := fsmtest.BubbleGoroutines()
		s := l.Stats()
		t.Logf("%d parked machines, 24 h of fake time: %d events dispatched, %d timers armed, goroutines %d → %d",
			n, s.Dispatched, s.TimersArmed, before, after)
		if s.Dispatched != 0 || s.TimersArmed != 0 || after != before {
			t.Fatalf("idle machines did work: %+v, goroutines %d → %d", s, before, after)
		}
	})
}

func itoa(i int) string {
	var b [20]byte
	p := len(b)
	for {
		p--
		b[p] = byte('0' + i%10)
		if i /= 10; i == 0 {
			return string(b[p:])
		}
	}
}
