// Package netmon is the OS network monitor: netlink route, address and link
// subscriptions feed a small machine on the fsm framework that debounces
// bursts (a timer state, not a sleep), compares what the host has now with
// what it had, and hands the difference to a Sink (the engine). It also
// notices a suspended machine that woke up: the wall clock jumped ahead of
// the monotonic one, which stands still during suspend. That is checked at
// every netlink event and when the kernel says the wall clock was set,
// which it also says on resume (a timerfd with TFD_TIMER_CANCEL_ON_SET,
// clockwatch_linux.go); there is no timer and no ticker for it.
package netmon

import (
	"net/netip"
	"slices"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
)

// Timing of the monitor.
const (
	// Debounce is the quiet time after the last netlink event of a burst
	// before the change is looked at.
	Debounce = 300 * time.Millisecond
	// MaxSettle bounds a burst that never goes quiet (a flapping link).
	MaxSettle = 3 * time.Second
	// SuspendJump is how far the wall clock must run ahead of the
	// monotonic clock to count as a suspend.
	SuspendJump = 5 * time.Second
)

// Kind and ID of the machine.
const (
	Kind = "netmon"
	ID   = "netmon"
)

// States.
const (
	Idle     fsm.State = "idle"
	Settling fsm.State = "settling"
)

// Events.
const (
	EvChange   fsm.Event = "os-change" // Data: Snapshot (taken by the subscriber)
	EvSettled  fsm.Event = "settled"   // timer: the burst is over
	EvClockSet fsm.Event = "clock-set" // the kernel: the wall clock was set, or the machine resumed
)

// Snapshot is what the host's network looks like.
type Snapshot struct {
	// Addrs are the usable local addresses (links up, the overlay and
	// blacklisted interfaces left out), sorted.
	Addrs []netip.Addr
	// Default names the default routes (gateway and link), "" if none.
	Default string
}

// Up: the host has an address to reach anything with.
func (s Snapshot) Up() bool {
	for _, a := range s.Addrs {
		if !a.IsLoopback() {
			return true
		}
	}
	return false
}

// Change is the difference the sink is told about.
type Change struct {
	Up, WasUp      bool
	Added, Removed []netip.Addr
	Addrs          []netip.Addr // all of them now
	DefaultChanged bool
	Resumed        bool          // the machine was suspended
	SuspendedFor   time.Duration // about how long
}

// Empty: nothing the engine needs to hear.
func (c Change) Empty() bool {
	return c.Up == c.WasUp && len(c.Added) == 0 && len(c.Removed) == 0 && !c.DefaultChanged && !c.Resumed
}

// Sink receives changes in the monitor's loop goroutine: it must not block
// (the engine's entry points post events).
type Sink interface {
	Changed(c Change)
}

// Monitor is the machine's data.
type Monitor struct {
	Sink Sink
	// Clock reads the wall clock and the monotonic clock (tests); nil:
	// the system's.
	Clock func() (wall time.Time, mono time.Duration)

	applied      Snapshot      // what the sink last heard about
	latest       Snapshot      // newest from the subscriber
	burstStart   time.Duration // monotonic
	settle       fsm.TimerID
	lastWall     time.Time     // at the last clock check
	lastMono     time.Duration // at the last clock check
	checked      bool
	resumed      bool
	suspendedFor time.Duration
}

// epoch anchors the monotonic readings of the system clock.
var epoch = time.Now()

func systemClock() (time.Time, time.Duration) {
	now := time.Now()
	return now.Round(0), now.Sub(epoch) // Round(0): wall only; Sub: monotonic
}

func (m *Monitor) clock() (time.Time, time.Duration) {
	if m.Clock != nil {
		return m.Clock()
	}
	return systemClock()
}

func (m *Monitor) mono() time.Duration {
	_, mono := m.clock()
	return mono
}

// Spec is the monitor machine.
var Spec = fsm.MustCompile(fsm.Spec[*Monitor]{
	Kind: Kind,
	Doc: "The OS network monitor: netlink events are debounced in `settling` (one timer, re-armed while the burst goes on, " +
		"bounded), then the host's addresses and default route are compared with the last applied ones and the engine " +
		"is told. A wall clock that ran ahead of the monotonic one (checked at every event and when the kernel reports the " +
		"wall clock set, as it does on resume) is a resume from suspend.",
	Initial: Idle,
	Events:  []fsm.Event{EvChange, EvSettled, EvClockSet},
	States: []fsm.StateDef[*Monitor]{
		{Name: Idle, Doc: "nothing pending, no timer", Ignore: []fsm.Event{EvSettled}},
		{Name: Settling, Doc: "a burst of netlink events: waiting for it to go quiet", Entry: startBurst},
	},
	Transitions: []fsm.Transition[*Monitor]{
		{From: Idle, Event: EvChange, To: Settling, Action: takeSnapshot},
		{From: Idle, Event: EvClockSet, Guard: wokeUp, To: Settling, Doc: "resumed from suspend: look at the host"},
		{From: Idle, Event: EvClockSet, Doc: "the wall clock was set, no suspend"},
		{From: Settling, Event: EvClockSet, Action: noteClock, Doc: "the resume, if it is one, is reported with the burst"},
		{From: Settling, Event: EvChange, Action: extendBurst},
		{From: Settling, Event: EvSettled, To: Idle, Action: apply},
	},
})

// New adds a monitor machine to loop l; base is the host as it is now.
func New(l *fsm.Loop, mon *Monitor, base Snapshot) (*fsm.Machine[*Monitor], error) {
	mon.applied, mon.latest = base, base
	checkClock(mon)
	return fsm.Add(l, Spec, ID, mon, nil)
}

// checkClock notes a suspend: wall time elapsed beyond monotonic time.
func checkClock(m *Monitor) {
	wall, mono := m.clock()
	if m.checked {
		if jump := wall.Sub(m.lastWall) - (mono - m.lastMono); jump > SuspendJump {
			m.resumed, m.suspendedFor = true, jump
		}
	}
	m.lastWall, m.lastMono, m.checked = wall, mono, true
}

func noteClock(m *fsm.Machine[*Monitor], _ fsm.Envelope) { checkClock(m.Data) }

var wokeUp = &fsm.Guard[*Monitor]{Name: "woke-up", Fn: func(m *fsm.Machine[*Monitor], _ fsm.Envelope) bool {
	checkClock(m.Data)
	return m.Data.resumed
}}

func takeSnapshot(m *fsm.Machine[*Monitor], e fsm.Envelope) {
	if s, ok := e.Data.(Snapshot); ok {
		m.Data.latest = s
	}
	checkClock(m.Data)
}

func startBurst(m *fsm.Machine[*Monitor], _ fsm.Envelope) {
	m.Data.burstStart = m.Data.mono()
	m.Data.settle = m.After(Debounce, EvSettled, nil)
}

// extendBurst re-arms the debounce timer unless the burst is already as
// long as MaxSettle.
func extendBurst(m *fsm.Machine[*Monitor], e fsm.Envelope) {
	takeSnapshot(m, e)
	if m.Data.mono()-m.Data.burstStart >= MaxSettle {
		return
	}
	m.Cancel(m.Data.settle)
	m.Data.settle = m.After(Debounce, EvSettled, nil)
}

func apply(m *fsm.Machine[*Monitor], _ fsm.Envelope) {
	d := m.Data
	c := Diff(d.applied, d.latest)
	c.Resumed, c.SuspendedFor = d.resumed, d.suspendedFor
	d.resumed, d.suspendedFor = false, 0
	d.applied = d.latest
	if c.Empty() || d.Sink == nil {
		return
	}
	d.Sink.Changed(c)
}

// Diff compares two snapshots.
func Diff(old, cur Snapshot) Change {
	c := Change{Up: cur.Up(), WasUp: old.Up(), DefaultChanged: old.Default != cur.Default, Addrs: slices.Clone(cur.Addrs)}
	for _, a := range cur.Addrs {
		if !slices.Contains(old.Addrs, a) {
			c.Added = append(c.Added, a)
		}
	}
	for _, a := range old.Addrs {
		if !slices.Contains(cur.Addrs, a) {
			c.Removed = append(c.Removed, a)
		}
	}
	return c
}
