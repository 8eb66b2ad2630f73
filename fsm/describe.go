package fsm

import (
	"fmt"
	"strings"
)

// Description is a Spec without its functions: what diagrams, tables and the
// totality check read.
type Description struct {
	Kind        string
	Doc         string
	Initial     State
	States      []StateDesc
	Events      []Event
	Ignore      []Event // the root's: inherited by every state
	Transitions []TransitionDesc
	Routes      []Route
}

// StateDesc describes one state.
type StateDesc struct {
	Name, Parent, Initial State
	Doc                   string
	Ignore                []Event
	Entry, Exit           bool
}

// TransitionDesc describes one declared transition.
type TransitionDesc struct {
	From     State
	Event    Event
	To       State // "" for internal
	Guard    string
	Action   bool
	Internal bool
	Doc      string
}

// Describer is implemented by every compiled spec, whatever its data type.
type Describer interface {
	Describe() Description
	Outcomes() []Outcome
}

// Describe returns the spec as plain data.
func (c *Compiled[C]) Describe() Description {
	s := &c.spec
	d := Description{Kind: s.Kind, Doc: s.Doc, Initial: s.Initial, Events: s.Events, Ignore: s.Ignore, Routes: s.Routes}
	for _, st := range s.States {
		d.States = append(d.States, StateDesc{Name: st.Name, Parent: st.Parent, Initial: st.Initial,
			Doc: st.Doc, Ignore: st.Ignore, Entry: st.Entry != nil, Exit: st.Exit != nil})
	}
	for _, t := range s.Transitions {
		td := TransitionDesc{From: t.From, Event: t.Event, To: t.To, Action: t.Action != nil, Doc: t.Doc}
		if t.Guard != nil {
			td.Guard = t.Guard.Name
		}
		td.Internal = t.To == "" || t.From != Root && t.To == t.From && len(c.states[c.stateIdx[t.From]].children) == 0
		d.Transitions = append(d.Transitions, td)
	}
	return d
}

// OutcomeKind says what an event does in a leaf state.
type OutcomeKind int

const (
	// Missing: no declared outcome. A total spec has none.
	Missing OutcomeKind = iota
	// Transition: the state changes.
	Changed
	// Internal: an action runs, the state does not change.
	Internal
	// Ignored: the event is deliberately dropped.
	Ignored
)

func (k OutcomeKind) String() string {
	switch k {
	case Changed:
		return "transition"
	case Internal:
		return "internal"
	case Ignored:
		return "ignored"
	}
	return "MISSING"
}

// Outcome is the declared outcome of one (leaf state, event) pair.
type Outcome struct {
	State State
	Event Event
	Kind  OutcomeKind
	// At is the state that declares the outcome: State itself, the
	// ancestor the event bubbles to, or Root.
	At State
	// To is the target of a transition. Guarded returns the guards tried
	// before the unguarded fallback.
	To      State
	Guarded []string
}

// Outcomes lists the outcome of every (leaf state, event) pair.
func (c *Compiled[C]) Outcomes() []Outcome {
	var out []Outcome
	ne := len(c.spec.Events)
	for leaf := range c.states {
		if len(c.states[leaf].children) > 0 {
			continue
		}
		for ev, e := range c.spec.Events {
			cl := &c.cells[leaf*ne+ev]
			o := Outcome{State: c.name(leaf), Event: e}
			for _, ct := range cl.cands {
				if ct.t.Guard != nil {
					o.Guarded = append(o.Guarded, ct.t.Guard.Name)
					continue
				}
				o.At = c.name(ct.from)
				if ct.target < 0 {
					o.Kind = Internal
				} else {
					o.Kind, o.To = Changed, c.name(ct.target)
				}
			}
			if o.Kind == Missing && cl.ignored {
				o.Kind, o.At = Ignored, c.name(cl.at)
			}
			out = append(out, o)
		}
	}
	return out
}

// CheckTotal returns an error naming every (leaf state, event) pair without a
// declared outcome. Guarded transitions count only with an unguarded
// fallback (a transition or an ignore) on the way up.
func CheckTotal(d Describer) error {
	var missing []string
	for _, o := range d.Outcomes() {
		if o.Kind == Missing {
			missing = append(missing, fmt.Sprintf("%s × %s", o.State, o.Event))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s: %s", ErrNotTotal, d.Describe().Kind, strings.Join(missing, ", "))
	}
	return nil
}
