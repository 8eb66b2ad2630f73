package docgen

import (
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/example"
	"github.com/nbfsm/nbfsm/internal/netmon"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// actionOf returns, for a compiled spec, the name of the action of the
// transition that decides an outcome ("" for an ignore or no action): two
// internal transitions with different actions are not the same outcome.
func actionOf[C any](c *fsm.Compiled[C]) func(fsm.Outcome) string {
	return func(o fsm.Outcome) string {
		if o.Kind != fsm.Changed && o.Kind != fsm.Internal {
			return ""
		}
		for _, t := range c.Spec().Transitions {
			if t.From == o.At && t.Event == o.Event && t.Guard == nil {
				if t.Action == nil {
					return ""
				}
				return runtime.FuncForPC(reflect.ValueOf(t.Action).Pointer()).Name()
			}
		}
		return ""
	}
}

// actions names the deciding action of every published machine's outcomes
// (by kind; see actionOf).
var actions = map[string]func(fsm.Outcome) string{
	example.LampSpec.Kind():     actionOf(example.LampSpec),
	example.PanelSpec.Kind():    actionOf(example.PanelSpec),
	engine.Spec.Kind():          actionOf(engine.Spec),
	mgmtfsm.Spec.Kind():         actionOf(mgmtfsm.Spec),
	signalfsm.Spec.Kind():       actionOf(signalfsm.Spec),
	peerfsm.Spec.Kind():         actionOf(peerfsm.Spec),
	netmon.Spec.Kind():          actionOf(netmon.Spec),
	relayfsm.Spec.Kind():        actionOf(relayfsm.Spec),
	relayfsm.ForeignSpec.Kind(): actionOf(relayfsm.ForeignSpec),
}

// repeated lists the events whose outcome (its kind, target, action and the
// guards tried before it) is the same in every leaf state but one and is
// declared in more than one place: rows a common parent (or the root)
// could hold once, with the one state as its exception. action names an
// outcome's deciding action (nil: actions are not told apart).
func repeated(d fsm.Describer, action func(fsm.Outcome) string) []fsm.Event {
	type outcome struct {
		kind    fsm.OutcomeKind
		to      fsm.State
		action  string
		guarded string
	}
	groups := map[fsm.Event]map[outcome][]fsm.State{} // by event, outcome: the declaring states
	for _, o := range d.Outcomes() {
		if groups[o.Event] == nil {
			groups[o.Event] = map[outcome][]fsm.State{}
		}
		k := outcome{kind: o.Kind, to: o.To, guarded: strings.Join(o.Guarded, ",")}
		if action != nil {
			k.action = action(o)
		}
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

// TestHouseRepeatedRows: the link machines, the engine and the peer declare
// no outcome in more than one place when every state but one shares it
// (fsm/link's shape, the root and the parents `active` and `member` hold
// those once). `go test -v -run TestHouse ./internal/docgen/` prints the
// count of every machine (docs/architecture.md, "The house"); the example
// machines and relay-foreign are only counted.
func TestHouseRepeatedRows(t *testing.T) {
	for _, d := range Machines() {
		kind := d.Describe().Kind
		action, ok := actions[kind]
		if !ok {
			t.Errorf("%s: no actions entry", kind)
		}
		r := repeated(d, action)
		t.Logf("%-14s %2d same outcome in every state but one, declared more than once: %v", kind, len(r), r)
		if (kind == "signal" || kind == "mgmt" || kind == "relay" || kind == "engine" || kind == "peer") && len(r) > 0 {
			t.Errorf("%s: %v repeat one outcome across states", kind, r)
		}
	}
}

// TestRepeatedCounts: the measure itself, on specs written to have one
// repeated row (b in s1 and s2, its exception in s3) beside one held once
// at the root (c, its exception in s3); the same b rows with two actions,
// or with a guard tried in one state only, are not one outcome.
func TestRepeatedCounts(t *testing.T) {
	type D struct{}
	nop := func(*fsm.Machine[*D], fsm.Envelope) {}
	other := func(*fsm.Machine[*D], fsm.Envelope) {}
	never := &fsm.Guard[*D]{Name: "never", Fn: func(*fsm.Machine[*D], fsm.Envelope) bool { return false }}
	spec := func(s2 ...fsm.Transition[*D]) *fsm.Compiled[*D] {
		return fsm.MustCompile(fsm.Spec[*D]{
			Kind: "t", Initial: "s1",
			Events: []fsm.Event{"a", "b", "c"},
			States: []fsm.StateDef[*D]{{Name: "s1"}, {Name: "s2"}, {Name: "s3"}},
			Ignore: []fsm.Event{"a", "c"},
			Transitions: append([]fsm.Transition[*D]{
				{From: "s1", Event: "b", Action: nop},
				{From: "s3", Event: "b", To: "s1"},
				{From: "s3", Event: "c", To: "s2"},
			}, s2...),
		})
	}
	for _, tt := range []struct {
		name string
		c    *fsm.Compiled[*D]
		want []fsm.Event
	}{
		{"same action", spec(fsm.Transition[*D]{From: "s2", Event: "b", Action: nop}), []fsm.Event{"b"}},
		{"another action", spec(fsm.Transition[*D]{From: "s2", Event: "b", Action: other}), nil},
		{"a guard tried first", spec(fsm.Transition[*D]{From: "s2", Event: "b", Guard: never, To: "s3"},
			fsm.Transition[*D]{From: "s2", Event: "b", Action: nop}), nil},
	} {
		if got := repeated(tt.c, actionOf(tt.c)); !slices.Equal(got, tt.want) {
			t.Errorf("%s: repeated %v, want %v", tt.name, got, tt.want)
		}
	}
}
