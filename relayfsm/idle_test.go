package relayfsm

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/fsmtest"
	"github.com/nbfsm/nbfsm/internal/backoff"
)

// downServer fails every dial at once, as a stopped server does.
type downServer struct{ dials int }

func (d *downServer) Connect(w fsm.Sender, _ []string, _ Token) func() {
	d.dials++
	go func() { _ = w.Post(EvConnectFailed, errors.New("connection refused")) }()
	return func() {}
}

// With the relay down for 24 h, the link dials exactly when its backoff
// schedule says, and nothing else runs.
func TestServerDownForADay(t *testing.T) {
	const horizon = 24 * time.Hour
	synctest.Test(t, func(t *testing.T) {
		fx := &downServer{}
		l := fsm.NewLoop(fsm.Options{})
		m, err := New(l, &Link{Effects: fx, Rand: rand.New(rand.NewPCG(42, 1))}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.Run(ctx); close(done) }()
		if err := l.Post(fsm.Envelope{To: ID, Event: EvStart, Data: cfgA}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		g0 := fsmtest.BubbleGoroutines()
		time.Sleep(horizon)
		synctest.Wait()
		var dials, timers int
		var s fsm.Stats
		g1 := fsmtest.BubbleGoroutines()
		_ = l.Do(func() { dials, timers, s = m.Data.Dials, m.Timers(), l.Stats() })
		cancel()
		<-done
		want := backoff.Links.DialsWithin(horizon, rand.New(rand.NewPCG(42, 1)))
		t.Logf("relay link, server down for %v: %d dials (schedule predicts %d), %d events, %.2f events/min",
			horizon, dials, want, s.Dispatched, float64(s.Dispatched)/horizon.Minutes())
		if dials != want || fx.dials != want {
			t.Fatalf("dials %d (effects saw %d), schedule predicts %d", dials, fx.dials, want)
		}
		if s.Dispatched != uint64(1+want+(want-1)) {
			t.Fatalf("dispatched %d events for %d dials: something else ran", s.Dispatched, want)
		}
		if timers != 1 || g1 != g0 {
			t.Fatalf("timers %d, goroutines %d → %d", timers, g0, g1)
		}
	})
}

// healthyServer comes up at once and sends a health check every 25 s, as
// relay servers do.
type healthyServer struct{}

func (healthyServer) Connect(w fsm.Sender, _ []string, _ Token) func() {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		if w.Post(EvUp, Up{Addr: "rel://x:1"}) != nil {
			return
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(25 * time.Second):
				_ = w.Post(EvHealth, nil)
			}
		}
	}()
	return cancel
}

// A connected, idle link costs one event per health check and holds one
// timer (the deadline), however long it runs; users add nothing.
func TestConnectedLinkIdleCost(t *testing.T) {
	const horizon = time.Hour
	synctest.Test(t, func(t *testing.T) {
		l := fsm.NewLoop(fsm.Options{})
		m, err := New(l, &Link{Effects: healthyServer{}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.Run(ctx); close(done) }()
		_ = l.Post(fsm.Envelope{To: ID, Event: EvStart, Data: cfgA})
		for i := range 100 {
			_ = l.Post(fsm.Envelope{To: ID, Event: EvAcquire, Data: Use{Peer: "peer/" + string(rune('a'+i%26)) + string(rune('a'+i/26))}})
		}
		synctest.Wait()
		var before fsm.Stats
		_ = l.Do(func() { before = l.Stats() })
		g0 := fsmtest.BubbleGoroutines()
		time.Sleep(horizon)
		synctest.Wait()
		var s fsm.Stats
		var timers int
		var state fsm.State
		_ = l.Do(func() { s, timers, state = l.Stats(), m.Timers(), m.State() })
		g1 := fsmtest.BubbleGoroutines()
		_ = l.Post(fsm.Envelope{To: ID, Event: EvStop})
		synctest.Wait()
		cancel()
		<-done
		events := s.Dispatched - before.Dispatched
		t.Logf("connected relay link with 100 users, idle for %v: %d events (%.1f/min), %d timer(s), goroutines %d → %d",
			horizon, events, float64(events)/horizon.Minutes(), timers, g0, g1)
		if state != Connected || timers != 1 {
			t.Fatalf("state %s timers %d", state, timers)
		}
		if want := uint64(horizon / (25 * time.Second)); events != want {
			t.Fatalf("%d events in %v, want one per health check (%d)", events, horizon, want)
		}
	})
}
