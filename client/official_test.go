package client_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/testnet/officialpeer"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// keyAbove returns a fresh key whose public key sorts above (or below)
// other's: the side with the greater key controls ICE (PROTOCOL.md §5).
func keyAbove(t testing.TB, other wgtypes.Key, above bool) wgtypes.Key {
	t.Helper()
	for {
		k, err := nbcrypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if (k.PublicKey().String() > other.PublicKey().String()) == above {
			return k
		}
	}
}

// nbfsmNode is an nbfsm client that counts its path drops: transitions
// out of session.ice.connected.
type nbfsmNode struct {
	c       *client.Client
	drops   atomic.Int64
	up      chan struct{}     // a peer connected
	changes *fsmwatch.Changes // a token per transition
}

func startCounted(t testing.TB, n *testnet.Network, key wgtypes.Key) *nbfsmNode {
	t.Helper()
	nd := &nbfsmNode{up: make(chan struct{}, 16), changes: fsmwatch.NewChanges()}
	in := func(s fsm.State) bool {
		return s == peerfsm.Connected || strings.HasPrefix(string(s), string(peerfsm.Connected)+".")
	}
	obs := fsm.ObserverFunc(func(r fsm.Record) {
		if r.Kind != peerfsm.Kind || r.Internal {
			return
		}
		switch {
		case in(r.From) && !in(r.To):
			nd.drops.Add(1)
		case !in(r.From) && in(r.To):
			select {
			case nd.up <- struct{}{}:
			default:
			}
		}
	})
	c, err := client.New(client.Options{
		ManagementURL: n.ManagementURL(), PrivateKey: key, SetupKey: n.SetupKey(),
		Meta: mgmt.Meta{Hostname: "nbfsm", GoOS: "linux"}, Mode: wgiface.Netstack,
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: zap.NewNop(),
		Observers: []fsm.Observer{obs, nd.changes},
	})
	if err != nil {
		t.Fatal(err)
	}
	nd.c = c
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return nd
}

func startDouble(t testing.TB, n *testnet.Network, key wgtypes.Key) *officialpeer.Peer {
	t.Helper()
	d, err := officialpeer.Start(officialpeer.Config{ManagementURL: n.ManagementURL(), SetupKey: n.SetupKey(),
		Key: key, Hostname: "official", Logger: doubleLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

// pingOnce sends echo requests every interval until one is answered or
// within passes.
func pingWithin(n *netstack.Net, from, to netip.Addr, within, interval time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	return netping.Ping(ctx, n, from, to, interval)
}

// TestOfficialPeerTunnelHolds: nbfsm and two official-peer doubles (one
// controls ICE against nbfsm, nbfsm controls against the other) stay
// connected for 60 s: no path drop on either side, and after the first
// every ping in both directions is answered within 100 ms. The doubles
// check the selected pair every 2 s with 0x8100 after FINGERPRINT and drop
// the path after 6 s without answers, as official peers do.
func TestOfficialPeerTunnelHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("60 s of real time")
	}
	hold := holdFor()
	const every, within = 500 * time.Millisecond, 100 * time.Millisecond
	n := startNet(t)
	own, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	doubles := []*officialpeer.Peer{
		startDouble(t, n, keyAbove(t, own, true)),  // controls
		startDouble(t, n, keyAbove(t, own, false)), // controlled
	}
	nb := startCounted(t, n, own)
	for _, d := range doubles {
		udpEcho(t, d.Net(), d.Addr())
	}
	addr := func() netip.Addr {
		for {
			if s, err := nb.c.Status(); err == nil && s.Address.IsValid() && nb.c.Net() != nil {
				return s.Address.Addr()
			}
			select {
			case <-nb.up:
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	udpEcho(t, nb.c.Net(), addr)
	for i, d := range doubles {
		if _, err := pingWithin(nb.c.Net(), addr, d.Addr(), wait, 50*time.Millisecond); err != nil {
			t.Fatalf("double %d: first ping: %v", i, err)
		}
	}
	// The pings are UDP echoes (udpPing): netstack's ICMP ping sockets
	// lost a whole echo session now and then (2 s, 80 requests) while a new
	// one right after was answered in 0.2 ms, which is netstack, not the
	// tunnel. Requests repeat every resend. A ping is lost when no reply
	// comes within lost (the flapping bug lost seconds); it is late past
	// within. The machine is shared with other test runs: a few late
	// replies (at most maxLate: 1 %, 5 % under the race detector, which
	// showed 9 of 472 late, up to 0.56 s, in one 3 s stall) are scheduling,
	// not the path; a lost one fails.
	const resend, lost = 25 * time.Millisecond, 2 * time.Second
	var late, total int
	var worst time.Duration
	for start := time.Now(); time.Since(start) < hold; {
		next := time.After(every)
		for i, d := range doubles {
			for _, dir := range []struct {
				n        *netstack.Net
				from, to netip.Addr
			}{{nb.c.Net(), addr, d.Addr()}, {d.Net(), d.Addr(), addr}} {
				total++
				rtt, err := udpPing(dir.n, dir.from, dir.to, lost, resend)
				if err != nil {
					t.Errorf("%v: double %d: ping %v → %v lost: %v", time.Since(start).Round(time.Millisecond), i, dir.from, dir.to, err)
					continue
				}
				worst = max(worst, rtt)
				if rtt > within {
					late++
					t.Logf("%v: double %d: ping %v → %v answered after %v", time.Since(start).Round(time.Millisecond), i, dir.from, dir.to, rtt)
				}
			}
		}
		<-next
	}
	maxLate := total / 100
	if raceEnabled {
		maxLate = total / 20 // scheduling stalls of the race detector on 2 shared cores
	}
	t.Logf("%d pings over %v: %d answered after more than %v (at most %d allowed), slowest %v", total, hold, late, within, maxLate, worst)
	if late > maxLate {
		t.Errorf("%d of %d pings answered after more than %v", late, total, within)
	}
	for i, d := range doubles {
		sent, answered := d.Checks()
		t.Logf("double %d: %d checks sent, %d answered, %d path drops", i, sent, answered, d.Drops())
		if d.Drops() != 0 {
			t.Errorf("double %d declared the path dead %d times", i, d.Drops())
		}
		if want := int(hold / (2 * time.Second)); sent < want || answered < sent-1 {
			t.Errorf("double %d: %d checks sent (want ≥ %d), %d answered", i, sent, want, answered)
		}
	}
	if d := nb.drops.Load(); d != 0 {
		t.Errorf("nbfsm left connected %d times", d)
	}
}

// holdFor is 60 s, or NBFSM_OFFICIAL_HOLD (a Go duration) for quick runs.
func holdFor() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("NBFSM_OFFICIAL_HOLD")); err == nil {
		return d
	}
	return 60 * time.Second
}

// waitReady waits, on the client's transitions, for its interface and
// its overlay address.
func (nd *nbfsmNode) waitReady(t testing.TB) {
	t.Helper()
	err := nd.changes.Wait(context.Background(), wait, func() (bool, error) {
		s, err := nd.c.Status()
		return err == nil && s.Address.IsValid() && nd.c.Net() != nil, err
	})
	if err != nil {
		t.Fatalf("no interface and address: %v", err)
	}
}

// doubleLogger logs the double at debug level when NBFSM_DOUBLE_LOG is set.
func doubleLogger() *zap.Logger {
	if os.Getenv("NBFSM_DOUBLE_LOG") == "" {
		return nil
	}
	l, _ := zap.NewDevelopment()
	return l
}

// echoPort is the UDP echo port of udpEcho.
const echoPort = 7

// udpEcho answers UDP datagrams to addr:7 on n with the same bytes, until
// the test ends.
func udpEcho(t testing.TB, n *netstack.Net, addr netip.Addr) {
	t.Helper()
	c, err := n.ListenUDPAddrPort(netip.AddrPortFrom(addr, echoPort))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			k, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = c.WriteTo(buf[:k], from)
		}
	}()
	t.Cleanup(func() { _ = c.Close(); <-done })
}

// udpPing sends a numbered datagram to to:7 every resend until the echo of
// any of them returns or within passes, and returns the time from the first.
func udpPing(n *netstack.Net, from, to netip.Addr, within, resend time.Duration) (time.Duration, error) {
	c, err := n.DialUDPAddrPort(netip.AddrPortFrom(from, 0), netip.AddrPortFrom(to, echoPort))
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	got := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 64)
		for {
			k, err := c.Read(buf)
			if err != nil {
				return
			}
			if strings.HasPrefix(string(buf[:k]), "nbfsm echo") {
				got <- time.Since(start)
				return
			}
		}
	}()
	deadline := time.NewTimer(within)
	defer deadline.Stop()
	every := time.NewTimer(0)
	defer every.Stop()
	for seq := 0; ; seq++ {
		select {
		case rtt := <-got:
			return rtt, nil
		case <-deadline.C:
			return 0, fmt.Errorf("no echo from %v within %v (%d requests)", to, within, seq)
		case <-every.C:
			_, _ = fmt.Fprintf(c, "nbfsm echo %d", seq)
			every.Reset(resend)
		}
	}
}
