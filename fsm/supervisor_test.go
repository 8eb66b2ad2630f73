package fsm_test

import (
	"errors"
	"sync"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
	ex "github.com/nbfsm/nbfsm/fsm/example"
)

func TestSupervisorRoutesAndBroadcasts(t *testing.T) {
	l := fsm.NewLoop(fsm.Options{})
	panel, _ := fsm.Add(l, ex.PanelSpec, "panel", &ex.Panel{}, nil)
	var lamps []*fsm.Machine[*ex.Lamp]
	for _, id := range []string{"lamp/a", "lamp/b", "lamp/c"} {
		m, err := fsm.Add(l, ex.LampSpec, id, &ex.Lamp{}, panel)
		if err != nil {
			t.Fatal(err)
		}
		lamps = append(lamps, m)
	}
	send := func(to string, e fsm.Event) { l.Deliver(fsm.Envelope{To: to, Event: e}) }
	states := func() []fsm.State {
		var s []fsm.State
		for _, m := range lamps {
			s = append(s, m.State())
		}
		return s
	}

	send("lamp/a", ex.Switch)
	send("lamp/b", ex.Switch)
	send("lamp/b", ex.Brighten)
	send("lamp/c", ex.Fail) // route: lamp enters broken → panel lamp-broken
	if panel.State() != ex.Degraded || panel.Data.Broken != 1 {
		t.Fatalf("panel %s broken=%d", panel.State(), panel.Data.Broken)
	}
	send("panel", ex.Cut) // outage entry broadcasts power-lost to lamps in on
	if got := states(); got[0] != ex.Off || got[1] != ex.Off || got[2] != ex.Broken {
		t.Fatalf("after cut: %v", got)
	}
	send("lamp/c", ex.Repair) // route: lamp leaves broken → panel lamp-repaired
	send("panel", ex.Restore)
	if panel.State() != ex.Normal || panel.Data.Broken != 0 {
		t.Fatalf("panel %s broken=%d", panel.State(), panel.Data.Broken)
	}
	// A move inside a composite state does not re-enter it: no route fires.
	send("lamp/a", ex.Switch)
	send("lamp/a", ex.Brighten)
	if panel.State() != ex.Normal {
		t.Fatalf("panel %s", panel.State())
	}
	// A removed child no longer hears broadcasts.
	l.Remove("lamp/b")
	n := 0
	panel.Children("lamp", func(fsm.Node) bool { n++; return true })
	if n != 2 {
		t.Fatalf("children = %d", n)
	}
}

func TestPostDoStop(t *testing.T) {
	l := fsm.NewLoop(fsm.Options{Mailbox: 1})
	m, _ := fsm.Add(l, ex.LampSpec, "lamp", &ex.Lamp{}, nil)
	l.Deliver(fsm.Envelope{To: "lamp", Event: ex.Switch})
	stop := runLoop(l)
	// Backpressure: a mailbox of one, four producers, nothing lost.
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 250 {
				if err := l.Post(fsm.Envelope{To: "lamp", Event: ex.Measured, Data: 1}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	var internal uint64
	if err := l.Do(func() { internal = l.Stats().Internal }); err != nil {
		t.Fatal(err)
	}
	if internal != 1000 {
		t.Fatalf("internal = %d, want 1000", internal)
	}
	stop()
	l.Stop()
	if err := l.Post(fsm.Envelope{To: "lamp", Event: ex.Switch}); !errors.Is(err, fsm.ErrStopped) {
		t.Fatalf("post after stop: %v", err)
	}
	if err := l.Do(func() {}); !errors.Is(err, fsm.ErrStopped) {
		t.Fatalf("do after stop: %v", err)
	}
	if m.Timers() != 0 {
		t.Fatalf("timers left after stop: %d", m.Timers())
	}
}

// Actions raising events (to themselves and to others, from entry, exit and
// transition actions) never deadlock: a chain of 10 000 raises completes.
func TestRaiseChainsNeverDeadlock(t *testing.T) {
	type d struct{ n int }
	spec := fsm.MustCompile(fsm.Spec[*d]{
		Kind: "pingpong", Initial: "ping", Events: []fsm.Event{"hit"},
		States: []fsm.StateDef[*d]{
			{Name: "ping", Exit: func(m *fsm.Machine[*d], _ fsm.Envelope) {
				if m.Data.n < 10000 {
					m.Send(other(m.ID()), "hit", nil)
				}
			}},
			{Name: "pong", Entry: func(m *fsm.Machine[*d], _ fsm.Envelope) { m.Data.n++; m.Raise("hit", nil) }},
		},
		Transitions: []fsm.Transition[*d]{{From: "ping", Event: "hit", To: "pong"}, {From: "pong", Event: "hit", To: "ping"}},
	})
	l := fsm.NewLoop(fsm.Options{})
	a, _ := fsm.Add(l, spec, "a", &d{}, nil)
	b, _ := fsm.Add(l, spec, "b", &d{}, nil)
	l.Deliver(fsm.Envelope{To: "a", Event: "hit"})
	if a.Data.n+b.Data.n < 10000 {
		t.Fatalf("chain stopped early: %d %d", a.Data.n, b.Data.n)
	}
}

func other(id string) string {
	if id == "a" {
		return "b"
	}
	return "a"
}

func TestRing(t *testing.T) {
	g := fsm.NewRing(3)
	sub := g.Subscribe(2)
	for i := range 5 {
		g.Observe(fsm.Record{Machine: itoa(i)})
	}
	snap := g.Snapshot()
	if len(snap) != 3 || snap[0].Machine != "2" || snap[2].Machine != "4" {
		t.Fatalf("snapshot %v", snap)
	}
	if g.Dropped() != 3 {
		t.Fatalf("dropped %d", g.Dropped())
	}
	if r := <-sub.C(); r.Machine != "0" {
		t.Fatalf("first live record %v", r)
	}
	sub.Close()
	sub.Close()
	g.Observe(fsm.Record{}) // no subscriber: must not block or panic
}
