package wgiface_test

import (
	"io"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/pion/ice/v2"
)

// BenchmarkTunnelThroughput streams TCP over the tunnel between two netstack
// interfaces on loopback shared sockets: bytes/s is the data path's
// throughput (gVisor TCP + wireguard-go crypto + the shared socket's Bind).
func BenchmarkTunnelThroughput(b *testing.B) {
	const chunk = 64 << 10
	a, z := newNode(b, "100.64.3.1/10"), newNode(b, "100.64.3.2/10")
	a.addPeer(b, z)
	z.addPeer(b, a)
	a.connectTo(b, z, z.sock.LocalAddr())
	ping(b, a.iface.Net(), a.addr.Addr(), z.addr.Addr())

	l, err := z.iface.Net().ListenTCPAddrPort(netip.AddrPortFrom(z.addr.Addr(), 9000))
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
	c, err := a.iface.Net().DialTCPAddrPort(netip.AddrPortFrom(z.addr.Addr(), 9000))
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, chunk)
	b.SetBytes(chunk)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	_ = c.Close()
	if n := <-got; n != int64(b.N)*chunk {
		b.Fatalf("received %d bytes, want %d", n, int64(b.N)*chunk)
	}
	b.StopTimer()
}

// BenchmarkIdleAgentWakeups measures what a live, connected, idle pion
// agent costs compared with the socket's STUN responder: STUN datagrams it
// sends per second and goroutines it holds. It runs once for 10 s whatever
// b.N (the metrics are rates, not per-op times).
func BenchmarkIdleAgentWakeups(b *testing.B) {
	const window = 10 * time.Second
	a, z := newNode(b, "100.64.4.1/10"), newNode(b, "100.64.4.2/10")
	host := []ice.CandidateType{ice.CandidateTypeHost}
	g0 := runtime.NumGoroutine()
	ia := newICESide(b, agentConfig(a.sock, host, nil))
	iz := newICESide(b, agentConfig(z.sock, host, nil))
	connectICE(b, ia, iz)
	perAgent := float64(runtime.NumGoroutine()-g0) / 2

	// Both agents live.
	a0, z0 := a.sock.Stats().STUNOut, z.sock.Stats().STUNOut
	time.Sleep(window)
	bothLive := float64(a.sock.Stats().STUNOut-a0+z.sock.Stats().STUNOut-z0) / window.Seconds()

	// a's agent closed, its socket answers z's keepalives.
	remote, _ := selectedRemote(b, ia)
	_ = ia.agent.Close()
	cancel, err := a.sock.Respond(ia.ufrag, ia.pwd, remote)
	if err != nil {
		b.Fatal(err)
	}
	defer cancel()
	a1, r1 := a.sock.Stats().STUNOut, a.sock.Stats().Responded
	time.Sleep(window)
	closedSends := float64(a.sock.Stats().STUNOut-a1) / window.Seconds()
	replies := float64(a.sock.Stats().Responded-r1) / window.Seconds()

	b.ReportMetric(bothLive/2, "stun-sends/s/live-agent")
	b.ReportMetric(perAgent, "goroutines/live-agent")
	b.ReportMetric(closedSends, "stun-sends/s/closed-agent")
	b.ReportMetric(replies, "responder-replies/s")
}
