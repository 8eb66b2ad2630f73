package grpcdial

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"go.uber.org/goleak"
	"golang.org/x/net/http/httpproxy"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// ProxyApplies asks what gRPC asks (the https URL of the target against
// HTTPS_PROXY / NO_PROXY), so the pre-dial stands aside exactly when gRPC
// would dial a proxy.
func TestProxyApplies(t *testing.T) {
	tests := []struct {
		name   string
		cfg    httpproxy.Config
		target string
		want   bool
	}{
		{"no proxy", httpproxy.Config{}, "signal.example.com:443", false},
		{"https proxy", httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128"}, "signal.example.com:443", true},
		{"https proxy, plaintext server", httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128"}, "mgmt.example.com:80", true},
		{"http proxy only: gRPC asks for https", httpproxy.Config{HTTPProxy: "http://proxy.example.com:3128"}, "signal.example.com:443", false},
		{"no_proxy host", httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128", NoProxy: "signal.example.com"}, "signal.example.com:443", false},
		{"no_proxy domain", httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128", NoProxy: ".example.com"}, "signal.example.com:443", false},
		{"no_proxy other domain", httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128", NoProxy: ".example.org"}, "signal.example.com:443", true},
		{"no_proxy cidr", httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128", NoProxy: "100.64.0.0/10"}, "100.64.1.2:443", false},
		{"loopback never proxied", httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128"}, "127.0.0.1:443", false},
		{"localhost never proxied", httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128"}, "localhost:443", false},
		{"malformed proxy: gRPC's to report", httpproxy.Config{HTTPSProxy: "http://[::1"}, "signal.example.com:443", true},
	}
	old := proxyFromEnvironment
	t.Cleanup(func() { proxyFromEnvironment = old })
	for _, tt := range tests {
		f := tt.cfg.ProxyFunc()
		proxyFromEnvironment = func(r *http.Request) (*url.URL, error) { return f(r.URL) }
		if got := ProxyApplies(tt.target); got != tt.want {
			t.Errorf("%s: ProxyApplies(%q) = %v, want %v", tt.name, tt.target, got, tt.want)
		}
	}
}

// A proxy that applies, or a target that is not host:port: PreDial stands
// aside without dialing anything.
func TestPreDialStandsAside(t *testing.T) {
	old := proxyFromEnvironment
	t.Cleanup(func() { proxyFromEnvironment = old })
	cfg := httpproxy.Config{HTTPSProxy: "http://proxy.example.com:3128"}
	f := cfg.ProxyFunc()
	proxyFromEnvironment = func(r *http.Request) (*url.URL, error) { return f(r.URL) }
	for _, target := range []string{"signal.example.com:443", "no-port", ":443", "host:0", ""} {
		h, err := PreDial(context.Background(), target)
		if h != nil || err != nil {
			t.Errorf("PreDial(%q) = %v, %v; want nil, nil", target, h, err)
		}
	}
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// countingListener counts accepted connections.
type countingListener struct {
	net.Listener
	n atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// healthServer serves gRPC's health service on l until the test ends.
func healthServer(t *testing.T, l net.Listener) {
	t.Helper()
	s := grpc.NewServer()
	healthpb.RegisterHealthServer(s, health.NewServer())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Serve(l) }()
	t.Cleanup(func() { s.Stop(); <-done })
}

// check makes one health call through a client of target built with o.
func check(t *testing.T, target string, o Options) error {
	t.Helper()
	conn, err := New(target, o)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	return err
}

var testErrors = Errors{Prefix: "test", Unavailable: Sentinel("test: unavailable", ErrUnavailable),
	StreamClosed: Sentinel("test: stream closed", ErrStreamClosed),
	Answer:       func(codes.Code) error { return Sentinel("test: rejected", ErrRejected) }, Stream: "recv"}

// A refused pre-dial fails as the gRPC call it replaces fails: the same
// code, the same classification, and the network error still visible.
func TestPreDialRefusedLikeGRPC(t *testing.T) {
	addr := refusedAddr(t)
	ctx := context.Background()
	h, perr := PreDial(ctx, addr)
	if h != nil || perr == nil {
		t.Fatalf("PreDial(%s) = %v, %v; want an error", addr, h, perr)
	}
	if !errors.Is(perr, syscall.ECONNREFUSED) {
		t.Errorf("pre-dial error %v does not wrap ECONNREFUSED", perr)
	}
	gerr := check(t, addr, Options{})
	if gerr == nil {
		t.Fatal("gRPC call to a refused address succeeded")
	}
	for _, c := range []struct {
		name string
		f    func(error) any
	}{
		{"status code", func(err error) any { return status.Code(err) }},
		{"transient", func(err error) any { return Transient(ctx, err) }},
		{"retryable", func(err error) any { return Retryable(testErrors.Classify(ctx, "connect", err)) }},
		{"unavailable", func(err error) any { return errors.Is(testErrors.Classify(ctx, "connect", err), ErrUnavailable) }},
		{"rejected", func(err error) any { return errors.Is(testErrors.Classify(ctx, "connect", err), ErrRejected) }},
		{"stream closed", func(err error) any {
			return Retryable(testErrors.ClassifyStream(ctx, err))
		}},
	} {
		if p, g := c.f(perr), c.f(gerr); p != g {
			t.Errorf("%s: pre-dial %v, gRPC %v (pre-dial error %v, gRPC error %v)", c.name, p, g, perr, gerr)
		}
	}
	if status.Code(perr) != codes.Unavailable {
		t.Errorf("pre-dial status code %v, want Unavailable", status.Code(perr))
	}
	// A cancelled attempt: the caller's context shows through.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := PreDial(cctx, addr); !errors.Is(testErrors.Classify(cctx, "connect", err), context.Canceled) {
		t.Errorf("cancelled pre-dial: %v does not classify as cancelled", err)
	}
}

// A pre-dial that connects hands its connection to gRPC: the call goes
// over it, and the server sees one connection, not two.
func TestPreDialHandsOver(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	healthServer(t, cl)
	h, err := PreDial(context.Background(), l.Addr().String())
	if err != nil || h == nil {
		t.Fatalf("PreDial = %v, %v", h, err)
	}
	defer h.Close()
	if err := check(t, l.Addr().String(), Options{Dialer: h.Dial}); err != nil {
		t.Fatal(err)
	}
	if n := cl.n.Load(); n != 1 {
		t.Errorf("server accepted %d connections, want 1", n)
	}
	h.Close()
	if _, err := h.Dial(context.Background(), l.Addr().String()); err == nil {
		t.Error("Dial after Close succeeded")
	}
}

// An unused handoff's Close closes its connection.
func TestHandoffCloseUnused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h, err := PreDial(context.Background(), l.Addr().String())
	if err != nil || h == nil {
		t.Fatalf("PreDial = %v, %v", h, err)
	}
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h.Close()
	h.Close()
	if _, err := s.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("server read %v, want EOF after Close", err)
	}
}

// With HTTPS_PROXY set in the environment (a child process: net/http reads
// it once), PreDial stands aside and gRPC dials the target through the
// proxy: the target's name is never resolved here, the proxy gets a
// CONNECT for it, and the call succeeds. (NO_PROXY is TestProxyApplies's:
// a pre-dial of a name would resolve it outside the test.)
func TestPreDialProxyEnvironment(t *testing.T) {
	if os.Getenv("NBFSM_PREDIAL_CHILD") != "" {
		return
	}
	srv, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	healthServer(t, srv)
	p := startConnectProxy(t, srv.Addr().String())
	const target = "signal.nbfsm.test:443"
	for _, tt := range []struct {
		name     string
		env      []string
		connects []string
	}{
		{"https proxy", []string{"HTTPS_PROXY=http://" + p.addr}, []string{target}},
		{"lower-case https proxy", []string{"https_proxy=http://" + p.addr}, []string{target}},
	} {
		p.reset()
		cmd := exec.Command(os.Args[0], "-test.run=^TestPreDialProxyChild$", "-test.count=1")
		cmd.Env = append(cleanEnv(), append(tt.env, "NBFSM_PREDIAL_CHILD="+target)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: child: %v\n%s", tt.name, err, out)
		}
		if got := p.seen(); strings.Join(got, ",") != strings.Join(tt.connects, ",") {
			t.Errorf("%s: proxy saw CONNECT %q, want %q", tt.name, got, tt.connects)
		}
	}
}

// cleanEnv is the environment without proxy settings.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "REQUEST_METHOD":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// The child of TestPreDialProxyEnvironment.
func TestPreDialProxyChild(t *testing.T) {
	target := os.Getenv("NBFSM_PREDIAL_CHILD")
	if target == "" {
		t.Skip("run by TestPreDialProxyEnvironment")
	}
	if !ProxyApplies(target) {
		t.Fatalf("ProxyApplies(%q) = false with %v", target, os.Environ())
	}
	h, err := PreDial(context.Background(), target)
	if h != nil || err != nil {
		t.Fatalf("PreDial = %v, %v; want it to stand aside", h, err)
	}
	if err := check(t, target, Options{}); err != nil {
		t.Fatalf("call through the proxy: %v", err)
	}
}

// connectProxy is an HTTP CONNECT proxy that records the targets it is
// asked for and connects every one to upstream.
type connectProxy struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func (p *connectProxy) reset() { p.mu.Lock(); p.got = nil; p.mu.Unlock() }
func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.got...)
}

func startConnectProxy(t *testing.T, upstream string) *connectProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{addr: l.Addr().String()}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); p.serve(c, upstream) }()
		}
	}()
	t.Cleanup(func() { _ = l.Close(); wg.Wait() })
	return p
}

func (p *connectProxy) serve(c net.Conn, upstream string) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil || req.Method != http.MethodConnect {
		return
	}
	p.mu.Lock()
	p.got = append(p.got, req.Host)
	p.mu.Unlock()
	u, err := net.Dial("tcp", upstream)
	if err != nil {
		_, _ = fmt.Fprint(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n")
		return
	}
	defer u.Close()
	if _, err := fmt.Fprint(c, "HTTP/1.1 200 OK\r\n\r\n"); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(u, br); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, u); done <- struct{}{} }()
	<-done
	_ = c.Close()
	_ = u.Close()
	<-done
}
