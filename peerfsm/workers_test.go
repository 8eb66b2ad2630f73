package peerfsm_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// TestWorkersDirect runs two full clients in one process: loop, shared
// socket, netstack WireGuard, Workers and one peer machine each, signal an
// in-memory function. Unparked together, both reach connected.direct on
// host candidates, and WireGuard carries pings both ways.
func TestWorkersDirect(t *testing.T) {
	a := newClient(t, "a", "100.64.0.1/10", nil)
	b := newClient(t, "b", "100.64.0.2/10", nil)
	pair(t, a, b)
	ctrl, ctld := a, b
	if !a.controlling() {
		ctrl, ctld = b, a
	}

	start := time.Now()
	a.unpark(t)
	b.unpark(t)
	firstPacket(t, start, a, b)

	for _, c := range []*client{a, b} {
		c.waitState(t, peerfsm.Direct)
	}
	ping(t, ctrl, ctld)
	ping(t, ctld, ctrl)

	for _, c := range []*client{a, b} {
		s, p := c.state(t)
		// The remote is host, or prflx when its checks came before its
		// candidate.
		if s != peerfsm.Direct || p.Pair.Relayed || p.Pair.LocalType != "host" ||
			(p.Pair.RemoteType != "host" && p.Pair.RemoteType != "prflx") {
			t.Errorf("%s: state %s pair %+v, want direct host/host or host/prflx", c.name, s, p.Pair)
		}
		if p.Pair.Remote != c.other.sock.LocalAddr() {
			t.Errorf("%s: pair remote %v, want the other socket %v", c.name, p.Pair.Remote, c.other.sock.LocalAddr())
		}
		if p.Pair.Local != c.sock.LocalAddr() {
			t.Errorf("%s: pair local %v, want its own socket %v", c.name, p.Pair.Local, c.sock.LocalAddr())
		}
		// The controlling side selected the pair on a check's answer: it
		// has that check's round trip (status's latency).
		if c == ctrl && p.Pair.Latency <= 0 {
			t.Errorf("%s: controlling side's pair latency %v, want the selecting check's round trip", c.name, p.Pair.Latency)
		}
		if c.sock.LastReceive(p.Pair.Remote).IsZero() {
			t.Errorf("%s: no WireGuard datagram seen from %v", c.name, p.Pair.Remote)
		}
		st := c.sock.Stats()
		if st.WireGuardIn == 0 || st.WireGuardOut == 0 || st.RelayIn != 0 {
			t.Errorf("%s: socket stats %+v, want WireGuard on the socket, no relay", c.name, st)
		}
	}
	// The controlling side set the endpoint; the controlled one learned it.
	for _, c := range []*client{ctrl, ctld} {
		ps := peerStats(t, c)
		if ps.Endpoint != c.other.sock.LocalAddr() || ps.Relayed || ps.LastHandshake.IsZero() {
			t.Errorf("%s: wireguard peer %+v, want endpoint %v and a handshake", c.name, ps, c.other.sock.LocalAddr())
		}
	}
	// The agents are closed in connected.direct: the sockets answer STUN.
	if n := ctrl.watch.count(ctrl.peerID(), peerfsm.Backoff) + ctld.watch.count(ctld.peerID(), peerfsm.Backoff); n != 0 {
		t.Errorf("%d backoffs on the way to connected", n)
	}
}

// TestWorkersRelayed is TestWorkersDirect with both sides restricted to
// TURN relay candidates: both reach connected.relayed and WireGuard flows
// through the relay endpoints the Workers bridge to the ICE connections.
func TestWorkersRelayed(t *testing.T) {
	uri := startTURN(t)
	relay := func(w *peerfsm.Workers) {
		w.CandidateTypes = relayOnly
		w.SetICEServers(nil, []*stun.URI{uri})
	}
	a := newClient(t, "a", "100.64.0.1/10", relay)
	b := newClient(t, "b", "100.64.0.2/10", relay)
	pair(t, a, b)
	ctrl, ctld := a, b
	if !a.controlling() {
		ctrl, ctld = b, a
	}

	start := time.Now()
	a.unpark(t)
	b.unpark(t)
	firstPacket(t, start, a, b)

	for _, c := range []*client{a, b} {
		c.waitState(t, peerfsm.Relayed)
	}
	ping(t, ctrl, ctld)
	ping(t, ctld, ctrl)

	for _, c := range []*client{a, b} {
		s, p := c.state(t)
		if s != peerfsm.Relayed || !p.Pair.Relayed || p.Pair.Conn == nil {
			t.Errorf("%s: state %s pair %+v, want relayed with a connection", c.name, s, p.Pair)
		}
		st := c.sock.Stats()
		if st.RelayIn == 0 || st.RelayOut == 0 || st.WireGuardIn != 0 || st.WireGuardOut != 0 {
			t.Errorf("%s: socket stats %+v, want WireGuard through the relay only", c.name, st)
		}
		ps := peerStats(t, c)
		if !ps.Relayed || !sharedsock.RelayPrefix.Contains(ps.Endpoint.Addr()) || ps.LastHandshake.IsZero() {
			t.Errorf("%s: wireguard peer %+v, want a relay endpoint and a handshake", c.name, ps)
		}
	}
}

// TestWorkersPathLoss connects relayed (the agent stays up on a relayed
// pair), then closes one side entirely: the other's agent stops hearing
// its checks, goes Failed (disconnected 6 s + failed 6 s), and the peer
// leaves connected for backoff, since signal is up.
//
// The direct path is not covered here: its agent is closed and a lost path
// is found by the path check after peerfsm.PathTimeout (75 s), a constant.
func TestWorkersPathLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for pion's 12 s failure detection")
	}
	uri := startTURN(t)
	relay := func(w *peerfsm.Workers) {
		w.CandidateTypes = relayOnly
		w.SetICEServers(nil, []*stun.URI{uri})
	}
	a := newClient(t, "a", "100.64.0.1/10", relay)
	b := newClient(t, "b", "100.64.0.2/10", relay)
	pair(t, a, b)
	a.unpark(t)
	b.unpark(t)
	for _, c := range []*client{a, b} {
		c.waitState(t, peerfsm.Relayed)
	}
	ping(t, a, b)

	lost := time.Now()
	b.close()
	a.waitState(t, peerfsm.Backoff)
	_, p := a.state(t)
	if !strings.Contains(p.LastErr, peerfsm.ErrICEFailed.Error()) {
		t.Errorf("last error %q, want %q", p.LastErr, peerfsm.ErrICEFailed)
	}
	if ps := peerStats(t, a); ps.Endpoint.IsValid() {
		t.Errorf("wireguard peer still has endpoint %v after the path was lost", ps.Endpoint)
	}
	t.Logf("relayed path loss detected after %v", time.Since(lost).Round(time.Millisecond))
}

// firstPacket pings every 20 ms both ways from the moment both peers were
// unparked (so packets wait for the tunnel on both sides, the controlling
// side's included: see Workers.SetPeer) and logs when each side got its
// first echo reply.
func firstPacket(t *testing.T, start time.Time, a, b *client) {
	t.Helper()
	type result struct {
		from, to *client
		at       time.Time
		err      error
	}
	res := make(chan result, 2)
	for _, p := range [][2]*client{{a, b}, {b, a}} {
		go func() {
			at, err := pingEvery(p[0].net(), p[0].overlay(), p[1].overlay(), 20*time.Millisecond, deadline)
			res <- result{p[0], p[1], at, err}
		}()
	}
	for range 2 {
		r := <-res
		if r.err != nil {
			t.Errorf("first packet %s → %s: %v", r.from.name, r.to.name, r.err)
			continue
		}
		role := "controlled"
		if r.from.controlling() {
			role = "controlling"
		}
		t.Logf("unpark → first echo reply %s → %s (from the %s side): %v", r.from.name, r.to.name, role,
			r.at.Sub(start).Round(time.Millisecond))
	}
	if t.Failed() {
		t.FailNow()
	}
}

// peerStats is c's WireGuard view of its peer.
func peerStats(t *testing.T, c *client) wgiface.PeerStats {
	t.Helper()
	c.iface.Flush() // what the machine asked for so far is applied
	stats, err := c.iface.PeerStats()
	if err != nil {
		t.Fatalf("PeerStats: %v", err)
	}
	return stats[c.other.pub()]
}

func TestNewCredentials(t *testing.T) {
	var w peerfsm.Workers
	own, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 50 {
		c := w.NewCredentials()
		for _, f := range []struct {
			name string
			got  string
			n    int
		}{{"ufrag", c.Ufrag, 16}, {"pwd", c.Pwd, 32}} {
			if len(f.got) != f.n || strings.Trim(f.got, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
				t.Fatalf("%d: %s %q: want %d ASCII letters", i, f.name, f.got, f.n)
			}
		}
		if len(c.SessionID) != sigwire.SessionIDSize {
			t.Fatalf("%d: session id of %d bytes", i, len(c.SessionID))
		}
		// The credentials must pass the signal codec's checks.
		if _, err := sigwire.Encode(own, sigwire.Message{To: own.PublicKey(), Kind: sigwire.Offer, Ufrag: c.Ufrag, Pwd: c.Pwd, SessionID: c.SessionID}); err != nil {
			t.Fatalf("%d: signal rejects the credentials: %v", i, err)
		}
		key := c.Ufrag + string(c.SessionID)
		if seen[key] {
			t.Fatalf("%d: repeated credentials", i)
		}
		seen[key] = true
	}
}

// probe is a one-state machine that forwards every worker event to a
// channel: it gives the tests a real generation-bound fsm.Sender.
type probe struct{ got chan fsm.Envelope }

var probeEvents = []fsm.Event{peerfsm.EvSendFailed, peerfsm.EvLocalCandidate, peerfsm.EvICEConnected, peerfsm.EvICEFailed}

var probeSpec = func() *fsm.Compiled[*probe] {
	forward := func(m *fsm.Machine[*probe], e fsm.Envelope) { m.Data.got <- e }
	var ts []fsm.Transition[*probe]
	for _, ev := range probeEvents {
		ts = append(ts, fsm.Transition[*probe]{From: "s", Event: ev, Action: forward})
	}
	return fsm.MustCompile(fsm.Spec[*probe]{
		Kind: "probe", Initial: "s", Events: probeEvents,
		States: []fsm.StateDef[*probe]{{Name: "s"}}, Transitions: ts,
	})
}()

// startProbe runs a loop with one probe and returns a Sender bound to it.
func startProbe(t *testing.T) (fsm.Sender, chan fsm.Envelope, func()) {
	t.Helper()
	p := &probe{got: make(chan fsm.Envelope, 256)}
	l := fsm.NewLoop(fsm.Options{Logger: testLogger(t)})
	m, err := fsm.Add(l, probeSpec, "probe", p, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := m.Worker()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	var once sync.Once
	// stop first lets the loop deliver what is already in its mailbox.
	stop := func() { once.Do(func() { _ = l.Do(func() {}); cancel(); <-done }) }
	t.Cleanup(stop)
	return s, p.got, stop
}

func next(t *testing.T, got chan fsm.Envelope) fsm.Envelope {
	t.Helper()
	select {
	case e := <-got:
		return e
	case <-time.After(deadline):
		t.Fatal("no event posted")
		return fsm.Envelope{}
	}
}

var errRefused = errors.New("refused by the fake signal")

func TestWorkersSend(t *testing.T) {
	for _, tc := range []struct {
		name    string
		send    func(context.Context, sigwire.Message) error
		wantErr error // nil: nothing posted
	}{
		{name: "no send function", wantErr: peerfsm.ErrNoSignal},
		{name: "send fails", send: func(context.Context, sigwire.Message) error { return errRefused }, wantErr: errRefused},
		{name: "send ok", send: func(context.Context, sigwire.Message) error { return nil }},
		{name: "deadline set", send: func(ctx context.Context, _ sigwire.Message) error {
			if d, ok := ctx.Deadline(); !ok || time.Until(d) > peerfsm.SendTimeout {
				return errRefused
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, got, stop := startProbe(t)
			w := &peerfsm.Workers{SendFunc: tc.send, Log: testLogger(t)}
			w.Send(s, sigwire.Message{Kind: sigwire.Offer})
			if tc.wantErr != nil {
				e := next(t, got)
				err, _ := e.Data.(error)
				if e.Event != peerfsm.EvSendFailed || !errors.Is(err, tc.wantErr) {
					t.Fatalf("posted %s %v, want %s %v", e.Event, e.Data, peerfsm.EvSendFailed, tc.wantErr)
				}
			}
			w.Close() // waits for the send worker
			stop()
			if len(got) != 0 {
				t.Fatalf("unexpected event %v", (<-got).Event)
			}
		})
	}
}

// TestWorkersCloseCancelsSend: a send that waits for its context ends at
// Close, not after SendTimeout.
func TestWorkersCloseCancelsSend(t *testing.T) {
	s, _, stop := startProbe(t)
	started := make(chan struct{})
	w := &peerfsm.Workers{SendFunc: func(ctx context.Context, _ sigwire.Message) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	}}
	w.Send(s, sigwire.Message{Kind: sigwire.Offer})
	<-started
	stop()
	w.Close()
}

func TestStartICEWithoutSocket(t *testing.T) {
	s, got, _ := startProbe(t)
	w := &peerfsm.Workers{}
	defer w.Close()
	h := w.StartICE(s, peerfsm.Agent{Local: w.NewCredentials(), Remote: w.NewCredentials()})
	defer h.Stop()
	e := next(t, got)
	if err, _ := e.Data.(error); e.Event != peerfsm.EvICEFailed || !errors.Is(err, peerfsm.ErrNoSocket) {
		t.Fatalf("posted %s %v, want %s %v", e.Event, e.Data, peerfsm.EvICEFailed, peerfsm.ErrNoSocket)
	}
}

// TestStopPostsNoFailure: an agent closed by Stop does not report its
// Closed state as a failure, and Close waits for the background close.
func TestStopPostsNoFailure(t *testing.T) {
	s, got, stop := startProbe(t)
	sock, err := sharedsock.Listen(loopback, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	w := &peerfsm.Workers{Socket: sock, Log: testLogger(t)}
	h := w.StartICE(s, peerfsm.Agent{Local: w.NewCredentials(), Remote: w.NewCredentials(), Controlling: true,
		Candidates: []string{"1 1 udp 2130706431 127.0.0.1 9 typ host", "junk"}})
	e := next(t, got) // the agent exists once it posted its host candidate
	if e.Event != peerfsm.EvLocalCandidate || !strings.Contains(e.Data.(string), "typ host") {
		t.Fatalf("posted %s %v, want a local host candidate", e.Event, e.Data)
	}
	h.AddRemoteCandidate("2 1 udp 2130706431 127.0.0.1 10 typ host")
	h.AddRemoteCandidate("not a candidate")
	h.Stop()
	h.Stop() // idempotent
	w.Close()
	stop()
	for len(got) > 0 {
		if e := <-got; e.Event != peerfsm.EvLocalCandidate {
			t.Fatalf("posted %s %v after Stop", e.Event, e.Data)
		}
	}
	// After Close nothing starts.
	h = w.StartICE(s, peerfsm.Agent{Local: w.NewCredentials()})
	h.AddRemoteCandidate("2 1 udp 2130706431 127.0.0.1 10 typ host")
	h.Stop()
}

// blockConn stands for a relayed ICE connection: reads wait until Close.
type blockConn struct {
	closed chan struct{}
	once   sync.Once
}

func newBlockConn() *blockConn { return &blockConn{closed: make(chan struct{})} }

func (c *blockConn) Read([]byte) (int, error)         { <-c.closed; return 0, net.ErrClosed }
func (c *blockConn) Write(b []byte) (int, error)      { return len(b), nil }
func (c *blockConn) Close() error                     { c.once.Do(func() { close(c.closed) }); return nil }
func (c *blockConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (c *blockConn) RemoteAddr() net.Addr             { return &net.UDPAddr{} }
func (c *blockConn) SetDeadline(time.Time) error      { return nil }
func (c *blockConn) SetReadDeadline(time.Time) error  { return nil }
func (c *blockConn) SetWriteDeadline(time.Time) error { return nil }

func (c *blockConn) isClosed() bool {
	select {
	case <-c.closed:
		return true
	default:
		return false
	}
}

// wgPeer is what wireguard-go's IPC says of one peer.
type wgPeer struct {
	present   bool
	endpoint  string
	keepalive int
	allowed   []string
}

func ipcPeer(t *testing.T, i *wgiface.Interface, k wgtypes.Key) wgPeer {
	t.Helper()
	text, err := i.Device().IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	var p wgPeer
	in := false
	for _, line := range strings.Split(text, "\n") {
		key, value, _ := strings.Cut(line, "=")
		switch {
		case key == "public_key":
			in = value == hex.EncodeToString(k[:])
			p.present = p.present || in
		case !in:
		case key == "endpoint":
			p.endpoint = value
		case key == "persistent_keepalive_interval":
			p.keepalive, _ = strconv.Atoi(value)
		case key == "allowed_ip":
			p.allowed = append(p.allowed, value)
		}
	}
	return p
}

// TestWorkersSetPeer walks one WireGuard peer through the configurations
// the machine asks for and checks wireguard-go's view after each step.
func TestWorkersSetPeer(t *testing.T) {
	sock, err := sharedsock.Listen(loopback, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	own, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	iface, err := wgiface.New(wgiface.Config{Mode: wgiface.Netstack, Name: "setpeer", PrivateKey: own,
		Address: netip.MustParsePrefix("100.64.0.1/10"), Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer iface.Close()
	w := &peerfsm.Workers{Socket: sock, Iface: iface, Log: testLogger(t)}
	defer w.Close()

	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := k.PublicKey()
	ips := []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32")}
	ips2 := []netip.Prefix{netip.MustParsePrefix("100.64.0.3/32")}
	e1, e2 := netip.MustParseAddrPort("127.0.0.1:40001"), netip.MustParseAddrPort("127.0.0.1:40002")
	ka := peerfsm.Keepalive
	c1, c2 := newBlockConn(), newBlockConn()
	var relayEP string
	rep := &reports{}

	for _, step := range []struct {
		name      string
		do        func() error
		endpoint  string // "relay": inside sharedsock.RelayPrefix; "same-relay": the previous relay endpoint
		keepalive int
		allowed   string
		absent    bool
		closed    []*blockConn // relay conns closed after the step
		open      []*blockConn
	}{
		{name: "added: key and allowed IPs", do: func() error { return w.SetPeer(rep, peerfsm.WGPeer{Key: key, AllowedIPs: ips}) },
			allowed: "100.64.0.2/32"},
		{name: "direct controlling: endpoint and keepalive",
			do: func() error {
				return w.SetPeer(rep, peerfsm.WGPeer{Key: key, AllowedIPs: ips, Endpoint: e1, Keepalive: ka})
			},
			endpoint: e1.String(), keepalive: 25, allowed: "100.64.0.2/32"},
		{name: "keepalive only keeps the endpoint",
			do:       func() error { return w.SetPeer(rep, peerfsm.WGPeer{Key: key, AllowedIPs: ips2, Keepalive: ka}) },
			endpoint: e1.String(), keepalive: 25, allowed: "100.64.0.3/32"},
		{name: "reset: no endpoint, no keepalive", do: func() error { return w.SetPeer(rep, peerfsm.WGPeer{Key: key, AllowedIPs: ips}) },
			allowed: "100.64.0.2/32"},
		{name: "relayed", do: func() error {
			return w.SetPeer(rep, peerfsm.WGPeer{Key: key, AllowedIPs: ips, Relay: c1, Keepalive: ka})
		},
			endpoint: "relay", keepalive: 25, allowed: "100.64.0.2/32", open: []*blockConn{c1}},
		{name: "relayed, allowed IPs changed: same relay",
			do: func() error {
				return w.SetPeer(rep, peerfsm.WGPeer{Key: key, AllowedIPs: ips2, Relay: c1, Keepalive: ka})
			},
			endpoint: "same-relay", keepalive: 25, allowed: "100.64.0.3/32", open: []*blockConn{c1}},
		{name: "new relayed connection replaces the relay",
			do: func() error {
				return w.SetPeer(rep, peerfsm.WGPeer{Key: key, AllowedIPs: ips, Relay: c2, Keepalive: ka})
			},
			endpoint: "relay", keepalive: 25, allowed: "100.64.0.2/32", closed: []*blockConn{c1}, open: []*blockConn{c2}},
		{name: "direct again stops the relay",
			do: func() error {
				return w.SetPeer(rep, peerfsm.WGPeer{Key: key, AllowedIPs: ips, Endpoint: e2, Keepalive: ka})
			},
			endpoint: e2.String(), keepalive: 25, allowed: "100.64.0.2/32", closed: []*blockConn{c2}},
		{name: "removed", do: func() error { return w.RemovePeer(key) }, absent: true},
		{name: "remove again is harmless", do: func() error { return w.RemovePeer(key) }, absent: true},
	} {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		iface.Flush() // the configuration worker applied it
		if err := rep.err(); err != nil {
			t.Fatalf("%s: posted %v", step.name, err)
		}
		got := ipcPeer(t, iface, key)
		if step.absent {
			if got.present {
				t.Errorf("%s: peer still present: %+v", step.name, got)
			}
			continue
		}
		switch step.endpoint {
		case "relay":
			ap, err := netip.ParseAddrPort(got.endpoint)
			if err != nil || !sharedsock.RelayPrefix.Contains(ap.Addr()) || got.endpoint == relayEP {
				t.Errorf("%s: endpoint %q, want a new relay endpoint (previous %q)", step.name, got.endpoint, relayEP)
			}
			relayEP = got.endpoint
		case "same-relay":
			if got.endpoint != relayEP {
				t.Errorf("%s: endpoint %q, want the same relay endpoint %q", step.name, got.endpoint, relayEP)
			}
		default:
			if got.endpoint != step.endpoint {
				t.Errorf("%s: endpoint %q, want %q", step.name, got.endpoint, step.endpoint)
			}
		}
		if !got.present || got.keepalive != step.keepalive || strings.Join(got.allowed, ",") != step.allowed {
			t.Errorf("%s: peer %+v, want keepalive %d allowed %s", step.name, got, step.keepalive, step.allowed)
		}
		for _, c := range step.closed {
			if !c.isClosed() {
				t.Errorf("%s: the replaced relay connection is still open", step.name)
			}
		}
		for _, c := range step.open {
			if c.isClosed() {
				t.Errorf("%s: the live relay connection was closed", step.name)
			}
		}
	}

	// HoldPath registers the credentials with the socket's responder.
	release := w.HoldPath(w.NewCredentials(), e1)
	release()
	release()
	if rel := w.HoldPath(peerfsm.Credentials{}, e1); rel == nil {
		t.Error("HoldPath with bad credentials returned nil")
	} else {
		rel()
	}
	if got := w.LastReceive(e1); !got.IsZero() {
		t.Errorf("LastReceive of a silent address: %v", got)
	}
}

// reports is a Poster that keeps what the configuration worker posts.
type reports struct {
	mu   sync.Mutex
	evs  []fsm.Event
	errs []error
}

func (r *reports) Post(ev fsm.Event, data any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err, _ := data.(error)
	r.evs, r.errs = append(r.evs, ev), append(r.errs, err)
	return nil
}

// err is the first failure posted, with its event.
func (r *reports) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.evs) == 0 {
		return nil
	}
	return fmt.Errorf("%s: %w", r.evs[0], r.errs[0])
}

// TestWorkersSetPeerFailures: every way the WireGuard configuration or the
// relay bridge fails reaches the caller: at once (returned) when nothing
// could be queued, or posted by the configuration worker (EvRelayFailed
// for the bridge, EvWGFailed for WireGuard).
func TestWorkersSetPeerFailures(t *testing.T) {
	sock, err := sharedsock.Listen(loopback, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	own, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	iface, err := wgiface.New(wgiface.Config{Mode: wgiface.Netstack, Name: "failures", PrivateKey: own,
		Address: netip.MustParsePrefix("100.64.0.1/10"), Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer iface.Close()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	key := k.PublicKey()
	ips := []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32")}
	closedSock, err := sharedsock.Listen(loopback, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = closedSock.Close()
	tests := []struct {
		name     string
		w        *peerfsm.Workers
		p        peerfsm.WGPeer
		returned error // at once
		posted   error // by the worker, as postedEv (default EvWGFailed)
		postedEv fsm.Event
	}{
		{name: "no interface", w: &peerfsm.Workers{Socket: sock}, p: peerfsm.WGPeer{Key: key, AllowedIPs: ips},
			returned: peerfsm.ErrNoInterface},
		{name: "relay without a socket", w: &peerfsm.Workers{Iface: iface}, p: peerfsm.WGPeer{Key: key, Relay: newBlockConn(), Keepalive: peerfsm.Keepalive},
			posted: peerfsm.ErrRelayBridge, postedEv: peerfsm.EvRelayFailed},
		{name: "relay on a closed socket", w: &peerfsm.Workers{Socket: closedSock, Iface: iface},
			p: peerfsm.WGPeer{Key: key, Relay: newBlockConn(), Keepalive: peerfsm.Keepalive}, posted: peerfsm.ErrRelayBridge, postedEv: peerfsm.EvRelayFailed},
		{name: "bad peer", w: &peerfsm.Workers{Socket: sock, Iface: iface}, p: peerfsm.WGPeer{Key: key, Keepalive: -time.Second},
			returned: wgiface.ErrBadPeer},
		{name: "WireGuard refuses the endpoint", w: &peerfsm.Workers{Socket: sock, Iface: iface},
			p: peerfsm.WGPeer{Key: key, Endpoint: netip.MustParseAddrPort("240.9.9.9:1"), Keepalive: peerfsm.Keepalive}, posted: wgiface.ErrDevice},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer tt.w.Close()
			rep := &reports{}
			if tt.postedEv == "" {
				tt.postedEv = peerfsm.EvWGFailed
			}
			if err := tt.w.SetPeer(rep, tt.p); !errors.Is(err, tt.returned) || (err == nil) != (tt.returned == nil) {
				t.Fatalf("returned %v, want %v", err, tt.returned)
			}
			iface.Flush()
			rep.mu.Lock()
			defer rep.mu.Unlock()
			switch {
			case tt.posted == nil && len(rep.evs) != 0:
				t.Fatalf("posted %v %v", rep.evs, rep.errs)
			case tt.posted != nil && (len(rep.evs) != 1 || rep.evs[0] != tt.postedEv || !errors.Is(rep.errs[0], tt.posted)):
				t.Fatalf("posted %v %v, want one %s with %v", rep.evs, rep.errs, tt.postedEv, tt.posted)
			}
		})
	}
	// A closed interface refuses at once.
	w := &peerfsm.Workers{Socket: sock, Iface: iface}
	defer w.Close()
	if err := iface.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.SetPeer(&reports{}, peerfsm.WGPeer{Key: key, AllowedIPs: ips}); !errors.Is(err, wgiface.ErrClosed) {
		t.Errorf("closed interface: SetPeer %v, want ErrClosed", err)
	}
	if err := w.RemovePeer(key); !errors.Is(err, wgiface.ErrClosed) {
		t.Errorf("closed interface: RemovePeer %v, want ErrClosed", err)
	}
}

// TestSendCarriesListenPort: offers and answers say the shared socket's
// real port (official peers punch it; 0 makes them assume 51820);
// candidates do not carry one.
func TestSendCarriesListenPort(t *testing.T) {
	sock, err := sharedsock.Listen(netip.MustParseAddrPort("127.0.0.1:0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	sent := make(chan sigwire.Message, 3)
	s, _, stop := startProbe(t)
	w := &peerfsm.Workers{Socket: sock, Log: testLogger(t), SendFunc: func(_ context.Context, m sigwire.Message) error {
		sent <- m
		return nil
	}}
	for _, k := range []sigwire.Kind{sigwire.Offer, sigwire.Answer, sigwire.Candidate} {
		w.Send(s, sigwire.Message{Kind: k})
		m := <-sent
		want := uint32(sock.LocalAddr().Port())
		if k == sigwire.Candidate {
			want = 0
		}
		if m.WGListenPort != want {
			t.Errorf("%v: wgListenPort %d, want %d", k, m.WGListenPort, want)
		}
	}
	w.Close()
	stop()
}
