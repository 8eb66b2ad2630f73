package peerfsm

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/logging"
	"github.com/pion/stun"
	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
)

// ICE timing of official peers (PROTOCOL.md §5): a binding request on the
// selected pair every 4 s, the pair dropped after 6 s without answers.
const (
	iceKeepalive    = 4 * time.Second
	iceDisconnected = 6 * time.Second
	iceFailed       = 6 * time.Second
)

// defaultCandidateTypes are the candidate types official peers gather.
var defaultCandidateTypes = []ice.CandidateType{
	ice.CandidateTypeHost, ice.CandidateTypeServerReflexive, ice.CandidateTypeRelay,
}

// StartICE starts a pion agent for a in a worker goroutine and returns at
// once. The agent runs on the shared socket's mux (host and srflx
// candidates share the WireGuard port), with a.Local as its credentials;
// it posts every local candidate as EvLocalCandidate, then EvICEConnected
// with the selected Pair once Dial (controlling) or Accept (controlled)
// succeeds, or EvICEFailed when connecting fails or the agent goes Failed
// or closes on its own. Re-selections after the first pair are not posted:
// a relayed pair keeps its connection, and the machine is configured for
// the pair it connected with.
func (w *Workers) StartICE(s fsm.Sender, a Agent) ICEHandle {
	w.init()
	ctx, cancel := context.WithCancel(w.ctx)
	h := &iceAgent{
		w: w, s: s, ctx: ctx, cancel: cancel, ready: make(chan struct{}), controlling: a.Controlling,
		log:     w.log.With(zap.String("peer", nbcrypto.Fingerprint(a.Peer))),
		overlay: w.Overlay,
	}
	if w.Socket != nil {
		h.loopbackOK = w.Socket.LocalAddr().Addr().IsLoopback()
	}
	w.live.Lock()
	closed := w.live.closed
	if !closed {
		w.live.agents[h] = struct{}{}
	}
	w.live.Unlock()
	if closed {
		h.stopped.Store(true)
		cancel()
		close(h.ready)
		return h
	}
	var cfg *ice.AgentConfig
	if w.Socket != nil {
		cfg = w.agentConfig(a)
	}
	w.workers.Go(func() { h.run(cfg, a) })
	return h
}

// agentConfig is the official peers' ICE configuration on the shared
// socket. It reads w.urls: loop goroutine only.
func (w *Workers) agentConfig(a Agent) *ice.AgentConfig {
	types := w.CandidateTypes
	if len(types) == 0 {
		types = defaultCandidateTypes
	}
	// Acceptance waits: pion holds back nominating a pair whose candidates
	// are peer-reflexive (default 1 s) or server-reflexive (500 ms) in case a
	// better pair succeeds. The first valid pair here is the best one in
	// practice (host pairs are checked first), and the waits were the whole
	// slow tail of the time to first packet; relay keeps pion's 2 s.
	keepalive, disconnected, failed := iceKeepalive, iceDisconnected, iceFailed
	prflxWait, srflxWait := time.Duration(0), time.Duration(0)
	return &ice.AgentConfig{
		LocalUfrag:             a.Local.Ufrag,
		LocalPwd:               a.Local.Pwd,
		Urls:                   urlsFor(w.urls, types),
		NetworkTypes:           []ice.NetworkType{ice.NetworkTypeUDP4},
		CandidateTypes:         append([]ice.CandidateType(nil), types...),
		MulticastDNSMode:       ice.MulticastDNSModeDisabled,
		UDPMux:                 w.Socket.UDPMux(),
		UDPMuxSrflx:            w.Socket.UDPMux(),
		KeepaliveInterval:      &keepalive,
		DisconnectedTimeout:    &disconnected,
		FailedTimeout:          &failed,
		PrflxAcceptanceMinWait: &prflxWait,
		SrflxAcceptanceMinWait: &srflxWait,
		LoggerFactory:          pionLoggers{w.log.Named("pion")},
	}
}

// urlsFor keeps the servers the candidate types need (pion refuses an agent
// given URLs it will not use): STUN for srflx, TURN for relay.
func urlsFor(urls []*stun.URI, types []ice.CandidateType) []*stun.URI {
	var srflx, relay bool
	for _, t := range types {
		srflx = srflx || t == ice.CandidateTypeServerReflexive
		relay = relay || t == ice.CandidateTypeRelay
	}
	var out []*stun.URI
	for _, u := range urls {
		switch u.Scheme {
		case stun.SchemeTypeSTUN, stun.SchemeTypeSTUNS:
			if srflx {
				out = append(out, u)
			}
		case stun.SchemeTypeTURN, stun.SchemeTypeTURNS:
			if relay {
				out = append(out, u)
			}
		}
	}
	return out
}

// iceAgent is one running pion agent: the ICEHandle of StartICE.
type iceAgent struct {
	w      *Workers
	s      fsm.Sender
	log    *zap.Logger
	ctx    context.Context // cancelled by Stop: ends the dial and candidate adds
	cancel context.CancelFunc
	// controlling is the agent's role, for SetPeer of its relayed pair.
	controlling bool
	// overlay and loopbackOK filter local candidates (see useless).
	overlay    netip.Prefix
	loopbackOK bool

	// agent is written by run before ready is closed, and read only after
	// ready is closed; nil if the agent could not be created.
	agent *ice.Agent
	ready chan struct{}

	stopped   atomic.Bool
	failOnce  sync.Once
	closeOnce sync.Once
}

// run creates the agent, gathers, and connects.
func (h *iceAgent) run(cfg *ice.AgentConfig, a Agent) {
	if cfg == nil {
		close(h.ready)
		h.fail(ErrNoSocket)
		return
	}
	agent, err := ice.NewAgent(cfg)
	if err != nil {
		close(h.ready)
		h.fail(fmt.Errorf("ice: new agent: %w", err))
		return
	}
	_ = agent.OnCandidate(h.onCandidate)
	_ = agent.OnConnectionStateChange(h.onState)
	h.agent = agent
	close(h.ready)
	if h.stopped.Load() {
		return // the closer started by Stop closes the agent
	}
	for _, text := range a.Candidates {
		if c, err := ice.UnmarshalCandidate(text); err == nil {
			h.add(c)
		} else {
			h.log.Debug("bad remote candidate", zap.String("candidate", text), zap.NamedError("err", err))
		}
	}
	if err := agent.GatherCandidates(); err != nil {
		h.fail(fmt.Errorf("ice: gather: %w", err))
		return
	}
	var conn *ice.Conn
	if a.Controlling {
		conn, err = agent.Dial(h.ctx, a.Remote.Ufrag, a.Remote.Pwd)
	} else {
		conn, err = agent.Accept(h.ctx, a.Remote.Ufrag, a.Remote.Pwd)
	}
	if err != nil {
		h.fail(fmt.Errorf("ice: connect: %w", err))
		return
	}
	pair, err := h.pair(conn)
	if err != nil {
		h.fail(err)
		return
	}
	h.log.Debug("ice connected", zap.String("candidate", pair.LocalType+"/"+pair.RemoteType),
		zap.Stringer("endpoint", pair.Remote), zap.Duration("latency", pair.Latency))
	h.post(EvICEConnected, pair)
}

// pair describes the agent's selected pair.
func (h *iceAgent) pair(conn *ice.Conn) (Pair, error) {
	p, err := h.agent.GetSelectedCandidatePair()
	if err != nil {
		return Pair{}, fmt.Errorf("ice: selected pair: %w", err)
	}
	if p == nil || p.Local == nil || p.Remote == nil {
		return Pair{}, fmt.Errorf("ice: connected without a selected pair: %w", ErrICEFailed)
	}
	lt, rt := p.Local.Type(), p.Remote.Type()
	return Pair{
		Relayed:    lt == ice.CandidateTypeRelay || rt == ice.CandidateTypeRelay,
		LocalType:  lt.String(),
		RemoteType: rt.String(),
		Local:      candidateAddr(p.Local),
		Remote:     candidateAddr(p.Remote),
		Conn:       &agentConn{Conn: conn, h: h},
		Latency:    time.Duration(p.CurrentRoundTripTime() * float64(time.Second)),
	}, nil
}

// candidateAddr is c's ip:port, zero for a name (mDNS) candidate.
func candidateAddr(c ice.Candidate) netip.AddrPort {
	a, err := netip.ParseAddr(c.Address())
	if err != nil || c.Port() < 0 || c.Port() > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(c.Port()))
}

func (h *iceAgent) onCandidate(c ice.Candidate) {
	if c == nil || h.stopped.Load() {
		return // nil: gathering is complete
	}
	if redundant(c) || h.useless(c) {
		return
	}
	text := c.Marshal()
	h.log.Debug("local candidate", zap.String("candidate", text))
	h.post(EvLocalCandidate, text)
}

// redundant reports a server-reflexive candidate whose address is its own
// base (no NAT between us and the STUN server): RFC 8445 §5.1.3 removes it,
// since it only duplicates the host candidate. Signalled anyway, it makes the
// remote file our checks under the srflx candidate and pion then waits its
// srflx acceptance time (500 ms) before nominating.
func redundant(c ice.Candidate) bool {
	r := c.RelatedAddress()
	return c.Type() == ice.CandidateTypeServerReflexive && r != nil && r.Address == c.Address() && r.Port == c.Port()
}

// useless reports a host candidate no remote can use: a loopback address
// (unless this socket itself is on loopback, as in the test network), or an
// address inside the overlay (the WireGuard interface's own: reaching it
// would need the tunnel being built).
func (h *iceAgent) useless(c ice.Candidate) bool {
	if c.Type() != ice.CandidateTypeHost {
		return false
	}
	ip, err := netip.ParseAddr(c.Address())
	if err != nil {
		return false
	}
	ip = ip.Unmap()
	return ip.IsLoopback() && !h.loopbackOK || h.overlay.IsValid() && h.overlay.Contains(ip)
}

func (h *iceAgent) onState(s ice.ConnectionState) {
	h.log.Debug("ice state", zap.Stringer("to", s))
	switch s {
	case ice.ConnectionStateFailed:
		h.fail(ErrICEFailed)
	case ice.ConnectionStateClosed:
		h.fail(ErrAgentClosed)
	}
}

// fail posts EvICEFailed once, unless the agent was stopped.
func (h *iceAgent) fail(err error) {
	if h.stopped.Load() {
		return
	}
	h.failOnce.Do(func() {
		h.log.Debug("ice failed", zap.NamedError("err", err))
		h.post(EvICEFailed, err)
	})
}

// post sends ev to the machine unless the agent was stopped. A post racing
// with Stop may still land: the machine's generation, bumped with every
// Stop, drops it.
func (h *iceAgent) post(ev fsm.Event, data any) {
	if h.stopped.Load() {
		return
	}
	_ = h.s.Post(ev, data)
}

// AddRemoteCandidate hands the agent a remote candidate. Parsing happens
// here; the add waits in a worker for the agent to exist.
func (h *iceAgent) AddRemoteCandidate(text string) {
	if h.stopped.Load() {
		return
	}
	c, err := ice.UnmarshalCandidate(text)
	if err != nil {
		h.log.Debug("bad remote candidate", zap.String("candidate", text), zap.NamedError("err", err))
		return
	}
	h.w.workers.Go(func() {
		select {
		case <-h.ready:
		case <-h.ctx.Done():
			return
		}
		if h.ctx.Err() == nil {
			h.add(c)
		}
	})
}

// add gives c to the agent; ready is closed.
func (h *iceAgent) add(c ice.Candidate) {
	if h.agent == nil {
		return
	}
	if err := h.agent.AddRemoteCandidate(c); err != nil && !errors.Is(err, ice.ErrClosed) {
		h.log.Debug("remote candidate refused", zap.String("candidate", c.String()), zap.NamedError("err", err))
	}
}

// Stop ends the agent: nothing is posted afterwards, the dial is
// cancelled, and the agent closes in a worker (pion's close waits for its
// goroutines). It does not wait.
func (h *iceAgent) Stop() {
	if !h.stopped.CompareAndSwap(false, true) {
		return
	}
	h.cancel()
	h.w.live.Lock()
	delete(h.w.live.agents, h)
	h.w.live.Unlock()
	h.closeAgent()
}

// closeAgent closes the agent once, in a worker, after it exists.
func (h *iceAgent) closeAgent() {
	h.closeOnce.Do(func() {
		h.w.workers.Go(func() {
			<-h.ready
			if h.agent != nil {
				if err := h.agent.GracefulClose(); err != nil {
					h.log.Debug("ice close", zap.NamedError("err", err))
				}
			}
		})
	})
}

// agentConn is the connection of a connected agent, handed out as
// Pair.Conn. Its Close closes the agent through the handle, so that a relay
// that owns the connection and the machine's Stop never close the agent
// twice at once (pion's Close is not safe for concurrent callers).
type agentConn struct {
	*ice.Conn
	h *iceAgent
}

// Close closes the agent in the background; reads end when it has closed.
func (c *agentConn) Close() error {
	c.h.closeAgent()
	return nil
}

// pionLoggers sends pion's log to zap at debug level: pion reports routine
// network conditions (a failed ping, a closed candidate) as warnings and
// errors, none of which is unexpected for nbfsm.
type pionLoggers struct{ l *zap.Logger }

func (f pionLoggers) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{f.l.With(zap.String("scope", scope)).Sugar()}
}

type pionLogger struct{ l *zap.SugaredLogger }

var _ logging.LeveledLogger = pionLogger{}

func (p pionLogger) Trace(msg string)                  { p.l.Debug(msg) }
func (p pionLogger) Tracef(format string, args ...any) { p.l.Debugf(format, args...) }
func (p pionLogger) Debug(msg string)                  { p.l.Debug(msg) }
func (p pionLogger) Debugf(format string, args ...any) { p.l.Debugf(format, args...) }
func (p pionLogger) Info(msg string)                   { p.l.Debug(msg) }
func (p pionLogger) Infof(format string, args ...any)  { p.l.Debugf(format, args...) }
func (p pionLogger) Warn(msg string)                   { p.l.Debug(msg) }
func (p pionLogger) Warnf(format string, args ...any)  { p.l.Debugf(format, args...) }
func (p pionLogger) Error(msg string)                  { p.l.Debug(msg) }
func (p pionLogger) Errorf(format string, args ...any) { p.l.Debugf(format, args...) }
