package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Timeouts of the client (RELAY.md §8).
const (
	DialTimeout         = 30 * time.Second
	AuthResponseTimeout = 8 * time.Second
	WriteTimeout        = 10 * time.Second
	// HealthWindow is how long a client waits for the server's next health
	// check before it declares the server down (25 s interval + 10 s).
	HealthWindow = 35 * time.Second
)

// Path is the WebSocket path of every relay server.
const Path = "/relay"

// Errors of the client.
var (
	ErrScheme      = errors.New("relay: URL scheme is not rel or rels")
	ErrAuthRefused = errors.New("relay: server closed the connection during authentication (token refused?)")
	ErrClosed      = errors.New("relay: connection closed")
	ErrServerClose = errors.New("relay: server sent close")
	ErrDeadline    = errors.New("relay: deadlines are not supported on peer connections")
)

// WebSocketURL maps rel://H[:P] to ws://H[:P]/relay and rels:// to wss://
// (RELAY.md §2).
func WebSocketURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	switch u.Scheme {
	case "rel":
		u.Scheme = "ws"
	case "rels":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("%w: %q", ErrScheme, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("relay: URL %q without host", raw)
	}
	u.Path, u.RawPath, u.RawQuery, u.Fragment = Path, "", "", ""
	return u.String(), nil
}

// DialOptions are optional settings of Dial.
type DialOptions struct {
	// TLS is the client TLS config for rels:// (nil: system roots).
	TLS *tls.Config
	// Handler receives the connection's events; nil: none.
	Handler Handler
	// QueueLen bounds datagrams per peer not yet read (default 512); a full
	// queue drops, as a UDP socket does.
	QueueLen int
	// IP, if set, is dialed instead of the URL's host (port kept); the
	// URL's host stays the HTTP Host and the TLS server name: the remote's
	// relayServerIP for a foreign relay (RELAY.md §5.2).
	IP netip.Addr
}

// Handler is told of what arrives on a connection, from its read goroutine.
// Calls must not block.
type Handler interface {
	// HealthCheck: the server's health check arrived (and was answered).
	HealthCheck()
	// Unknown: a Transport from a peer with no open PeerConn.
	Unknown(src PeerID)
	// PeersOnline and PeersOffline report peer-state messages.
	PeersOnline(ids []PeerID)
	PeersOffline(ids []PeerID)
}

// Conn is one authenticated connection to a relay server.
type Conn struct {
	ws       *websocket.Conn
	url      string
	id       PeerID
	addr     string
	serverIP netip.Addr
	h        Handler
	qlen     int

	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	peers map[PeerID]*PeerConn
	early map[PeerID]earlyMsg // newest Transport per sender without a PeerConn
	// Peer-state subscriptions (Watch): how many watchers each id has,
	// which ids are subscribed on the wire, and which went offline and must
	// be subscribed again to re-arm the server's online interest. One
	// goroutine of Run (subscriber) writes the messages; kick wakes it.
	watch  map[PeerID]int
	onWire map[PeerID]bool
	resub  map[PeerID]bool
	kick   chan struct{}

	closeOnce sync.Once
	runOnce   atomic.Bool

	// Counters.
	In, Out, Dropped atomic.Uint64
}

// Dial connects to the relay at rawURL (rel:// or rels://), authenticates as
// id with token and waits for the AuthResponse. Call Run to serve it.
func Dial(ctx context.Context, rawURL string, id PeerID, token []byte, o DialOptions) (*Conn, error) {
	wsURL, err := WebSocketURL(rawURL)
	if err != nil {
		return nil, err
	}
	auth, err := Auth(id, token)
	if err != nil {
		return nil, err
	}
	var remote atomic.Pointer[netip.AddrPort]
	d := &net.Dialer{}
	tr := &http.Transport{
		TLSClientConfig: o.TLS,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if o.IP.IsValid() {
				_, port, err := net.SplitHostPort(addr)
				if err != nil {
					return nil, err
				}
				addr = net.JoinHostPort(o.IP.Unmap().String(), port)
			}
			c, err := d.DialContext(ctx, network, addr)
			if err == nil {
				if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
					remote.Store(&ap)
				}
			}
			return c, err
		},
		ForceAttemptHTTP2: false,
	}
	dctx, cancel := context.WithTimeout(ctx, DialTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
	tr.CloseIdleConnections()
	if err != nil {
		return nil, fmt.Errorf("relay: dial %s: %w", wsURL, err)
	}
	ws.SetReadLimit(MaxMessage)
	actx, acancel := context.WithTimeout(ctx, AuthResponseTimeout)
	defer acancel()
	if err := ws.Write(actx, websocket.MessageBinary, auth); err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("relay: send auth: %w", err)
	}
	typ, b, err := ws.Read(actx)
	if err != nil {
		_ = ws.CloseNow()
		if actx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("relay: no auth response within %v", AuthResponseTimeout)
		}
		return nil, fmt.Errorf("%w: %w", ErrAuthRefused, err)
	}
	m, err := Decode(b)
	if err == nil && (typ != websocket.MessageBinary || m.Type != TypeAuthResponse) {
		err = fmt.Errorf("relay: expected auth response, got %v", m.Type)
	}
	if err != nil {
		_ = ws.CloseNow()
		return nil, err
	}
	c := &Conn{ws: ws, url: rawURL, id: id, addr: m.Addr, h: o.Handler, qlen: o.QueueLen, peers: map[PeerID]*PeerConn{},
		early: map[PeerID]earlyMsg{}, watch: map[PeerID]int{}, onWire: map[PeerID]bool{}, resub: map[PeerID]bool{},
		kick: make(chan struct{}, 1)}
	if c.qlen <= 0 {
		c.qlen = 512
	}
	if ap := remote.Load(); ap != nil {
		c.serverIP = ap.Addr().Unmap()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// InstanceAddr is the address the server returned in its AuthResponse: what
// peers advertise and compare (RELAY.md §3.3).
func (c *Conn) InstanceAddr() string { return c.addr }

// URL is the relay URL this connection was dialed with.
func (c *Conn) URL() string { return c.url }

// ServerIP is the IP of the server's socket (relayServerIP), or zero.
func (c *Conn) ServerIP() netip.Addr { return c.serverIP }

// ID is this side's peer id.
func (c *Conn) ID() PeerID { return c.id }

// Done is closed when the connection has ended.
func (c *Conn) Done() <-chan struct{} { return c.ctx.Done() }

func (c *Conn) write(b []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, WriteTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, b); err != nil {
		if c.ctx.Err() != nil {
			return ErrClosed
		}
		return err
	}
	return nil
}

// Run reads the connection until it ends and returns why: health checks are
// answered, Transport messages go to their PeerConn, peer-state messages and
// health checks to the Handler. It may be called once.
func (c *Conn) Run() error {
	if !c.runOnce.CompareAndSwap(false, true) {
		return errors.New("relay: Run called twice")
	}
	subDone := make(chan struct{})
	go func() {
		defer close(subDone)
		c.subscriber()
	}()
	defer func() {
		c.shutdown()
		<-subDone
	}()
	for {
		typ, r, err := c.ws.Reader(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil {
				return ErrClosed
			}
			return fmt.Errorf("relay: read: %w", err)
		}
		if typ != websocket.MessageBinary {
			return errors.New("relay: text message from server")
		}
		bp := bufPool.Get().(*[]byte)
		n, err := readAll(r, *bp)
		if err != nil {
			bufPool.Put(bp)
			return fmt.Errorf("relay: read: %w", err)
		}
		keep, err := c.handle(bp, n)
		if !keep {
			bufPool.Put(bp)
		}
		if err != nil {
			return err
		}
	}
}

func readAll(r io.Reader, b []byte) (int, error) {
	n := 0
	for {
		if n == len(b) {
			// The read limit bounds messages to len(b); check for EOF.
			var one [1]byte
			k, err := r.Read(one[:])
			if k > 0 {
				return n, ErrTooLong
			}
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, err
		}
		k, err := r.Read(b[n:])
		n += k
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// handle processes one message; keep reports that the buffer was handed on.
func (c *Conn) handle(bp *[]byte, n int) (keep bool, err error) {
	m, err := Decode((*bp)[:n])
	if err != nil || !FromServer(m.Type) {
		c.Dropped.Add(1) // not fatal client-side (RELAY.md §4)
		return false, nil
	}
	switch m.Type {
	case TypeHealthCheck:
		if err := c.write(HealthCheck()); err != nil {
			return false, err
		}
		if c.h != nil {
			c.h.HealthCheck()
		}
	case TypeTransport:
		c.In.Add(1)
		c.mu.Lock()
		p := c.peers[m.Peer]
		if p == nil {
			kept := c.keepEarlyLocked(m.Peer, packet{bp: bp, off: HeaderSize + IDSize, n: n})
			c.mu.Unlock()
			if c.h != nil {
				c.h.Unknown(m.Peer)
			}
			return kept, nil
		}
		c.mu.Unlock()
		return p.deliver(packet{bp: bp, off: HeaderSize + IDSize, n: n}), nil
	case TypeClose:
		return false, ErrServerClose
	case TypePeersOnline:
		if ids := c.watched(m.Peers, false); len(ids) > 0 && c.h != nil {
			c.h.PeersOnline(ids)
		}
	case TypePeersWentOffline:
		if ids := c.watched(m.Peers, true); len(ids) > 0 && c.h != nil {
			c.h.PeersOffline(ids)
		}
	}
	return false, nil
}

// Watch asks the server for the presence of id (RELAY.md §3.7): the
// Handler's PeersOnline and PeersOffline report it, now (online, if it is)
// and whenever it changes. Watches are counted per id; the Subscribe goes
// out from a goroutine of Run, so Watch returns at once (no I/O: the loop
// calls it). After an offline report the id is subscribed again, so that
// its next authentication is reported whatever the server's online-interest
// bookkeeping. State messages about ids nobody watches are dropped.
func (c *Conn) Watch(id PeerID) {
	c.mu.Lock()
	c.watch[id]++
	c.mu.Unlock()
	c.wake()
}

// Unwatch withdraws one Watch of id; the last one unsubscribes.
func (c *Conn) Unwatch(id PeerID) {
	c.mu.Lock()
	if c.watch[id] > 1 {
		c.watch[id]--
	} else {
		delete(c.watch, id)
	}
	c.mu.Unlock()
	c.wake()
}

// Watching reports whether id is watched (for tests).
func (c *Conn) Watching(id PeerID) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.watch[id] > 0
}

func (c *Conn) wake() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// watched keeps the watched ids of a state message; offline ones are
// marked for a new Subscribe.
func (c *Conn) watched(ids []PeerID, offline bool) []PeerID {
	c.mu.Lock()
	out := ids[:0]
	for _, id := range ids {
		if c.watch[id] > 0 {
			out = append(out, id)
			if offline {
				c.resub[id] = true
			}
		}
	}
	c.mu.Unlock()
	if offline && len(out) > 0 {
		c.wake()
	}
	return out
}

// subscriber writes the Subscribe and Unsubscribe messages that bring the
// server's view in line with the watches, each time it is woken.
func (c *Conn) subscriber() {
	for {
		select {
		case <-c.kick:
		case <-c.ctx.Done():
			return
		}
		var sub, unsub []PeerID
		c.mu.Lock()
		for id := range c.watch {
			if !c.onWire[id] || c.resub[id] {
				sub = append(sub, id)
				c.onWire[id] = true
			}
		}
		clear(c.resub)
		for id := range c.onWire {
			if c.watch[id] == 0 {
				unsub = append(unsub, id)
				delete(c.onWire, id)
			}
		}
		c.mu.Unlock()
		if err := c.unsubscribe(unsub...); err != nil {
			return // the connection is failing: Run ends
		}
		if err := c.subscribe(sub...); err != nil {
			return
		}
	}
}

// subscribe asks for PeersOnline/PeersWentOffline of ids (Watch).
func (c *Conn) subscribe(ids ...PeerID) error { return c.peerState(TypeSubscribe, ids) }

// unsubscribe withdraws the interest in ids (Unwatch).
func (c *Conn) unsubscribe(ids ...PeerID) error { return c.peerState(TypeUnsubscribe, ids) }

func (c *Conn) peerState(t Type, ids []PeerID) error {
	for _, b := range PeerState(t, ids) {
		if err := c.write(b); err != nil {
			return err
		}
	}
	return nil
}

// Close sends Close and ends the connection (idempotent). Peer connections
// read EOF.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(c.ctx, time.Second)
		_ = c.ws.Write(ctx, websocket.MessageBinary, Close())
		cancel()
		_ = c.ws.Close(websocket.StatusNormalClosure, "")
		c.shutdown()
	})
	return nil
}

func (c *Conn) shutdown() {
	c.cancel()
	_ = c.ws.CloseNow()
	c.mu.Lock()
	peers := c.peers
	c.peers = map[PeerID]*PeerConn{}
	for id, e := range c.early {
		bufPool.Put(e.pk.bp)
		delete(c.early, id)
	}
	c.mu.Unlock()
	for _, p := range peers {
		p.closeLocal()
	}
}

// Peers reports how many peer connections are open.
func (c *Conn) Peers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.peers)
}

// OpenPeer returns the virtual connection to remote on this relay: a
// net.Conn whose writes are Transport messages to remote and whose reads are
// remote's Transport payloads, one datagram per call. A second OpenPeer for
// the same remote closes the first.
func (c *Conn) OpenPeer(remote PeerID) (*PeerConn, error) {
	p := &PeerConn{c: c, remote: remote, q: make(chan packet, c.qlen), done: make(chan struct{})}
	c.mu.Lock()
	if c.ctx.Err() != nil {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	old := c.peers[remote]
	c.peers[remote] = p
	e, hadEarly := c.early[remote]
	delete(c.early, remote)
	c.mu.Unlock()
	if old != nil {
		old.closeLocal()
	}
	if hadEarly {
		if time.Since(e.at) <= EarlyTTL {
			if !p.deliver(e.pk) {
				bufPool.Put(e.pk.bp)
			}
		} else {
			bufPool.Put(e.pk.bp)
		}
	}
	return p, nil
}

// Early messages (RELAY.md §3.4): the newest Transport from a sender with no
// PeerConn yet is kept for EarlyTTL and handed to the PeerConn opened for it
// (the remote's first WireGuard handshake often arrives before this side has
// paired). Expiry is checked lazily: no timer.
const (
	EarlyTTL = 5 * time.Second
	maxEarly = 1024
)

type earlyMsg struct {
	pk packet
	at time.Time
}

// keepEarlyLocked keeps pk as src's early message; false: not kept.
func (c *Conn) keepEarlyLocked(src PeerID, pk packet) bool {
	now := time.Now()
	if old, ok := c.early[src]; ok {
		bufPool.Put(old.pk.bp)
		delete(c.early, src)
	}
	if len(c.early) >= maxEarly {
		for id, e := range c.early {
			if now.Sub(e.at) > EarlyTTL {
				bufPool.Put(e.pk.bp)
				delete(c.early, id)
			}
		}
		if len(c.early) >= maxEarly {
			c.Dropped.Add(1)
			return false
		}
	}
	c.early[src] = earlyMsg{pk: pk, at: now}
	return true
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, MaxMessage); return &b }}

type packet struct {
	bp     *[]byte
	off, n int
}

// PeerConn is the virtual datagram connection to one peer over a relay.
type PeerConn struct {
	c      *Conn
	remote PeerID
	q      chan packet
	done   chan struct{}
	once   sync.Once
}

var _ net.Conn = (*PeerConn)(nil)

func (p *PeerConn) deliver(pk packet) bool {
	select {
	case <-p.done:
		return false
	default:
	}
	select {
	case p.q <- pk:
		return true
	default:
		p.c.Dropped.Add(1)
		return false
	}
}

// Read returns one datagram from the remote; io.EOF once closed.
func (p *PeerConn) Read(b []byte) (int, error) {
	select {
	case pk := <-p.q:
		n := copy(b, (*pk.bp)[pk.off:pk.n])
		bufPool.Put(pk.bp)
		return n, nil
	case <-p.done:
		return 0, io.EOF
	}
}

// Write sends b to the remote as one Transport message.
func (p *PeerConn) Write(b []byte) (int, error) {
	if len(b) > MaxTransportPayload {
		return 0, ErrTooLong
	}
	select {
	case <-p.done:
		return 0, ErrClosed
	default:
	}
	bp := bufPool.Get().(*[]byte)
	msg := AppendTransport((*bp)[:0], p.remote, b)
	err := p.c.write(msg)
	bufPool.Put(bp)
	if err != nil {
		return 0, err
	}
	p.c.Out.Add(1)
	return len(b), nil
}

// Close closes the virtual connection only (there is no per-peer close
// message on the wire).
func (p *PeerConn) Close() error {
	p.c.mu.Lock()
	if p.c.peers[p.remote] == p {
		delete(p.c.peers, p.remote)
	}
	p.c.mu.Unlock()
	p.closeLocal()
	return nil
}

func (p *PeerConn) closeLocal() {
	p.once.Do(func() {
		close(p.done)
		for {
			select {
			case pk := <-p.q:
				bufPool.Put(pk.bp)
			default:
				return
			}
		}
	})
}

// Remote is the remote's peer id.
func (p *PeerConn) Remote() PeerID { return p.remote }

// Addr is the net.Addr of a relay peer connection.
type Addr struct {
	Relay string
	Peer  PeerID
}

// Network implements net.Addr.
func (Addr) Network() string { return "relay" }

func (a Addr) String() string { return a.Relay + "/" + a.Peer.String() }

// LocalAddr implements net.Conn.
func (p *PeerConn) LocalAddr() net.Addr { return Addr{Relay: p.c.addr, Peer: p.c.id} }

// RemoteAddr implements net.Conn.
func (p *PeerConn) RemoteAddr() net.Addr { return Addr{Relay: p.c.addr, Peer: p.remote} }

// SetDeadline implements net.Conn; deadlines are not supported.
func (p *PeerConn) SetDeadline(time.Time) error { return ErrDeadline }

// SetReadDeadline implements net.Conn; deadlines are not supported.
func (p *PeerConn) SetReadDeadline(time.Time) error { return ErrDeadline }

// SetWriteDeadline implements net.Conn; deadlines are not supported.
func (p *PeerConn) SetWriteDeadline(time.Time) error { return ErrDeadline }
