package relayfsm_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/testnet/relaysrv"
	"github.com/nbfsm/nbfsm/relayfsm"
)

var fast = backoff.Policy{Base: 50 * time.Millisecond, Cap: 200 * time.Millisecond, Min: 10 * time.Millisecond}

const (
	wait   = 20 * time.Second // a failure deadline, not an expectation
	secret = "s3cret"
)

func startRelay(t *testing.T, exposed string) *relaysrv.Server {
	t.Helper()
	s := relaysrv.New(relaysrv.Config{Secret: secret, Exposed: exposed,
		HealthInterval: 100 * time.Millisecond, HealthTimeout: time.Second})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func config(urls []string, ttl time.Duration) relayfsm.Config {
	p, sig := relay.Sign(secret, time.Now().Add(ttl))
	return relayfsm.Config{URLs: urls, Token: relayfsm.Token{Payload: p, Signature: sig}}
}

type client struct {
	key   wgtypes.Key
	id    relay.PeerID
	loop  *fsm.Loop
	m     *fsm.Machine[*relayfsm.Link]
	watch *fsmwatch.Watch
}

func startClient(t *testing.T, cfg relayfsm.Config) *client {
	t.Helper()
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return startClientKey(t, key, cfg)
}

func startClientKey(t *testing.T, key wgtypes.Key, cfg relayfsm.Config) *client {
	t.Helper()
	var err error
	c := &client{key: key, id: relay.HashID(key.PublicKey().String()), loop: fsm.NewLoop(fsm.Options{}), watch: fsmwatch.New(4096)}
	c.loop.Observe(c.watch)
	d := &relayfsm.Dialer{Key: key.PublicKey()}
	// A 400 ms health window over a 100 ms server interval.
	c.m, err = relayfsm.New(c.loop, &relayfsm.Link{Effects: d, Backoff: fast, HealthWindow: 400 * time.Millisecond,
		Linger: 100 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.loop.Run(ctx); close(done) }()
	t.Cleanup(func() {
		_ = c.loop.Post(fsm.Envelope{To: relayfsm.ID, Event: relayfsm.EvStop})
		_, _ = c.watch.Until(relayfsm.ID, relayfsm.Stopped, wait)
		cancel()
		<-done
	})
	c.post(relayfsm.ID, relayfsm.EvStart, cfg)
	return c
}

func (c *client) post(to string, e fsm.Event, data any) {
	_ = c.loop.Post(fsm.Envelope{To: to, Event: e, Data: data})
}

func (c *client) until(t *testing.T, id string, s fsm.State) []fsm.Record {
	t.Helper()
	recs, err := c.watch.Until(id, s, wait)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (c *client) link() (addr, lastErr string) {
	_ = c.loop.Do(func() { addr, lastErr = c.m.Data.Addr, c.m.Data.LastErr })
	return
}

func waitServer(t *testing.T, s *relaysrv.Server, id relay.PeerID, present bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Wait(ctx, func(s *relaysrv.Server) bool { return s.Has(id) == present }); err != nil {
		t.Fatalf("server: peer present %v never reached", present)
	}
}

func TestConnectKeepsInstanceAddressAndAnswersHealthChecks(t *testing.T) {
	s := startRelay(t, "rels://relay.example:443")
	c := startClient(t, config([]string{"rel://127.0.0.1:1", s.URL()}, time.Hour)) // the first URL is dead
	c.until(t, relayfsm.ID, relayfsm.Connected)
	waitServer(t, s, c.id, true)
	if addr, _ := c.link(); addr != "rels://relay.example:443" {
		t.Fatalf("instance address %q", addr)
	}
	// Ten health checks (ten server intervals, 2.5 health windows) later
	// the link has not left connected: each check re-armed the deadline.
	deadline := time.After(wait)
	for n := 0; n < 10; {
		select {
		case r := <-c.watch.C:
			if r.Machine != relayfsm.ID {
				continue
			}
			if r.Event == relayfsm.EvHealth && r.Internal {
				n++
			} else {
				t.Fatalf("unexpected transition while connected: %+v", r)
			}
		case <-deadline:
			t.Fatal("no health checks")
		}
	}
	if !s.Has(c.id) {
		t.Fatal("server closed a client that answered")
	}
}

func TestSilentServerIsDown(t *testing.T) {
	s := startRelay(t, "")
	c := startClient(t, config([]string{s.URL()}, time.Hour))
	c.until(t, relayfsm.ID, relayfsm.Connected)
	s.SetHealthChecks(false)
	recs := c.until(t, relayfsm.ID, relayfsm.Backoff)
	if last := recs[len(recs)-1]; last.Event != relayfsm.EvSilent {
		t.Fatalf("left connected on %s, want %s", last.Event, relayfsm.EvSilent)
	}
	if _, lastErr := c.link(); lastErr != relayfsm.ErrSilent.Error() {
		t.Fatalf("last error %q", lastErr)
	}
	s.SetHealthChecks(true)
	c.until(t, relayfsm.ID, relayfsm.Connected)
}

func TestServerRestartReauthenticates(t *testing.T) {
	s := startRelay(t, "")
	c := startClient(t, config([]string{s.URL()}, time.Hour))
	c.until(t, relayfsm.ID, relayfsm.Connected)
	s.Stop()
	c.until(t, relayfsm.ID, relayfsm.Backoff)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	c.until(t, relayfsm.ID, relayfsm.Connected)
	waitServer(t, s, c.id, true)
	if s.Auths() < 2 {
		t.Fatalf("auths %d", s.Auths())
	}
}

func TestExpiredTokenRefusedRefreshedWorks(t *testing.T) {
	s := startRelay(t, "")
	c := startClient(t, config([]string{s.URL()}, -time.Minute))
	c.until(t, relayfsm.ID, relayfsm.Backoff)
	c.until(t, relayfsm.ID, relayfsm.Connecting)
	c.until(t, relayfsm.ID, relayfsm.Backoff)
	if s.Refused() < 2 || s.Auths() != 0 {
		t.Fatalf("refused %d auths %d", s.Refused(), s.Auths())
	}
	c.post(relayfsm.ID, relayfsm.EvConfig, config(nil, time.Hour)) // a refresh: token only
	c.until(t, relayfsm.ID, relayfsm.Connected)
	waitServer(t, s, c.id, true)
}

func TestForeignRelayOpenedAndClosedWhenUnused(t *testing.T) {
	home, far := startRelay(t, ""), startRelay(t, "")
	c := startClient(t, config([]string{home.URL()}, time.Hour))
	c.until(t, relayfsm.ID, relayfsm.Connected)
	waitServer(t, home, c.id, true) // the server registers a peer after its AuthResponse
	// A stand-in user: the acquire's peer id need not exist for the relay
	// machines (the ready message is counted as an unknown target).
	fid := relayfsm.ForeignID(far.InstanceAddr())
	c.post(relayfsm.ID, relayfsm.EvAcquire, relayfsm.Use{Peer: "peer/x", Addr: far.InstanceAddr()})
	c.until(t, fid, relayfsm.ForeignUsed)
	waitServer(t, far, c.id, true) // same identity on both
	if !home.Has(c.id) {
		t.Fatal("the foreign connection replaced the home one")
	}
	c.post(relayfsm.ID, relayfsm.EvRelease, relayfsm.Use{Peer: "peer/x", Addr: far.InstanceAddr()})
	c.until(t, fid, relayfsm.ForeignUnused)
	c.until(t, fid, relayfsm.ForeignClosed)
	waitServer(t, far, c.id, false)
	var n int
	_ = c.loop.Do(func() { n = len(c.m.Data.Foreign()) })
	if n != 0 || !home.Has(c.id) {
		t.Fatalf("foreign machines %d, home kept %v", n, home.Has(c.id))
	}
}

// presence is a stand-in peer machine whose state is what the relay last
// said of its remote.
type presence struct{}

var presenceSpec = fsm.MustCompile(fsm.Spec[*presence]{
	Kind:    "presence",
	Initial: "unknown",
	Events:  []fsm.Event{relayfsm.EvReady, relayfsm.EvLost, relayfsm.EvRemoteOnline, relayfsm.EvRemoteOffline},
	States: []fsm.StateDef[*presence]{
		{Name: "all", Initial: "unknown", Ignore: []fsm.Event{relayfsm.EvReady, relayfsm.EvLost}},
		{Name: "unknown", Parent: "all"}, {Name: "online", Parent: "all"}, {Name: "offline", Parent: "all"},
	},
	Transitions: []fsm.Transition[*presence]{
		{From: "all", Event: relayfsm.EvRemoteOnline, To: "online"},
		{From: "all", Event: relayfsm.EvRemoteOffline, To: "offline"},
	},
})

// A use with a remote watches it on the relay: its user is told when the
// remote authenticates, when its connection drops and when it is back; the
// release unsubscribes.
func TestUsersToldOfTheirRemotesPresence(t *testing.T) {
	s := startRelay(t, "")
	c := startClient(t, config([]string{s.URL()}, time.Hour))
	c.until(t, relayfsm.ID, relayfsm.Connected)
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	remote := relay.HashID(key.PublicKey().String())
	const uid = "peer/x"
	var addErr error
	if err := c.loop.Do(func() { _, addErr = fsm.Add(c.loop, presenceSpec, uid, &presence{}, nil) }); err != nil || addErr != nil {
		t.Fatal(err, addErr)
	}
	t.Cleanup(func() { _ = c.loop.Do(func() { c.loop.Remove(uid) }) })
	c.post(relayfsm.ID, relayfsm.EvAcquire, relayfsm.Use{Peer: uid, Remote: remote})
	waitWatchers(t, s, remote, 1)
	r := startClientKey(t, key, config([]string{s.URL()}, time.Hour))
	c.until(t, uid, "online")
	s.DropPeer(remote)
	c.until(t, uid, "offline")
	r.until(t, relayfsm.ID, relayfsm.Backoff)
	r.until(t, relayfsm.ID, relayfsm.Connected)
	c.until(t, uid, "online")
	c.post(relayfsm.ID, relayfsm.EvRelease, relayfsm.Use{Peer: uid})
	waitWatchers(t, s, remote, 0)
}

func waitWatchers(t *testing.T, s *relaysrv.Server, id relay.PeerID, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := s.Wait(ctx, func(s *relaysrv.Server) bool { return s.Watchers(id) == n }); err != nil {
		t.Fatalf("server: %d watchers never reached (%d)", n, s.Watchers(id))
	}
}

// A foreign relay whose instance address names a host that does not
// resolve is dialed at the remote's relayServerIP (the URL's host kept for
// the Host header and TLS), as official peers do.
func TestForeignRelayDialedByRelayServerIP(t *testing.T) {
	home, far := startRelay(t, ""), startRelay(t, "")
	far.SetExposed("rel://relay-far.invalid:" + far.Port()) // .invalid never resolves (RFC 6761)
	c := startClient(t, config([]string{home.URL()}, time.Hour))
	c.until(t, relayfsm.ID, relayfsm.Connected)
	fid := relayfsm.ForeignID(far.InstanceAddr())
	c.post(relayfsm.ID, relayfsm.EvAcquire, relayfsm.Use{Peer: "peer/x", Addr: far.InstanceAddr(),
		IP: netip.MustParseAddr("127.0.0.1")})
	c.until(t, fid, relayfsm.ForeignUsed)
	waitServer(t, far, c.id, true)
}
