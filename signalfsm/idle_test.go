package signalfsm

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

func (d *downServer) Connect(w fsm.Sender, _ Server) func() {
	d.dials++
	go func() { _ = w.Post(EvConnectFailed, errors.New("connection refused")) }()
	return func() {}
}

// With the server down for 24 h, the link dials exactly when its backoff
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
		if err := l.Post(fsm.Envelope{To: ID, Event: EvStart, Data: Server{Addr: "127.0.0.1:1"}}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		g0 := fsmtest.BubbleGoroutines()
		time.Sleep(horizon)
		synctest.Wait()
		var dials, timers int
		var s fsm.Stats
		_ = l.Do(func() { dials, timers, s = m.Data.Dials, m.Timers(), l.Stats() })
		g1 := fsmtest.BubbleGoroutines()
		cancel()
		<-done

		want := backoff.Links.DialsWithin(horizon, rand.New(rand.NewPCG(42, 1)))
		t.Logf("signal link, server down for %v: %d dials (schedule predicts %d), %d events dispatched, %.2f events/min, goroutines %d → %d",
			horizon, dials, want, s.Dispatched, float64(s.Dispatched)/horizon.Minutes(), g0, g1)
		if dials != want || fx.dials != want {
			t.Fatalf("dials %d (effects saw %d), schedule predicts %d", dials, fx.dials, want)
		}
		// Events: start, one failure per dial, one timer per retry.
		if s.Dispatched != uint64(1+want+(want-1)) {
			t.Fatalf("dispatched %d events for %d dials: something else ran", s.Dispatched, want)
		}
		if timers != 1 || g1 != g0 {
			t.Fatalf("timers %d, goroutines %d → %d", timers, g0, g1)
		}
	})
}
