// Package netping sends ICMP echo requests through a userspace (netstack)
// WireGuard interface and waits for the first reply: how tests and the demo
// prove that a tunnel carries traffic.
package netping

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

const prefix = "nbfsm ping"

// Ping sends an echo request from → to every interval until a reply arrives
// or ctx ends, and returns the time from the first request to the reply.
//
// netstack's PingConn.Read only wakes on a new arrival (a reply that came
// before Read was waiting is seen with the next one), so one reader waits
// all along while the requests go out.
func Ping(ctx context.Context, n *netstack.Net, from, to netip.Addr, interval time.Duration) (time.Duration, error) {
	pc, err := n.DialPingAddr(from, to)
	if err != nil {
		return 0, fmt.Errorf("netping: %w", err)
	}
	got := make(chan time.Time, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1500)
		for {
			k, err := pc.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) {
				return // the deadline set to end the wait
			}
			if err != nil {
				// "would block": netstack woke the reader without a packet
				// to read; wait for the next one.
				continue
			}
			reply, err := icmp.ParseMessage(1, buf[:k])
			if err != nil {
				continue
			}
			if echo, ok := reply.Body.(*icmp.Echo); ok && reply.Type == ipv4.ICMPTypeEchoReply && bytes.HasPrefix(echo.Data, []byte(prefix)) {
				select {
				case got <- time.Now():
				default:
				}
				return
			}
		}
	}()
	defer func() {
		_ = pc.SetReadDeadline(time.Now())
		_ = pc.Close()
		wg.Wait()
	}()
	start := time.Now()
	every := time.NewTimer(0)
	defer every.Stop()
	for seq := 1; ; seq++ {
		select {
		case at := <-got:
			return at.Sub(start), nil
		case <-ctx.Done():
			return 0, fmt.Errorf("netping: no echo reply from %v: %w", to, ctx.Err())
		case <-every.C:
		}
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 7, Seq: seq, Data: fmt.Appendf(nil, "%s %d", prefix, seq)}}
		b, err := msg.Marshal(nil)
		if err != nil {
			return 0, err
		}
		if _, err := pc.Write(b); err != nil && !errors.Is(err, context.Canceled) {
			return 0, fmt.Errorf("netping: send: %w", err)
		}
		every.Reset(interval)
	}
}
