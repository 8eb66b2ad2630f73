package fsm

import (
	"fmt"
	"slices"

	looplab "github.com/looplab/fsm"
)

// Compiled is a validated Spec with its dispatch table precomputed: for every
// (leaf state, event) the transitions to try in order (closest state first)
// or the ignore that ends the search. It is immutable and shared by every
// machine of the kind.
type Compiled[C any] struct {
	spec     Spec[C]
	states   []stateInfo[C]
	stateIdx map[State]int
	eventIdx map[Event]int
	cells    []cell[C] // [leaf*len(events)+event]
	looplab  []looplab.EventDesc
	initial  int // leaf entered at creation
}

type stateInfo[C any] struct {
	def      *StateDef[C]
	parent   int // -1 at top level
	initial  int // for composites: the child entered by default
	children []int
	depth    int
}

type cell[C any] struct {
	cands   []*ctrans[C]
	ignored bool // the search ends in a declared ignore
	at      int  // state that ignores (for the totality report)
}

type ctrans[C any] struct {
	t      *Transition[C]
	from   int
	target int // leaf index; -1 for an internal transition
	// top is the state that is neither left nor re-entered (-1: the root):
	// exits run from the current leaf up to it, entries from it down to
	// target. UML's external semantics: a transition from a state to itself
	// or to its own substate leaves and re-enters the state.
	top   int
	lname string
}

// Compile validates s and builds its dispatch and looplab tables.
func Compile[C any](s Spec[C]) (*Compiled[C], error) {
	c := &Compiled[C]{spec: s, stateIdx: map[State]int{}, eventIdx: map[Event]int{}}
	if s.Kind == "" {
		return nil, fmt.Errorf("%w: empty kind", ErrBadSpec)
	}
	for i := range s.States {
		d := &c.spec.States[i]
		if d.Name == "" {
			return nil, fmt.Errorf("%w: %s: state %d has no name", ErrBadSpec, s.Kind, i)
		}
		if d.Name == Root {
			return nil, fmt.Errorf("%w: %s: %q names the machine's root, not a state", ErrBadSpec, s.Kind, Root)
		}
		if _, dup := c.stateIdx[d.Name]; dup {
			return nil, fmt.Errorf("%w: %s: state %q declared twice", ErrBadSpec, s.Kind, d.Name)
		}
		c.stateIdx[d.Name] = i
		c.states = append(c.states, stateInfo[C]{def: d, parent: -1, initial: -1})
	}
	for i, e := range s.Events {
		if _, dup := c.eventIdx[e]; dup {
			return nil, fmt.Errorf("%w: %s: event %q declared twice", ErrBadSpec, s.Kind, e)
		}
		c.eventIdx[e] = i
	}
	for i := range c.states {
		d := c.states[i].def
		if d.Parent != "" {
			p, ok := c.stateIdx[d.Parent]
			if !ok {
				return nil, fmt.Errorf("%w: %s: state %q has unknown parent %q", ErrBadSpec, s.Kind, d.Name, d.Parent)
			}
			c.states[i].parent = p
			c.states[p].children = append(c.states[p].children, i)
		}
		if err := c.checkIgnores(d.Name, d.Ignore); err != nil {
			return nil, err
		}
	}
	if err := c.checkIgnores(Root, s.Ignore); err != nil {
		return nil, err
	}
	for i := range c.states {
		depth := 0
		for p := c.states[i].parent; p >= 0; p = c.states[p].parent {
			if depth++; depth > len(c.states) {
				return nil, fmt.Errorf("%w: %s: parent cycle at %q", ErrBadSpec, s.Kind, c.states[i].def.Name)
			}
		}
		c.states[i].depth = depth
		d := c.states[i].def
		if len(c.states[i].children) > 0 {
			ini, ok := c.stateIdx[d.Initial]
			if !ok || c.states[ini].parent != i {
				return nil, fmt.Errorf("%w: %s: composite %q needs an Initial child, has %q", ErrBadSpec, s.Kind, d.Name, d.Initial)
			}
			c.states[i].initial = ini
		} else if d.Initial != "" {
			return nil, fmt.Errorf("%w: %s: leaf %q has an Initial", ErrBadSpec, s.Kind, d.Name)
		}
	}
	ini, ok := c.stateIdx[s.Initial]
	if !ok {
		return nil, fmt.Errorf("%w: %s: unknown initial state %q", ErrBadSpec, s.Kind, s.Initial)
	}
	c.initial = c.leafOf(ini)

	trans := make([]ctrans[C], len(s.Transitions))
	byFrom := map[[2]int][]*ctrans[C]{} // (state, event) → transitions in declaration order
	for i := range c.spec.Transitions {
		t := &c.spec.Transitions[i]
		from, ok := c.stateIdx[t.From]
		if t.From == Root {
			from, ok = -1, true
			if t.To != "" {
				// An edge from every state would hide the diagram; a
				// transition that changes state belongs to a real state.
				return nil, fmt.Errorf("%w: %s: %s from the root must be internal (To \"\")", ErrBadSpec, s.Kind, t.Event)
			}
		}
		if !ok {
			return nil, fmt.Errorf("%w: %s: transition from unknown state %q", ErrBadSpec, s.Kind, t.From)
		}
		ev, ok := c.eventIdx[t.Event]
		if !ok {
			return nil, fmt.Errorf("%w: %s: transition on undeclared event %q", ErrBadSpec, s.Kind, t.Event)
		}
		ct := &trans[i]
		*ct = ctrans[C]{t: t, from: from, target: -1, lname: string(t.Event)}
		if t.Guard != nil {
			if t.Guard.Name == "" || t.Guard.Fn == nil {
				return nil, fmt.Errorf("%w: %s: guard on %s/%s needs a name and a function", ErrBadSpec, s.Kind, t.From, t.Event)
			}
			ct.lname += "[" + t.Guard.Name + "]"
		}
		if t.To == t.From && !t.Reenter {
			return nil, fmt.Errorf("%w: %s: %s on %s targets its own state: set Reenter (leave and enter again) or To \"\" (internal)",
				ErrBadSpec, s.Kind, t.Event, t.From)
		}
		if t.Reenter && t.To != t.From {
			return nil, fmt.Errorf("%w: %s: %s on %s: Reenter is for To == From", ErrBadSpec, s.Kind, t.Event, t.From)
		}
		if t.To != "" {
			to, ok := c.stateIdx[t.To]
			if !ok {
				return nil, fmt.Errorf("%w: %s: transition to unknown state %q", ErrBadSpec, s.Kind, t.To)
			}
			ct.target = c.leafOf(to)
			ct.top = c.lca(from, to)
			if ct.top == from || ct.top == to {
				ct.top = c.states[ct.top].parent
			}
		}
		k := [2]int{from, ev}
		if prev := byFrom[k]; len(prev) > 0 && prev[len(prev)-1].t.Guard == nil {
			return nil, fmt.Errorf("%w: %s: %s on %s is unreachable after an unguarded transition", ErrBadSpec, s.Kind, t.Event, t.From)
		}
		if t.Guard == nil && slices.Contains(c.ignores(from), t.Event) {
			return nil, fmt.Errorf("%w: %s: %s both handles and ignores %s: declare one outcome", ErrBadSpec, s.Kind, t.From, t.Event)
		}
		byFrom[k] = append(byFrom[k], ct)
	}

	// Precompute, for each leaf and event, the candidates from the leaf up.
	ne := len(s.Events)
	c.cells = make([]cell[C], len(c.states)*ne)
	type lkey struct {
		name string
		src  int
	}
	seen := map[lkey]int{}
	for leaf := range c.states {
		if len(c.states[leaf].children) > 0 {
			continue
		}
		for ev := range s.Events {
			cl := &c.cells[leaf*ne+ev]
			// Precedence: from the leaf up to the root, the first state
			// that declares an outcome decides. Within one state, its
			// transitions come first (guarded ones in order, each falling
			// through when its guard fails), then its ignore.
		walk:
			for st := leaf; ; st = c.states[st].parent {
				for _, ct := range byFrom[[2]int{st, ev}] {
					cl.cands = append(cl.cands, ct)
					if ct.t.Guard == nil {
						break walk
					}
				}
				if slices.Contains(c.ignores(st), s.Events[ev]) {
					cl.ignored, cl.at = true, st
					break walk
				}
				if st < 0 {
					break
				}
			}
			for _, ct := range cl.cands {
				target := ct.target
				if target < 0 {
					continue // internal: looplab is not involved
				}
				k := lkey{ct.lname, leaf}
				if prev, dup := seen[k]; dup && prev != target {
					return nil, fmt.Errorf("%w: %s: %s from %s has two targets; give the transitions distinct guards", ErrBadSpec, s.Kind, ct.lname, c.states[leaf].def.Name)
				}
				if _, dup := seen[k]; !dup {
					seen[k] = target
					c.looplab = append(c.looplab, looplab.EventDesc{
						Name: ct.lname, Src: []string{string(c.states[leaf].def.Name)}, Dst: string(c.states[target].def.Name),
					})
				}
			}
		}
	}
	return c, nil
}

// ignores returns the events state i ignores; -1 is the root.
func (c *Compiled[C]) ignores(i int) []Event {
	if i < 0 {
		return c.spec.Ignore
	}
	return c.states[i].def.Ignore
}

// checkIgnores validates one ignore list.
func (c *Compiled[C]) checkIgnores(st State, ign []Event) error {
	for i, e := range ign {
		if _, ok := c.eventIdx[e]; !ok {
			return fmt.Errorf("%w: %s: state %q ignores undeclared event %q", ErrBadSpec, c.spec.Kind, st, e)
		}
		if slices.Contains(ign[:i], e) {
			return fmt.Errorf("%w: %s: state %q ignores %q twice", ErrBadSpec, c.spec.Kind, st, e)
		}
	}
	return nil
}

// MustCompile is Compile for package-level specs: a bad spec is a programming
// error found by the package's first test.
func MustCompile[C any](s Spec[C]) *Compiled[C] {
	c, err := Compile(s)
	if err != nil {
		panic(err)
	}
	return c
}

// Kind returns the machine kind.
func (c *Compiled[C]) Kind() string { return c.spec.Kind }

// Spec returns the spec the table was compiled from.
func (c *Compiled[C]) Spec() *Spec[C] { return &c.spec }

// leafOf resolves a state to the leaf entered when it is targeted.
func (c *Compiled[C]) leafOf(i int) int {
	for c.states[i].initial >= 0 {
		i = c.states[i].initial
	}
	return i
}

// within reports whether state i is s or one of its descendants.
func (c *Compiled[C]) within(i, s int) bool {
	for ; i >= 0; i = c.states[i].parent {
		if i == s {
			return true
		}
	}
	return false
}

// lca returns the least common ancestor of a and b (-1: the root).
func (c *Compiled[C]) lca(a, b int) int {
	for c.states[a].depth > c.states[b].depth {
		a = c.states[a].parent
	}
	for c.states[b].depth > c.states[a].depth {
		b = c.states[b].parent
	}
	for a != b {
		a, b = c.states[a].parent, c.states[b].parent
	}
	return a
}

func (c *Compiled[C]) name(i int) State {
	if i < 0 {
		return Root
	}
	return c.states[i].def.Name
}
