package fsm_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
)

type tdata struct{ log []string }

// A timer armed in an Exit action belongs to the state being left and is
// cancelled with it.
func TestTimerArmedInExitIsCancelled(t *testing.T) {
	spec := fsm.MustCompile(fsm.Spec[*tdata]{
		Kind: "exit-timer", Initial: "a", Events: []fsm.Event{"go", "tick"},
		States: []fsm.StateDef[*tdata]{
			{Name: "a", Exit: func(m *fsm.Machine[*tdata], _ fsm.Envelope) { m.After(time.Hour, "tick", nil) },
				Ignore: []fsm.Event{"tick"}},
			{Name: "b", Ignore: []fsm.Event{"go", "tick"}},
		},
		Transitions: []fsm.Transition[*tdata]{{From: "a", Event: "go", To: "b"}},
	})
	l := fsm.NewLoop(fsm.Options{})
	m, err := fsm.Add(l, spec, "m", &tdata{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Deliver(fsm.Envelope{To: "m", Event: "go"})
	if m.State() != "b" || m.Timers() != 0 || l.Stats().TimersArmed != 0 {
		t.Fatalf("state %s, %d timers armed after leaving the state whose exit armed one", m.State(), m.Timers())
	}
}

// To == From means one thing for a leaf and a composite: it needs Reenter
// (leave and enter again); To "" is the internal transition.
func TestSelfTransitionIsExplicit(t *testing.T) {
	base := func(tr fsm.Transition[*tdata]) fsm.Spec[*tdata] {
		return fsm.Spec[*tdata]{Kind: "self", Initial: "p", Events: []fsm.Event{"e"},
			States: []fsm.StateDef[*tdata]{
				{Name: "p", Initial: "p.c"},
				{Name: "p.c", Parent: "p"},
				{Name: "leaf"},
			},
			Transitions: []fsm.Transition[*tdata]{tr}}
	}
	for _, tt := range []struct {
		name string
		tr   fsm.Transition[*tdata]
		ok   bool
	}{
		{"leaf to itself without Reenter", fsm.Transition[*tdata]{From: "leaf", Event: "e", To: "leaf"}, false},
		{"composite to itself without Reenter", fsm.Transition[*tdata]{From: "p", Event: "e", To: "p"}, false},
		{"leaf with Reenter", fsm.Transition[*tdata]{From: "leaf", Event: "e", To: "leaf", Reenter: true}, true},
		{"composite with Reenter", fsm.Transition[*tdata]{From: "p", Event: "e", To: "p", Reenter: true}, true},
		{"Reenter elsewhere", fsm.Transition[*tdata]{From: "p", Event: "e", To: "leaf", Reenter: true}, false},
		{"internal", fsm.Transition[*tdata]{From: "leaf", Event: "e"}, true},
	} {
		_, err := fsm.Compile(base(tt.tr))
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, fsm.ErrBadSpec)) {
			t.Errorf("%s: err %v", tt.name, err)
		}
	}
	// A leaf that re-enters itself runs its exit and entry, like a composite.
	var d tdata
	log := func(s string) fsm.Action[*tdata] {
		return func(m *fsm.Machine[*tdata], _ fsm.Envelope) { m.Data.log = append(m.Data.log, s) }
	}
	spec := fsm.MustCompile(fsm.Spec[*tdata]{Kind: "leaf-reenter", Initial: "a", Events: []fsm.Event{"e"},
		States:      []fsm.StateDef[*tdata]{{Name: "a", Entry: log("enter"), Exit: log("exit")}},
		Transitions: []fsm.Transition[*tdata]{{From: "a", Event: "e", To: "a", Reenter: true}}})
	l := fsm.NewLoop(fsm.Options{})
	if _, err := fsm.Add(l, spec, "m", &d, nil); err != nil {
		t.Fatal(err)
	}
	l.Deliver(fsm.Envelope{To: "m", Event: "e"})
	if got := len(d.log); got != 3 || d.log[1] != "exit" || d.log[2] != "enter" || l.Stats().Unhandled != 0 {
		t.Fatalf("log %v", d.log)
	}
}
