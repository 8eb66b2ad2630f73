package fsm_test

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
)

// wideSpec is a machine kind with a big flat table: k states, k events, each
// event from each state to the next state (k×k looplab rows).
func wideSpec(k int) *fsm.Compiled[struct{}] {
	s := fsm.Spec[struct{}]{Kind: "wide", Initial: "s0"}
	for i := range k {
		s.States = append(s.States, fsm.StateDef[struct{}]{Name: fsm.State(fmt.Sprintf("s%d", i))})
		s.Events = append(s.Events, fsm.Event(fmt.Sprintf("e%d", i)))
	}
	for i := range k {
		for j := range k {
			s.Transitions = append(s.Transitions, fsm.Transition[struct{}]{
				From: s.States[i].Name, Event: s.Events[j], To: s.States[(i+j+1)%k].Name, Reenter: (i+j+1)%k == i,
			})
		}
	}
	return fsm.MustCompile(s)
}

// A machine costs the same whatever the size of its kind's table: the loop
// holds one looplab FSM per kind, not one per machine (a copy of the table
// per machine was ~6 KiB per peer, 60 MiB at 10 000 peers for the GC to scan).
func TestMachineBytesIndependentOfTableSize(t *testing.T) {
	const n = 500
	perMachine := func(c *fsm.Compiled[struct{}]) float64 {
		l := fsm.NewLoop(fsm.Options{})
		if _, err := fsm.Add(l, c, "warm", struct{}{}, nil); err != nil { // the loop's table of the kind
			t.Fatal(err)
		}
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("m/%d", i)
		}
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		for _, id := range ids {
			if _, err := fsm.Add(l, c, id, struct{}{}, nil); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&b)
		runtime.KeepAlive(l)
		return float64(b.TotalAlloc-a.TotalAlloc) / n
	}
	small, wide := perMachine(wideSpec(2)), perMachine(wideSpec(40)) // 4 and 1 600 rows
	t.Logf("bytes allocated per machine: 4-row table %.0f, 1600-row table %.0f", small, wide)
	if wide > small+512 {
		t.Fatalf("a machine of a 1600-row kind allocates %.0f bytes, of a 4-row kind %.0f: the table is copied per machine", wide, small)
	}
}

// Machines of one kind share the loop's looplab FSM; each keeps its own state.
func TestMachinesOfAKindKeepTheirOwnState(t *testing.T) {
	c := wideSpec(5)
	l := fsm.NewLoop(fsm.Options{})
	a, err := fsm.Add(l, c, "a", struct{}{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := fsm.Add(l, c, "b", struct{}{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		to    string
		ev    fsm.Event
		wantA fsm.State
		wantB fsm.State
	}{
		{"a", "e0", "s1", "s0"},
		{"b", "e2", "s1", "s3"},
		{"a", "e1", "s3", "s3"},
		{"b", "e0", "s3", "s4"},
		{"a", "e4", "s3", "s4"}, // s3 → s3: re-entered
		{"b", "e0", "s3", "s0"},
	}
	for i, st := range steps {
		l.Deliver(fsm.Envelope{To: st.to, Event: st.ev})
		if a.State() != st.wantA || b.State() != st.wantB {
			t.Fatalf("step %d (%s to %s): a %s b %s, want a %s b %s", i, st.ev, st.to, a.State(), b.State(), st.wantA, st.wantB)
		}
	}
	if s := l.Stats(); s.Transitions != uint64(len(steps)) || s.Unhandled != 0 {
		t.Fatalf("stats %+v", s)
	}
}
