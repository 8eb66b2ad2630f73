package fsm_test

import (
	"context"
	"testing"

	looplab "github.com/looplab/fsm"
	"github.com/nbfsm/nbfsm/fsm"
)

// The benchmarks of the framework's cost, run together so their numbers
// compare (docs/benchmarks.md):
//   go test -run '^$' -bench . -benchmem ./fsm/
// Each step is one state change between two states a and b.

func BenchmarkRawLooplab(b *testing.B) {
	f := looplab.NewFSM("a", looplab.Events{
		{Name: "toggle", Src: []string{"a"}, Dst: "b"},
		{Name: "toggle", Src: []string{"b"}, Dst: "a"},
	}, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := f.Event(ctx, "toggle"); err != nil {
			b.Fatal(err)
		}
	}
}

type counter struct{ n, limit int }

var toggleSpec = fsm.MustCompile(fsm.Spec[*counter]{
	Kind: "toggle", Initial: "a", Events: []fsm.Event{"toggle"},
	States: []fsm.StateDef[*counter]{{Name: "a"}, {Name: "b"}},
	Transitions: []fsm.Transition[*counter]{
		{From: "a", Event: "toggle", To: "b"},
		{From: "b", Event: "toggle", To: "a"},
	},
})

// BenchmarkLoopPost: Post from another goroutine → mailbox → dispatch →
// transition (looplab Event included) → trace record to one observer.
func BenchmarkLoopPost(b *testing.B) {
	l := fsm.NewLoop(fsm.Options{})
	var seen int
	l.Observe(fsm.ObserverFunc(func(fsm.Record) { seen++ }))
	if _, err := fsm.Add(l, toggleSpec, "t", &counter{}, nil); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	e := fsm.Envelope{To: "t", Event: "toggle"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := l.Post(e); err != nil {
			b.Fatal(err)
		}
	}
	if err := l.Do(func() {}); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cancel()
	<-done
	if s := l.Stats(); s.Transitions != uint64(b.N) {
		b.Fatalf("transitions %d, want %d", s.Transitions, b.N)
	}
}

// BenchmarkLoopDeliver is like with like for BenchmarkRawLooplab: one
// goroutine, one event per op through the framework (dispatch table →
// transition, looplab Event included → trace record to one observer), no
// mailbox hand-off between goroutines. Its ns/op is CPU per event.
func BenchmarkLoopDeliver(b *testing.B) {
	l := fsm.NewLoop(fsm.Options{})
	var seen int
	l.Observe(fsm.ObserverFunc(func(fsm.Record) { seen++ }))
	if _, err := fsm.Add(l, toggleSpec, "t", &counter{}, nil); err != nil {
		b.Fatal(err)
	}
	e := fsm.Envelope{To: "t", Event: "toggle"}
	b.ReportAllocs()
	for b.Loop() {
		l.Deliver(e)
	}
	if s := l.Stats(); s.Transitions == 0 {
		b.Fatal("no transitions")
	}
}

var raiseSpec = fsm.MustCompile(fsm.Spec[*counter]{
	Kind: "raise", Initial: "a", Events: []fsm.Event{"toggle"},
	States: []fsm.StateDef[*counter]{
		{Name: "a", Entry: raiseNext},
		{Name: "b", Entry: raiseNext},
	},
	Transitions: []fsm.Transition[*counter]{
		{From: "a", Event: "toggle", To: "b"},
		{From: "b", Event: "toggle", To: "a"},
	},
})

func raiseNext(m *fsm.Machine[*counter], _ fsm.Envelope) {
	if m.Data.n < m.Data.limit {
		m.Data.n++
		m.Raise("toggle", nil)
	}
}

// BenchmarkLoopRaise: an entry action raises the next event: local queue →
// dispatch → transition → trace, all inside the loop goroutine.
func BenchmarkLoopRaise(b *testing.B) {
	l := fsm.NewLoop(fsm.Options{})
	var seen int
	l.Observe(fsm.ObserverFunc(func(fsm.Record) { seen++ }))
	c := &counter{limit: -1}
	if _, err := fsm.Add(l, raiseSpec, "r", c, nil); err != nil {
		b.Fatal(err)
	}
	c.limit = b.N - 1
	b.ReportAllocs()
	b.ResetTimer()
	l.Deliver(fsm.Envelope{To: "r", Event: "toggle"})
	b.StopTimer()
	if s := l.Stats(); s.Transitions != uint64(b.N) {
		b.Fatalf("transitions %d, want %d", s.Transitions, b.N)
	}
}

// One event through the framework allocates at most 2 more objects than a
// raw looplab Event (allocation counts are deterministic; time is measured
// by the benchmarks above).
func TestFrameworkAllocs(t *testing.T) {
	f := looplab.NewFSM("a", looplab.Events{
		{Name: "toggle", Src: []string{"a"}, Dst: "b"},
		{Name: "toggle", Src: []string{"b"}, Dst: "a"},
	}, nil)
	ctx := context.Background()
	raw := testing.AllocsPerRun(1000, func() { _ = f.Event(ctx, "toggle") })

	l := fsm.NewLoop(fsm.Options{})
	l.Observe(fsm.ObserverFunc(func(fsm.Record) {}))
	if _, err := fsm.Add(l, toggleSpec, "t", &counter{}, nil); err != nil {
		t.Fatal(err)
	}
	e := fsm.Envelope{To: "t", Event: "toggle"}
	ours := testing.AllocsPerRun(1000, func() { l.Deliver(e) })
	t.Logf("allocations per event: looplab %.0f, framework %.0f", raw, ours)
	if ours > raw+2 {
		t.Fatalf("framework allocates %.0f per event, looplab %.0f: more than 2 beyond", ours, raw)
	}
}
