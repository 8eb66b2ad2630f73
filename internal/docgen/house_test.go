package docgen

import (
	"slices"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
)

// repeated lists the events whose outcome is the same in every leaf state
// but one and is declared in more than one place: rows a common parent (or
// the root) could hold once, with the one state as its exception.
func repeated(d fsm.Describer) []fsm.Event {
	type outcome struct {
		kind fsm.OutcomeKind
		to   fsm.State
	}
	groups := map[fsm.Event]map[outcome][]fsm.State{} // by event, outcome: the declaring states
	for _, o := range d.Outcomes() {
		if groups[o.Event] == nil {
			groups[o.Event] = map[outcome][]fsm.State{}
		}
		k := outcome{o.Kind, o.To}
		groups[o.Event][k] = append(groups[o.Event][k], o.At)
	}
	var out []fsm.Event
	for _, ev := range d.Describe().Events {
		g := groups[ev]
		if len(g) != 2 {
			continue
		}
		var most []fsm.State
		one := false
		for _, at := range g {
			switch {
			case len(at) == 1:
				one = true
			case len(at) > len(most):
				most = at
			}
		}
		if !one || most == nil {
			continue
		}
		slices.Sort(most)
		if len(slices.Compact(most)) > 1 {
			out = append(out, ev)
		}
	}
	return out
}

// TestHouseRepeatedRows: the link machines declare no outcome in more than
// one place when every state but one shares it (fsm/link's shape and root
// rows hold those once). `go test -v -run TestHouse ./internal/docgen/`
// prints the count of every machine (docs/architecture.md, "The house").
func TestHouseRepeatedRows(t *testing.T) {
	for _, d := range Machines() {
		kind := d.Describe().Kind
		r := repeated(d)
		t.Logf("%-14s %2d same outcome in every state but one, declared more than once: %v", kind, len(r), r)
		if (kind == "signal" || kind == "mgmt" || kind == "relay") && len(r) > 0 {
			t.Errorf("%s: %v repeat one outcome across states", kind, r)
		}
	}
}

// TestRepeatedCounts: the measure itself, on a spec written to have one
// repeated row (b in s1 and s2, its exception in s3) and one held once at
// the root (c, its exception in s3).
func TestRepeatedCounts(t *testing.T) {
	type D struct{}
	nop := func(*fsm.Machine[*D], fsm.Envelope) {}
	c := fsm.MustCompile(fsm.Spec[*D]{
		Kind: "t", Initial: "s1",
		Events: []fsm.Event{"a", "b", "c"},
		States: []fsm.StateDef[*D]{{Name: "s1"}, {Name: "s2"}, {Name: "s3"}},
		Ignore: []fsm.Event{"a", "c"},
		Transitions: []fsm.Transition[*D]{
			{From: "s1", Event: "b", Action: nop},
			{From: "s2", Event: "b", Action: nop},
			{From: "s3", Event: "b", To: "s1"},
			{From: "s3", Event: "c", To: "s2"},
		},
	})
	if got := repeated(c); !slices.Equal(got, []fsm.Event{"b"}) {
		t.Fatalf("repeated %v, want [b]", got)
	}
}
