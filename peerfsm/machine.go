package peerfsm

import (
	"math/rand/v2"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/signal"
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
	// CheckTimeout bounds ICE checks.
	CheckTimeout = 20 * time.Second
	// MaxPendingCandidates bounds remote candidates kept before an agent.
	MaxPendingCandidates = 32
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

	answerPending bool
	pending       []string
	ice           ICEHandle
	release       func()
	directSince   time.Time
	timer         fsm.TimerID // the resend or path-check timer, re-armed in place
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

func msg(e fsm.Envelope) signal.Message {
	sm, _ := e.Data.(signal.Message)
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

var signalIsUp = &fsm.Guard[*Peer]{Name: "signal-up", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	return m.Data.SignalUp
}}

var pairRelayed = &fsm.Guard[*Peer]{Name: "relayed", Fn: func(_ *fsm.Machine[*Peer], e fsm.Envelope) bool {
	p, ok := e.Data.(Pair)
	return ok && p.Relayed
}}

var pathAlive = &fsm.Guard[*Peer]{Name: "path-alive", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	p := m.Data
	alive, _ := PathVerdict(p.Effects.Now(), p.Effects.LastReceive(p.Pair.Remote), p.directSince, p.pathTimeout())
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
	m.NewGeneration()
	m.Data.HaveRemote = false
	m.Data.RemoteCreds = Credentials{}
	m.Data.answerPending = false
	m.Data.pending = nil
}

func (p *Peer) message(k signal.Kind) signal.Message {
	return signal.Message{To: p.Remote, Kind: k, Ufrag: p.Local.Ufrag, Pwd: p.Local.Pwd, SessionID: p.Local.SessionID}
}

func sendOffer(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	p.Effects.Send(m.Worker(), p.message(signal.Offer))
	rearm(m, Offers.Delay(p.OfferAttempt, p.Rand), EvResend)
	p.OfferAttempt++
}

func resendOffer(m *fsm.Machine[*Peer], e fsm.Envelope) { sendOffer(m, e) }

func bufferCandidate(m *fsm.Machine[*Peer], e fsm.Envelope) {
	if c := msg(e).Candidate; c != "" && len(m.Data.pending) < MaxPendingCandidates {
		m.Data.pending = append(m.Data.pending, c)
	}
}

func adopt(p *Peer, e fsm.Envelope) {
	p.RemoteCreds, p.HaveRemote = credentialsOf(msg(e)), true
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
	m.Data.Effects.Send(m.Worker(), m.Data.message(signal.Answer))
}

func startICE(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	// Key and allowed IPs only, before the handshake can arrive; the
	// endpoint comes with the selected pair.
	p.Effects.SetPeer(WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs})
	if p.answerPending {
		p.Effects.Send(m.Worker(), p.message(signal.Answer))
		p.answerPending = false
	}
	p.ice = p.Effects.StartICE(m.Worker(), Agent{
		Peer: p.Remote, Local: p.Local, Remote: p.RemoteCreds,
		Controlling: Controlling(p.Own, p.Remote), Candidates: p.pending,
	})
	p.pending = nil
}

func stopICE(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	if p.ice != nil {
		p.ice.Stop()
		p.ice = nil
	}
	p.Effects.RemovePeer(p.Remote)
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
		m.Data.Effects.Send(m.Worker(), signal.Message{To: m.Data.Remote, Kind: signal.Candidate, Candidate: c})
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

// holdDirectPath: WireGuard takes the selected pair; only the controlling
// side sets the endpoint (crossing handshakes stall 5 s otherwise); the
// agent is closed and the shared socket answers the remote's STUN checks;
// one lazy path check is armed.
func holdDirectPath(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	wg := WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs, Keepalive: Keepalive}
	if Controlling(p.Own, p.Remote) {
		wg.Endpoint = p.Pair.Remote
	}
	p.Effects.SetPeer(wg)
	if p.ice != nil {
		p.ice.Stop()
		p.ice = nil
		m.NewGeneration()
	}
	p.release = p.Effects.HoldPath(p.Local, p.Pair.Remote)
	p.directSince = p.Effects.Now()
	rearm(m, p.pathTimeout(), EvPathCheck)
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
	p.Effects.SetPeer(WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs, Relay: p.Pair.Conn, Keepalive: Keepalive})
}

func rearmPathCheck(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	_, next := PathVerdict(p.Effects.Now(), p.Effects.LastReceive(p.Pair.Remote), p.directSince, p.pathTimeout())
	rearm(m, next, EvPathCheck)
}

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
	if !m.In(ICE) {
		return // no WireGuard peer outside session.ice
	}
	wg := WGPeer{Key: p.Remote, AllowedIPs: ips}
	if m.In(Connected) {
		wg.Keepalive = Keepalive
		if p.Pair.Relayed {
			wg.Relay = p.Pair.Conn
		} else if Controlling(p.Own, p.Remote) {
			wg.Endpoint = p.Pair.Remote
		}
	}
	p.Effects.SetPeer(wg)
}

func closed(*fsm.Machine[*Peer], fsm.Envelope) {}

// EventFor maps a signal message kind to the peer event it becomes.
func EventFor(k signal.Kind) (fsm.Event, bool) {
	switch k {
	case signal.Offer:
		return EvOffer, true
	case signal.Answer:
		return EvAnswer, true
	case signal.Candidate:
		return EvCandidate, true
	case signal.GoIdle:
		return EvGoIdle, true
	}
	return "", false
}
