package relaysrv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/relay"
)

const secret = "relay-secret"

const wait = 20 * time.Second // a failure deadline, not an expectation

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.Secret == "" {
		cfg.Secret = secret
	}
	s := New(cfg)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func token(t *testing.T, sec string, exp time.Time) []byte {
	t.Helper()
	p, sig := relay.Sign(sec, exp)
	tok, err := relay.Token(p, sig)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// events records what a client's Handler is told.
type events struct {
	hc      chan struct{}
	online  chan []relay.PeerID
	offline chan []relay.PeerID
	unknown chan relay.PeerID
}

func newEvents() *events {
	return &events{hc: make(chan struct{}, 64), online: make(chan []relay.PeerID, 16),
		offline: make(chan []relay.PeerID, 16), unknown: make(chan relay.PeerID, 64)}
}
func (e *events) HealthCheck()                   { nonblock(e.hc, struct{}{}) }
func (e *events) Unknown(id relay.PeerID)        { nonblock(e.unknown, id) }
func (e *events) PeersOnline(ids []relay.PeerID) { nonblock(e.online, ids) }
func (e *events) PeersOffline(ids []relay.PeerID) {
	nonblock(e.offline, ids)
}

func nonblock[T any](c chan T, v T) {
	select {
	case c <- v:
	default:
	}
}

type client struct {
	id  relay.PeerID
	c   *relay.Conn
	ev  *events
	end chan error
}

func dial(t *testing.T, s *Server, tok []byte) *client {
	t.Helper()
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return dialID(t, s, relay.HashID(key.PublicKey().String()), tok)
}

func dialID(t *testing.T, s *Server, id relay.PeerID, tok []byte) *client {
	t.Helper()
	ev := newEvents()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := relay.Dial(ctx, s.URL(), id, tok, relay.DialOptions{Handler: ev})
	if err != nil {
		t.Fatal(err)
	}
	cl := &client{id: id, c: c, ev: ev, end: make(chan error, 1)}
	go func() { cl.end <- c.Run() }()
	t.Cleanup(func() { _ = c.Close(); <-c.Done() })
	return cl
}

// waitHas waits until the server has registered id (it registers right
// after sending the AuthResponse, so Dial may return first).
func waitHas(t *testing.T, s *Server, id relay.PeerID) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Wait(ctx, func(s *Server) bool { return s.Has(id) }); err != nil {
		t.Fatal("peer never registered")
	}
}

func recv[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(wait):
		t.Fatalf("no %s", what)
	}
	var zero T
	return zero
}

func TestAuthAndInstanceAddress(t *testing.T) {
	s := start(t, Config{Exposed: "rels://relay.example:443"})
	c := dial(t, s, token(t, secret, time.Now().Add(time.Hour)))
	if c.c.InstanceAddr() != "rels://relay.example:443" {
		t.Fatalf("instance address %q", c.c.InstanceAddr())
	}
	if !c.c.ServerIP().IsLoopback() {
		t.Fatalf("server ip %v", c.c.ServerIP())
	}
	waitHas(t, s, c.id)
	if s.Auths() != 1 {
		t.Fatalf("server: has %v, auths %d", s.Has(c.id), s.Auths())
	}
}

// HoldAuth keeps a client's AuthResponse until release: the server does
// not register it meanwhile; after release the same handshake completes.
// A held handshake ends with the server.
func TestHoldAuth(t *testing.T) {
	s := start(t, Config{})
	key, _ := nbcrypto.GenerateKey()
	id := relay.HashID(key.PublicKey().String())
	release := s.HoldAuth(id)
	type result struct {
		c   *relay.Conn
		err error
	}
	done := make(chan result, 1)
	tok := token(t, secret, time.Now().Add(time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		c, err := relay.Dial(ctx, s.URL(), id, tok, relay.DialOptions{Handler: newEvents()})
		done <- result{c, err}
	}()
	if err := s.Wait(ctx, func(s *Server) bool { return s.Holding() == 1 }); err != nil {
		t.Fatal("the handshake never waited on the hold")
	}
	if s.Has(id) || s.Auths() != 0 {
		t.Fatalf("held, yet registered: has %v auths %d", s.Has(id), s.Auths())
	}
	select {
	case r := <-done:
		t.Fatalf("dial returned while held: %v", r.err)
	default:
	}
	release()
	release() // idempotent
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	go func() { _ = r.c.Run() }()
	t.Cleanup(func() { _ = r.c.Close(); <-r.c.Done() })
	waitHas(t, s, id)
	if s.Holding() != 0 {
		t.Fatalf("holding %d after release", s.Holding())
	}

	// A hold that is never released ends with the server.
	key2, _ := nbcrypto.GenerateKey()
	id2 := relay.HashID(key2.PublicKey().String())
	s.HoldAuth(id2)
	go func() {
		c, err := relay.Dial(ctx, s.URL(), id2, tok, relay.DialOptions{Handler: newEvents()})
		done <- result{c, err}
	}()
	if err := s.Wait(ctx, func(s *Server) bool { return s.Holding() == 1 }); err != nil {
		t.Fatal("the second handshake never waited on its hold")
	}
	s.Stop()
	if r := <-done; r.err == nil {
		_ = r.c.Close()
		t.Fatal("a held handshake succeeded after Stop")
	}
}

func TestRefusedTokens(t *testing.T) {
	s := start(t, Config{})
	key, _ := nbcrypto.GenerateKey()
	id := relay.HashID(key.PublicKey().String())
	for name, tok := range map[string][]byte{
		"expired":      token(t, secret, time.Now().Add(-time.Minute)),
		"other secret": token(t, "wrong", time.Now().Add(time.Hour)),
		"garbage":      bytes.Repeat([]byte{1}, 40),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		_, err := relay.Dial(ctx, s.URL(), id, tok, relay.DialOptions{})
		cancel()
		if !errors.Is(err, relay.ErrAuthRefused) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if s.Refused() != 3 || s.Auths() != 0 {
		t.Fatalf("refused %d, auths %d", s.Refused(), s.Auths())
	}
}

func TestTransportBothWays(t *testing.T) {
	s := start(t, Config{})
	tok := token(t, secret, time.Now().Add(time.Hour))
	a, b := dial(t, s, tok), dial(t, s, tok)
	waitHas(t, s, a.id)
	waitHas(t, s, b.id)
	pa, err := a.c.OpenPeer(b.id)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := b.c.OpenPeer(a.id)
	for _, dir := range []struct {
		from, to *relay.PeerConn
		msg      string
	}{{pa, pb, "a→b"}, {pb, pa, "b→a"}} {
		if _, err := dir.from.Write([]byte(dir.msg)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 100)
		got := make(chan string, 1)
		go func() { n, _ := dir.to.Read(buf); got <- string(buf[:n]) }()
		if m := recv(t, got, dir.msg); m != dir.msg {
			t.Fatalf("got %q, want %q", m, dir.msg)
		}
	}
	// From a peer with no PeerConn: the handler hears of it, and the newest
	// such message is handed to the PeerConn opened next (early message).
	_ = pb.Close()
	for _, m := range []string{"old", "new"} {
		if _, err := pa.Write([]byte(m)); err != nil {
			t.Fatal(err)
		}
		if id := recv(t, b.ev.unknown, "unknown-sender event"); id != a.id {
			t.Fatalf("unknown %v", id)
		}
	}
	if _, err := pb.Read(make([]byte, 10)); !errors.Is(err, io.EOF) {
		t.Fatalf("read after close: %v", err)
	}
	pb2, _ := b.c.OpenPeer(a.id)
	buf := make([]byte, 10)
	k, err := pb2.Read(buf)
	if err != nil || string(buf[:k]) != "new" {
		t.Fatalf("early message %q %v", buf[:k], err)
	}
}

func TestHealthChecksAnsweredAndSilence(t *testing.T) {
	s := start(t, Config{HealthInterval: 50 * time.Millisecond, HealthTimeout: 40 * time.Millisecond})
	c := dial(t, s, token(t, secret, time.Now().Add(time.Hour)))
	for range 3 {
		recv(t, c.ev.hc, "health check")
	}
	// Answered: the server keeps the connection through several deadlines.
	if !s.Has(c.id) {
		t.Fatal("client answered but was closed")
	}
	s.SetHealthChecks(false)
	// Drain; then none arrive for many intervals and the server keeps it.
	time.Sleep(100 * time.Millisecond) // let an in-flight check land
	for len(c.ev.hc) > 0 {
		<-c.ev.hc
	}
	select {
	case <-c.ev.hc:
		t.Fatal("health check while turned off")
	case <-time.After(300 * time.Millisecond):
	}
	if !s.Has(c.id) {
		t.Fatal("closed while health checks were off")
	}
}

// A client that never answers is closed by the server.
func TestServerClosesSilentClient(t *testing.T) {
	s := start(t, Config{HealthInterval: 30 * time.Millisecond, HealthTimeout: 30 * time.Millisecond})
	key, _ := nbcrypto.GenerateKey()
	id := relay.HashID(key.PublicKey().String())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := relay.Dial(ctx, s.URL(), id, token(t, secret, time.Now().Add(time.Hour)), relay.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// No Run: nothing reads, nothing answers.
	if err := s.Wait(ctx, func(s *Server) bool { return !s.Has(id) }); err != nil {
		t.Fatal("silent client never closed")
	}
}

// The client's Watch: the server reports the watched peer online when it
// authenticates, offline when its connection drops, online again when it
// comes back (the client subscribes again after an offline report); the
// last Unwatch unsubscribes. A present peer is reported at once.
func TestSubscriptions(t *testing.T) {
	s := start(t, Config{})
	tok := token(t, secret, time.Now().Add(time.Hour))
	a := dial(t, s, tok)
	waitHas(t, s, a.id)
	key, _ := nbcrypto.GenerateKey()
	bid := relay.HashID(key.PublicKey().String())
	a.c.Watch(bid)
	a.c.Watch(bid) // counted: one Subscribe, two Unwatch to end it
	waitFor(t, s, "subscription", func(s *Server) bool { return s.Watchers(bid) == 1 })
	b := dialID(t, s, bid, tok)
	if ids := recv(t, a.ev.online, "peers-online"); len(ids) != 1 || ids[0] != bid {
		t.Fatalf("online %v", ids)
	}
	s.DropPeer(bid)
	if ids := recv(t, a.ev.offline, "peers-went-offline"); len(ids) != 1 || ids[0] != bid {
		t.Fatalf("offline %v", ids)
	}
	if err := recv(t, b.end, "end of the dropped client"); err == nil {
		t.Fatal("dropped client's Run returned nil")
	}
	waitFor(t, s, "second subscribe", func(s *Server) bool { return s.Subscribes() == 2 })
	dialID(t, s, bid, tok)
	if ids := recv(t, a.ev.online, "peers-online after the drop"); len(ids) != 1 || ids[0] != bid {
		t.Fatalf("online %v", ids)
	}
	a.c.Unwatch(bid)
	if !a.c.Watching(bid) {
		t.Fatal("one Unwatch of two ended the watch")
	}
	a.c.Unwatch(bid)
	waitFor(t, s, "unsubscribe", func(s *Server) bool { return s.Watchers(bid) == 0 })
	// Subscribing to a present peer answers at once.
	c := dial(t, s, tok)
	waitHas(t, s, c.id)
	c.c.Watch(a.id)
	if ids := recv(t, c.ev.online, "immediate peers-online"); len(ids) != 1 || ids[0] != a.id {
		t.Fatalf("online %v", ids)
	}
}

func waitFor(t *testing.T, s *Server, what string, cond func(*Server) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Wait(ctx, cond); err != nil {
		t.Fatalf("no %s", what)
	}
}

func TestSecondConnectionReplacesFirst(t *testing.T) {
	s := start(t, Config{})
	tok := token(t, secret, time.Now().Add(time.Hour))
	a := dial(t, s, tok)
	waitHas(t, s, a.id) // registered after its AuthResponse: a2 must come later
	a2 := dialID(t, s, a.id, tok)
	if err := recv(t, a.end, "end of the replaced connection"); err == nil {
		t.Fatal("nil error")
	}
	waitHas(t, s, a2.id)
	if s.Replaced() != 1 {
		t.Fatalf("has %v replaced %d", s.Has(a2.id), s.Replaced())
	}
}

func TestStopSendsCloseAndStartReusesPort(t *testing.T) {
	s := start(t, Config{})
	tok := token(t, secret, time.Now().Add(time.Hour))
	a := dial(t, s, tok)
	addr := s.Addr()
	s.Stop()
	if err := recv(t, a.end, "end on stop"); !errors.Is(err, relay.ErrServerClose) {
		t.Logf("end: %v (close frame may race the socket close)", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if s.Addr() != addr {
		t.Fatalf("restarted on %s, was %s", s.Addr(), addr)
	}
	b := dial(t, s, tok)
	waitHas(t, s, b.id)
}

// Many datagrams in both directions at once: nothing is corrupted.
func TestConcurrentTransport(t *testing.T) {
	s := start(t, Config{})
	tok := token(t, secret, time.Now().Add(time.Hour))
	a, b := dial(t, s, tok), dial(t, s, tok)
	waitHas(t, s, a.id)
	waitHas(t, s, b.id)
	pa, _ := a.c.OpenPeer(b.id)
	pb, _ := b.c.OpenPeer(a.id)
	const n = 200
	var wg sync.WaitGroup
	for _, p := range []*relay.PeerConn{pa, pb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				_, _ = p.Write(bytes.Repeat([]byte{byte(i)}, 1300))
			}
		}()
	}
	for _, p := range []*relay.PeerConn{pa, pb} {
		buf := make([]byte, 2000)
		for i := range n {
			k, err := p.Read(buf)
			if err != nil || k != 1300 || buf[0] != byte(i) || buf[1299] != byte(i) {
				t.Fatalf("datagram %d: %d bytes, %v", i, k, err)
			}
		}
	}
	wg.Wait()
}
