package peerfsm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// SendTimeout bounds one signal send. A send is never retried by its
// worker: the machine's offer backoff is the retry.
const SendTimeout = 10 * time.Second

// Lengths of the credentials official peers generate (PROTOCOL.md §4).
const (
	ufragLen = 16
	pwdLen   = 32
)

// Workers is the production Effects: signal sends through SendFunc, pion ICE
// agents on the shared socket's mux, WireGuard configuration of Iface.
//
// Every Effects method is called from the loop goroutine and returns without
// waiting: sends and ICE run in goroutines that post back through the
// machine's generation-bound fsm.Sender; WireGuard configuration runs in
// the interface's configuration worker, which posts failures back. One Workers serves every peer
// machine of a loop. Set the exported fields before the first call; call
// Close after the loop has stopped, before closing Iface and Socket.
type Workers struct {
	Socket *sharedsock.Socket
	Iface  *wgiface.Interface
	// SendFunc sends one signal message (signalfsm.Dialer.Send in
	// production). It must honour ctx.
	SendFunc func(ctx context.Context, m sigwire.Message) error
	Log      *zap.Logger
	// CandidateTypes, if set, restricts the candidate types agents gather
	// and accept (tests force relay-only with it). Default: host, srflx,
	// relay, as official peers.
	CandidateTypes []ice.CandidateType
	// Overlay is the overlay network (the interface address's prefix): host
	// candidates inside it are not signalled. Set before the first StartICE.
	Overlay netip.Prefix

	// urls are the STUN and TURN servers from the management config. They
	// are written by SetICEServers and read by StartICE, both in the loop
	// goroutine, so they need no lock.
	urls []*stun.URI

	initOnce sync.Once
	log      *zap.Logger
	ctx      context.Context // cancelled by Close: ends sends and dials
	cancel   context.CancelFunc
	workers  tracker

	live struct {
		sync.Mutex
		closed bool
		agents map[*iceAgent]struct{}
		relays map[wgtypes.Key]*relayLink
		// endpoints holds the peers whose WireGuard endpoint SetPeer set
		// (direct or relay), until a reset or removal.
		endpoints map[wgtypes.Key]bool
	}
}

var _ Effects = (*Workers)(nil)

// relayLink is the relay endpoint bridging one peer's WireGuard traffic
// through a relayed ICE connection.
type relayLink struct {
	conn net.Conn
	ep   *sharedsock.Endpoint
	stop func()
}

func (w *Workers) init() {
	w.initOnce.Do(func() {
		l := w.Log
		if l == nil {
			l = zap.NewNop()
		}
		w.log = l.Named("peer")
		w.ctx, w.cancel = context.WithCancel(context.Background())
		w.live.agents = make(map[*iceAgent]struct{})
		w.live.relays = make(map[wgtypes.Key]*relayLink)
		w.live.endpoints = make(map[wgtypes.Key]bool)
	})
}

// SetICEServers sets the STUN and TURN servers of agents started from now
// on (TURN URIs carry Username and Password). Loop goroutine only: the
// engine calls it when a management config arrives.
func (w *Workers) SetICEServers(stuns []*stun.URI, turns []*stun.URI) {
	urls := make([]*stun.URI, 0, len(stuns)+len(turns))
	for _, u := range stuns {
		if u != nil {
			urls = append(urls, u)
		}
	}
	for _, u := range turns {
		if u != nil {
			urls = append(urls, u)
		}
	}
	w.urls = urls
}

// NewCredentials returns a fresh ufrag of 16 ASCII letters, pwd of 32 and
// a 5-byte session id, from crypto/rand.
func (w *Workers) NewCredentials() Credentials {
	return Credentials{
		Ufrag:     randomLetters(ufragLen),
		Pwd:       randomLetters(pwdLen),
		SessionID: randomBytes(sigwire.SessionIDSize),
	}
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

// randomLetters draws n letters uniformly: bytes at or above the largest
// multiple of 52 are rejected so that no letter is more likely.
func randomLetters(n int) string {
	const limit = 256 - 256%len(letters)
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/2)
	for len(out) < n {
		_, _ = rand.Read(buf) // never fails (crypto/rand, Go 1.24+)
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, letters[int(b)%len(letters)])
			}
		}
	}
	return string(out)
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// Send sends m in a worker goroutine, one attempt bounded by SendTimeout;
// a failure is posted as EvSendFailed with the error.
//
// Offers and answers carry the real port of the shared socket as
// wgListenPort: official peers send their "nb" hole punch there, and assume
// 51820 for 0 (PROTOCOL.md §5).
func (w *Workers) Send(s fsm.Sender, m sigwire.Message) {
	w.init()
	queued := time.Now()
	if (m.Kind == sigwire.Offer || m.Kind == sigwire.Answer) && m.WGListenPort == 0 && w.Socket != nil {
		m.WGListenPort = uint32(w.Socket.LocalAddr().Port())
	}
	w.workers.Go(func() {
		err := ErrNoSignal
		if w.SendFunc != nil {
			ctx, cancel := context.WithTimeout(w.ctx, SendTimeout)
			err = w.SendFunc(ctx, m)
			cancel()
		}
		if err == nil && m.Kind == sigwire.Candidate {
			w.candidateSent(m.To, queued)
		}
		if err != nil {
			w.log.Debug("signal send failed", zap.String("peer", nbcrypto.Fingerprint(m.To)),
				zap.String("event", m.Kind.String()), zap.NamedError("err", err))
			_ = s.Post(EvSendFailed, fmt.Errorf("send %v: %w", m.Kind, err))
		}
	})
}

// candidateSent tells the live agents of peer that a local candidate
// queued at queued went to signal (see iceAgent.awaitCandidateSent); an
// agent started after that (the send was an older agent's) is not told.
func (w *Workers) candidateSent(peer wgtypes.Key, queued time.Time) {
	w.live.Lock()
	defer w.live.Unlock()
	for a := range w.live.agents {
		if a.peer == peer && !a.started.After(queued) {
			a.sentOnce.Do(func() { close(a.sent) })
		}
	}
}

// SetPeer configures the WireGuard peer p describes:
//   - relayed (Relay set): the connection is bridged by a sharedsock relay
//     endpoint (the same one while the connection is the same) and the
//     WireGuard endpoint is its virtual address, with keepalive; except on
//     the controlled side of a relayed agent of these Workers, which sets
//     keepalive only and learns the endpoint from the remote's handshake
//     through the relay (see below);
//   - direct with an Endpoint: endpoint and keepalive;
//   - keepalive without endpoint: keepalive only (the endpoint stays as
//     learned from the remote's handshake);
//   - neither: the peer is reset to key and allowed IPs (removed and added
//     again, since WireGuard keeps an endpoint otherwise).
//
// Two wireguard-go behaviours shape this. Crossing handshake initiations
// (both sides start one at once) stall the tunnel for RekeyTimeout (5 s),
// so only one side of a pair initiates: the controlling one, as the
// machine does for direct pairs. And a packet sent to a peer without an
// endpoint counts as a handshake attempt, which holds back the next
// initiation for the same 5 s; so when an endpoint is first set on a peer
// (the path just connected), the peer is removed and added fresh, and the
// keepalive starts its handshake at once. Packets queued for the peer
// before the path existed are dropped with it.
//
// Everything is queued for the interface's configuration worker
// (wgiface.Interface.Enqueue: wgctrl round trips in TUN mode) and done
// there in order, the relay bridge included; a failure is posted through r:
// EvRelayFailed for the bridge, EvWGFailed for WireGuard. A relay of the
// peer that p no longer uses is stopped (which closes its ICE agent) once
// WireGuard has left it.
func (w *Workers) SetPeer(r Poster, p WGPeer) error {
	w.init()
	if w.Iface == nil {
		return ErrNoInterface
	}
	wp := wgiface.Peer{Key: p.Key, AllowedIPs: p.AllowedIPs, Keepalive: p.Keepalive, Endpoint: p.Endpoint}
	ch := wgiface.Change{Peer: wp, Initiate: p.Probe}
	withEndpoint := p.Endpoint.IsValid()
	if p.Relay != nil {
		// The bridge is set up by the configuration worker, behind the
		// peer's earlier changes: a handshake the relay already holds for
		// us (the controller's first one often arrives before our path
		// is open) reaches WireGuard only once it knows the peer's key.
		controlled := controlledRelay(p.Relay)
		withEndpoint = !controlled
		ch.Peer.Endpoint = netip.AddrPort{}
		ch.Prepare = func(wp *wgiface.Peer) error {
			ep, err := w.relayEndpoint(p.Key, p.Relay)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrRelayBridge, err)
			}
			if !controlled {
				wp.Endpoint = ep
			}
			return nil
		}
	}
	w.live.Lock()
	had := w.live.endpoints[p.Key]
	switch {
	case withEndpoint:
		w.live.endpoints[p.Key] = true
		ch.Reset = !had
	case p.Relay != nil:
		// Controlled side of a relay: the endpoint is learned from the
		// controller's handshake, so a later direct endpoint needs no reset.
		w.live.endpoints[p.Key] = true
	case p.Keepalive == 0:
		delete(w.live.endpoints, p.Key)
		ch.Reset = true
	}
	var unused *relayLink // the relay WireGuard leaves with this change
	if p.Relay == nil && !p.KeepRelay {
		unused = w.live.relays[p.Key]
	}
	w.live.Unlock()
	err := w.Iface.Enqueue(ch, func(err error) {
		if unused != nil {
			w.stopRelayLink(p.Key, unused)
		}
		if err == nil {
			return
		}
		logFailure(w.log.With(zap.String("peer", nbcrypto.Fingerprint(p.Key)), zap.Stringer("endpoint", p.Endpoint)),
			"wireguard set peer failed", err)
		if errors.Is(err, ErrRelayBridge) {
			_ = r.Post(EvRelayFailed, err)
			return
		}
		_ = r.Post(EvWGFailed, fmt.Errorf("wireguard set peer: %w", err))
	})
	if err != nil {
		if unused != nil {
			w.stopRelayLink(p.Key, unused)
		}
		return fmt.Errorf("wireguard set peer: %w", err)
	}
	return nil
}

// controlledRelay reports whether c is the connection of a controlled
// agent of these Workers.
func controlledRelay(c net.Conn) bool {
	if rc, ok := c.(interface{ Controlled() bool }); ok {
		return rc.Controlled() // a NetBird relay path (relay.go)
	}
	ac, ok := c.(*agentConn)
	return ok && !ac.h.controlling
}

// RemovePeer stops the peer's relay, if any, and queues its removal from
// WireGuard; a removal that fails later is logged.
func (w *Workers) RemovePeer(k wgtypes.Key) error {
	w.init()
	w.dropRelay(k)
	w.live.Lock()
	delete(w.live.endpoints, k)
	w.live.Unlock()
	if w.Iface == nil {
		return nil
	}
	err := w.Iface.Enqueue(wgiface.Change{Peer: wgiface.Peer{Key: k}, Remove: true}, func(err error) {
		if err != nil {
			logFailure(w.log.With(zap.String("peer", nbcrypto.Fingerprint(k))), "wireguard remove peer failed", err)
		}
	})
	if err != nil {
		return fmt.Errorf("wireguard remove peer: %w", err)
	}
	return nil
}

// HoldPath makes the shared socket answer the remote's STUN checks for the
// closed agent of local credentials.
func (w *Workers) HoldPath(local Credentials, remote netip.AddrPort) (release func()) {
	w.init()
	if w.Socket == nil {
		return func() {}
	}
	cancel, err := w.Socket.Respond(local.Ufrag, local.Pwd, remote)
	if err != nil {
		logFailure(w.log.With(zap.Stringer("endpoint", remote)), "hold path failed", err)
		return func() {}
	}
	return cancel
}

// LastReceive is when a WireGuard datagram last arrived from remote.
func (w *Workers) LastReceive(remote netip.AddrPort) time.Time {
	if w.Socket == nil {
		return time.Time{}
	}
	return w.Socket.LastReceive(remote)
}

// RelayLastReceive is when the socket last stamped a WireGuard datagram
// from k's relay bridge (zero if it has none).
func (w *Workers) RelayLastReceive(k wgtypes.Key) time.Time {
	w.live.Lock()
	r := w.live.relays[k]
	w.live.Unlock()
	if r == nil {
		return time.Time{}
	}
	return r.ep.LastReceive()
}

// CurrentEndpoint is WireGuard's endpoint for k now (it follows roaming).
// It reads every peer's state, so the machine asks only when a direct
// pair's address has been silent for a whole path timeout.
func (w *Workers) CurrentEndpoint(k wgtypes.Key) netip.AddrPort {
	if w.Iface == nil {
		return netip.AddrPort{}
	}
	ep, relayed, err := w.Iface.Endpoint(k) // in-process, no socket round trip
	if err != nil || relayed {
		return netip.AddrPort{}
	}
	return ep
}

// Probe asks WireGuard for a handshake initiation to k, from a worker (it
// sends a datagram).
func (w *Workers) Probe(k wgtypes.Key) {
	w.init()
	if w.Iface == nil {
		return
	}
	iface := w.Iface
	w.workers.Go(func() {
		if err := iface.Initiate(k); err != nil {
			logFailure(w.log.With(zap.String("peer", nbcrypto.Fingerprint(k))), "wireguard probe failed", err)
		}
	})
}

// Now is time.Now.
func (w *Workers) Now() time.Time { return time.Now() }

// Close stops every relay and agent, cancels sends and dials, and waits for
// every worker goroutine (agent closes included). Call it after the loop
// has stopped and before closing Iface and Socket. Idempotent.
func (w *Workers) Close() {
	w.init()
	w.live.Lock()
	w.live.closed = true
	agents := make([]*iceAgent, 0, len(w.live.agents))
	for a := range w.live.agents {
		agents = append(agents, a)
	}
	relays := w.live.relays
	w.live.relays = make(map[wgtypes.Key]*relayLink)
	w.live.Unlock()
	for _, r := range relays {
		r.stop()
	}
	for _, a := range agents {
		a.Stop()
	}
	w.cancel()
	w.workers.Wait()
}

// relayEndpoint returns the relay endpoint of peer for c: the current one
// when c is already bridged (SetPeer is called again with the same
// connection when allowed IPs change), else a new one, which stops the old.
func (w *Workers) relayEndpoint(peer wgtypes.Key, c net.Conn) (netip.AddrPort, error) {
	if w.Socket == nil {
		return netip.AddrPort{}, ErrNoSocket
	}
	w.live.Lock()
	if w.live.closed {
		w.live.Unlock()
		return netip.AddrPort{}, ErrWorkersClosed
	}
	if r := w.live.relays[peer]; r != nil && r.conn == c {
		w.live.Unlock()
		return r.ep.AddrPort(), nil
	}
	w.live.Unlock()
	ep, stop, err := w.Socket.RelayEndpoint(peer, c)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("relay endpoint: %w", err)
	}
	w.live.Lock()
	old := w.live.relays[peer]
	w.live.relays[peer] = &relayLink{conn: c, ep: ep, stop: stop}
	w.live.Unlock()
	if old != nil {
		old.stop() // already stopped by the socket; drops our reference
	}
	return ep.AddrPort(), nil
}

// stopRelayLink stops r if it is still the peer's relay (a newer one may
// have replaced it since the change that left it was queued).
func (w *Workers) stopRelayLink(peer wgtypes.Key, r *relayLink) {
	w.live.Lock()
	cur := w.live.relays[peer] == r
	if cur {
		delete(w.live.relays, peer)
	}
	w.live.Unlock()
	if cur {
		r.stop()
	}
}

// dropRelay stops the peer's relay, if any.
func (w *Workers) dropRelay(peer wgtypes.Key) {
	w.live.Lock()
	r := w.live.relays[peer]
	delete(w.live.relays, peer)
	w.live.Unlock()
	if r != nil {
		r.stop()
	}
}

// logFailure logs a failed WireGuard or socket call: at debug when the
// interface or socket is already closed (shutdown), else as unexpected.
func logFailure(log *zap.Logger, what string, err error) {
	if errors.Is(err, wgiface.ErrClosed) || errors.Is(err, sharedsock.ErrClosed) || errors.Is(err, ErrWorkersClosed) {
		log.Debug(what, zap.NamedError("err", err))
		return
	}
	log.Warn("unexpected: "+what, zap.NamedError("err", err))
}

// tracker counts worker goroutines so that Close can wait for them. Unlike
// a WaitGroup it allows Go while Wait is in progress (an agent closing from
// a relay reader, say).
type tracker struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0 while someone waits
}

// Go runs f in a counted goroutine.
func (t *tracker) Go(f func()) {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
	go func() {
		defer t.done()
		f()
	}()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
	t.mu.Unlock()
}

// Wait returns when no counted goroutine runs.
func (t *tracker) Wait() {
	for {
		t.mu.Lock()
		if t.n == 0 {
			t.mu.Unlock()
			return
		}
		if t.zero == nil {
			t.zero = make(chan struct{})
		}
		z := t.zero
		t.mu.Unlock()
		<-z
	}
}
