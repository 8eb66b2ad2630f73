package scenario

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// netState is a test network with one client and a baseline sample.
type netState struct {
	n    *testnet.Network
	a    *member
	base usage
}

func (s *netState) close() {
	s.a.close()
	s.n.Close()
}

// stamps records when transitions of interest happened, from every
// client's loop.
type stamps struct {
	mu     sync.Mutex
	offers []time.Time // entries into offering and resends: one offer each
	synced []time.Time // management links entering synced
	peer   atomic.Int64
}

func (st *stamps) Observe(r fsm.Record) {
	switch {
	case r.Kind == peerfsm.Kind:
		st.peer.Add(1)
		if !r.Internal && r.To == peerfsm.Offering || r.Internal && r.From == peerfsm.Offering && r.Event == peerfsm.EvResend {
			st.mu.Lock()
			st.offers = append(st.offers, r.At)
			st.mu.Unlock()
		}
	case r.Kind == mgmtfsm.Kind && !r.Internal && r.To == mgmtfsm.Synced:
		st.mu.Lock()
		st.synced = append(st.synced, r.At)
		st.mu.Unlock()
	}
}

func (st *stamps) since(t0 time.Time, which func(*stamps) []time.Time) []time.Time {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []time.Time
	for _, t := range which(st) {
		if !t.Before(t0) {
			out = append(out, t)
		}
	}
	return out
}

// star is a hub client and M spokes that see only the hub.
type star struct {
	n      *testnet.Network
	hub    *member
	spokes []*member
	stamps *stamps
}

func (s *star) all() []*member { return append([]*member{s.hub}, s.spokes...) }

func (s *star) close() {
	for _, m := range s.all() {
		if m != nil {
			m.close()
		}
	}
	s.n.Close()
}

// newStar starts the network (with signal stopped if signalDown) and the
// M+1 clients.
func newStar(ctx context.Context, M int, signalDown bool) (*star, error) {
	keys := make([]wgtypes.Key, M+1)
	for i := range keys {
		k, err := nbcrypto.GenerateKey()
		if err != nil {
			return nil, err
		}
		keys[i] = k
	}
	hub := keys[0].PublicKey()
	n, err := testnet.Start(testnet.Options{Topology: func(a, b wgtypes.Key) bool { return a == hub || b == hub }})
	if err != nil {
		return nil, err
	}
	if signalDown {
		n.Signal.Stop()
	}
	s := &star{n: n, stamps: &stamps{}}
	for i, k := range keys {
		m, err := join(ctx, n, fmt.Sprintf("star-%d", i), k, s.stamps)
		if err != nil {
			s.close()
			return nil, err
		}
		if i == 0 {
			s.hub = m
		} else {
			s.spokes = append(s.spokes, m)
		}
	}
	return s, nil
}

func connectedCount(s engine.Status) int {
	n := 0
	for _, p := range s.Peers {
		if p.Connection != "" {
			n++
		}
	}
	return n
}

func directCount(s engine.Status) int {
	n := 0
	for _, p := range s.Peers {
		if p.Connection == "direct" {
			n++
		}
	}
	return n
}

// allConnected waits until the hub has every spoke connected and every
// spoke the hub (over any path; count: connectedCount or directCount).
func (s *star) allConnected(ctx context.Context, count func(engine.Status) int) error {
	M := len(s.spokes)
	timeout := joinTimeout + time.Duration(M)*time.Second
	if err := wait(ctx, s.hub, timeout, fmt.Sprintf("%d peers connected", M), func(st engine.Status) bool {
		return count(st) == M
	}); err != nil {
		return err
	}
	for _, sp := range s.spokes {
		if err := wait(ctx, sp, timeout, "hub connected", func(st engine.Status) bool { return count(st) == 1 }); err != nil {
			return err
		}
	}
	return nil
}

// pingSpokes pings every spoke from the hub once.
func (s *star) pingSpokes(ctx context.Context) error {
	hs, err := s.hub.c.Status()
	if err != nil {
		return err
	}
	for _, sp := range s.spokes {
		ss, err := sp.c.Status()
		if err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = netping.Ping(pctx, s.hub.c.Net(), hs.Address.Addr(), ss.Address.Addr(), 100*time.Millisecond)
		cancel()
		if err != nil {
			return fmt.Errorf("ping %s: %w", sp.name, err)
		}
	}
	return nil
}

// runS2: recovery of a star of real clients.
func runS2(ctx context.Context, b *bench, r *Result) error {
	outage := b.o.Outage
	if outage <= 0 {
		outage = 5 * time.Minute
		if b.o.Short {
			outage = 2 * time.Second
		}
	}
	r.Notes = append(r.Notes, "signal is stopped before the clients start: each logs in, gets its map and parks every peer; then signal starts. Times are from the signal (management) server's start; offers are entries into offering plus resends, on every client",
		fmt.Sprintf("management: stopped once every peer is connected, held down %v, started (with a new server key): time until each client's link is synced again", outage))
	for _, N := range b.ns([]int{5}, []int{10, 100}) {
		b.progress("S2 N=%d", N)
		if err := s2One(ctx, r, N, outage); err != nil {
			return err
		}
	}
	return nil
}

func s2One(ctx context.Context, r *Result, N int, outage time.Duration) error {
	s, err := newStar(ctx, N, true)
	if err != nil {
		return err
	}
	defer s.close()
	if err := wait(ctx, s.hub, joinTimeout+time.Duration(N)*time.Second, "every peer parked", func(st engine.Status) bool {
		return st.State == engine.SignalDown && len(st.Peers) == N && countIn(st, peerfsm.Parked) == N
	}); err != nil {
		return err
	}
	for _, sp := range s.spokes {
		if err := wait(ctx, sp, joinTimeout, "hub parked", func(st engine.Status) bool {
			return len(st.Peers) == 1 && countIn(st, peerfsm.Parked) == 1
		}); err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := s.n.Signal.Start(); err != nil {
		return err
	}
	if err := s.allConnected(ctx, connectedCount); err != nil {
		return err
	}
	all := time.Since(t0)
	if err := s.allConnected(ctx, directCount); err != nil {
		return err
	}
	allDirect := time.Since(t0)
	if err := s.pingSpokes(ctx); err != nil {
		return err
	}
	offers := s.stamps.since(t0, func(st *stamps) []time.Time { return st.offers })
	if len(offers) == 0 {
		return errors.New("no offer recorded after signal start")
	}
	first, last := offers[0], offers[0]
	buckets := map[int64]int{}
	for _, t := range offers {
		first, last = minTime(first, t), maxTime(last, t)
		buckets[int64(t.Sub(t0)/(100*time.Millisecond))]++
	}
	peak := 0
	for _, c := range buckets {
		peak = max(peak, c)
	}
	row := Row{Label: fmt.Sprintf("signal, N=%d", N), N: N}
	row.add("first offer", ms(first.Sub(t0)), "ms")
	row.add("last offer", ms(last.Sub(t0)), "ms")
	row.add("all connected", ms(all), "ms")
	row.add("all direct", ms(allDirect), "ms")
	row.add("offers", float64(len(offers)), "")
	row.add("peak offers", float64(peak), "/100 ms")
	r.Rows = append(r.Rows, row)

	// Management down, then up.
	s.n.Mgmt.Stop()
	for _, m := range s.all() {
		if err := wait(ctx, m, joinTimeout, "management backoff", func(st engine.Status) bool { return st.Management.State == mgmtfsm.Backoff }); err != nil {
			return err
		}
	}
	select {
	case <-time.After(outage):
	case <-ctx.Done():
		return ctx.Err()
	}
	t1 := time.Now()
	if err := s.n.Mgmt.Start(); err != nil {
		return err
	}
	for _, m := range s.all() {
		if err := wait(ctx, m, joinTimeout, "management synced", func(st engine.Status) bool { return st.Management.State == mgmtfsm.Synced }); err != nil {
			return err
		}
	}
	synced := s.stamps.since(t1, func(st *stamps) []time.Time { return st.synced })
	if len(synced) < N+1 {
		return fmt.Errorf("management: %d synced records for %d clients", len(synced), N+1)
	}
	sf, sl := synced[0], synced[0]
	var ds []time.Duration
	for _, t := range synced {
		sf, sl = minTime(sf, t), maxTime(sl, t)
		ds = append(ds, t.Sub(t1))
	}
	med, _ := median(ds)
	mrow := Row{Label: fmt.Sprintf("management, N=%d, down %v", N, outage), N: N}
	mrow.add("first synced", ms(sf.Sub(t1)), "ms")
	mrow.add("median synced", ms(med), "ms")
	mrow.add("last synced", ms(sl.Sub(t1)), "ms")
	mrow.add("clients", float64(N+1), "")
	r.Rows = append(r.Rows, mrow)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// runS6: two connected clients left idle, the test signal server pinging
// every 5 s like an official one.
func runS6(ctx context.Context, b *bench, r *Result) error {
	w := b.window(3*time.Second, 10*time.Minute)
	r.Notes = append(r.Notes, "two clients in one process, connected, one ping, then no traffic; the path check of a direct peer is armed for 75 s, so a window shorter than that says little (the full run is 10 min)",
		"target (issue 13): ≤ 300 ctx switches/min; official client ~1 600, from the issue (measured elsewhere)")
	b.progress("S6 window %v", w)
	s, err := newStar(ctx, 1, false)
	if err != nil {
		return err
	}
	defer s.close()
	if err := s.allConnected(ctx, directCount); err != nil {
		return err
	}
	if err := s.pingSpokes(ctx); err != nil {
		return err
	}
	settle()
	p0 := s.stamps.peer.Load()
	row, err := observe(ctx, w, s.n, s.all(), fmt.Sprintf("2 clients, %v", w), 2)
	if err != nil {
		return err
	}
	min := w.Minutes()
	if v, ok := row.Get("loop events"); ok {
		row.add("loop wake-ups per peer", v/2, "/min")
	}
	row.add("peer transitions per peer", float64(s.stamps.peer.Load()-p0)/2/min, "/min")
	hs, err := s.hub.c.Status()
	if err != nil {
		return err
	}
	row.add("signal sessions", float64(hs.Signal.Sessions), "")
	if len(hs.Peers) == 1 {
		row.add("still connected", float64(connectedCount(hs)), "")
	}
	r.Rows = append(r.Rows, row)
	return nil
}
