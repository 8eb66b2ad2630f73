package peerfsm_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/internal/testnet/turnsrv"

	"github.com/nbfsm/nbfsm/internal/netping"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// deadline bounds every wait: a failure deadline, never an expectation.
const deadline = 30 * time.Second

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// client is one nbfsm client in the test process: a loop, a shared socket, a
// netstack WireGuard interface, the production Workers and, once paired,
// one peer machine for the other client.
type client struct {
	name    string
	key     wgtypes.Key
	addr    netip.Prefix
	sock    *sharedsock.Socket
	iface   *wgiface.Interface
	workers *peerfsm.Workers
	loop    *fsm.Loop
	watch   *watch
	peer    *fsm.Machine[*peerfsm.Peer]
	other   *client

	closeOnce sync.Once
	stopLoop  func()
}

// newClient starts everything but the peer machine; configure (relay-only
// candidate types, ICE servers) is applied before the loop runs.
func newClient(t *testing.T, name, overlay string, configure func(*peerfsm.Workers)) *client {
	t.Helper()
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	log := testLogger(t).Named(name)
	sock, err := sharedsock.Listen(loopback, log)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	c := &client{name: name, key: key, addr: netip.MustParsePrefix(overlay), sock: sock, watch: newWatch()}
	c.iface, err = wgiface.New(wgiface.Config{
		Mode: wgiface.Netstack, Name: name, PrivateKey: key, Address: c.addr, Socket: sock, Logger: log,
	})
	if err != nil {
		_ = sock.Close()
		t.Fatalf("wgiface.New: %v", err)
	}
	c.workers = &peerfsm.Workers{Socket: sock, Iface: c.iface, Log: log}
	if configure != nil {
		configure(c.workers)
	}
	c.loop = fsm.NewLoop(fsm.Options{Logger: log})
	c.loop.Observe(c.watch)
	t.Cleanup(c.close)
	return c
}

// testLogger logs to the test at info (debug with NBFSM_TEST_DEBUG=1 is
// not needed: pion and wireguard-go chatter drowns the test output).
func testLogger(t *testing.T) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))
}

func (c *client) pub() wgtypes.Key    { return c.key.PublicKey() }
func (c *client) host() netip.Prefix  { return netip.PrefixFrom(c.addr.Addr(), 32) }
func (c *client) peerID() string      { return peerfsm.ID(c.other.pub()) }
func (c *client) controlling() bool   { return peerfsm.Controlling(c.pub(), c.other.pub()) }
func (c *client) net() *netstack.Net  { return c.iface.Net() }
func (c *client) overlay() netip.Addr { return c.addr.Addr() }

// pair makes a and b peers: signal is an in-memory function that posts
// each side's messages into the other's loop, addressed to the sender's
// peer machine, as the signal stream worker does. Then both loops run.
func pair(t *testing.T, a, b *client) {
	t.Helper()
	a.other, b.other = b, a
	for i, c := range []*client{a, b} {
		from, to := c, c.other
		from.workers.SendFunc = func(ctx context.Context, m sigwire.Message) error {
			if m.To != to.pub() {
				return fmt.Errorf("message for %v, want %v", m.To, to.pub())
			}
			m.From = from.pub()
			ev, ok := peerfsm.EventFor(m.Kind)
			if !ok {
				return fmt.Errorf("no event for %v", m.Kind)
			}
			return to.loop.Post(fsm.Envelope{To: peerfsm.ID(from.pub()), Event: ev, Data: m})
		}
		var err error
		c.peer, err = peerfsm.Add(c.loop, &peerfsm.Peer{
			Own: c.pub(), Remote: c.other.pub(), AllowedIPs: []netip.Prefix{c.other.host()},
			Effects: c.workers, Rand: rand.New(rand.NewPCG(uint64(i), 7)), SignalUp: true,
		}, nil)
		if err != nil {
			t.Fatalf("peerfsm.Add: %v", err)
		}
	}
	for _, c := range []*client{a, b} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { c.loop.Run(ctx); close(done) }()
		c.stopLoop = func() { cancel(); <-done }
	}
}

// unpark posts EvUnpark to the peer machine of c.
func (c *client) unpark(t *testing.T) {
	t.Helper()
	if err := c.loop.Post(fsm.Envelope{To: c.peerID(), Event: peerfsm.EvUnpark}); err != nil {
		t.Fatal(err)
	}
}

// state reads the peer machine's state in the loop.
func (c *client) state(t *testing.T) (s fsm.State, p peerfsm.Peer) {
	t.Helper()
	if err := c.loop.Do(func() { s, p = c.peer.State(), *c.peer.Data }); err != nil {
		t.Fatal(err)
	}
	return s, p
}

// close tears the client down in dependency order: loop, workers (every
// agent, send and relay goroutine), interface, socket. The device goes down
// before it closes: wireguard-go's Close closes the TUN before it stops the
// peers, and a packet still being received then writes to the closed
// netstack TUN and panics (send on closed channel); Down stops the peers
// first.
func (c *client) close() {
	c.closeOnce.Do(func() {
		if c.stopLoop != nil {
			c.stopLoop()
		}
		c.workers.Close()
		_ = c.iface.Device().Down()
		_ = c.iface.Close()
		_ = c.sock.Close()
	})
}

// waitState waits until the client's peer machine enters want (or a
// substate of it).
func (c *client) waitState(t *testing.T, want fsm.State) {
	t.Helper()
	if err := c.watch.until(c.peerID(), want, deadline); err != nil {
		s, p := c.state(t)
		t.Fatalf("%s: %v (now %s, last error %q, send failures %d, bad %d)", c.name, err, s, p.LastErr, p.SendFailures, p.Bad)
	}
}

// watch is an fsm.Observer that keeps every record and wakes waiters.
type watch struct {
	mu   sync.Mutex
	recs []fsm.Record
	kick chan struct{}
}

func newWatch() *watch { return &watch{kick: make(chan struct{}, 1)} }

func (w *watch) Observe(r fsm.Record) {
	w.mu.Lock()
	w.recs = append(w.recs, r)
	w.mu.Unlock()
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// until waits for a record of machine entering state, from the first record
// on (records are kept, so an early entry counts).
func (w *watch) until(machine string, state fsm.State, within time.Duration) error {
	end := time.NewTimer(within)
	defer end.Stop()
	for {
		if w.seen(machine, state) {
			return nil
		}
		select {
		case <-w.kick:
		case <-end.C:
			return fmt.Errorf("%s did not enter %s within %v; path: %s", machine, state, within, w.path(machine))
		}
	}
}

func (w *watch) seen(machine string, state fsm.State) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.recs {
		if r.Machine == machine && !r.Internal && within(r.To, state) {
			return true
		}
	}
	return false
}

// path lists the machine's states so far, for failure messages.
func (w *watch) path(machine string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, r := range w.recs {
		if r.Machine == machine && !r.Internal {
			fmt.Fprintf(&b, " -%s-> %s", r.Event, r.To)
		}
	}
	return b.String()
}

// count counts transitions of machine into state.
func (w *watch) count(machine string, state fsm.State) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, r := range w.recs {
		if r.Machine == machine && !r.Internal && within(r.To, state) {
			n++
		}
	}
	return n
}

func within(s, in fsm.State) bool {
	return s == in || len(s) > len(in) && s[:len(in)] == in && s[len(in)] == '.'
}

// startTURN runs the test network's STUN/TURN server on 127.0.0.1 for this
// test only.
func startTURN(t *testing.T) *stun.URI {
	t.Helper()
	srv, err := turnsrv.Start(turnsrv.Config{})
	if err != nil {
		t.Fatalf("turn server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	uri, err := stun.ParseURI(srv.TURNURI())
	if err != nil {
		t.Fatal(err)
	}
	uri.Username, uri.Password = srv.Credentials()
	return uri
}

var relayOnly = []ice.CandidateType{ice.CandidateTypeRelay}

// pingEvery pings from → to every interval until a reply (or within
// passes) and returns when the reply arrived.
func pingEvery(n *netstack.Net, from, to netip.Addr, interval, within time.Duration) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	start := time.Now()
	d, err := netping.Ping(ctx, n, from, to, interval)
	return start.Add(d), err
}

// ping checks that from reaches to over the tunnel.
func ping(t *testing.T, from, to *client) {
	t.Helper()
	if _, err := pingEvery(from.net(), from.overlay(), to.overlay(), time.Second, deadline); err != nil {
		t.Fatalf("ping %s → %s: %v", from.name, to.name, err)
	}
}
