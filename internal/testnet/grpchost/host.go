package grpchost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// DefaultAddr is where a host listens first: loopback, any free port.
const DefaultAddr = "127.0.0.1:0"

// KeepaliveMinTime is the shortest client ping interval the servers accept
// (NetBird's servers enforce the same; clients ping every 30 s).
const KeepaliveMinTime = 10 * time.Second

// ServerPing is how often an official NetBird signal server pings an idle
// client connection (HTTP/2 PING, gRPC keepalive.ServerParameters.Time),
// and PingTimeout how long it waits for the answer. A connected idle client
// wakes for these, so the test network sends them too (SetServerPings).
const (
	ServerPing  = 5 * time.Second
	PingTimeout = 2 * time.Second
)

// listenAttempts bounds the re-listen retries while the port is still held
// (another socket in the kernel's hands right after a Stop). SO_REUSEADDR makes
// the first attempt succeed in practice; the retries are a safety net for test
// infrastructure only. Variables so that a test can shorten them.
var (
	listenAttempts = 20
	listenRetryGap = 50 * time.Millisecond
)

// Host owns one gRPC server that can be stopped and started again on the
// same address. The zero value is not usable; use New.
type Host struct {
	log      *zap.Logger
	register func(*grpc.Server)

	mu      sync.Mutex
	pings   bool          // ping clients every ServerPing (SetServerPings)
	addr    string        // DefaultAddr until the first Start, then the bound address
	srv     *grpc.Server  // nil while stopped
	served  chan struct{} // closed when the Serve goroutine has returned
	running bool
}

// New returns a stopped host that will listen on addr ("" → DefaultAddr) and
// call register on every new grpc.Server it builds, to attach the services.
func New(addr string, log *zap.Logger, register func(*grpc.Server)) *Host {
	if addr == "" {
		addr = DefaultAddr
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Host{log: log, register: register, addr: addr}
}

// SetServerPings makes the servers built by the next Starts ping their
// clients every ServerPing, as NetBird's signal server does.
func (h *Host) SetServerPings(on bool) {
	h.mu.Lock()
	h.pings = on
	h.mu.Unlock()
}

// Start listens (on the port of the first Start, once there was one) and
// serves in a new goroutine until Stop.
func (h *Host) Start() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.running {
		return ErrRunning
	}
	lis, err := Listen(context.Background(), "tcp", h.addr)
	if err != nil {
		return err
	}
	h.addr = lis.Addr().String()
	opts := []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		// Stop must not return before every handler has: tests check that
		// no goroutine is left and that a restarted server starts clean.
		grpc.WaitForHandlers(true),
	}
	if h.pings {
		opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{Time: ServerPing, Timeout: PingTimeout}))
	}
	srv := grpc.NewServer(opts...)
	h.register(srv)
	served := make(chan struct{})
	go func() {
		defer close(served)
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			h.log.Warn("unexpected end of serve", zap.String("endpoint", lis.Addr().String()), zap.NamedError("err", err))
		}
	}()
	h.srv, h.served, h.running = srv, served, true
	h.log.Debug("listening", zap.String("endpoint", h.addr))
	return nil
}

// Stop closes the listener and every connection at once (clients see
// Unavailable), and returns when the handlers and the serve goroutine have
// returned. Stopping a stopped host does nothing.
func (h *Host) Stop() {
	h.mu.Lock()
	srv, served := h.srv, h.served
	h.srv, h.served, h.running = nil, nil, false
	h.mu.Unlock()
	if srv == nil {
		return
	}
	// Not under h.mu: handlers may need other locks of the service while
	// they wind down, and Stop waits for them.
	srv.Stop()
	<-served
	h.log.Debug("stopped", zap.String("endpoint", h.Addr()))
}

// Addr is "127.0.0.1:PORT": where the host listens, or will listen again after
// a Stop. Before the first Start it is the configured address.
func (h *Host) Addr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.addr
}

// Running reports whether the host is serving.
func (h *Host) Running() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.running
}

// Listen binds a TCP listener on addr with SO_REUSEADDR, retrying a bounded
// number of times while the address is still in use.
func Listen(ctx context.Context, network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: reuseAddr}
	var lastErr error
	for attempt := 1; attempt <= listenAttempts; attempt++ {
		lis, err := lc.Listen(ctx, network, addr)
		if err == nil {
			return lis, nil
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == listenAttempts {
			break
		}
		if err := waitRetry(ctx); err != nil {
			lastErr = err
			break
		}
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrListen, addr, lastErr)
}

// ListenPacket is Listen for UDP.
func ListenPacket(ctx context.Context, network, addr string) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: reuseAddr}
	var lastErr error
	for attempt := 1; attempt <= listenAttempts; attempt++ {
		pc, err := lc.ListenPacket(ctx, network, addr)
		if err == nil {
			return pc, nil
		}
		lastErr = err
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == listenAttempts {
			break
		}
		if err := waitRetry(ctx); err != nil {
			lastErr = err
			break
		}
	}
	return nil, fmt.Errorf("%w: %s: %w", ErrListen, addr, lastErr)
}

func waitRetry(ctx context.Context) error {
	t := time.NewTimer(listenRetryGap)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
