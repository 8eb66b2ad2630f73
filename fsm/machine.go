package fsm

import (
	"context"
	"errors"
	"time"

	looplab "github.com/looplab/fsm"
	"go.uber.org/zap"
)

// EventStart is the event recorded when a machine is created and enters its
// initial state. It needs no declaration in a Spec.
const EventStart Event = "start"

// Node is a machine of any kind, as its supervisor and the loop see it.
type Node interface {
	node
}

// Machine is one instance of a machine kind. Its fields are owned by the loop
// goroutine: actions use them freely, nothing else touches them.
type Machine[C any] struct {
	// Data is the machine's own data, for its actions.
	Data C

	c    *Compiled[C]
	id   string
	loop *Loop
	// cur is the index of the current leaf state: the one place it lives.
	// Every state change goes through the looplab FSM of the machine's kind
	// in its loop (lf, shared by every machine of the kind there: set to cur,
	// then Event), so looplab validates it against the flat table Compile
	// built from the same spec. One looplab FSM per machine held a copy of
	// the table (~6 KiB per peer machine, 60 MiB of pointers for the GC to
	// scan at 10 000 peers); the loop goroutine owns the shared one.
	cur    int
	lf     *looplab.FSM
	since  time.Time
	gen    uint64
	owner  int // state that owns timers armed now
	timers []armed
	parent node
	kids   map[string]*childSet
	done   bool

	lastFrom, lastTo int // of the last transition, for routing
}

type armed struct {
	id    uint64
	owner int
	t     Timer
}

type childSet struct {
	list []node
	idx  map[string]int
}

// Add creates a machine of kind c with id, enters its initial state (running
// entry actions), and registers it in the loop, under parent if not nil.
// Only for the loop goroutine, or before Run.
func Add[C any](l *Loop, c *Compiled[C], id string, data C, parent Node) (*Machine[C], error) {
	m := &Machine[C]{
		Data: data, c: c, id: id, loop: l, since: l.now(), gen: l.nextGen(),
		lastFrom: -1, lastTo: c.initial, cur: c.initial,
	}
	m.lf = l.table(c, func() *looplab.FSM { return looplab.NewFSM(string(c.name(c.initial)), c.looplab, nil) })
	var p node
	if parent != nil {
		p = parent
	}
	if err := l.add(m, p); err != nil {
		return nil, err
	}
	e := Envelope{To: id, Event: EventStart}
	m.enter(-1, c.initial, e)
	m.finish(-1, EventStart, e, false)
	return m, nil
}

// ID returns the machine's id.
func (m *Machine[C]) ID() string { return m.id }

// Kind returns the machine's kind.
func (m *Machine[C]) Kind() string { return m.c.spec.Kind }

// State returns the current leaf state.
func (m *Machine[C]) State() State { return m.c.name(m.cur) }

// leaf is the index of the current leaf state.
func (m *Machine[C]) leaf() int { return m.cur }

// Since returns when the current state was entered.
func (m *Machine[C]) Since() time.Time { return m.since }

// In reports whether the current state is s or inside s.
func (m *Machine[C]) In(s State) bool {
	i, ok := m.c.stateIdx[s]
	return ok && m.c.within(m.leaf(), i)
}

// Gen returns the current generation.
func (m *Machine[C]) Gen() uint64 { return m.gen }

// NewGeneration starts a new generation: events posted by workers of older
// generations are dropped from now on. Call it when starting a new attempt.
// Generations are unique in the loop, not only in the machine: a machine
// removed and added again under its id does not take its predecessor's
// workers' events for its own.
func (m *Machine[C]) NewGeneration() uint64 {
	m.gen = m.loop.nextGen()
	return m.gen
}

// Loop returns the loop that owns the machine.
func (m *Machine[C]) Loop() *Loop { return m.loop }

// Log returns the loop's logger.
func (m *Machine[C]) Log() *zap.Logger { return m.loop.log }

// Raise queues an event for this machine behind the current one.
func (m *Machine[C]) Raise(ev Event, data any) {
	m.loop.local.push(Envelope{To: m.id, Event: ev, Data: data})
}

// Send queues an event for another machine behind the current one.
func (m *Machine[C]) Send(to string, ev Event, data any) {
	m.loop.local.push(Envelope{To: to, Event: ev, Data: data})
}

// Parent returns the machine's supervisor, or nil.
func (m *Machine[C]) Parent() Node {
	if m.parent == nil {
		return nil
	}
	return m.parent
}

// Notify queues an event for the machine's supervisor (dropped if it has
// none): how a machine hands data to its supervisor (a network map, say),
// where a route would carry only the fact of a transition.
func (m *Machine[C]) Notify(ev Event, data any) {
	if m.parent != nil {
		m.loop.local.push(Envelope{To: m.parent.ID(), Event: ev, Data: data, Cause: m.id})
	}
}

// Sender posts events to one machine, bound to one of its generations. Workers
// hold a Sender; they know nothing else of the machine.
type Sender struct {
	l   *Loop
	to  string
	gen uint64
}

// Post delivers an event from any goroutine (see Loop.Post).
func (s Sender) Post(ev Event, data any) error {
	return s.l.Post(Envelope{To: s.to, Event: ev, Data: data, Gen: s.gen})
}

// Gen returns the generation the Sender is bound to.
func (s Sender) Gen() uint64 { return s.gen }

// To returns the id of the machine the Sender posts to.
func (s Sender) To() string { return s.to }

// PostCause is Post with a cause recorded in the trace.
func (s Sender) PostCause(ev Event, data any, cause string) error {
	return s.l.Post(Envelope{To: s.to, Event: ev, Data: data, Gen: s.gen, Cause: cause})
}

// Worker returns a Sender bound to the machine's current generation.
func (m *Machine[C]) Worker() Sender { return Sender{l: m.loop, to: m.id, gen: m.gen} }

// TimerID names an armed timer.
type TimerID uint64

// After arms a timer that delivers ev to this machine after d. The timer
// belongs to the state being entered (when called from an entry action) or to
// the current leaf state otherwise, and is cancelled when that state is left.
// A timer cancelled after it fired but before its event was processed is
// dropped: a cancelled timer never fires.
func (m *Machine[C]) After(d time.Duration, ev Event, data any) TimerID {
	l := m.loop
	l.nextTimer++
	id := l.nextTimer
	e := Envelope{To: m.id, Event: ev, Data: data, timer: id}
	t := l.timers.AfterFunc(d, m.id, ev, func() { _ = l.Post(e) })
	m.timers = append(m.timers, armed{id: id, owner: m.owner, t: t})
	l.stats.timersArmed.Add(1)
	return TimerID(id)
}

// AfterIn is After for a timer that belongs to state s, one the machine is
// in (the leaf or one of its ancestors), instead of the current leaf: an
// internal row of a composite state that re-arms the composite's deadline
// keeps it across moves between the composite's children. If the machine is
// not in s the timer belongs to the current leaf, as with After.
func (m *Machine[C]) AfterIn(s State, d time.Duration, ev Event, data any) TimerID {
	if i, ok := m.c.stateIdx[s]; ok && m.In(s) {
		saved := m.owner
		m.owner = i
		defer func() { m.owner = saved }()
	}
	return m.After(d, ev, data)
}

// Cancel disarms a timer; a no-op if it already fired or was cancelled.
func (m *Machine[C]) Cancel(id TimerID) {
	for i := range m.timers {
		if m.timers[i].id == uint64(id) {
			m.timers[i].t.Stop()
			m.dropTimer(i)
			return
		}
	}
}

// Timers returns how many timers the machine has armed.
func (m *Machine[C]) Timers() int { return len(m.timers) }

// TimerOwners returns, for each armed timer, the state it belongs to (it is
// cancelled when that state is left). The model check asserts that the
// machine is in every one of them.
func (m *Machine[C]) TimerOwners() []State {
	out := make([]State, len(m.timers))
	for i, t := range m.timers {
		out[i] = m.c.name(t.owner)
	}
	return out
}

func (m *Machine[C]) dropTimer(i int) {
	last := len(m.timers) - 1
	m.timers[i] = m.timers[last]
	m.timers[last] = armed{}
	m.timers = m.timers[:last]
	m.loop.stats.timersArmed.Add(-1)
}

func (m *Machine[C]) cancelOwnedBy(s int) {
	for i := 0; i < len(m.timers); {
		if m.timers[i].owner == s {
			m.timers[i].t.Stop()
			m.dropTimer(i)
			continue
		}
		i++
	}
}

// Broadcast queues ev for every child of kind whose state is in (or inside)
// state in ("" = every child). Children are visited in the order they were
// added, except that removals reorder (swap-remove).
func (m *Machine[C]) Broadcast(kind string, in State, ev Event, data any) int {
	cs := m.kids[kind]
	if cs == nil {
		return 0
	}
	n := 0
	for _, k := range cs.list {
		if in == "" || k.In(in) {
			m.loop.local.push(Envelope{To: k.ID(), Event: ev, Data: data})
			n++
		}
	}
	return n
}

// Children calls fn for every child of kind, in order; fn returns false to stop.
func (m *Machine[C]) Children(kind string, fn func(Node) bool) {
	if cs := m.kids[kind]; cs != nil {
		for _, k := range cs.list {
			if !fn(k) {
				return
			}
		}
	}
}

func (m *Machine[C]) dispatch(e Envelope) {
	l := m.loop
	if m.done {
		l.stats.unknownTarget.Add(1)
		return
	}
	if e.Gen != 0 && e.Gen != m.gen {
		l.stats.staleGen.Add(1)
		return
	}
	if e.timer != 0 {
		i := m.timerIndex(e.timer)
		if i < 0 {
			l.stats.staleTimer.Add(1)
			return
		}
		m.dropTimer(i)
		l.stats.timersFired.Add(1)
	}
	l.stats.dispatched.Add(1)
	ev, ok := m.c.eventIdx[e.Event]
	if !ok {
		m.unhandled(e)
		return
	}
	cl := &m.c.cells[m.leaf()*len(m.c.spec.Events)+ev]
	for _, ct := range cl.cands {
		if ct.t.Guard == nil || ct.t.Guard.Fn(m, e) {
			m.fire(ct, e)
			return
		}
	}
	if cl.ignored {
		l.stats.ignored.Add(1)
		return
	}
	m.unhandled(e)
}

func (m *Machine[C]) timerIndex(id uint64) int {
	for i := range m.timers {
		if m.timers[i].id == id {
			return i
		}
	}
	return -1
}

func (m *Machine[C]) unhandled(e Envelope) {
	m.loop.stats.unhandled.Add(1)
	m.loop.log.Warn("unexpected event: no declared outcome",
		zap.String("machine", m.id), zap.String("from", string(m.State())), zap.String("event", string(e.Event)))
}

func (m *Machine[C]) fire(ct *ctrans[C], e Envelope) {
	from, to := m.leaf(), ct.target
	if to < 0 {
		m.owner = from
		if a := ct.t.Action; a != nil {
			a(m, e)
		}
		m.loop.stats.internal.Add(1)
		m.finish(from, e.Event, e, true)
		return
	}
	top := ct.top
	for s := from; s != top; s = m.c.states[s].parent {
		if x := m.c.states[s].def.Exit; x != nil {
			m.owner = s
			x(m, e)
		}
		// After the exit action: a timer it armed belongs to the state
		// being left and goes with it.
		m.cancelOwnedBy(s)
	}
	m.lf.SetState(string(m.c.name(from)))
	if err := m.lf.Event(context.Background(), ct.lname); err != nil && !errors.As(err, &looplab.NoTransitionError{}) {
		// The tables are built from the same spec; this is a framework bug.
		m.loop.log.Warn("unexpected looplab error", zap.String("machine", m.id), zap.Error(err))
	}
	m.cur = to
	m.since = m.loop.clock
	m.owner = to
	if a := ct.t.Action; a != nil {
		a(m, e)
	}
	m.enter(top, to, e)
	m.loop.stats.transitions.Add(1)
	m.lastFrom, m.lastTo = from, to
	m.finish(from, e.Event, e, false)
}

// enter runs entry actions from below top down to leaf.
func (m *Machine[C]) enter(top, leaf int, e Envelope) {
	var stack [16]int
	path := stack[:0]
	for s := leaf; s != top; s = m.c.states[s].parent {
		path = append(path, s)
	}
	for i := len(path) - 1; i >= 0; i-- {
		s := path[i]
		if a := m.c.states[s].def.Entry; a != nil {
			m.owner = s
			a(m, e)
		}
	}
	m.owner = leaf
}

func (m *Machine[C]) finish(from int, ev Event, e Envelope, internal bool) {
	r := Record{Machine: m.id, Kind: m.c.spec.Kind, Event: ev, To: m.State(), At: m.since,
		Internal: internal, Cause: e.Cause, Gen: m.gen}
	if from >= 0 {
		r.From = m.c.name(from)
	}
	if internal {
		r.At = m.loop.clock
	}
	m.loop.record(r)
	if !internal && m.parent != nil {
		m.parent.routeChild(r, m)
	}
}

// entered reports whether the last transition entered state s.
func (m *Machine[C]) entered(s State) bool {
	i, ok := m.c.stateIdx[s]
	return ok && m.c.within(m.lastTo, i) && (m.lastFrom < 0 || !m.c.within(m.lastFrom, i))
}

// left reports whether the last transition left state s.
func (m *Machine[C]) left(s State) bool {
	i, ok := m.c.stateIdx[s]
	return ok && m.lastFrom >= 0 && m.c.within(m.lastFrom, i) && !m.c.within(m.lastTo, i)
}

func (m *Machine[C]) routeChild(r Record, child node) {
	for _, rt := range m.c.spec.Routes {
		if rt.Kind != r.Kind {
			continue
		}
		if (rt.Enter != "" && child.entered(rt.Enter)) || (rt.Leave != "" && child.left(rt.Leave)) {
			m.loop.local.push(Envelope{To: m.id, Event: rt.Raise, Data: r, Cause: r.Machine})
		}
	}
}

func (m *Machine[C]) attach(p node) { m.parent = p }

func (m *Machine[C]) addChild(n node) {
	if m.kids == nil {
		m.kids = map[string]*childSet{}
	}
	cs := m.kids[n.Kind()]
	if cs == nil {
		cs = &childSet{idx: map[string]int{}}
		m.kids[n.Kind()] = cs
	}
	cs.idx[n.ID()] = len(cs.list)
	cs.list = append(cs.list, n)
}

func (m *Machine[C]) removeChild(n node) {
	cs := m.kids[n.Kind()]
	if cs == nil {
		return
	}
	i, ok := cs.idx[n.ID()]
	if !ok {
		return
	}
	last := len(cs.list) - 1
	cs.list[i] = cs.list[last]
	cs.idx[cs.list[i].ID()] = i
	cs.list[last] = nil
	cs.list = cs.list[:last]
	delete(cs.idx, n.ID())
}

// stop cancels every timer and makes the machine deaf. Late events for it are
// counted as unknown-target drops.
func (m *Machine[C]) stop() {
	if m.done {
		return
	}
	m.done = true
	for len(m.timers) > 0 {
		m.timers[0].t.Stop()
		m.dropTimer(0)
	}
	m.gen = m.loop.nextGen()
	if m.parent != nil {
		m.parent.removeChild(m)
	}
}
