package relaysrv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/internal/relay"
)

// Defaults of the server's timing (RELAY.md §8).
const (
	DefaultHealthInterval = 25 * time.Second
	DefaultHealthTimeout  = 20 * time.Second
	AuthTimeout           = 10 * time.Second
	writeTimeout          = 10 * time.Second
)

// healthAgent is the server's own probe id, refused quietly.
var healthAgent = relay.HashID("healthcheck-agent")

// Config configures a Server.
type Config struct {
	Logger *zap.Logger // nil → zap.NewNop()
	Addr   string      // "" → "127.0.0.1:0"
	// Secret is the shared secret management signs tokens with.
	Secret string
	// Exposed is the instance address sent in AuthResponse ("" → "rel://" +
	// the listening address). It may differ from the URL clients dial.
	Exposed string
	// HealthInterval and HealthTimeout: a health check every interval; the
	// connection is closed when no reply came within timeout (0 → defaults).
	HealthInterval, HealthTimeout time.Duration
	// Now is the clock of token expiry (nil → time.Now).
	Now func() time.Time
}

// Server is a relay server that can be stopped and started on the same port.
// All methods are safe for concurrent use.
type Server struct {
	cfg Config
	log *zap.Logger

	auths, refused, forwarded, replaced atomic.Int64
	subscribes                          atomic.Int64
	hcOff                               atomic.Bool

	lifecycle sync.Mutex
	addr      string
	ln        net.Listener
	srv       *http.Server
	wg        sync.WaitGroup

	mu       sync.Mutex
	conns    map[*peer]struct{}              // every accepted connection
	peers    map[relay.PeerID]*peer          // authenticated, current per id
	watchers map[relay.PeerID]map[*peer]bool // id → subscribers (value: online interest)
	holds    map[relay.PeerID]chan struct{}  // ids whose AuthResponse waits (HoldAuth)
	holding  int                             // handshakes waiting on a hold now
	changed  chan struct{}                   // closed and replaced on each change of peers
}

// New returns a stopped server; call Start.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Server{cfg: cfg, log: cfg.Logger.Named("relay"), addr: cfg.Addr,
		conns: map[*peer]struct{}{}, peers: map[relay.PeerID]*peer{},
		watchers: map[relay.PeerID]map[*peer]bool{}, holds: map[relay.PeerID]chan struct{}{}, changed: make(chan struct{})}
}

// ErrRunning: Start on a running server.
var ErrRunning = errors.New("relaysrv: already running")

// Start listens (on the same port as before, after a Stop) and serves.
func (s *Server) Start() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if s.ln != nil {
		return ErrRunning
	}
	lc := net.ListenConfig{Control: reuseAddr}
	ln, err := lc.Listen(context.Background(), "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("relaysrv: %w", err)
	}
	s.ln, s.addr = ln, ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc(relay.Path, s.accept)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	srv := s.srv
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = srv.Serve(ln)
	}()
	return nil
}

// Stop sends Close to every peer (as a graceful shutdown does), closes the
// listener and every connection, and returns once every handler has ended.
func (s *Server) Stop() { s.stop(true) }

// Kill stops like a crash: no Close message.
func (s *Server) Kill() { s.stop(false) }

func (s *Server) stop(graceful bool) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if s.ln == nil {
		return
	}
	_ = s.srv.Close() // closes the listener; hijacked connections stay
	s.mu.Lock()
	all := make([]*peer, 0, len(s.conns))
	for p := range s.conns {
		all = append(all, p)
	}
	s.mu.Unlock()
	for _, p := range all {
		if graceful {
			p.send(relay.Close())
		}
		p.kill()
	}
	s.wg.Wait()
	s.ln, s.srv = nil, nil
}

// Addr is "HOST:PORT", also while stopped (the port Start reuses).
func (s *Server) Addr() string {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	return s.addr
}

// URL is "rel://HOST:PORT", what management hands out.
func (s *Server) URL() string { return "rel://" + s.Addr() }

// InstanceAddr is what AuthResponse carries.
func (s *Server) InstanceAddr() string {
	s.lifecycle.Lock()
	exposed := s.cfg.Exposed
	s.lifecycle.Unlock()
	if exposed != "" {
		return exposed
	}
	return s.URL()
}

// SetExposed sets the instance address of later AuthResponses (a name
// that needs the listening port, known after Start).
func (s *Server) SetExposed(addr string) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.cfg.Exposed = addr
}

// Port is the listening port.
func (s *Server) Port() string {
	_, port, _ := net.SplitHostPort(s.Addr())
	return port
}

// Peers lists the authenticated peer ids, sorted.
func (s *Server) Peers() []relay.PeerID {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]relay.PeerID, 0, len(s.peers))
	for id := range s.peers {
		out = append(out, id)
	}
	slices.SortFunc(out, func(a, b relay.PeerID) int { return slices.Compare(a[:], b[:]) })
	return out
}

// Has reports whether id is authenticated.
func (s *Server) Has(id relay.PeerID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[id] != nil
}

// Wait returns when cond (called on each change of the authenticated set
// or of the subscriptions) is true, or ctx ends.
func (s *Server) Wait(ctx context.Context, cond func(s *Server) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Auths counts successful authentications, Refused refused ones, Forwarded
// forwarded Transport messages, Replaced connections replaced by a newer one
// with the same id.
func (s *Server) Auths() int     { return int(s.auths.Load()) }
func (s *Server) Refused() int   { return int(s.refused.Load()) }
func (s *Server) Forwarded() int { return int(s.forwarded.Load()) }
func (s *Server) Replaced() int  { return int(s.replaced.Load()) }

// Watchers is how many connections subscribed to id's state (Wait wakes
// on every Subscribe and Unsubscribe too); Subscribes counts Subscribe
// messages.
func (s *Server) Watchers(id relay.PeerID) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.watchers[id])
}

// Subscribes counts the Subscribe messages received.
func (s *Server) Subscribes() int { return int(s.subscribes.Load()) }

// DropPeer closes the connection of id abruptly (no Close message), as a
// network failure does. It reports whether id was connected.
func (s *Server) DropPeer(id relay.PeerID) bool {
	s.mu.Lock()
	p := s.peers[id]
	s.mu.Unlock()
	if p == nil {
		return false
	}
	p.kill()
	return true
}

// HoldAuth makes the server answer id's valid Auth messages only after
// release is called (or the connection ends, or the server stops): the
// client stays connecting meanwhile, as behind a slow relay. Release is
// idempotent; later connections of id are answered at once. A hold longer
// than the client's AuthResponse wait makes it give up and retry.
func (s *Server) HoldAuth(id relay.PeerID) (release func()) {
	ch := make(chan struct{})
	s.mu.Lock()
	s.holds[id] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.holds[id] == ch {
				delete(s.holds, id)
			}
			s.mu.Unlock()
			close(ch)
		})
	}
}

// Holding is how many handshakes wait on a HoldAuth now (Wait wakes when
// it changes).
func (s *Server) Holding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.holding
}

// waitHold waits for the release of a hold on p's id, if any; false if the
// connection ended first.
func (s *Server) waitHold(p *peer) bool {
	s.mu.Lock()
	hold := s.holds[p.id]
	if hold == nil {
		s.mu.Unlock()
		return true
	}
	s.holding++
	s.notifyLocked()
	s.mu.Unlock()
	ok := true
	select {
	case <-hold:
	case <-p.ctx.Done():
		ok = false
	}
	s.mu.Lock()
	s.holding--
	s.notifyLocked()
	s.mu.Unlock()
	return ok
}

// SetHealthChecks turns health checks on or off. Off: the server sends none
// and checks no replies, so clients see a silent server.
func (s *Server) SetHealthChecks(on bool) { s.hcOff.Store(!on) }

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// peer is one accepted connection.
type peer struct {
	s      *Server
	ws     *websocket.Conn
	ctx    context.Context
	cancel context.CancelFunc
	id     relay.PeerID
	authed bool
	subs   map[relay.PeerID]struct{} // ids this peer subscribed to (s.mu)

	hcMu      sync.Mutex
	hcTimer   *time.Timer
	lastReply time.Time
	closeOnce sync.Once
}

func (p *peer) send(b []byte) bool {
	ctx, cancel := context.WithTimeout(p.ctx, writeTimeout)
	defer cancel()
	return p.ws.Write(ctx, websocket.MessageBinary, b) == nil
}

func (p *peer) kill() {
	p.closeOnce.Do(func() {
		p.cancel()
		_ = p.ws.CloseNow()
	})
}

func (s *Server) accept(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: []string{"*"}})
	if err != nil {
		return
	}
	ws.SetReadLimit(relay.MaxMessage)
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{s: s, ws: ws, ctx: ctx, cancel: cancel, subs: map[relay.PeerID]struct{}{}}
	s.mu.Lock()
	s.conns[p] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	defer s.wg.Done()
	defer s.forget(p)
	defer p.kill()
	if !s.handshake(p) {
		return
	}
	s.serve(p)
}

// handshake reads the Auth message (≤ AuthTimeout), checks the token and
// answers; any failure closes the connection without a response.
func (s *Server) handshake(p *peer) bool {
	actx, cancel := context.WithTimeout(p.ctx, AuthTimeout)
	defer cancel()
	typ, b, err := p.ws.Read(actx)
	if err != nil || typ != websocket.MessageBinary {
		s.refused.Add(1)
		return false
	}
	m, err := relay.Decode(b)
	if err == nil && m.Type != relay.TypeAuth {
		err = fmt.Errorf("first message %v", m.Type)
	}
	if err == nil && m.Peer == healthAgent {
		err = errors.New("health-check agent")
	}
	if err == nil {
		err = relay.Validate(s.cfg.Secret, m.Token, s.cfg.Now())
	}
	if err != nil {
		s.refused.Add(1)
		s.log.Debug("auth refused", zap.Error(err))
		return false
	}
	p.id = m.Peer
	if !s.waitHold(p) {
		return false
	}
	if !p.send(relay.AuthResponse(s.InstanceAddr())) {
		return false
	}
	s.register(p)
	return true
}

func (s *Server) register(p *peer) {
	s.mu.Lock()
	old := s.peers[p.id]
	s.peers[p.id] = p
	p.authed = true
	var online []*peer
	for w, interest := range s.watchers[p.id] {
		if interest {
			online = append(online, w)
			s.watchers[p.id][w] = false
		}
	}
	s.auths.Add(1)
	s.notifyLocked()
	s.mu.Unlock()
	if old != nil {
		s.replaced.Add(1)
		old.kill()
	}
	for _, w := range online {
		for _, b := range relay.PeerState(relay.TypePeersOnline, []relay.PeerID{p.id}) {
			w.send(b)
		}
	}
	s.armHealth(p)
	s.log.Debug("peer authenticated", zap.Stringer("id", p.id))
}

// forget removes p: from the peers (if current), from every watcher set, and
// tells p's watchers it went offline.
func (s *Server) forget(p *peer) {
	p.hcMu.Lock()
	if p.hcTimer != nil {
		p.hcTimer.Stop()
	}
	p.hcMu.Unlock()
	s.mu.Lock()
	delete(s.conns, p)
	for id := range p.subs {
		delete(s.watchers[id], p)
		if len(s.watchers[id]) == 0 {
			delete(s.watchers, id)
		}
	}
	var offline []*peer
	if p.authed && s.peers[p.id] == p {
		delete(s.peers, p.id)
		for w := range s.watchers[p.id] {
			offline = append(offline, w)
			s.watchers[p.id][w] = true // online interest again
		}
		s.notifyLocked()
	}
	s.mu.Unlock()
	for _, w := range offline {
		for _, b := range relay.PeerState(relay.TypePeersWentOffline, []relay.PeerID{p.id}) {
			w.send(b)
		}
	}
}

// armHealth: every interval send a health check; a peer that has answered
// none for interval+timeout (upstream: 25 s + 20 s) is closed. One timer
// per peer, re-armed in place: the test server is idle between checks.
func (s *Server) armHealth(p *peer) {
	p.hcMu.Lock()
	defer p.hcMu.Unlock()
	p.lastReply = time.Now()
	p.hcTimer = time.AfterFunc(s.cfg.HealthInterval, func() { s.healthTick(p) })
}

func (s *Server) healthTick(p *peer) {
	if p.ctx.Err() != nil {
		return
	}
	p.hcMu.Lock()
	if s.hcOff.Load() {
		p.lastReply = time.Now() // not checking while off
		p.hcTimer.Reset(s.cfg.HealthInterval)
		p.hcMu.Unlock()
		return
	}
	dead := time.Since(p.lastReply) > s.cfg.HealthInterval+s.cfg.HealthTimeout
	p.hcMu.Unlock()
	if dead {
		s.log.Debug("no health check reply: closing", zap.Stringer("id", p.id))
		p.kill()
		return
	}
	if !p.send(relay.HealthCheck()) {
		p.kill()
		return
	}
	p.hcMu.Lock()
	p.hcTimer.Reset(s.cfg.HealthInterval)
	p.hcMu.Unlock()
}

// serve reads p's messages until the connection ends or p breaks the
// protocol.
func (s *Server) serve(p *peer) {
	for {
		typ, b, err := p.ws.Read(p.ctx)
		if err != nil || typ != websocket.MessageBinary || len(b) == 0 {
			return
		}
		m, err := relay.Decode(b)
		if err != nil || !relay.FromClient(m.Type) {
			s.log.Debug("bad message: closing", zap.Stringer("id", p.id), zap.Error(err))
			return
		}
		switch m.Type {
		case relay.TypeTransport:
			s.mu.Lock()
			dst := s.peers[m.Peer]
			s.mu.Unlock()
			if dst == nil {
				continue // silently dropped
			}
			copy(b[relay.HeaderSize:], p.id[:]) // the source id replaces the destination
			if dst.send(b) {
				s.forwarded.Add(1)
			}
		case relay.TypeHealthCheck:
			p.hcMu.Lock()
			p.lastReply = time.Now()
			p.hcMu.Unlock()
		case relay.TypeClose:
			return
		case relay.TypeAuth:
			return // a second auth is a protocol error
		case relay.TypeSubscribe:
			s.subscribe(p, m.Peers)
		case relay.TypeUnsubscribe:
			s.unsubscribe(p, m.Peers)
		}
	}
}

func (s *Server) subscribe(p *peer, ids []relay.PeerID) {
	var online []relay.PeerID
	s.mu.Lock()
	for _, id := range ids {
		if s.watchers[id] == nil {
			s.watchers[id] = map[*peer]bool{}
		}
		p.subs[id] = struct{}{}
		if s.peers[id] != nil {
			online = append(online, id)
			s.watchers[id][p] = false
		} else {
			s.watchers[id][p] = true
		}
	}
	s.subscribes.Add(1)
	s.notifyLocked()
	s.mu.Unlock()
	for _, b := range relay.PeerState(relay.TypePeersOnline, online) {
		p.send(b)
	}
}

func (s *Server) unsubscribe(p *peer, ids []relay.PeerID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	defer s.notifyLocked()
	for _, id := range ids {
		delete(p.subs, id)
		delete(s.watchers[id], p)
		if len(s.watchers[id]) == 0 {
			delete(s.watchers, id)
		}
	}
}

// reuseAddr sets SO_REUSEADDR so that Start after Stop binds the same port.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	}); err != nil {
		return err
	}
	return serr
}
