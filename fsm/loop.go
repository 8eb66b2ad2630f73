package fsm

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	looplab "github.com/looplab/fsm"
	"go.uber.org/zap"
)

// Envelope is one event addressed to one machine.
type Envelope struct {
	To    string // machine id
	Event Event
	Data  any
	// Cause is a short reason recorded in the trace (an error text, say).
	Cause string
	// Gen, when non-zero, binds the event to a generation of the target: the
	// loop drops it if the machine has moved on to a newer one.
	Gen uint64

	timer uint64 // non-zero: sent by a timer, dropped unless still armed
	fn    func() // non-nil: Do
}

// node is what the loop needs of a machine of any kind.
type node interface {
	ID() string
	Kind() string
	State() State
	dispatch(e Envelope)
	stop()
	attach(parent node)
	routeChild(r Record, child node)
	entered(s State) bool
	left(s State) bool
	In(s State) bool
	Timers() int
	TimerOwners() []State
	addChild(n node)
	removeChild(n node)
}

// Options configure a Loop.
type Options struct {
	// Mailbox is the capacity of the mailbox that other goroutines post
	// into; a full mailbox makes producers wait (backpressure). Default 1024.
	Mailbox int
	Logger  *zap.Logger
	// Now is the clock used for trace records. Default time.Now.
	Now func() time.Time
	// Timers arms the timers of Machine.After. Default: time.AfterFunc. The
	// model check (internal/modelcheck) passes a fake that fires timers when
	// the model says so.
	Timers TimerFactory
	// MeasureDispatch makes Run time each mailbox envelope with everything
	// it raised (one clock read more per envelope) for Stats.MaxDispatch.
	MeasureDispatch bool
}

// TimerFactory arms timers: AfterFunc calls f (which posts ev to machine
// to) after d, unless the returned Timer is stopped first.
type TimerFactory interface {
	AfterFunc(d time.Duration, to string, ev Event, f func()) Timer
}

// Timer is an armed timer (*time.Timer is one).
type Timer interface {
	Stop() bool
}

type realTimers struct{}

func (realTimers) AfterFunc(d time.Duration, _ string, _ Event, f func()) Timer {
	return time.AfterFunc(d, f)
}

// Loop is the one goroutine that owns every machine. Other goroutines talk to
// machines only through Post; actions inside the loop use Raise, which queues
// the event behind the one being processed (run to completion).
type Loop struct {
	mailbox *mailbox
	done    chan struct{}
	stopped atomic.Bool
	stopMu  sync.Once

	// Owned by the loop goroutine.
	local     queue
	machines  map[string]node
	tables    map[any]*looplab.FSM // per machine kind (*Compiled): see Machine.cur
	observers []Observer
	nextTimer uint64
	// gens is the last generation handed out: generations are unique in
	// the loop, so that a worker of a removed machine cannot post into a
	// new machine with the same id (their first generations would match).
	gens    uint64
	log     *zap.Logger
	now     func() time.Time
	timers  TimerFactory
	measure bool
	// clock is the time the loop took the current batch of events: every
	// transition of the batch is stamped with it. One clock read per wake-up
	// instead of one per transition (a clock read costs as much as a third
	// of a looplab Event on this kind of machine).
	clock time.Time

	stats loopStats
}

type loopStats struct {
	dispatched, transitions, internal, ignored, unhandled atomic.Uint64
	staleGen, staleTimer, unknownTarget                   atomic.Uint64
	timersArmed, timersFired                              atomic.Int64
	maxDispatch                                           atomic.Int64
}

// Stats counts what the loop did. Every field is read atomically, so Stats
// may be called from any goroutine.
type Stats struct {
	Dispatched    uint64 // events handed to a machine (ignored and dropped ones included)
	Transitions   uint64 // state changes
	Internal      uint64 // internal transitions (action, no state change)
	Ignored       uint64 // declared ignores
	Unhandled     uint64 // events with no declared outcome (a spec bug: logged)
	StaleGen      uint64 // dropped: from an older generation of the machine
	StaleTimer    uint64 // dropped: the timer was cancelled after it fired
	UnknownTarget uint64 // dropped: no machine with that id
	TimersArmed   int64  // timers currently armed
	TimersFired   int64  // timer events delivered
	// MaxDispatch is the longest a mailbox envelope and everything it
	// raised kept the loop busy (Options.MeasureDispatch; zero otherwise).
	MaxDispatch time.Duration
}

// NewLoop returns a loop that is not yet running.
func NewLoop(o Options) *Loop {
	if o.Mailbox <= 0 {
		o.Mailbox = 1024
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Timers == nil {
		o.Timers = realTimers{}
	}
	return &Loop{
		mailbox:  newMailbox(o.Mailbox),
		done:     make(chan struct{}),
		machines: map[string]node{},
		tables:   map[any]*looplab.FSM{},
		log:      o.Logger,
		now:      o.Now,
		timers:   o.Timers,
		measure:  o.MeasureDispatch,
	}
}

// Run processes events until ctx is done or Stop is called. It must be called
// once, from the goroutine that will own the machines.
func (l *Loop) Run(ctx context.Context) {
	defer l.shutdown()
	for {
		select {
		case <-l.mailbox.notify:
			// One wake-up serves everything pending.
			batch := l.mailbox.take()
			l.clock = l.now()
			t0 := l.clock
			for i := range batch {
				l.deliver(batch[i])
				if l.measure {
					t1 := l.now()
					if d := int64(t1.Sub(t0)); d > l.stats.maxDispatch.Load() {
						l.stats.maxDispatch.Store(d)
					}
					t0 = t1
				}
			}
			l.mailbox.recycle(batch)
		case <-ctx.Done():
			return
		case <-l.done:
			return
		}
	}
}

// Stop ends Run. Safe from any goroutine, idempotent.
func (l *Loop) Stop() {
	l.stopMu.Do(func() {
		l.stopped.Store(true)
		close(l.done)
	})
}

// Done is closed when the loop has been told to stop.
func (l *Loop) Done() <-chan struct{} { return l.done }

func (l *Loop) shutdown() {
	l.Stop()
	for _, n := range l.machines {
		n.stop()
	}
}

// Post delivers e from any goroutine. It waits while the mailbox is full and
// returns ErrStopped if the loop stops first.
func (l *Loop) Post(e Envelope) error {
	if l.stopped.Load() || !l.mailbox.put(e, l.done) {
		return ErrStopped
	}
	return nil
}

// Do runs fn inside the loop goroutine and waits for it: the way to read
// machine state from outside (a status snapshot built in the loop and handed
// out by value). It returns ErrStopped if the loop stops first.
func (l *Loop) Do(fn func()) error {
	ran := make(chan struct{})
	if err := l.Post(Envelope{fn: func() { fn(); close(ran) }}); err != nil {
		return err
	}
	select {
	case <-ran:
		return nil
	case <-l.done:
		return ErrStopped
	}
}

// Raise queues e behind the event being processed. Only for the loop
// goroutine (actions).
func (l *Loop) Raise(e Envelope) { l.local.push(e) }

// Observe adds an observer of every transition. Call before Run or inside
// the loop.
func (l *Loop) Observe(o Observer) { l.observers = append(l.observers, o) }

// Machine returns the machine with id, or nil. Only for the loop goroutine.
func (l *Loop) Machine(id string) node { return l.machines[id] }

// Len returns the number of machines. Only for the loop goroutine.
func (l *Loop) Len() int { return len(l.machines) }

// Stats returns the loop's counters.
func (l *Loop) Stats() Stats {
	s := &l.stats
	return Stats{
		Dispatched: s.dispatched.Load(), Transitions: s.transitions.Load(), Internal: s.internal.Load(),
		Ignored: s.ignored.Load(), Unhandled: s.unhandled.Load(), StaleGen: s.staleGen.Load(),
		StaleTimer: s.staleTimer.Load(), UnknownTarget: s.unknownTarget.Load(),
		TimersArmed: s.timersArmed.Load(), TimersFired: s.timersFired.Load(),
		MaxDispatch: time.Duration(s.maxDispatch.Load()),
	}
}

// Deliver processes e and everything it raises, in the calling goroutine.
// It is for table tests and for setup before Run: while Run is running, only
// the loop goroutine may call it.
func (l *Loop) Deliver(e Envelope) {
	l.clock = l.now()
	l.deliver(e)
}

// Drain processes everything posted to the mailbox so far (and what it
// raises), in the calling goroutine, and reports how many envelopes it took.
// Like Deliver it is for tests and setup: never while Run is running.
func (l *Loop) Drain() int {
	n := 0
	for {
		select {
		case <-l.mailbox.notify:
		default:
		}
		batch := l.mailbox.take()
		if len(batch) == 0 {
			l.mailbox.recycle(batch)
			return n
		}
		l.clock = l.now()
		for i := range batch {
			l.deliver(batch[i])
		}
		n += len(batch)
		l.mailbox.recycle(batch)
	}
}

// Each calls fn for every machine, in no particular order. Only for the
// loop goroutine (tests and the model check read machine state with it).
func (l *Loop) Each(fn func(Node)) {
	for _, n := range l.machines {
		fn(n)
	}
}

// deliver handles one mailbox envelope and then everything it raised.
func (l *Loop) deliver(e Envelope) {
	l.handle(e)
	for {
		e, ok := l.local.pop()
		if !ok {
			return
		}
		l.handle(e)
	}
}

func (l *Loop) handle(e Envelope) {
	if e.fn != nil {
		e.fn()
		return
	}
	n, ok := l.machines[e.To]
	if !ok {
		l.stats.unknownTarget.Add(1)
		return
	}
	n.dispatch(e)
}

// Remove stops the machine with id (its timers are cancelled, late events for
// it are dropped) and detaches it from its supervisor. Only for the loop
// goroutine.
func (l *Loop) Remove(id string) {
	n, ok := l.machines[id]
	if !ok {
		return
	}
	n.stop()
	delete(l.machines, id)
}

// nextGen returns a generation no machine of the loop has had.
func (l *Loop) nextGen() uint64 {
	l.gens++
	return l.gens
}

// table returns the loop's looplab FSM of the machine kind c, made by mk the
// first time: one per kind and loop, owned by the loop goroutine.
func (l *Loop) table(c any, mk func() *looplab.FSM) *looplab.FSM {
	f, ok := l.tables[c]
	if !ok {
		f = mk()
		l.tables[c] = f
	}
	return f
}

func (l *Loop) add(n node, parent node) error {
	if _, dup := l.machines[n.ID()]; dup {
		return ErrDuplicateID
	}
	l.machines[n.ID()] = n
	if parent != nil {
		n.attach(parent)
		parent.addChild(n)
	}
	return nil
}

func (l *Loop) record(r Record) {
	for _, o := range l.observers {
		o.Observe(r)
	}
}

// queue is the loop's local FIFO of raised events: a ring that grows when
// full and never shrinks, so a steady stream of raises allocates nothing.
type queue struct {
	buf        []Envelope
	head, size int
}

func (q *queue) push(e Envelope) {
	if q.size == len(q.buf) {
		n := max(2*len(q.buf), 16)
		buf := make([]Envelope, n)
		k := copy(buf, q.buf[q.head:])
		copy(buf[k:], q.buf[:q.head])
		q.buf, q.head = buf, 0
	}
	q.buf[(q.head+q.size)%len(q.buf)] = e
	q.size++
}

func (q *queue) pop() (Envelope, bool) {
	if q.size == 0 {
		return Envelope{}, false
	}
	e := q.buf[q.head]
	q.buf[q.head] = Envelope{}
	q.head = (q.head + 1) % len(q.buf)
	q.size--
	return e, true
}
