package grpchost

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestHostStopStartSamePort(t *testing.T) {
	h := New("", nil, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) })
	if h.Addr() != DefaultAddr || h.Running() {
		t.Fatalf("new host: addr %s running %v", h.Addr(), h.Running())
	}
	h.Stop() // stopping a stopped host does nothing
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Stop()
	addr := h.Addr()
	if host, port, _ := net.SplitHostPort(addr); host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr = %s", addr)
	}
	if err := h.Start(); !errors.Is(err, ErrRunning) {
		t.Fatalf("second Start = %v, want ErrRunning", err)
	}

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A watch is a long-lived stream: Stop must end it, not wait for it.
	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}

	for round := range 3 {
		h.Stop()
		if h.Running() {
			t.Fatal("running after Stop")
		}
		if round == 0 {
			if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
				t.Fatalf("open stream after Stop: %v, want Unavailable", err)
			}
		}
		// Let the client see its connection go, or the next RPC may be
		// written on the dead one and fail (as it may in real life).
		cc.WaitForStateChange(ctx, connectivity.Ready)
		if err := h.Start(); err != nil {
			t.Fatalf("round %d: Start: %v", round, err)
		}
		if h.Addr() != addr {
			t.Fatalf("round %d: Addr = %s, want %s", round, h.Addr(), addr)
		}
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
			t.Fatalf("round %d: Check: %v", round, err)
		}
	}
}

func TestListenBusyPort(t *testing.T) {
	holder, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := Listen(ctx, "tcp", holder.Addr().String()); !errors.Is(err, ErrListen) {
		t.Fatalf("Listen on a busy port = %v, want ErrListen", err)
	}
	defer func(n int, gap time.Duration) { listenAttempts, listenRetryGap = n, gap }(listenAttempts, listenRetryGap)
	listenAttempts, listenRetryGap = 3, time.Millisecond
	h := New(holder.Addr().String(), nil, func(*grpc.Server) {})
	// Not a timing assertion: the host gives up after a bounded number of
	// attempts whatever the clock says.
	if err := h.Start(); !errors.Is(err, ErrListen) || !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("Start on a busy port = %v", err)
	}
}

func TestListenPacketSamePortTwice(t *testing.T) {
	pc, err := ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	pc, err = ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		t.Fatalf("re-listen on %s: %v", addr, err)
	}
	pc.Close()
}

// countingConn counts the bytes the client reads from the server.
type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.read.Add(int64(n))
	return n, err
}

// TestServerPings: with SetServerPings an idle client connection hears
// from the server within ServerPing (HTTP/2 PINGs, as official signal
// servers send them); without, it hears nothing once the RPC is done.
func TestServerPings(t *testing.T) {
	for _, on := range []bool{true, false} {
		t.Run(map[bool]string{true: "on", false: "off"}[on], func(t *testing.T) {
			t.Parallel()
			h := New("", nil, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) })
			h.SetServerPings(on)
			if err := h.Start(); err != nil {
				t.Fatal(err)
			}
			defer h.Stop()
			var read atomic.Int64
			cc, err := grpc.NewClient(h.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
					c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
					return countingConn{c, &read}, err
				}))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			// Settle: gRPC's own BDP ping and its answer follow the RPC.
			time.Sleep(time.Second)
			before := read.Load()
			time.Sleep(ServerPing + time.Second) // the idle window under test
			got := read.Load() - before
			if on && got == 0 {
				t.Fatalf("no bytes from the server in %v of idle connection", ServerPing+time.Second)
			}
			if !on && got != 0 {
				t.Fatalf("%d bytes from the server on an idle connection without server pings", got)
			}
		})
	}
}
