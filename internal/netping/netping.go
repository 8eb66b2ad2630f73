// Package netping sends ICMP echo requests through a userspace (netstack)
// WireGuard interface and waits for the first reply: how tests and the demo
// prove that a tunnel carries traffic. IPv4 and IPv6 alike.
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
	"sync/atomic"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/tun/netstack"
)

const prefix = "nbfsm ping"

// keep is how many requests' sockets stay open for a late reply.
const keep = 4

// Ping sends an echo request from → to every interval until a reply arrives
// or ctx ends, and returns the time from the first request to the reply.
//
// Each request goes out on a socket of its own, whose reader is waiting
// before the request is written. gVisor notifies a ping endpoint's readers
// only when its receive queue goes from empty to non-empty, and
// netstack's PingConn.Read waits for that notification before it reads: a
// reply that lands before the reader waits leaves the queue non-empty, and
// that socket's reader never wakes again, however many replies follow (seen
// about once in 30 pings started right after a tunnel came up). A fresh
// socket per request confines such a loss to that one request. The last
// keep sockets stay open, so a reply up to keep intervals late still counts.
func Ping(ctx context.Context, n *netstack.Net, from, to netip.Addr, interval time.Duration) (time.Duration, error) {
	got := make(chan time.Time, 1)
	var open []*request
	defer func() {
		for _, r := range open {
			r.close()
		}
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
		if len(open) == keep {
			open[0].close()
			open = append(open[:0], open[1:]...)
		}
		r, err := send(n, from, to, seq, got)
		if err != nil {
			return 0, err
		}
		open = append(open, r)
		every.Reset(interval)
	}
}

// request is one echo request's socket and the reader waiting on it.
type request struct {
	pc      *netstack.PingConn
	wg      sync.WaitGroup
	closing atomic.Bool
}

func (r *request) close() {
	r.closing.Store(true)
	_ = r.pc.SetReadDeadline(time.Now())
	_ = r.pc.Close()
	r.wg.Wait()
}

// send opens a socket, starts its reader, and writes one echo request once
// the reader is about to wait.
func send(n *netstack.Net, from, to netip.Addr, seq int, got chan<- time.Time) (*request, error) {
	pc, err := n.DialPingAddr(from, to)
	if err != nil {
		return nil, fmt.Errorf("netping: %w", err)
	}
	proto, reqType, replyType := 1, icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply)
	if to.Is6() && !to.Is4In6() {
		proto, reqType, replyType = 58, ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	r := &request{pc: pc}
	reading := make(chan struct{})
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 1500)
		close(reading)
		for {
			k, err := pc.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, net.ErrClosed) || err != nil && r.closing.Load() {
				return // the deadline set to end the wait, or the socket closed
			}
			if err != nil {
				continue // "would block": netstack woke the reader without a packet to read
			}
			reply, err := icmp.ParseMessage(proto, buf[:k])
			if err != nil {
				continue
			}
			if echo, ok := reply.Body.(*icmp.Echo); ok && reply.Type == replyType && bytes.HasPrefix(echo.Data, []byte(prefix)) {
				select {
				case got <- time.Now():
				default:
				}
				return
			}
		}
	}()
	<-reading
	msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: 7, Seq: seq, Data: fmt.Appendf(nil, "%s %d", prefix, seq)}}
	b, err := msg.Marshal(nil)
	if err == nil {
		_, err = pc.Write(b)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		r.close()
		return nil, fmt.Errorf("netping: send: %w", err)
	}
	return r, nil
}
