package peerfsm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/pionlog"
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
		peer: a.Peer, sent: make(chan struct{}), started: time.Now(),
		log:     w.log.With(zap.String("peer", nbcrypto.Fingerprint(a.Peer))),
		overlay: w.Overlay,
	}
	h.remote.n = len(a.Candidates)
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
	types := candidateTypes(w.CandidateTypes, a.NoTURN)
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
		LoggerFactory:          pionlog.Factory(w.log.Named("pion")),
	}
}

// candidateTypes are the types an agent gathers: the configured ones (the
// official set by default), without TURN when noTURN. A configuration of
// TURN alone (tests that force ICE over TURN) is kept as it is: pion would
// read an empty list as its default set.
func candidateTypes(configured []ice.CandidateType, noTURN bool) []ice.CandidateType {
	if len(configured) == 0 {
		configured = defaultCandidateTypes
	}
	if !noTURN {
		return configured
	}
	out := make([]ice.CandidateType, 0, len(configured))
	for _, t := range configured {
		if t != ice.CandidateTypeRelay {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return configured
	}
	return out
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
	peer        wgtypes.Key
	// sent is closed when the first local candidate of this agent's peer
	// has been handed to signal (see candidateSent).
	sent     chan struct{}
	sentOnce sync.Once
	started  time.Time
	// overlay and loopbackOK filter local candidates (see useless).
	overlay    netip.Prefix
	loopbackOK bool
	// bases are the real bases of server-reflexive candidates, set by run
	// before gathering (see routeBases).
	bases map[netip.Addr]bool

	// agent is written by run before ready is closed, and read only after
	// ready is closed; nil if the agent could not be created.
	agent *ice.Agent
	ready chan struct{}

	stopped   atomic.Bool
	failOnce  sync.Once
	closeOnce sync.Once

	// remote holds remote candidates on their way to the agent: at most
	// MaxRemoteCandidates per agent in all, handed over by one worker at a
	// time (not one goroutine per candidate: a remote may send thousands).
	remote struct {
		sync.Mutex
		queue    []ice.Candidate
		n        int // accepted for this agent so far
		draining bool
		dropped  int
	}
}

// MaxRemoteCandidates bounds the remote candidates one ICE agent accepts
// (official peers send well under 20); more are dropped and counted.
const MaxRemoteCandidates = 64

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
	h.bases = routeBases(h.w.Socket.LocalAddr().Addr(), cfg.Urls)
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
	if !a.Controlling {
		h.awaitCandidateSent()
		if h.ctx.Err() != nil {
			return
		}
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

// candidateWait bounds how long a controlled agent holds its checks back
// for its first candidate to be signalled; candidateLead is the head start
// the candidate gets once its send returned (the signal server forwards it
// after the send returns, and the controller must add it to its agent).
const (
	candidateWait = 300 * time.Millisecond
	candidateLead = 25 * time.Millisecond
)

// awaitCandidateSent holds a controlled agent's connectivity checks back
// until its first local candidate has gone to signal (or candidateWait).
// A check that reaches the controller before our candidate does makes the
// controller file us as peer-reflexive, and pion's controller (official
// peers keep pion's default) then waits PrflxAcceptanceMinWait, 1 s,
// before it nominates: against the official-peer double that was the whole
// second of the first packet when the official side controls. Our own
// agent has no such wait (agentConfig).
//
// The price: a controller's checks that arrive during the hold are not
// answered (the agent has not started), so a fast controller nominates on
// its next check round, ~200 ms later; nbfsm ↔ nbfsm first packet went from
// ~120 ms to ~300 ms median (docs/benchmarks.md), against up to 1.2 s
// without the hold in 3 of 20 runs with an official-style controller.
func (h *iceAgent) awaitCandidateSent() {
	t := time.NewTimer(candidateWait)
	defer t.Stop()
	select {
	case <-h.sent:
	case <-t.C:
		return
	case <-h.ctx.Done():
		return
	}
	lead := time.NewTimer(candidateLead)
	defer lead.Stop()
	select {
	case <-lead.C:
	case <-h.ctx.Done():
	}
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
		Latency:    h.roundTrip(),
	}, nil
}

// roundTrip is the selected pair's round trip as the agent measured it in
// its checks. The pair GetSelectedCandidatePair returns is a copy without it,
// and the controlling agent selects a pair before it records the round trip
// of the check that selected it, both in one task of its own loop; the stats
// are read in a later task of that loop, so they hold that record. Zero when
// the agent has measured none (a controlled agent whose own checks of the
// pair have not been answered yet).
func (h *iceAgent) roundTrip() time.Duration {
	st, ok := h.agent.GetSelectedCandidatePairStats()
	if !ok {
		return 0
	}
	return time.Duration(st.CurrentRoundTripTime * float64(time.Second))
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

// useless reports a candidate no remote can use, or one that would mislead
// it:
//   - a host candidate on a loopback address (unless this socket itself is
//     on loopback, as in the test network), or inside the overlay (the
//     WireGuard interface's own: reaching it would need the tunnel being
//     built);
//   - any candidate whose related address is loopback while the socket is
//     not on loopback: pion's mux on 0.0.0.0 gathers one server-reflexive
//     candidate per local address, the loopback one among them, and
//     official peers read raddr as the candidate's base (PROTOCOL.md §5);
//   - a server-reflexive candidate whose related address is not its real
//     base: the local address the kernel sends from towards the STUN
//     servers (bases, learned by routeBases). Only checked when bases is
//     known.
func (h *iceAgent) useless(c ice.Candidate) bool {
	return uselessCandidate(c, h.loopbackOK, h.overlay, h.bases)
}

func uselessCandidate(c ice.Candidate, loopbackOK bool, overlay netip.Prefix, bases map[netip.Addr]bool) bool {
	if r := c.RelatedAddress(); r != nil && !loopbackOK {
		if ip, err := netip.ParseAddr(r.Address); err == nil && ip.Unmap().IsLoopback() {
			return true
		}
	}
	switch c.Type() {
	case ice.CandidateTypeServerReflexive:
		r := c.RelatedAddress()
		if r == nil || len(bases) == 0 {
			return false
		}
		ip, err := netip.ParseAddr(r.Address)
		return err != nil || !bases[ip.Unmap()]
	case ice.CandidateTypeHost:
		ip, err := netip.ParseAddr(c.Address())
		if err != nil {
			return false
		}
		ip = ip.Unmap()
		return ip.IsLoopback() && !loopbackOK || overlay.IsValid() && overlay.Contains(ip)
	}
	return false
}

// routeBases returns the local addresses the kernel picks as source towards
// each STUN server of urls: the real bases of server-reflexive candidates
// of a socket bound to an unspecified address (a bound socket's only base is
// its own address). A connected UDP socket asks the routing table without
// sending anything. It resolves names, so it runs in the agent's worker.
func routeBases(local netip.Addr, urls []*stun.URI) map[netip.Addr]bool {
	bases := make(map[netip.Addr]bool)
	if local.IsValid() && !local.IsUnspecified() {
		bases[local.Unmap()] = true
		return bases
	}
	for _, u := range urls {
		if u.Scheme != stun.SchemeTypeSTUN {
			continue
		}
		c, err := net.Dial("udp4", net.JoinHostPort(u.Host, strconv.Itoa(u.Port)))
		if err != nil {
			continue
		}
		if a, ok := c.LocalAddr().(*net.UDPAddr); ok {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				bases[ip.Unmap()] = true
			}
		}
		_ = c.Close()
	}
	return bases
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
	r := &h.remote
	r.Lock()
	defer r.Unlock()
	if r.n >= MaxRemoteCandidates {
		if r.dropped++; r.dropped == 1 {
			h.log.Debug("remote candidates over the cap: dropped", zap.Int("max", MaxRemoteCandidates))
		}
		return
	}
	r.n++
	r.queue = append(r.queue, c)
	if !r.draining {
		r.draining = true
		h.w.workers.Go(h.drainCandidates)
	}
}

// drainCandidates is the one worker that hands queued remote candidates to
// the agent once it exists; it ends when the queue is empty.
func (h *iceAgent) drainCandidates() {
	select {
	case <-h.ready:
	case <-h.ctx.Done():
		h.remote.Lock()
		h.remote.draining, h.remote.queue = false, nil
		h.remote.Unlock()
		return
	}
	for {
		r := &h.remote
		r.Lock()
		batch := r.queue
		r.queue = nil
		if len(batch) == 0 || h.ctx.Err() != nil {
			r.draining = false
			r.Unlock()
			return
		}
		r.Unlock()
		for _, c := range batch {
			if h.ctx.Err() == nil {
				h.add(c)
			}
		}
	}
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
