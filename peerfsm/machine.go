package peerfsm

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/relayuse"
	"github.com/nbfsm/nbfsm/internal/sigwire"
)

// Kind is the machine kind.
const Kind = "peer"

// ID is the machine id of the peer with public key k.
func ID(k wgtypes.Key) string { return "peer/" + k.String() }

// Defaults of the peer's timing, documented in docs/architecture.md.
const (
	// Keepalive is WireGuard's persistent keepalive on a connected pair.
	Keepalive = 25 * time.Second
	// PathTimeout is how long a direct path may stay silent (3 keepalives).
	PathTimeout = 3 * Keepalive
	// ProbeTimeout is how long a direct path found silent waits for the
	// answer to its probe (a WireGuard handshake: one round trip; it is
	// wireguard-go's RekeyTimeout, after which it would retry) before it is
	// declared lost.
	ProbeTimeout = 5 * time.Second
	// CheckTimeout bounds ICE checks.
	CheckTimeout = 20 * time.Second
	// MaxPendingCandidates bounds remote candidates kept before an agent.
	MaxPendingCandidates = 32
	// MaxOffers is how many offers one session sends unanswered (the first
	// and its resends, about 1 + 2 + 4 s apart) before it waits, with no
	// timer, for an event: an offline peer offers by itself when it comes
	// online, and every peer re-offers after its own signal reconnect, so
	// offering forever only costs (1 000 offline peers: ~2 000 offers a
	// minute, each a goroutine, a seal and a gRPC call).
	MaxOffers = 4
)

// Offers is the policy of repeated offers: official peers drop offers they
// are not ready for, so an unanswered offer is sent again, 1 s after the
// first, doubling up to a minute apart.
var Offers = backoff.Policy{Base: time.Second, Cap: time.Minute, Min: 500 * time.Millisecond}

// Retries is the wait after a failed attempt before offering again.
var Retries = backoff.Policy{Base: time.Second, Cap: time.Minute, Min: 500 * time.Millisecond}

// Peer is a peer machine's data.
type Peer struct {
	Own, Remote wgtypes.Key // public keys
	AllowedIPs  []netip.Prefix
	Effects     Effects
	Rand        *rand.Rand
	// PathTimeout overrides the default PathTimeout (tests shorten it).
	PathTimeout time.Duration

	SignalUp     bool
	Local        Credentials
	RemoteCreds  Credentials
	HaveRemote   bool
	Pair         Pair
	OfferAttempt int // offers sent this session
	Attempt      int // failed sessions since the last connection
	Bad          int // malformed or unusable messages
	SendFailures int
	LastErr      string

	// The NetBird relay path (relay.go). HomeRelay reports the home relay's
	// instance address and IP while the relay link is connected (nil: no
	// relay); ForceRelay disables ICE (NB_FORCE_RELAY).
	HomeRelay func() (string, netip.Addr)
	// HasRelay reports whether the NetBird relay is configured (a relay
	// link exists, connected or not).
	HasRelay      func() bool
	ForceRelay    bool
	RemoteRelay   string     // the remote's relayServerAddress
	RemoteRelayIP netip.Addr // the remote's relayServerIP (for a foreign relay)
	RelayTarget   string     // the relay this session acquired (controller rule)
	relayAcquired bool
	relayConn     relayuse.Opener
	relayPath     net.Conn
	sentRelay     string // the relay address of the last offer or answer built
	relayCarried  bool   // WireGuard went over the relay this session
	rejoin        bool   // the relay reported the remote offline: initiate on the next relay path
	relayErr      error  // why the last relay path did not open
	// wgLife numbers the lives of the machine's WireGuard peer: it moves
	// on when the peer is removed, so that a late failure of an older one
	// is told apart (wgCurrent).
	wgLife uint64

	answerPending bool
	pending       []string
	ice           ICEHandle
	release       func()
	directSince   time.Time
	relaySince    time.Time // when WireGuard went over the relay path (its check)
	probed        bool      // the path in use was probed; the check after ProbeTimeout decides
	// probeAt, when set, is where the path's check counts from: a datagram
	// from the remote since then proves the path. Set by a probe of ours
	// (probed), or, without one, while the controlling side probes first
	// (crossing initiations stall wireguard-go).
	probeAt  time.Time
	fellBack bool        // the direct path was lost to the relay: its first check is a probe
	iceSince time.Time   // when the current agent started
	timer    fsm.TimerID // the resend or path-check timer, re-armed in place
}

// rearm replaces the machine's resend/path-check timer.
func rearm(m *fsm.Machine[*Peer], d time.Duration, ev fsm.Event) {
	m.Cancel(m.Data.timer)
	m.Data.timer = m.After(d, ev, nil)
}

// Add creates the machine of one remote peer, parked. Its WireGuard peer
// exists only while an ICE agent works for it (session.ice): wireguard-go
// gives every configured peer two goroutines and ~40 KiB of queues, which a
// parked or offering peer must not hold.
func Add(l *fsm.Loop, p *Peer, parent fsm.Node) (*fsm.Machine[*Peer], error) {
	return fsm.Add(l, Spec, ID(p.Remote), p, parent)
}

func (p *Peer) pathTimeout() time.Duration {
	if p.PathTimeout > 0 {
		return p.PathTimeout
	}
	return PathTimeout
}

func (p *Peer) log(m *fsm.Machine[*Peer]) *zap.Logger {
	return m.Log().With(zap.String("peer", nbcrypto.Fingerprint(p.Remote)))
}

func msg(e fsm.Envelope) sigwire.Message {
	sm, _ := e.Data.(sigwire.Message)
	return sm
}

// Guards.

var hasCredentials = &fsm.Guard[*Peer]{Name: "credentials", Fn: func(_ *fsm.Machine[*Peer], e fsm.Envelope) bool {
	sm := msg(e)
	return sm.Ufrag != "" && sm.Pwd != ""
}}

var hasSessionAndCredentials = &fsm.Guard[*Peer]{Name: "session-id", Fn: func(_ *fsm.Machine[*Peer], e fsm.Envelope) bool {
	sm := msg(e)
	return len(sm.SessionID) > 0 && sm.Ufrag != "" && sm.Pwd != ""
}}

var sameRemoteSession = &fsm.Guard[*Peer]{Name: "same-session", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	return sameSession(m.Data.RemoteCreds, m.Data.HaveRemote, msg(e))
}}

var offersSent = &fsm.Guard[*Peer]{Name: "max-offers", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	return m.Data.OfferAttempt >= MaxOffers
}}

var signalIsUp = &fsm.Guard[*Peer]{Name: "signal-up", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	return m.Data.SignalUp
}}

// wgCurrent: the failure is of the WireGuard peer the machine has now.
var wgCurrent = &fsm.Guard[*Peer]{Name: "current-wg", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	f, ok := e.Data.(wgFailure)
	return ok && f.life == m.Data.wgLife
}}

// wgStale: a failure the worker posted for a WireGuard peer removed since.
var wgStale = &fsm.Guard[*Peer]{Name: "stale-wg", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	f, ok := e.Data.(wgFailure)
	return ok && f.life != m.Data.wgLife
}}

var wgCurrentSignalUp = &fsm.Guard[*Peer]{Name: "current-wg-signal-up", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	return wgCurrent.Fn(m, e) && m.Data.SignalUp
}}

var pairRelayed = &fsm.Guard[*Peer]{Name: "relayed", Fn: func(_ *fsm.Machine[*Peer], e fsm.Envelope) bool {
	p, ok := e.Data.(Pair)
	return ok && p.Relayed
}}

// unprobed: the direct path is silent and has not been probed yet.
var unprobed = &fsm.Guard[*Peer]{Name: "unprobed", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	return !m.Data.probed
}}

// pathAlive: something came from the pair's address within a path
// timeout; once probed, since the probe (the probe may come before the
// path timeout: the relay's report on the remote, relay.go).
var pathAlive = &fsm.Guard[*Peer]{Name: "path-alive", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	p := m.Data
	return p.signOfLife(p.Effects.LastReceive(p.Pair.Remote), p.directSince)
}}

// signOfLife judges a path by its last receive (zero if never) for the
// path checks: while a probe is out, something since the probe; else
// something within a path timeout, the path's start counting as one.
func (p *Peer) signOfLife(last, since time.Time) bool {
	if !p.probeAt.IsZero() {
		return heardSince(last, p.probeAt)
	}
	alive, _ := PathVerdict(p.Effects.Now(), last, since, p.pathTimeout())
	return alive
}

// heardSince: last (a receive time, zero if never) is at or after t.
func heardSince(last, t time.Time) bool { return !last.IsZero() && !last.Before(t) }

// pathRoamed: the pair's address fell silent, but WireGuard follows the
// remote to another address (NAT rebinding) that something arrived from.
var pathRoamed = &fsm.Guard[*Peer]{Name: "roamed", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	p := m.Data
	ep := p.Effects.CurrentEndpoint(p.Remote)
	if !ep.IsValid() || ep == p.Pair.Remote {
		return false
	}
	alive, _ := PathVerdict(p.Effects.Now(), p.Effects.LastReceive(ep), p.directSince, p.pathTimeout())
	return alive
}}

// Actions.

func signalUp(m *fsm.Machine[*Peer], _ fsm.Envelope)   { m.Data.SignalUp = true }
func signalDown(m *fsm.Machine[*Peer], _ fsm.Envelope) { m.Data.SignalUp = false }
func nothing(*fsm.Machine[*Peer], fsm.Envelope)        {}

func countBad(m *fsm.Machine[*Peer], e fsm.Envelope) {
	m.Data.Bad++
	m.Data.log(m).Debug("signal message not usable in this state", zap.String("event", string(e.Event)),
		zap.String("from", string(m.State())))
}

func countSendFailure(m *fsm.Machine[*Peer], e fsm.Envelope) {
	m.Data.SendFailures++
	recordErr(m, e)
}

func recordErr(m *fsm.Machine[*Peer], e fsm.Envelope) {
	if err, ok := e.Data.(error); ok && err != nil {
		m.Data.LastErr = err.Error()
	}
}

func newSession(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	m.NewGeneration()
	m.Data.Local = m.Data.Effects.NewCredentials()
	m.Data.OfferAttempt = 0
}

func endSession(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	releaseRelay(m)
	m.NewGeneration()
	m.Data.HaveRemote = false
	m.Data.RemoteCreds = Credentials{}
	m.Data.answerPending = false
	m.Data.pending = nil
	m.Data.endProbe()
	m.Data.fellBack = false
}

func (p *Peer) message(k sigwire.Kind) sigwire.Message {
	sm := sigwire.Message{To: p.Remote, Kind: k, Ufrag: p.Local.Ufrag, Pwd: p.Local.Pwd, SessionID: p.Local.SessionID}
	sm.RelayServerAddress, sm.RelayServerIP = p.home()
	p.sentRelay = sm.RelayServerAddress
	if p.ForceRelay {
		sm.Ufrag, sm.Pwd, sm.SessionID = "", "", nil // ":" and no session id
	}
	return sm
}

func sendOffer(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	p.Effects.Send(m.Worker(), p.message(sigwire.Offer))
	rearm(m, Offers.Delay(p.OfferAttempt, p.Rand), EvResend)
	p.OfferAttempt++
}

func resendOffer(m *fsm.Machine[*Peer], e fsm.Envelope) { sendOffer(m, e) }

// offerAgain: a waiting peer offers again (same session, same
// credentials), MaxOffers times more at most.
func offerAgain(m *fsm.Machine[*Peer], e fsm.Envelope) {
	m.Data.OfferAttempt = 0
	if e.Event == EvUpdate {
		updateAllowedIPs(m, e)
	}
}

func bufferCandidate(m *fsm.Machine[*Peer], e fsm.Envelope) {
	if c := msg(e).Candidate; c != "" && len(m.Data.pending) < MaxPendingCandidates {
		m.Data.pending = append(m.Data.pending, c)
	}
}

func adopt(p *Peer, e fsm.Envelope) {
	p.RemoteCreds, p.HaveRemote = credentialsOf(msg(e)), true
	noteRemoteRelay(p, e)
}

// acceptOffer: adopt the remote's credentials; the answer goes out when the
// agent starts (after a new local session, if the transition enters one).
func acceptOffer(m *fsm.Machine[*Peer], e fsm.Envelope) {
	adopt(m.Data, e)
	m.Data.answerPending = true
}

func acceptAnswer(m *fsm.Machine[*Peer], e fsm.Envelope) { adopt(m.Data, e) }

func restartForAnswer(m *fsm.Machine[*Peer], e fsm.Envelope) { adopt(m.Data, e) }

func answerAgain(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	m.Data.Effects.Send(m.Worker(), m.Data.message(sigwire.Answer))
}

func startICE(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	// Key and allowed IPs only, before the handshake can arrive; the
	// endpoint comes with the selected pair.
	configure(m, WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs})
	if p.answerPending {
		p.Effects.Send(m.Worker(), p.message(sigwire.Answer))
		p.answerPending = false
	}
	p.iceSince = p.Effects.Now()
	p.ice = p.Effects.StartICE(m.Worker(), Agent{
		Peer: p.Remote, Local: p.Local, Remote: p.RemoteCreds,
		Controlling: Controlling(p.Own, p.Remote), Candidates: p.pending,
		NoTURN: p.RemoteRelay != "" && p.HasRelay != nil && p.HasRelay(),
	})
	p.pending = nil
	relayBesideICE(m) // relay.go
}

func stopICE(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	if p.ice != nil {
		p.ice.Stop()
		p.ice = nil
	}
	removeWG(m)
	m.NewGeneration() // late events of the stopped agent are dropped
}

func armCheckDeadline(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	m.After(CheckTimeout, EvCheckTimeout, nil)
}

func addCandidate(m *fsm.Machine[*Peer], e fsm.Envelope) {
	if c := msg(e).Candidate; c != "" && m.Data.ice != nil {
		m.Data.ice.AddRemoteCandidate(c)
	}
}

func sendCandidate(m *fsm.Machine[*Peer], e fsm.Envelope) {
	if c, ok := e.Data.(string); ok {
		m.Data.Effects.Send(m.Worker(), sigwire.Message{To: m.Data.Remote, Kind: sigwire.Candidate, Candidate: c})
	}
}

func recordPair(m *fsm.Machine[*Peer], e fsm.Envelope) {
	if p, ok := e.Data.(Pair); ok {
		m.Data.Pair = p
	}
}

func connected(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	m.Data.Attempt = 0
	m.Data.LastErr = ""
	m.Data.log(m).Info("peer connected", zap.String("endpoint", m.Data.Pair.Remote.String()),
		zap.String("candidate", m.Data.Pair.LocalType+"/"+m.Data.Pair.RemoteType))
}

// holdDirectPath: WireGuard takes the selected pair; the controlling side
// sets the endpoint and initiates at once; the controlled side waits a short
// grace for the controller's handshake and initiates itself if none came
// (see HandshakeGrace for why); the agent is closed and the shared socket
// answers the remote's STUN checks; one lazy path check is armed.
func holdDirectPath(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	wg := WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs, Keepalive: Keepalive}
	if Controlling(p.Own, p.Remote) || p.relayCarried {
		// Coming from the relay, the controlled side switches too: its
		// endpoint is the relay's, which the switch closes (relay.go).
		wg.Endpoint = p.Pair.Remote
	} else {
		m.After(HandshakeGrace(p.Pair.Latency), EvHandshakeDue, nil)
	}
	wg.KeepRelay = p.relayPath != nil
	configure(m, wg)
	if p.ice != nil {
		p.ice.Stop()
		p.ice = nil
		m.NewGeneration()
	}
	p.release = p.Effects.HoldPath(p.Local, p.Pair.Remote)
	p.directSince = p.Effects.Now()
	p.endProbe()
	rearm(m, p.pathTimeout(), EvPathCheck)
}

// initiateIfSilent: the controlled side's grace is over. If no WireGuard
// datagram came from the remote since the agent started, the controller is
// held back (official peers: by wireguard-go's 5 s retry timer); set the
// endpoint, which starts a fresh WireGuard peer whose keepalive initiates
// the handshake at once. Otherwise the controller's handshake arrived and
// WireGuard learned the endpoint from it: nothing to do (a reset would
// throw the fresh session away).
func initiateIfSilent(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	if heardSince(p.Effects.LastReceive(p.Pair.Remote), p.iceSince) {
		return
	}
	p.log(m).Debug("no handshake from the controlling side: initiating", zap.Stringer("endpoint", p.Pair.Remote))
	configure(m, WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs, Keepalive: Keepalive, Endpoint: p.Pair.Remote})
}

func releaseDirectPath(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	if m.Data.release != nil {
		m.Data.release()
		m.Data.release = nil
	}
}

// leaveConnected forgets the pair; leaving session.ice removes the
// WireGuard peer.
func leaveConnected(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	m.Data.Pair = Pair{}
}

func holdRelayedPath(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	configure(m, WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs, Relay: p.Pair.Conn, Keepalive: Keepalive})
}

func rearmPathCheck(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	p.endProbe()
	_, next := PathVerdict(p.Effects.Now(), p.Effects.LastReceive(p.Pair.Remote), p.directSince, p.pathTimeout())
	rearm(m, next, EvPathCheck)
}

// followRoaming: the path lives on at WireGuard's new endpoint for the
// remote; STUN answers and path checks follow it.
func followRoaming(m *fsm.Machine[*Peer], e fsm.Envelope) {
	p := m.Data
	ep := p.Effects.CurrentEndpoint(p.Remote)
	p.log(m).Info("remote changed address: the direct path follows WireGuard", zap.String("endpoint", ep.String()))
	p.Pair.Remote = ep
	releaseDirectPath(m, e)
	p.release = p.Effects.HoldPath(p.Local, ep)
	rearmPathCheck(m, e)
}

// probePath: the direct path carried nothing for a whole path timeout.
// wireguard-go's persistent keepalives can be one-sided (each side's timer
// restarts on what it receives, so the side whose timer fires first keeps
// the other silent for as long as the pair is idle): silence alone does
// not prove the path dead. WireGuard sends a handshake initiation, the
// remote's response proves the path, and the check looks again after
// ProbeTimeout.
func probePath(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	p.log(m).Debug("direct path silent: probing it with a handshake", zap.Stringer("endpoint", p.Pair.Remote))
	p.Effects.Probe(p.Remote)
	beginProbe(m, true)
}

// beginProbe starts judging the path in use by what comes from now on,
// with its check ProbeTimeout away; sent tells whether this side sent
// the probe (if not, it listens for the remote's).
func beginProbe(m *fsm.Machine[*Peer], sent bool) {
	p := m.Data
	p.probed, p.probeAt = sent, p.Effects.Now()
	rearm(m, ProbeTimeout, EvPathCheck)
}

// endProbe: the path's check counts a path timeout again.
func (p *Peer) endProbe() { p.probed, p.probeAt = false, time.Time{} }

func pathLost(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	m.Data.LastErr = "no traffic from the remote for " + m.Data.pathTimeout().String()
}

func armRetry(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	m.After(Retries.Delay(p.Attempt, p.Rand), EvRetry, nil)
	p.Attempt++
}

func updateAllowedIPs(m *fsm.Machine[*Peer], e fsm.Envelope) {
	ips, ok := e.Data.([]netip.Prefix)
	if !ok {
		return
	}
	p := m.Data
	p.AllowedIPs = ips
	if !m.In(ICE) && !m.In(RelayOnly) {
		return // no WireGuard peer outside session.ice and session.relay-only
	}
	wg := WGPeer{Key: p.Remote, AllowedIPs: ips}
	if p.relayInUse(m) {
		wg.Relay, wg.Keepalive = p.relayPath, Keepalive
	}
	if m.In(Connected) {
		wg.Keepalive = Keepalive
		if p.Pair.Relayed {
			wg.Relay = p.Pair.Conn
		} else if Controlling(p.Own, p.Remote) {
			wg.Endpoint = p.Pair.Remote
		}
	}
	wg.KeepRelay = p.relayPath != nil
	configure(m, wg)
}

// wgFailure is the Data of EvWGFailed as the machine receives it: the
// error, and the life of the WireGuard peer it was for.
type wgFailure struct {
	life uint64
	err  error
}

func (f wgFailure) Error() string { return f.err.Error() }
func (f wgFailure) Unwrap() error { return f.err }

// wgReporter is the Poster of Effects.SetPeer: it posts EvWGFailed
// unbound to the machine's generation (agents' stops move it within one
// WireGuard peer's life, and the failure must still count), tagged with the
// life it configured; wgCurrent drops failures of older lives.
type wgReporter struct {
	l    *fsm.Loop
	id   string
	life uint64
}

func (r wgReporter) Post(ev fsm.Event, data any) error {
	err, ok := data.(error)
	if !ok || err == nil {
		err = errors.New("wireguard configuration failed")
	}
	return r.l.Post(fsm.Envelope{To: r.id, Event: ev, Data: wgFailure{life: r.life, err: err}, Cause: err.Error()})
}

// configure asks for the WireGuard configuration wg and reports whether it
// was queued. A failure at once is raised as the event a later one is
// posted as: EvRelayFailed for a relay bridge, EvWGFailed otherwise.
func configure(m *fsm.Machine[*Peer], wg WGPeer) bool {
	p := m.Data
	err := p.Effects.SetPeer(wgReporter{l: m.Loop(), id: m.ID(), life: p.wgLife}, wg)
	switch {
	case err == nil:
		return true
	case errors.Is(err, ErrRelayBridge):
		m.Raise(EvRelayFailed, err)
	default:
		m.Raise(EvWGFailed, wgFailure{life: p.wgLife, err: err})
	}
	return false
}

// removeWG removes the WireGuard peer and ends its life: failures posted
// for it from now on are late. A removal that could not be queued is
// recorded in LastErr.
func removeWG(m *fsm.Machine[*Peer]) {
	p := m.Data
	if err := p.Effects.RemovePeer(p.Remote); err != nil {
		p.LastErr = err.Error()
		logFailure(p.log(m), "wireguard peer not removed", err)
	}
	p.wgLife++
}

func closed(*fsm.Machine[*Peer], fsm.Envelope) {}

// EventFor maps a signal message kind to the peer event it becomes.
func EventFor(k sigwire.Kind) (fsm.Event, bool) {
	switch k {
	case sigwire.Offer:
		return EvOffer, true
	case sigwire.Answer:
		return EvAnswer, true
	case sigwire.Candidate:
		return EvCandidate, true
	case sigwire.GoIdle:
		return EvGoIdle, true
	}
	return "", false
}
