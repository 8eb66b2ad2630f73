// Package link is the shape of a service link machine, written once: the
// signal, management and relay links are each this shape plus their own
// states and rows.
//
// The shape: idle → running.{session.connecting, …, backoff} → stopped.
// Entering a session starts a new generation and the session's worker;
// leaving it cancels the worker and starts another generation, so late
// events of the old worker are dropped. A failure records why and goes to
// backoff: one timer (the link's policy: exponential, full jitter, a cap),
// whose retry starts the next session. A network-up cuts the backoff short
// and re-dials a link that is up (its connection may be bound to an address
// that is gone); a network-down while connecting goes to backoff (no burst of
// failing dials while the network is down) and is ignored once up. Stop ends
// everything from any running state.
//
// Every event a state does not handle is ignored at the root (the
// framework's inheritance): the shape's own events outside the states that
// handle them, and the link's Quiet events (its workers' and its timers'),
// which outside their session are late. So each state lists only what is
// particular to it, and the totality test still covers every leaf.
package link

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
)

// States of the shape. A link adds its own: the state it is in once up (Own.Up),
// substates of Connecting, and others under Running.
const (
	Idle       fsm.State = "idle"
	Running    fsm.State = "running"
	Session    fsm.State = "running.session"
	Connecting fsm.State = "running.session.connecting"
	Backoff    fsm.State = "running.backoff"
	Stopped    fsm.State = "stopped"
)

// Events of the shape: the supervisor posts Start, Stop and the OS network
// monitor's events; Retry is the backoff timer.
const (
	EvStart       fsm.Event = "start"
	EvStop        fsm.Event = "stop"
	EvRetry       fsm.Event = "retry"
	EvNetworkUp   fsm.Event = "network-up"
	EvNetworkDown fsm.Event = "network-down"
)

// Core is the shape's part of a link's data: embed it in the link's data
// type (which makes that type's pointer a Data, with RetryPolicy).
type Core struct {
	Attempt int    // retries since the last success
	Dials   int    // sessions since start
	LastErr string // why the link is not up: the error that ended the last session
	cancel  func() // ends the running worker
}

func (c *Core) core() *Core { return c }

// SetCancel keeps the cancel of the worker just started; leaving the state
// that started it (or the session) calls it.
func (c *Core) SetCancel(cancel func()) { c.cancel = cancel }

// CancelWorker ends the running worker, if any, without waiting for it.
func (c *Core) CancelWorker() {
	if c.cancel != nil {
		c.cancel()
		c.cancel = nil
	}
}

// Succeeded resets the backoff and the error: the link is up.
func (c *Core) Succeeded() { c.Attempt, c.LastErr = 0, "" }

// Data is a link machine's data type: a pointer to a struct that embeds
// Core and says which backoff policy and random source it uses (the zero
// policy means backoff.Links; a nil source the global one).
type Data interface {
	core() *Core
	RetryPolicy() (backoff.Policy, *rand.Rand)
}

// Own is what one link adds to the shape.
type Own[C Data] struct {
	Kind, Doc string
	// Name is the link's name in log messages ("signal", "management").
	Name string
	// Events are all the link's events, the shape's included, in the order
	// the tables show them.
	Events []fsm.Event
	// Quiet are ignored in every state that does not handle them: the
	// session workers' events and the link's own timers.
	Quiet []fsm.Event
	// Up is the session's state once the link is up (Own.States declares it):
	// a network-up there re-dials.
	Up fsm.State
	// Start are the rows of EvStart from idle and from stopped (From is
	// filled in). None: both go to Running.
	Start []fsm.Transition[C]
	// Open runs on entering a session, after the new generation, and
	// returns the cancel of the worker it started (nil: none). Close runs on
	// leaving it, after that worker is cancelled.
	Open  func(m *fsm.Machine[C]) (cancel func())
	Close fsm.Action[C]
	// Docs replace the default one-line docs of the shape's states.
	Docs map[fsm.State]string
	// States are the link's own states, in diagram order after Connecting.
	// A StateDef named like a shape state amends it instead: its Entry,
	// Exit and Ignore are added (its entry after the shape's, its exit
	// before), and its Doc and Initial, if set, replace the shape's.
	States []fsm.StateDef[C]
	// Transitions are the link's own rows, after the shape's.
	Transitions []fsm.Transition[C]
}

var defaultDocs = map[fsm.State]string{
	Idle:       "not started",
	Running:    "started",
	Session:    "one connection attempt: a new generation and one worker",
	Connecting: "dialing",
	Backoff:    "one timer armed; no dial until it fires or the network comes up",
	Stopped:    "stopped by the supervisor",
}

// Spec returns the spec of one link kind: the shape with what o adds.
// Compile it with fsm.MustCompile.
func Spec[C Data](o Own[C]) fsm.Spec[C] {
	doc := func(s fsm.State) string {
		if d, ok := o.Docs[s]; ok {
			return d
		}
		return defaultDocs[s]
	}
	shape := []fsm.StateDef[C]{
		{Name: Idle, Doc: doc(Idle)},
		{Name: Running, Initial: Session, Doc: doc(Running), Ignore: []fsm.Event{EvStart}},
		{Name: Session, Parent: Running, Initial: Connecting, Doc: doc(Session),
			Entry: startSession(o.Open), Exit: endSession(o.Close)},
		{Name: Connecting, Parent: Session, Doc: doc(Connecting)},
	}
	tail := []fsm.StateDef[C]{
		{Name: Backoff, Parent: Running, Doc: doc(Backoff), Entry: armRetry[C](o.Name)},
		{Name: Stopped, Doc: doc(Stopped)},
	}
	at := map[fsm.State]*fsm.StateDef[C]{}
	for i := range shape {
		at[shape[i].Name] = &shape[i]
	}
	for i := range tail {
		at[tail[i].Name] = &tail[i]
	}
	var own []fsm.StateDef[C]
	for _, s := range o.States {
		base, ok := at[s.Name]
		if !ok {
			own = append(own, s)
			continue
		}
		base.Entry = then(base.Entry, s.Entry)
		base.Exit = then(s.Exit, base.Exit)
		base.Ignore = append(base.Ignore, s.Ignore...)
		if s.Doc != "" {
			base.Doc = s.Doc
		}
		if s.Initial != "" {
			base.Initial = s.Initial
		}
	}
	states := append(append(shape, own...), tail...)

	start := o.Start
	if len(start) == 0 {
		start = []fsm.Transition[C]{{Event: EvStart, To: Running}}
	}
	var rows []fsm.Transition[C]
	for _, from := range []fsm.State{Idle, Stopped} {
		for _, t := range start {
			t.From = from
			rows = append(rows, t)
		}
	}
	rows = append(rows,
		fsm.Transition[C]{From: Running, Event: EvStop, To: Stopped},
		fsm.Transition[C]{From: Connecting, Event: EvNetworkDown, To: Backoff, Doc: "no burst of failing dials while the network is down"},
		fsm.Transition[C]{From: o.Up, Event: EvNetworkUp, To: Session, Doc: "the connection may be bound to an address that is gone: re-dial"},
		fsm.Transition[C]{From: Backoff, Event: EvRetry, To: Session},
		fsm.Transition[C]{From: Backoff, Event: EvNetworkUp, To: Session, Doc: "cut the backoff short"},
	)
	return fsm.Spec[C]{
		Kind:        o.Kind,
		Doc:         o.Doc,
		Initial:     Idle,
		Events:      o.Events,
		Ignore:      fsm.Join(o.Quiet, []fsm.Event{EvStop, EvRetry, EvNetworkUp, EvNetworkDown}),
		States:      states,
		Transitions: append(rows, o.Transitions...),
	}
}

// then runs a, then b (either may be nil).
func then[C any](a, b fsm.Action[C]) fsm.Action[C] {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(m *fsm.Machine[C], e fsm.Envelope) { a(m, e); b(m, e) }
}

func startSession[C Data](open func(*fsm.Machine[C]) func()) fsm.Action[C] {
	return func(m *fsm.Machine[C], _ fsm.Envelope) {
		m.NewGeneration()
		c := m.Data.core()
		c.Dials++
		if open != nil {
			c.SetCancel(open(m))
		}
	}
}

func endSession[C Data](close fsm.Action[C]) fsm.Action[C] {
	return func(m *fsm.Machine[C], e fsm.Envelope) {
		m.Data.core().CancelWorker()
		if close != nil {
			close(m, e)
		}
		m.NewGeneration() // late events of this session's worker are dropped
	}
}

// RecordErr is the action of a row that ends a session with an error (Data):
// the error is why the link is not up.
func RecordErr[C Data](m *fsm.Machine[C], e fsm.Envelope) {
	if err, ok := e.Data.(error); ok && err != nil {
		m.Data.core().LastErr = err.Error()
	}
}

// CancelWorker is the exit action of a state that started a worker of its
// own (with Core.SetCancel).
func CancelWorker[C Data](m *fsm.Machine[C], _ fsm.Envelope) { m.Data.core().CancelWorker() }

func armRetry[C Data](name string) fsm.Action[C] {
	msg := fmt.Sprintf("%s backoff", name)
	return func(m *fsm.Machine[C], _ fsm.Envelope) {
		c := m.Data.core()
		p, r := m.Data.RetryPolicy()
		if p == (backoff.Policy{}) {
			p = backoff.Links
		}
		d := p.Delay(c.Attempt, r)
		c.Attempt++
		m.Log().Debug(msg, zap.Int("attempt", c.Attempt), zap.Duration("delay", d), zap.String("err", c.LastErr))
		m.After(d, EvRetry, nil)
	}
}

// Workers are the goroutines of a link's Effects (dials, streams, closes of
// a connection). The Effects start them with Go from the loop; its Close
// waits for them with Wait after the machine has stopped (leaving a session
// cancels its workers). The zero value is ready.
type Workers struct{ wg sync.WaitGroup }

// Go runs f in a worker.
func (w *Workers) Go(f func()) { w.wg.Go(f) }

// Wait waits for every worker, timeout at most, and reports whether they all
// ended. It arms one timer, which it disarms on return.
func (w *Workers) Wait(timeout time.Duration) bool {
	done := make(chan struct{})
	go func() { w.wg.Wait(); close(done) }()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}
