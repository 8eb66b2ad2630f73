package fsm_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
)

// The hierarchy used by the inheritance tables: p is a composite with
// children p.a and p.b; q is a top-level leaf. The root (fsm.Root) is the
// parent of p and q.
func inheritSpec(root []fsm.Event, states map[fsm.State][]fsm.Event, rows ...fsm.Transition[*tdata]) fsm.Spec[*tdata] {
	st := []fsm.StateDef[*tdata]{
		{Name: "p", Initial: "p.a"},
		{Name: "p.a", Parent: "p"},
		{Name: "p.b", Parent: "p"},
		{Name: "q"},
	}
	for i := range st {
		st[i].Ignore = states[st[i].Name]
	}
	return fsm.Spec[*tdata]{Kind: "inherit", Initial: "p.a", Events: []fsm.Event{"e", "go"}, Ignore: root,
		States: st, Transitions: rows}
}

func logs(s string) fsm.Action[*tdata] {
	return func(m *fsm.Machine[*tdata], _ fsm.Envelope) { m.Data.log = append(m.Data.log, s) }
}

var yes = &fsm.Guard[*tdata]{Name: "yes", Fn: func(*fsm.Machine[*tdata], fsm.Envelope) bool { return true }}
var no = &fsm.Guard[*tdata]{Name: "no", Fn: func(*fsm.Machine[*tdata], fsm.Envelope) bool { return false }}

// Precedence, from the leaf up to the root: the first state that declares
// an outcome for the event decides; within a state, its transitions (in
// order, guarded ones falling through), then its ignore.
func TestInheritedOutcomes(t *testing.T) {
	for _, tt := range []struct {
		name   string
		spec   fsm.Spec[*tdata]
		at     fsm.State // where the outcome of (p.a, e) is declared
		kind   fsm.OutcomeKind
		log    []string // after delivering e in p.a
		state  fsm.State
		ignore uint64
	}{
		{name: "parent's ignore is inherited",
			spec: inheritSpec(nil, map[fsm.State][]fsm.Event{"p": {"e"}, "q": {"e"}}),
			at:   "p", kind: fsm.Ignored, state: "p.a", ignore: 1},
		{name: "root's ignore is inherited",
			spec: inheritSpec([]fsm.Event{"e"}, nil),
			at:   fsm.Root, kind: fsm.Ignored, state: "p.a", ignore: 1},
		{name: "child's transition beats the parent's ignore",
			spec: inheritSpec(nil, map[fsm.State][]fsm.Event{"p": {"e"}, "q": {"e"}},
				fsm.Transition[*tdata]{From: "p.a", Event: "e", To: "p.b", Action: logs("a→b")}),
			at: "p.a", kind: fsm.Changed, log: []string{"a→b"}, state: "p.b"},
		{name: "child's transition beats the root's ignore",
			spec: inheritSpec([]fsm.Event{"e"}, nil,
				fsm.Transition[*tdata]{From: "p.a", Event: "e", To: "q", Action: logs("a→q")}),
			at: "p.a", kind: fsm.Changed, log: []string{"a→q"}, state: "q"},
		{name: "child's ignore beats the parent's transition",
			spec: inheritSpec(nil, map[fsm.State][]fsm.Event{"p.a": {"e"}, "q": {"e"}},
				fsm.Transition[*tdata]{From: "p", Event: "e", To: "q", Action: logs("p→q")}),
			at: "p.a", kind: fsm.Ignored, state: "p.a", ignore: 1},
		{name: "child's ignore beats the root's internal transition",
			spec: inheritSpec(nil, map[fsm.State][]fsm.Event{"p.a": {"e"}},
				fsm.Transition[*tdata]{From: fsm.Root, Event: "e", Action: logs("root")}),
			at: "p.a", kind: fsm.Ignored, state: "p.a", ignore: 1},
		{name: "root's internal transition is inherited",
			spec: inheritSpec(nil, nil, fsm.Transition[*tdata]{From: fsm.Root, Event: "e", Action: logs("root")}),
			at:   fsm.Root, kind: fsm.Internal, log: []string{"root"}, state: "p.a"},
		{name: "parent's transition beats the root's",
			spec: inheritSpec(nil, nil,
				fsm.Transition[*tdata]{From: fsm.Root, Event: "e", Action: logs("root")},
				fsm.Transition[*tdata]{From: "p", Event: "e", Action: logs("p")}),
			at: "p", kind: fsm.Internal, log: []string{"p"}, state: "p.a"},
		{name: "a failed guard falls through to the parent's ignore",
			spec: inheritSpec(nil, map[fsm.State][]fsm.Event{"p": {"e"}, "q": {"e"}},
				fsm.Transition[*tdata]{From: "p.a", Event: "e", Guard: no, To: "q", Action: logs("no")}),
			at: "p", kind: fsm.Ignored, state: "p.a", ignore: 1},
		{name: "a guard that holds beats the parent's ignore",
			spec: inheritSpec(nil, map[fsm.State][]fsm.Event{"p": {"e"}, "q": {"e"}},
				fsm.Transition[*tdata]{From: "p.a", Event: "e", Guard: yes, To: "q", Action: logs("yes")}),
			at: "p", kind: fsm.Ignored, log: []string{"yes"}, state: "q"},
		{name: "a failed guard falls through to its own state's ignore",
			spec: inheritSpec(nil, map[fsm.State][]fsm.Event{"p.a": {"e"}, "p.b": {"e"}, "q": {"e"}},
				fsm.Transition[*tdata]{From: "p.a", Event: "e", Guard: no, To: "q", Action: logs("no")},
				fsm.Transition[*tdata]{From: "p", Event: "e", To: "q", Action: logs("p")}),
			at: "p.a", kind: fsm.Ignored, state: "p.a", ignore: 1},
		{name: "a failed guard falls through to the root's internal transition",
			spec: inheritSpec(nil, nil,
				fsm.Transition[*tdata]{From: "p.a", Event: "e", Guard: no, To: "q", Action: logs("no")},
				fsm.Transition[*tdata]{From: fsm.Root, Event: "e", Action: logs("root")}),
			at: fsm.Root, kind: fsm.Internal, log: []string{"root"}, state: "p.a"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// "go" is ignored everywhere, so that only e decides totality.
			tt.spec.Ignore = append(tt.spec.Ignore, "go")
			c, err := fsm.Compile(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(c.Outcomes(), func(o fsm.Outcome) bool { return o.State == "p.a" && o.Event == "e" })
			if o := c.Outcomes()[i]; o.At != tt.at || o.Kind != tt.kind {
				t.Errorf("outcome of (p.a, e): %s at %q, want %s at %q", o.Kind, o.At, tt.kind, tt.at)
			}
			var d tdata
			l := fsm.NewLoop(fsm.Options{})
			m, err := fsm.Add(l, c, "m", &d, nil)
			if err != nil {
				t.Fatal(err)
			}
			l.Deliver(fsm.Envelope{To: "m", Event: "e"})
			if m.State() != tt.state || !slices.Equal(d.log, tt.log) || l.Stats().Ignored != tt.ignore || l.Stats().Unhandled != 0 {
				t.Errorf("after e: state %s log %v ignored %d unhandled %d; want %s %v %d 0",
					m.State(), d.log, l.Stats().Ignored, l.Stats().Unhandled, tt.state, tt.log, tt.ignore)
			}
		})
	}
}

// The totality check counts what a state inherits, from its parents and
// from the root, and still names every leaf that has nothing.
func TestTotalityCountsInherited(t *testing.T) {
	for _, tt := range []struct {
		name    string
		spec    fsm.Spec[*tdata]
		missing []string
	}{
		{"root ignores all", inheritSpec([]fsm.Event{"e", "go"}, nil), nil},
		{"root internal and ignore", inheritSpec([]fsm.Event{"go"}, nil,
			fsm.Transition[*tdata]{From: fsm.Root, Event: "e", Action: logs("root")}), nil},
		{"parent covers its children only", inheritSpec([]fsm.Event{"go"}, map[fsm.State][]fsm.Event{"p": {"e"}}),
			[]string{"q × e"}},
		{"guard without fallback", inheritSpec([]fsm.Event{"go"}, map[fsm.State][]fsm.Event{"q": {"e"}},
			fsm.Transition[*tdata]{From: "p", Event: "e", Guard: yes, To: "q"}),
			[]string{"p.a × e", "p.b × e"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := fsm.Compile(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			var missing []string
			for _, o := range c.Outcomes() {
				if o.Kind == fsm.Missing {
					missing = append(missing, string(o.State)+" × "+string(o.Event))
				}
			}
			if !slices.Equal(missing, tt.missing) {
				t.Errorf("missing %v, want %v", missing, tt.missing)
			}
			if err := fsm.CheckTotal(c); (err != nil) != (len(tt.missing) > 0) || err != nil && !errors.Is(err, fsm.ErrNotTotal) {
				t.Errorf("CheckTotal: %v", err)
			}
		})
	}
}

// Declarations that would mean two things are spec errors.
func TestInheritanceSpecErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec fsm.Spec[*tdata]
	}{
		{"state both ignores and handles", inheritSpec(nil, map[fsm.State][]fsm.Event{"q": {"e"}},
			fsm.Transition[*tdata]{From: "q", Event: "e", To: "p"})},
		{"root both ignores and handles", inheritSpec([]fsm.Event{"e"}, nil,
			fsm.Transition[*tdata]{From: fsm.Root, Event: "e", Action: logs("root")})},
		{"root transition with a target", inheritSpec(nil, nil,
			fsm.Transition[*tdata]{From: fsm.Root, Event: "e", To: "q"})},
		{"ignored twice", inheritSpec(nil, map[fsm.State][]fsm.Event{"q": {"e", "e"}})},
		{"root ignores an undeclared event", inheritSpec([]fsm.Event{"nope"}, nil)},
		{"a state named like the root", func() fsm.Spec[*tdata] {
			s := inheritSpec(nil, nil)
			s.States = append(s.States, fsm.StateDef[*tdata]{Name: fsm.Root})
			return s
		}()},
	} {
		if _, err := fsm.Compile(tt.spec); !errors.Is(err, fsm.ErrBadSpec) {
			t.Errorf("%s: err %v, want ErrBadSpec", tt.name, err)
		}
	}
	// A guarded transition and an ignore in one state is a guard with a
	// fallback, not a conflict.
	if _, err := fsm.Compile(inheritSpec(nil, map[fsm.State][]fsm.Event{"q": {"e"}},
		fsm.Transition[*tdata]{From: "q", Event: "e", Guard: yes, To: "p"})); err != nil {
		t.Errorf("guarded transition with an ignore fallback: %v", err)
	}
}

// The root's declarations show in the tables, not as edges.
func TestRootInDiagrams(t *testing.T) {
	c := fsm.MustCompile(inheritSpec([]fsm.Event{"go"}, nil,
		fsm.Transition[*tdata]{From: fsm.Root, Event: "e", Action: logs("root")}))
	d := c.Describe()
	if !slices.Equal(d.Ignore, []fsm.Event{"go"}) || len(d.Transitions) != 1 || !d.Transitions[0].Internal {
		t.Fatalf("description %+v", d)
	}
	md := fsm.Markdown(c)
	for _, want := range []string{"| `*` | `e` |  | (internal) |", "| `*` (every state) | `go` |", "declared outcome: yes"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	bare := fsm.MustCompile(inheritSpec([]fsm.Event{"go"}, map[fsm.State][]fsm.Event{"p": {"e"}, "q": {"e"}}))
	if got, want := fsm.Mermaid(d), fsm.Mermaid(bare.Describe()); got != want {
		t.Errorf("mermaid draws the root's row:\n%s\nwant\n%s", got, want)
	}
	if got, want := fsm.DOT(d), fsm.DOT(bare.Describe()); got != want {
		t.Errorf("DOT draws the root's row:\n%s\nwant\n%s", got, want)
	}
}
