package engine_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/internal/netping"
)

// BenchmarkFirstPacket: two fresh clients start against the test network;
// one iteration is the time from starting them to the first ICMP echo reply
// through their tunnel (the official client: 6.4 s median, held back by a
// 5 s WireGuard responder wait). Run without -race:
//
//	go test -run '^$' -bench FirstPacket -benchtime 20x ./engine/
func BenchmarkFirstPacket(b *testing.B) {
	n := startNet(b)
	var times []time.Duration
	t := b
	for i := 0; i < b.N; i++ {
		start := time.Now()
		a, c := startNode(t, n, "bench-a", nil), startNode(t, n, "bench-b", nil)
		for a.c.Net() == nil || !hasAddr(c) {
			time.Sleep(time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, err := netping.Ping(ctx, a.c.Net(), addrOf(t, a), addrOf(t, c), 10*time.Millisecond)
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		_ = a.c.Close()
		_ = c.c.Close()
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "ms-max")
}
