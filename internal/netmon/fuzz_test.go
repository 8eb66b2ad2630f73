package netmon

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
)

var (
	fuzzAddrs    = []netip.Addr{lo, a1, a2, netip.MustParseAddr("fd00::2")}
	fuzzDefaults = []string{"", "198.18.0.1@eth0", "198.18.0.254@eth0"}
)

// fuzzSnap is the host with the addresses of mask (bits over fuzzAddrs)
// and one of fuzzDefaults.
func fuzzSnap(mask, def int) Snapshot {
	s := Snapshot{Default: fuzzDefaults[def%len(fuzzDefaults)]}
	for i, a := range fuzzAddrs {
		if mask&(1<<i) != 0 {
			s.Addrs = append(s.Addrs, a)
		}
	}
	return s
}

// FuzzMonitor drives the network monitor with a sequence decoded from the
// input, three bytes a step (op, a, b):
//
//	0  the subscriber posts a change: fuzzSnap(a, b), or no snapshot if b%8 is 7
//	1  events[a] is delivered with no data (a spurious timer event, or the
//	   kernel's clock-set notification)
//	2  the a-th armed timer fires; both clocks move by its delay
//	3  the a-th cancelled or fired timer fires (late)
//	4  a×100 ms pass on both clocks; if b%4 is 0 the machine was suspended
//	   for b minutes (the wall clock alone moves)
//
// After every step: every event had a declared outcome, every armed timer
// belongs to a state the machine is in, idle arms no timer and settling
// exactly its debounce timer, and when a burst ends the sink hears
// exactly the difference between what it heard last and the newest
// snapshot (nothing if there is none).
func FuzzMonitor(f *testing.F) {
	events := Spec.Spec().Events
	f.Fuzz(func(t *testing.T, data []byte) {
		in := fsmtest.NewInput(data)
		ts := &fsmtest.Timers{}
		c := &clock{base: time.Unix(1_800_000_000, 0)}
		sink := &recordSink{}
		base := fuzzSnap(3, 1)
		l := fsm.NewLoop(fsm.Options{Timers: ts, Mailbox: 8})
		m, err := New(l, &Monitor{Sink: sink, Clock: c.read}, base)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Remove(ID)
		applied, latest := base, base
		var step, op, a, b int
		did := func() string { return fmt.Sprintf("step %d (op %d %d %d), in %s", step, op, a, b, m.State()) }
		for step = 1; in.More() && step <= fsmtest.MaxSteps; step++ {
			op, a, b = in.IntN(5), in.IntN(256), in.IntN(256)
			was := m.State()
			switch op {
			case 0:
				var d any
				if b%8 != 7 {
					s := fuzzSnap(a, b)
					d, latest = s, s
				}
				_ = l.Post(fsm.Envelope{To: ID, Event: EvChange, Data: d})
			case 1:
				l.Deliver(fsm.Envelope{To: ID, Event: events[a%len(events)]})
			case 2:
				if tm := ts.Fire(a); tm != nil {
					c.mono += tm.D
					c.wall += tm.D
				}
			case 3:
				ts.FireStale(a)
			case 4:
				c.mono += time.Duration(a) * 100 * time.Millisecond
				c.wall += time.Duration(a) * 100 * time.Millisecond
				if b%4 == 0 {
					c.wall += time.Duration(b) * time.Minute
				}
			}
			l.Drain()
			fsmtest.CheckStep(t, l, did)
			if m.In(Idle) && m.Timers() != 0 {
				t.Fatalf("after %s: idle with %d timers armed", did(), m.Timers())
			}
			if m.In(Settling) && !slices.ContainsFunc(ts.Live(), func(tm *fsmtest.FakeTimer) bool { return tm.Ev == EvSettled }) {
				t.Fatalf("after %s: settling without a debounce timer", did())
			}
			got := sink.got
			sink.got = nil
			if was != Settling || m.State() != Idle {
				if len(got) != 0 {
					t.Fatalf("after %s: the sink heard %+v outside the end of a burst", did(), got)
				}
				continue
			}
			want := Diff(applied, latest)
			applied = latest
			switch {
			case len(got) > 1:
				t.Fatalf("after %s: the sink heard %d changes for one burst", did(), len(got))
			case len(got) == 0 && !want.Empty():
				t.Fatalf("after %s: the sink heard nothing, want %+v", did(), want)
			case len(got) == 1:
				g := got[0]
				if g.Empty() || g.Up != want.Up || g.WasUp != want.WasUp || g.DefaultChanged != want.DefaultChanged ||
					!slices.Equal(g.Added, want.Added) || !slices.Equal(g.Removed, want.Removed) || !slices.Equal(g.Addrs, want.Addrs) {
					t.Fatalf("after %s: the sink heard %+v, want %+v", did(), g, want)
				}
			}
		}
	})
}
