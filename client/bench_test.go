package client_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
)

// BenchmarkFirstPacket: two fresh clients start against the test network;
// one iteration is the time from starting them to the first ICMP echo reply
// through their tunnel (the official client: 6.4 s median, held back by a
// 5 s WireGuard responder wait). Run without -race:
//
//	go test -run '^$' -bench FirstPacket -benchtime 20x ./client/
func BenchmarkFirstPacket(b *testing.B) {
	n := startNet(b)
	var times []time.Duration
	t := b
	for i := 0; i < b.N; i++ {
		start := time.Now()
		a, c := startNode(t, n, "bench-a", nil), startNode(t, n, "bench-b", nil)
		a.until(t, "an interface", wait, func(engine.Status) bool { return a.c.Net() != nil })
		c.until(t, "an address", wait, func(s engine.Status) bool { return s.Address.IsValid() })
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

// BenchmarkFirstPacketOfficial*: an official-peer double is up; one
// iteration is the time from starting a fresh nbfsm client to the first
// ICMP echo reply from the double through the tunnel, with the double
// controlling ICE (its key sorts above nbfsm's) or nbfsm controlling. A
// fresh double per iteration; run without -race:
//
//	go test -run '^$' -bench FirstPacketOfficial -benchtime 20x ./client/
func BenchmarkFirstPacketOfficialControls(b *testing.B) { benchFirstPacketOfficial(b, true) }

func BenchmarkFirstPacketOfficialControlled(b *testing.B) { benchFirstPacketOfficial(b, false) }

func benchFirstPacketOfficial(b *testing.B, officialControls bool) {
	n := startNet(b)
	var times []time.Duration
	for i := 0; i < b.N; i++ {
		own, err := nbcrypto.GenerateKey()
		if err != nil {
			b.Fatal(err)
		}
		d := startDouble(b, n, keyAbove(b, own, officialControls))
		start := time.Now()
		nb := startCounted(b, n, own)
		nb.waitReady(b)
		s, _ := nb.c.Status()
		if _, err := pingWithin(nb.c.Net(), s.Address.Addr(), d.Addr(), wait, 10*time.Millisecond); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(start))
		if os.Getenv("NBFSM_BENCH_EACH") != "" {
			b.Logf("run %d: %v", i, time.Since(start))
		}
		_ = nb.c.Close()
		d.Close()
	}
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "ms-median")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "ms-max")
}
