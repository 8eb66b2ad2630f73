package grpcdial

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A failed reconnect should cost one refused TCP connect. A gRPC client
// connection costs far more before it fails: grpc.NewClient starts its
// resolver's and balancer's serializers, the first call runs the resolver,
// the balancer and a transport attempt, and Close winds them all down, some
// 15–19 goroutine wake-ups for a server that refused the connection. So a
// link's worker first connects to the server's TCP address itself (PreDial)
// and builds the gRPC client only when that succeeds, handing it the
// connection (Handoff.Dial).
//
// gRPC dials through an HTTP CONNECT proxy when HTTPS_PROXY (or
// https_proxy) applies to the target and NO_PROXY does not exclude it, and
// skips that whenever a custom dialer is set. PreDial therefore stands
// aside when a proxy applies: it asks the same function gRPC asks
// (http.ProxyFromEnvironment, for an https URL of the target, as gRPC's
// delegating resolver does for every target), and the caller then builds
// its client without a dialer, as before.

// PreDialTimeout bounds the pre-dial: gRPC's own connection attempt gives
// up after its minimum connect timeout, 20 s, and a pre-dial must not wait
// longer for a server that drops SYNs than the gRPC attempt it replaces.
const PreDialTimeout = 20 * time.Second

// proxyFromEnvironment is the proxy lookup gRPC uses (tests replace it:
// net/http reads the environment once per process).
var proxyFromEnvironment = http.ProxyFromEnvironment

// ProxyApplies reports whether gRPC would dial target ("host:port")
// through an HTTP CONNECT proxy given the environment (HTTPS_PROXY,
// NO_PROXY). A malformed proxy setting counts as applying: gRPC fails such
// a client itself, and the pre-dial stays out of its way.
func ProxyApplies(target string) bool {
	u, err := proxyFromEnvironment(&http.Request{URL: &url.URL{Scheme: "https", Host: target}})
	return err != nil || u != nil
}

// netDialer is gRPC's default dialer: TCP keepalive on, with the system's
// timings (grpc/internal.NetDialerWithTCPKeepalive).
func netDialer() *net.Dialer {
	return &net.Dialer{KeepAliveConfig: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}}
}

// dialError is a failed pre-dial, as gRPC reports a failed connection
// attempt to the call that waited for it: a status with code Unavailable
// (so Transient, Classify and Retryable sort it as they sort gRPC's), which
// still unwraps to the network error.
type dialError struct{ err error }

func (e *dialError) Error() string {
	return fmt.Sprintf("rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: %v\"", e.err)
}
func (e *dialError) Unwrap() error { return e.err }
func (e *dialError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, fmt.Sprintf("connection error: desc = \"transport: Error while dialing: %v\"", e.err))
}

// PreDial connects to target ("host:port") over TCP with ctx (bounded by
// PreDialTimeout), before any gRPC machinery exists. It returns:
//   - nil, nil when it stands aside: a proxy applies to target, or target
//     is not host:port (the client's own Dial reports that); build the
//     client as without a pre-dial;
//   - nil and an error that gRPC's would match (Unavailable, wrapping the
//     network error) when the connect fails: the attempt has failed;
//   - a Handoff holding the connection: pass its Dial as the client's
//     dialer and Close it once the client is closed.
func PreDial(ctx context.Context, target string) (*Handoff, error) {
	if CheckHostPort(target) != nil || ProxyApplies(target) {
		return nil, nil
	}
	dctx, cancel := context.WithTimeout(ctx, PreDialTimeout)
	defer cancel()
	c, err := netDialer().DialContext(dctx, "tcp", target)
	if err != nil {
		return nil, &dialError{err}
	}
	return &Handoff{conn: c}, nil
}

// Handoff hands a pre-dialed connection to gRPC: its Dial returns that
// connection the first time and dials addr afresh (gRPC's default dialer,
// no proxy: PreDial checked) after, should gRPC reconnect within the
// client's life. Safe for concurrent use.
type Handoff struct {
	mu   sync.Mutex
	conn net.Conn // nil once handed over or closed
	done bool
}

// Dial is the client's dialer (sigwire.WithDialer, mgmt.WithDialer).
func (h *Handoff) Dial(ctx context.Context, addr string) (net.Conn, error) {
	h.mu.Lock()
	c, done := h.conn, h.done
	h.conn = nil
	h.mu.Unlock()
	if done {
		return nil, net.ErrClosed
	}
	if c != nil {
		return c, nil
	}
	return netDialer().DialContext(ctx, "tcp", addr)
}

// Close closes the connection if gRPC never took it, and makes later Dials
// fail. Call it after closing the client. It is idempotent.
func (h *Handoff) Close() {
	h.mu.Lock()
	c := h.conn
	h.conn, h.done = nil, true
	h.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}
