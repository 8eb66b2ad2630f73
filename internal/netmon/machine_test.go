package netmon

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSpecIsTotal(t *testing.T) { fsmtest.AssertTotal(t, Spec) }

type recordSink struct{ got []Change }

func (r *recordSink) Changed(c Change) { r.got = append(r.got, c) }

// clock is a fake clock: on suspend the wall clock runs ahead of the
// monotonic one.
type clock struct {
	base       time.Time
	mono, wall time.Duration
}

func (c *clock) read() (time.Time, time.Duration) { return c.base.Add(c.wall), c.mono }

var (
	a1 = netip.MustParseAddr("198.18.0.2")
	a2 = netip.MustParseAddr("198.18.0.9")
	lo = netip.MustParseAddr("127.0.0.1")
)

func snap(def string, addrs ...netip.Addr) Snapshot { return Snapshot{Addrs: addrs, Default: def} }

func ev(e fsm.Event, data ...any) fsm.Envelope {
	env := fsm.Envelope{To: ID, Event: e}
	if len(data) > 0 {
		env.Data = data[0]
	}
	return env
}

func TestTransitions(t *testing.T) {
	base := snap("198.18.0.1@eth0", lo, a1)
	tests := []struct {
		name    string
		events  []fsm.Envelope
		suspend time.Duration // wall clock jumps this far before the events
		want    fsm.State
		changes []Change
	}{
		{name: "idle", want: Idle},
		{name: "a netlink event starts settling", events: []fsm.Envelope{ev(EvChange, base)}, want: Settling},
		{name: "nothing changed: the sink hears nothing", events: []fsm.Envelope{ev(EvChange, base), ev(EvSettled)}, want: Idle},
		{name: "burst of three, one change", want: Idle,
			events:  []fsm.Envelope{ev(EvChange, snap("", lo, a1)), ev(EvChange, snap("", lo)), ev(EvChange, snap("198.18.0.1@eth0", lo, a2)), ev(EvSettled)},
			changes: []Change{{Up: true, WasUp: true, Added: []netip.Addr{a2}, Removed: []netip.Addr{a1}, Addrs: []netip.Addr{lo, a2}}}},
		{name: "network gone", events: []fsm.Envelope{ev(EvChange, snap("", lo)), ev(EvSettled)}, want: Idle,
			changes: []Change{{Up: false, WasUp: true, Removed: []netip.Addr{a1}, DefaultChanged: true, Addrs: []netip.Addr{lo}}}},
		{name: "default route changed only", events: []fsm.Envelope{ev(EvChange, snap("198.18.0.254@eth0", lo, a1)), ev(EvSettled)}, want: Idle,
			changes: []Change{{Up: true, WasUp: true, DefaultChanged: true, Addrs: []netip.Addr{lo, a1}}}},
		{name: "clock set without suspend stays idle", events: []fsm.Envelope{ev(EvClockSet)}, want: Idle},
		{name: "clock set after suspend: resume", suspend: time.Hour, events: []fsm.Envelope{ev(EvClockSet)}, want: Settling},
		{name: "resume reported after the burst", suspend: time.Hour, events: []fsm.Envelope{ev(EvClockSet), ev(EvSettled)}, want: Idle,
			changes: []Change{{Up: true, WasUp: true, Resumed: true, SuspendedFor: time.Hour, Addrs: []netip.Addr{lo, a1}}}},
		{name: "resume noticed at a netlink event", suspend: 10 * time.Minute, events: []fsm.Envelope{ev(EvChange, base), ev(EvSettled)}, want: Idle,
			changes: []Change{{Up: true, WasUp: true, Resumed: true, SuspendedFor: 10 * time.Minute, Addrs: []netip.Addr{lo, a1}}}},
		{name: "clock set during a burst: the resume comes with it", suspend: time.Hour, events: []fsm.Envelope{ev(EvChange, base), ev(EvClockSet), ev(EvSettled)}, want: Idle,
			changes: []Change{{Up: true, WasUp: true, Resumed: true, SuspendedFor: time.Hour, Addrs: []netip.Addr{lo, a1}}}},
		{name: "a short wall step is no suspend", suspend: time.Second, events: []fsm.Envelope{ev(EvClockSet)}, want: Idle},
		{name: "late settle timer in idle ignored", events: []fsm.Envelope{ev(EvSettled)}, want: Idle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{base: time.Unix(1_800_000_000, 0)}
			sink := &recordSink{}
			l := fsm.NewLoop(fsm.Options{})
			m, err := New(l, &Monitor{Sink: sink, Clock: c.read}, base)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Remove(ID)
			if m.Timers() != 0 {
				t.Fatalf("idle arms no timer: %d timers", m.Timers())
			}
			c.mono += time.Minute
			c.wall += time.Minute + tt.suspend
			for _, e := range tt.events {
				l.Deliver(e)
			}
			if m.State() != tt.want {
				t.Errorf("state %s, want %s", m.State(), tt.want)
			}
			if len(sink.got) != len(tt.changes) {
				t.Fatalf("changes %+v, want %+v", sink.got, tt.changes)
			}
			for i := range sink.got {
				g, w := sink.got[i], tt.changes[i]
				if g.Up != w.Up || g.WasUp != w.WasUp || g.DefaultChanged != w.DefaultChanged || g.Resumed != w.Resumed ||
					!slices.Equal(g.Added, w.Added) || !slices.Equal(g.Removed, w.Removed) || !slices.Equal(g.Addrs, w.Addrs) {
					t.Errorf("change %d: %+v, want %+v", i, g, w)
				}
				if w.Resumed && (g.SuspendedFor < w.SuspendedFor-time.Second || g.SuspendedFor > w.SuspendedFor+time.Second) {
					t.Errorf("suspended for %v, want about %v", g.SuspendedFor, w.SuspendedFor)
				}
			}
			if s := l.Stats(); s.Unhandled != 0 {
				t.Errorf("unhandled: %d", s.Unhandled)
			}
		})
	}
}

// TestBurstBounded: a burst that never goes quiet is applied after
// MaxSettle at the latest (the debounce timer is not re-armed past it).
func TestBurstBounded(t *testing.T) {
	c := &clock{base: time.Unix(1_800_000_000, 0)}
	l := fsm.NewLoop(fsm.Options{})
	m, err := New(l, &Monitor{Clock: c.read}, snap(""))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Remove(ID)
	l.Deliver(ev(EvChange, snap("")))
	first := m.Data.settle
	c.mono, c.wall = Debounce/2, Debounce/2
	l.Deliver(ev(EvChange, snap("")))
	if m.Data.settle == first {
		t.Fatal("debounce not re-armed inside the burst")
	}
	c.mono, c.wall = MaxSettle, MaxSettle
	re := m.Data.settle
	l.Deliver(ev(EvChange, snap("")))
	if m.Data.settle != re {
		t.Fatal("debounce re-armed past MaxSettle")
	}
}

type fakeEngine struct{ calls []string }

func (f *fakeEngine) NetworkChanged(up bool) error {
	f.calls = append(f.calls, map[bool]string{true: "up", false: "down"}[up])
	return nil
}
func (f *fakeEngine) PathsChanged(gone []netip.Addr) error {
	f.calls = append(f.calls, "paths "+join(gone))
	return nil
}
func (f *fakeEngine) SetLocalAddresses(addrs []netip.Addr) {
	f.calls = append(f.calls, "addrs "+join(addrs))
}
func (f *fakeEngine) SyncMeta(context.Context) error {
	f.calls = append(f.calls, "sync-meta")
	return nil
}

func join(a []netip.Addr) string {
	var s []string
	for _, x := range a {
		s = append(s, x.String())
	}
	return "[" + stringsJoin(s) + "]"
}

func stringsJoin(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += " "
		}
		out += x
	}
	return out
}

func TestEngineSink(t *testing.T) {
	tests := []struct {
		name string
		c    Change
		want []string
	}{
		{"address added: the mux learns it, nothing else", Change{Up: true, WasUp: true, Added: []netip.Addr{a2}, Addrs: []netip.Addr{a1, a2}},
			[]string{"addrs [198.18.0.2 198.18.0.9]", "sync-meta"}},
		{"address removed: links re-dial, paths re-checked", Change{Up: true, WasUp: true, Removed: []netip.Addr{a1}, Addrs: []netip.Addr{a2}},
			[]string{"addrs [198.18.0.9]", "up", "paths [198.18.0.2]", "sync-meta"}},
		{"network up", Change{Up: true, Added: []netip.Addr{a1}, Addrs: []netip.Addr{a1}}, []string{"addrs [198.18.0.2]", "up", "sync-meta"}},
		{"network down", Change{WasUp: true, Removed: []netip.Addr{a1}, Addrs: nil}, []string{"addrs []", "down", "paths [198.18.0.2]", "sync-meta"}},
		{"default route changed", Change{Up: true, WasUp: true, DefaultChanged: true}, []string{"up", "paths []"}},
		{"resumed", Change{Up: true, WasUp: true, Resumed: true}, []string{"up", "paths []"}},
	}
	for _, tt := range tests {
		f := &fakeEngine{}
		s := NewEngineSink(f, nil)
		s.Changed(tt.c)
		s.Close()
		if !slices.Equal(f.calls, tt.want) {
			t.Errorf("%s: calls %q, want %q", tt.name, f.calls, tt.want)
		}
	}
}
