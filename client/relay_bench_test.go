package client_test

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/testnet/relaysrv"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// BenchmarkRelayThroughput streams TCP between two netstack clients in one
// process whose only path is the NetBird relay (one side ForceRelay): bytes/s
// is gVisor TCP + wireguard-go + the shared Bind's relay bridge + WebSocket
// framing through the test network's relay server. Run without -race:
//
//	go test -run '^$' -bench RelayThroughput -benchtime 2000x ./client/
func BenchmarkRelayThroughput(b *testing.B) {
	const chunk = 64 << 10
	n := startNet(b)
	x := startRelayNodeB(b, n, "forced", true)
	y := startRelayNodeB(b, n, "normal", false)
	if _, err := x.watch.Until(peerfsm.ID(y.key.PublicKey()), peerfsm.RelayOnlyRelayed, wait); err != nil {
		b.Fatal(err)
	}
	if _, err := y.watch.Until(peerfsm.ID(x.key.PublicKey()), peerfsm.RelayOnlyRelayed, wait); err != nil {
		b.Fatal(err)
	}
	ya := addrOf(b, y.node)
	l, err := y.c.Net().ListenTCPAddrPort(netip.AddrPortFrom(ya, 9000))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	got := make(chan int64, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		got <- n
	}()
	c, err := x.c.Net().DialTCPAddrPort(netip.AddrPortFrom(ya, 9000))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.Close()
	if got := <-got; got != int64(b.N)*chunk {
		b.Fatalf("received %d bytes, want %d", got, int64(b.N)*chunk)
	}
	b.StopTimer()
}

// A relayed, idle peer arms one timer of its own, the lazy path check (a
// path timeout after the last datagram over the relay): over a quiet
// window its machine does not run, the only loop events are the relay
// link's health checks (one per server interval) and the link holds its
// one deadline. Bytes per peer: heap
// growth per relayed peer pair, measured by the benchmark below.
func TestRelayedIdlePeerCost(t *testing.T) {
	if testing.Short() {
		t.Skip("one quiet window")
	}
	const window = 10 * time.Second
	n := startNet(t)
	x := startRelayNode(t, n, "forced", true, nil)
	y := startRelayNode(t, n, "normal", false, nil)
	px, py := peerfsm.ID(y.key.PublicKey()), peerfsm.ID(x.key.PublicKey())
	x.until(t, px, peerfsm.RelayOnlyRelayed)
	y.until(t, py, peerfsm.RelayOnlyRelayed)
	ping(t, x, y)
	// Quiet window: drain the watch, then count records per machine.
	time.Sleep(time.Second)
	for len(x.watch.C) > 0 {
		<-x.watch.C
	}
	s0, _ := x.c.Status()
	time.Sleep(window)
	s1, _ := x.c.Status()
	perMachine := map[string]int{}
	for len(x.watch.C) > 0 {
		r := <-x.watch.C
		perMachine[r.Machine]++
	}
	ps := s1.Peers[0]
	t.Logf("relayed idle peer over %v: loop events %d (%v), peer timers %d, loop timers %d, goroutines %d",
		window, s1.Loop.Dispatched-s0.Loop.Dispatched, perMachine, ps.Timers, s1.Loop.TimersArmed, runtime.NumGoroutine())
	// One lazy path check, as a direct peer holds (it fires a path
	// timeout after the last datagram over the relay, not in this window).
	if ps.Timers != 1 {
		t.Fatalf("relayed idle peer holds %d timers, want its one path check", ps.Timers)
	}
	if perMachine[px] != 0 {
		t.Fatalf("the relayed idle peer's machine ran %d times", perMachine[px])
	}
}

// BenchmarkRelayedPeerBytes measures, on the heap, what relayed peers
// cost: a ForceRelay hub and N spokes (relay-only towards it, as it sends
// no ICE credentials), relay links up, see no one
// (heap H0); then the network map pairs the hub with every spoke, each pair
// is relayed and carries a ping (heap H1). Each pair is two peer sides (a
// peer machine, a WireGuard peer, a relay path and its bridge on each
// client), so the figure per relayed peer is (H1−H0)/(2N); goroutines and
// stack likewise. Run without -race:
//
//	go test -run '^$' -bench RelayedPeerBytes -benchtime 1x ./client/
func BenchmarkRelayedPeerBytes(b *testing.B) {
	const spokes = 8
	n := startNet(b)
	hubKey, err := nbcrypto.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	hubPub := hubKey.PublicKey()
	n.Mgmt.SetTopology(func(_, _ wgtypes.Key) bool { return false })
	hub := startRelayNodeSetup(b, n, "hub", client.Options{PrivateKey: hubKey, ForceRelay: true}, nil)
	var sp []*relayNode
	for i := range spokes {
		sp = append(sp, startRelayNodeSetup(b, n, fmt.Sprintf("spoke%d", i), client.Options{}, nil))
	}
	for _, nd := range append([]*relayNode{hub}, sp...) {
		if _, err := nd.watch.Until(engine.ID, engine.Running, wait); err != nil { // logged in, interface up
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		id := relay.HashID(nd.key.PublicKey().String())
		err := n.Relay.Wait(ctx, func(s *relaysrv.Server) bool { return s.Has(id) })
		cancel()
		if err != nil || nd.c.Net() == nil {
			b.Fatalf("%s: relay link or interface not up: %v", nd.name, err)
		}
	}
	h0, g0 := heap()
	n.Mgmt.SetTopology(func(x, y wgtypes.Key) bool { return x == hubPub || y == hubPub })
	// The hub's records of all spokes come through one watch: read them
	// together (Until drops other machines' records).
	want := map[string]bool{}
	for _, s := range sp {
		want[peerfsm.ID(s.key.PublicKey())] = true
	}
	deadline := time.After(wait)
	for len(want) > 0 {
		select {
		case r := <-hub.watch.C:
			if r.To == peerfsm.RelayOnlyRelayed {
				delete(want, r.Machine)
			}
		case <-deadline:
			b.Fatalf("hub: %d peers not relayed", len(want))
		}
	}
	for _, s := range sp {
		if _, err := s.watch.Until(peerfsm.ID(hubPub), peerfsm.RelayOnlyRelayed, wait); err != nil {
			b.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, spokes)
	for _, s := range sp {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if _, err := netping.Ping(ctx, hub.c.Net(), addrOf(b, hub.node), addrOf(b, s.node), 200*time.Millisecond); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	h1, g1 := heap()
	sides := float64(2 * spokes)
	b.ReportMetric(float64(int64(h1.HeapAlloc)-int64(h0.HeapAlloc))/sides, "heap-B/peer")
	b.ReportMetric(float64(int64(h1.StackInuse)-int64(h0.StackInuse))/sides, "stack-B/peer")
	b.ReportMetric(float64(g1-g0)/sides, "goroutines/peer")
}

// heap returns the memory stats after two collections, and the goroutines.
func heap() (runtime.MemStats, int) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms, runtime.NumGoroutine()
}
