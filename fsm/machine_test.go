package fsm_test

import (
	"context"
	"slices"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
	ex "github.com/nbfsm/nbfsm/fsm/example"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

// recorded is an observer that keeps every record.
type recorded struct{ recs []fsm.Record }

func (r *recorded) Observe(rec fsm.Record) { r.recs = append(r.recs, rec) }

func newLamp(t *testing.T, lamp *ex.Lamp) (*fsm.Loop, *fsm.Machine[*ex.Lamp], *recorded) {
	t.Helper()
	l := fsm.NewLoop(fsm.Options{})
	rec := &recorded{}
	l.Observe(rec)
	m, err := fsm.Add(l, ex.LampSpec, "lamp/1", lamp, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Remove(m.ID()) }) // cancels timers armed by the test
	return l, m, rec
}

func TestLampTransitions(t *testing.T) {
	tests := []struct {
		name    string
		lamp    ex.Lamp
		events  []fsm.Event
		want    fsm.State
		wantLog []string
		timers  int
	}{
		{name: "starts off", want: ex.Off},
		{name: "switch enters composite initial", events: []fsm.Event{ex.Switch}, want: ex.Dim,
			wantLog: []string{"enter on", "enter dim"}, timers: 1},
		{name: "substate move keeps parent", events: []fsm.Event{ex.Switch, ex.Brighten}, want: ex.Bright,
			wantLog: []string{"enter on", "enter dim", "exit dim", "action brighten", "enter bright"}, timers: 1},
		{name: "parent transition exits leaf first", events: []fsm.Event{ex.Switch, ex.Brighten, ex.Switch}, want: ex.Off,
			wantLog: []string{"enter on", "enter dim", "exit dim", "action brighten", "enter bright", "exit bright", "exit on"}},
		{name: "guard holds: internal", lamp: ex.Lamp{Watts: 50, MaxWatts: 100}, events: []fsm.Event{ex.Switch, ex.Brighten},
			want: ex.Dim, wantLog: []string{"enter on", "enter dim", "refuse: over budget"}, timers: 1},
		{name: "ignored in substate", events: []fsm.Event{ex.Switch, ex.Dimmer}, want: ex.Dim,
			wantLog: []string{"enter on", "enter dim"}, timers: 1},
		{name: "bubbles to parent", events: []fsm.Event{ex.Switch, ex.Brighten, ex.Fail}, want: ex.Broken,
			wantLog: []string{"enter on", "enter dim", "exit dim", "action brighten", "enter bright", "exit bright", "exit on"}},
		{name: "self-transition is internal", events: []fsm.Event{ex.Repair}, want: ex.Off},
		{name: "internal on composite keeps leaf and timer", events: []fsm.Event{ex.Switch, ex.Brighten, ex.Repair}, want: ex.Bright,
			wantLog: []string{"enter on", "enter dim", "exit dim", "action brighten", "enter bright", "repair while on"}, timers: 1},
		{name: "transition to own composite re-enters it", events: []fsm.Event{ex.Switch, ex.Brighten, ex.Reset}, want: ex.Dim,
			wantLog: []string{"enter on", "enter dim", "exit dim", "action brighten", "enter bright", "exit bright", "exit on", "enter on", "enter dim"}, timers: 1},
		{name: "re-entry to the same leaf still exits and enters", events: []fsm.Event{ex.Switch, ex.Reset}, want: ex.Dim,
			wantLog: []string{"enter on", "enter dim", "exit dim", "exit on", "enter on", "enter dim"}, timers: 1},
		{name: "broken then repaired", events: []fsm.Event{ex.Fail, ex.Switch, ex.Repair}, want: ex.Off},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lamp := tt.lamp
			l, m, _ := newLamp(t, &lamp)
			for _, e := range tt.events {
				l.Deliver(fsm.Envelope{To: m.ID(), Event: e})
			}
			if m.State() != tt.want {
				t.Errorf("state = %s, want %s", m.State(), tt.want)
			}
			if !slices.Equal(lamp.Log, tt.wantLog) {
				t.Errorf("log = %q\nwant  %q", lamp.Log, tt.wantLog)
			}
			if m.Timers() != tt.timers {
				t.Errorf("timers = %d, want %d", m.Timers(), tt.timers)
			}
			if s := l.Stats(); s.Unhandled != 0 {
				t.Errorf("unhandled = %d", s.Unhandled)
			}
		})
	}
}

func TestTraceRecordsTransitions(t *testing.T) {
	l, m, rec := newLamp(t, &ex.Lamp{})
	for _, e := range []fsm.Event{ex.Switch, ex.Brighten, ex.Dimmer, ex.Repair, ex.Brighten, ex.Fail} {
		l.Deliver(fsm.Envelope{To: m.ID(), Event: e, Cause: "test"})
	}
	type step struct {
		from     fsm.State
		ev       fsm.Event
		to       fsm.State
		internal bool
	}
	var got []step
	for _, r := range rec.recs {
		if r.Machine != "lamp/1" || r.Kind != "lamp" {
			t.Fatalf("record %+v", r)
		}
		got = append(got, step{r.From, r.Event, r.To, r.Internal})
	}
	want := []step{
		{"", fsm.EventStart, ex.Off, false},
		{ex.Off, ex.Switch, ex.Dim, false},
		{ex.Dim, ex.Brighten, ex.Bright, false},
		{ex.Bright, ex.Dimmer, ex.Dim, false},
		{ex.Dim, ex.Repair, ex.Dim, true},
		{ex.Dim, ex.Brighten, ex.Bright, false},
		{ex.Bright, ex.Fail, ex.Broken, false},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("trace\n got %v\nwant %v", got, want)
	}
	if rec.recs[1].Cause != "test" {
		t.Errorf("cause = %q", rec.recs[1].Cause)
	}
}

func TestUnhandledAndUnknownAreCounted(t *testing.T) {
	spec := fsm.MustCompile(fsm.Spec[struct{}]{
		Kind: "partial", Initial: "a", Events: []fsm.Event{"go", "stray"},
		States:      []fsm.StateDef[struct{}]{{Name: "a"}, {Name: "b"}},
		Transitions: []fsm.Transition[struct{}]{{From: "a", Event: "go", To: "b"}},
	})
	l := fsm.NewLoop(fsm.Options{})
	m, _ := fsm.Add(l, spec, "p", struct{}{}, nil)
	l.Deliver(fsm.Envelope{To: "p", Event: "stray"})
	l.Deliver(fsm.Envelope{To: "p", Event: "not-declared"})
	l.Deliver(fsm.Envelope{To: "nobody", Event: "go"})
	if s := l.Stats(); s.Unhandled != 2 || s.UnknownTarget != 1 {
		t.Fatalf("stats %+v", s)
	}
	if m.State() != "a" {
		t.Fatalf("state %s", m.State())
	}
	if err := fsm.CheckTotal(spec); err == nil {
		t.Fatal("partial spec reported total")
	}
}

func TestExampleSpecsAreTotal(t *testing.T) {
	fsmtest.AssertTotal(t, ex.LampSpec)
	fsmtest.AssertTotal(t, ex.PanelSpec)
}

func TestStaleGenerationDropped(t *testing.T) {
	l, m, _ := newLamp(t, &ex.Lamp{})
	l.Deliver(fsm.Envelope{To: m.ID(), Event: ex.Switch})
	old := m.Worker()
	m.NewGeneration()
	cur := m.Worker()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	if err := old.Post(ex.Measured, 70); err != nil {
		t.Fatal(err)
	}
	if err := cur.Post(ex.Measured, 40); err != nil {
		t.Fatal(err)
	}
	var watts int
	if err := l.Do(func() { watts = m.Data.Watts }); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if watts != 40 {
		t.Fatalf("watts = %d, want 40 (the stale 70 must be dropped)", watts)
	}
	if s := l.Stats(); s.StaleGen != 1 {
		t.Fatalf("staleGen = %d", s.StaleGen)
	}
}

// A machine removed and added again under the same id is a new machine: a
// worker of the old one, which started its attempt at the same point of
// its life, must not post into it (found by the model check: a foreign
// relay re-opened after a stop took the old dial's late "up").
func TestRemovedMachinesWorkersDropped(t *testing.T) {
	l, m, _ := newLamp(t, &ex.Lamp{})
	l.Deliver(fsm.Envelope{To: m.ID(), Event: ex.Switch})
	m.NewGeneration()
	old := m.Worker()
	l.Remove(m.ID())
	again, err := fsm.Add(l, ex.LampSpec, m.ID(), &ex.Lamp{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Deliver(fsm.Envelope{To: again.ID(), Event: ex.Switch})
	again.NewGeneration() // the same attempt of its life as old's
	if again.Gen() == old.Gen() {
		t.Fatalf("the new machine's generation %d is the removed one's", again.Gen())
	}
	l.Deliver(fsm.Envelope{To: old.To(), Event: ex.Measured, Data: 70, Gen: old.Gen()})
	if again.Data.Watts != 0 {
		t.Fatalf("watts = %d: the removed machine's worker posted into the new one", again.Data.Watts)
	}
	if s := l.Stats(); s.StaleGen != 1 {
		t.Fatalf("staleGen = %d", s.StaleGen)
	}
}

func TestRaiseRunsAfterCurrentCompletes(t *testing.T) {
	type data struct{ log []string }
	spec := fsm.MustCompile(fsm.Spec[*data]{
		Kind: "raiser", Initial: "a", Events: []fsm.Event{"go", "next", "again"},
		States: []fsm.StateDef[*data]{
			{Name: "a", Exit: func(m *fsm.Machine[*data], _ fsm.Envelope) {
				m.Raise("next", nil) // raised while leaving a: must wait for the entry of b
				m.Data.log = append(m.Data.log, "exit a")
			}},
			{Name: "b", Entry: func(m *fsm.Machine[*data], _ fsm.Envelope) {
				m.Raise("again", nil)
				m.Data.log = append(m.Data.log, "enter b")
			}},
			{Name: "c", Ignore: []fsm.Event{"go", "next", "again"}},
		},
		Transitions: []fsm.Transition[*data]{
			{From: "a", Event: "go", To: "b", Action: func(m *fsm.Machine[*data], _ fsm.Envelope) {
				m.Data.log = append(m.Data.log, "action go")
			}},
			{From: "a", Event: "next", To: "c"}, {From: "a", Event: "again", To: "c"},
			{From: "b", Event: "next", Action: func(m *fsm.Machine[*data], _ fsm.Envelope) { m.Data.log = append(m.Data.log, "next in b") }},
			{From: "b", Event: "again", To: "c", Action: func(m *fsm.Machine[*data], _ fsm.Envelope) { m.Data.log = append(m.Data.log, "again in b") }},
			{From: "b", Event: "go"},
		},
	})
	fsmtest.AssertTotal(t, spec)
	l := fsm.NewLoop(fsm.Options{})
	d := &data{}
	m, _ := fsm.Add(l, spec, "r", d, nil)
	l.Deliver(fsm.Envelope{To: "r", Event: "go"})
	want := []string{"exit a", "action go", "enter b", "next in b", "again in b"}
	if !slices.Equal(d.log, want) || m.State() != "c" {
		t.Fatalf("log %q state %s, want %q c", d.log, m.State(), want)
	}
}

func TestSpecValidation(t *testing.T) {
	type S = fsm.Spec[struct{}]
	type St = fsm.StateDef[struct{}]
	type T = fsm.Transition[struct{}]
	tests := []struct {
		name string
		spec S
	}{
		{"no kind", S{Initial: "a", States: []St{{Name: "a"}}}},
		{"unknown initial", S{Kind: "k", Initial: "x", States: []St{{Name: "a"}}}},
		{"duplicate state", S{Kind: "k", Initial: "a", States: []St{{Name: "a"}, {Name: "a"}}}},
		{"unknown parent", S{Kind: "k", Initial: "a", States: []St{{Name: "a", Parent: "p"}}}},
		{"composite without initial", S{Kind: "k", Initial: "p", States: []St{{Name: "p"}, {Name: "p.a", Parent: "p"}}}},
		{"initial not a child", S{Kind: "k", Initial: "p", States: []St{{Name: "p", Initial: "b"}, {Name: "p.a", Parent: "p"}, {Name: "b"}}}},
		{"leaf with initial", S{Kind: "k", Initial: "a", States: []St{{Name: "a", Initial: "a"}}}},
		{"undeclared event", S{Kind: "k", Initial: "a", States: []St{{Name: "a"}}, Transitions: []T{{From: "a", Event: "e", To: "a"}}}},
		{"unknown target", S{Kind: "k", Initial: "a", Events: []fsm.Event{"e"}, States: []St{{Name: "a"}}, Transitions: []T{{From: "a", Event: "e", To: "z"}}}},
		{"ignore undeclared", S{Kind: "k", Initial: "a", States: []St{{Name: "a", Ignore: []fsm.Event{"e"}}}}},
		{"parent cycle", S{Kind: "k", Initial: "a", States: []St{{Name: "a", Parent: "b", Initial: "b"}, {Name: "b", Parent: "a", Initial: "a"}}}},
		{"two unguarded targets", S{Kind: "k", Initial: "a", Events: []fsm.Event{"e"}, States: []St{{Name: "a"}, {Name: "b"}, {Name: "c"}},
			Transitions: []T{{From: "a", Event: "e", To: "b"}, {From: "a", Event: "e", To: "c"}}}},
		{"nameless guard", S{Kind: "k", Initial: "a", Events: []fsm.Event{"e"}, States: []St{{Name: "a"}, {Name: "b"}},
			Transitions: []T{{From: "a", Event: "e", To: "b", Guard: &fsm.Guard[struct{}]{}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := fsm.Compile(tt.spec); err == nil {
				t.Fatal("Compile accepted a bad spec")
			}
		})
	}
}

func TestDuplicateID(t *testing.T) {
	l := fsm.NewLoop(fsm.Options{})
	if _, err := fsm.Add(l, ex.LampSpec, "x", &ex.Lamp{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := fsm.Add(l, ex.LampSpec, "x", &ex.Lamp{}, nil); err == nil {
		t.Fatal("duplicate id accepted")
	}
}
