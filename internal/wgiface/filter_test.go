package wgiface_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/filter"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// dropWait is how long a connection attempt through a filter that drops it
// is given before it counts as dropped. The drop itself is asserted on the
// filter's counter, never on the time.
const dropWait = 2 * time.Second

// newFilteredNode is newNode with a packet filter on the interface.
func newFilteredNode(t testing.TB, overlay string, f *filter.Filter) *node {
	t.Helper()
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := sharedsock.Listen(loopback, nil)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	n := &node{key: key, addr: netip.MustParsePrefix(overlay), sock: sock}
	n.iface, err = wgiface.New(wgiface.Config{
		Mode: wgiface.Netstack, Name: "ns-" + overlay, PrivateKey: key,
		Address: n.addr, Socket: sock, Filter: f,
	})
	if err != nil {
		_ = sock.Close()
		t.Fatalf("wgiface.New: %v", err)
	}
	t.Cleanup(func() {
		_ = n.iface.Close()
		_ = n.sock.Close()
	})
	return n
}

// serveTCP accepts on addr and answers every connection with "ok", until
// the test ends.
func serveTCP(t testing.TB, n *node, port uint16) {
	t.Helper()
	l, err := n.iface.Net().ListenTCPAddrPort(netip.AddrPortFrom(n.addr.Addr(), port))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = l.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok"))
			_ = c.Close()
		}
	}()
}

// dialTCP connects from n to addr:port and reads the greeting.
func dialTCP(n *node, to netip.Addr, port uint16, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := n.iface.Net().DialContextTCPAddrPort(ctx, netip.AddrPortFrom(to, port))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if string(b) != "ok" {
		return errors.New("no greeting")
	}
	return nil
}

// Through real tunnels: z allows only TCP/22 from a; a (a legacy map)
// allows everything. a reaches z:22; a's ping and a's TCP to z:80 are
// dropped by z's filter; z's connections to a and their replies pass z's
// filter as tracked flows; a new policy on z lets ping through without
// touching the tunnel.
func TestFilterOnTheTunnel(t *testing.T) {
	fa, fz := filter.New(), filter.New()
	fa.SetPolicy(filter.Policy{Mode: filter.AllowAll})
	a, z := newFilteredNode(t, "100.64.7.1/10", fa), newFilteredNode(t, "100.64.7.2/10", fz)
	fz.SetPolicy(filter.Policy{Mode: filter.Enforce, Rules: []filter.Rule{
		{Peer: a.addr.Addr(), Protocol: filter.ProtoTCP, Ports: filter.PortRange{First: 22, Last: 22}},
	}})
	a.addPeer(t, z)
	z.addPeer(t, a)
	a.connectTo(t, z, z.sock.LocalAddr())
	serveTCP(t, z, 22)
	serveTCP(t, z, 80)
	serveTCP(t, a, 8080)

	if err := dialTCP(a, z.addr.Addr(), 22, deadline); err != nil {
		t.Fatalf("a → z:22: %v", err)
	}
	before := fz.Stats().Dropped[filter.DropRules]
	if err := dialTCP(a, z.addr.Addr(), 80, dropWait); err == nil {
		t.Fatal("a → z:80 connected")
	}
	if err := tryPing(a.iface.Net(), a.addr.Addr(), z.addr.Addr(), dropWait); err == nil {
		t.Fatal("a's ping to z answered")
	}
	if got := fz.Stats().Dropped[filter.DropRules]; got < before+2 {
		t.Fatalf("z's filter dropped %d packets, want the SYN and the echo at least", got-before)
	}
	if err := dialTCP(z, a.addr.Addr(), 8080, deadline); err != nil {
		t.Fatalf("z → a:8080: %v", err)
	}
	ping(t, z.iface.Net(), z.addr.Addr(), a.addr.Addr())

	fz.SetPolicy(filter.Policy{Mode: filter.Enforce, Rules: []filter.Rule{
		{Peer: a.addr.Addr(), Protocol: filter.ProtoTCP, Ports: filter.PortRange{First: 22, Last: 22}},
		{Peer: a.addr.Addr(), Protocol: filter.ProtoICMP},
	}})
	ping(t, a.iface.Net(), a.addr.Addr(), z.addr.Addr())
	if s := fz.Stats(); s.Rules != 2 || s.TCPFlows == 0 {
		t.Fatalf("z's filter: %+v", s)
	}
}

// BenchmarkTunnelThroughputFilter is BenchmarkTunnelThroughput with the
// filter off and on in the same run: on, the receiver allows TCP/9000 from
// the sender (every data segment is judged: a flow-table hit) and the
// sender has no rules (every ACK gets in as the reply of its flow). Compare
// the two in one invocation:
//
//	go test -run '^$' -bench TunnelThroughputFilter -benchtime 3000x -count 5 ./internal/wgiface/
func BenchmarkTunnelThroughputFilter(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) { benchThroughput(b, on) })
	}
}

func benchThroughput(b *testing.B, on bool) {
	const chunk = 64 << 10
	var fa, fz *filter.Filter
	if on {
		fa, fz = filter.New(), filter.New()
	}
	a, z := newFilteredNode(b, "100.64.8.1/10", fa), newFilteredNode(b, "100.64.8.2/10", fz)
	if on {
		fz.SetPolicy(filter.Policy{Mode: filter.Enforce, Rules: []filter.Rule{
			{Peer: a.addr.Addr(), Protocol: filter.ProtoTCP, Ports: filter.PortRange{First: 9000, Last: 9000}},
			{Peer: a.addr.Addr(), Protocol: filter.ProtoICMP},
		}})
	}
	a.addPeer(b, z)
	z.addPeer(b, a)
	a.connectTo(b, z, z.sock.LocalAddr())
	if err := tryPing(a.iface.Net(), a.addr.Addr(), z.addr.Addr(), deadline); err != nil {
		if on {
			b.Logf("filters: a %+v, z %+v", fa.Stats(), fz.Stats())
		}
		b.Fatal(err)
	}

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
	if on {
		if s := fz.Stats(); s.DroppedTotal() != 0 {
			b.Fatalf("filter dropped %v", s.Dropped)
		}
	}
}
