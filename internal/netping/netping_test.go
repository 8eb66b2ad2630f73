package netping

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ownNet is a netstack holding addrs, with nothing behind its TUN side: a
// ping to one of its own addresses is answered inside the stack at once
// (before a slow reader would be waiting), a ping elsewhere goes nowhere.
func ownNet(t *testing.T, addrs ...netip.Addr) *netstack.Net {
	t.Helper()
	dev, n, err := netstack.CreateNetTUN(addrs, nil, 1280)
	if err != nil {
		t.Fatal(err)
	}
	// The TUN side drops whatever the stack sends out (a full outbound
	// queue would block the stack's writers).
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs, sizes := [][]byte{make([]byte, 1500)}, []int{0}
		for {
			if _, err := dev.Read(bufs, sizes, 0); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() { _ = dev.Close(); <-done })
	return n
}

func TestPingAnswered(t *testing.T) {
	v4, v6 := netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("fd00::1")
	n := ownNet(t, v4, v6)
	for _, a := range []netip.Addr{v4, v6} {
		t.Run(a.String(), func(t *testing.T) {
			// Many rounds: a reply that lands before the reader waits must
			// not stall the ping (gVisor notifies readers only when the
			// receive queue was empty).
			for i := range 200 {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := Ping(ctx, n, a, a, 20*time.Millisecond)
				cancel()
				if err != nil {
					t.Fatalf("round %d: %v", i, err)
				}
			}
		})
	}
}

func TestPingUnanswered(t *testing.T) {
	n := ownNet(t, netip.MustParseAddr("100.64.0.1"))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := Ping(ctx, n, netip.MustParseAddr("100.64.0.1"), netip.MustParseAddr("100.64.0.2"), 20*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}
