package peerfsm

// The NetBird relay path of a peer (RELAY.md §5, §6). Relay and ICE run
// together, as official peers expect:
//   - every offer and answer carries the home relay's instance address
//     (relayServerAddress) and its IP;
//   - the controller rule picks the relay: the side with the greater key
//     uses its own home relay, the other the address the controller sent;
//   - the session acquires that relay from the relay link (relayfsm) and
//     releases it when the session ends: parked, backing off or idle peers
//     hold nothing on any relay;
//   - WireGuard goes over the relay as soon as it is ready
//     (session.ice.over-relay), ICE upgrades to a direct path when it
//     connects (the endpoint is switched, no renegotiation), and a direct
//     path that goes silent falls back to the relay (no renegotiation);
//   - a remote without ICE credentials (payload ":"), or this side with
//     ForceRelay, pairs over the relay only (session.relay-only);
//   - the relay watches the remote while the session uses it (peer-state
//     subscription): when the relay reports it gone and the relay is the
//     only path, the peer leaves its connected state at once
//     (session.remote-offline, no timer, no WireGuard peer) and the
//     relay's report that it is back starts a new session, which offers.

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/relayuse"
	"github.com/nbfsm/nbfsm/internal/sigwire"
)

// States of the relay path.
const (
	OverRelay        fsm.State = "session.ice.over-relay"
	RelayOnly        fsm.State = "session.relay-only"
	RelayWaiting     fsm.State = "session.relay-only.waiting"
	RelayOnlyRelayed fsm.State = "session.relay-only.connected"
	RemoteOffline    fsm.State = "session.remote-offline"
)

// EvRelayUp: the home relay link connected (from the engine); a session that
// started before it acquires its relay now.
const EvRelayUp fsm.Event = "relay-up"

// relayPath is the virtual connection to the remote on a relay, as the
// shared socket's relay bridge takes it; Controlled tells the workers not to
// set the WireGuard endpoint on the controlled side (the controller
// initiates, the other learns the endpoint from its handshake).
type relayPath struct {
	net.Conn
	controlled bool
}

// Controlled implements the workers' check for a controlled relay.
func (r *relayPath) Controlled() bool { return r.controlled }

// relayLastReceive is when the relay path last carried a WireGuard
// datagram from the remote (zero if never, or no path): the shared
// socket's stamp on the peer's relay endpoint, as for a direct address.
func (p *Peer) relayLastReceive() time.Time {
	if p.relayPath == nil {
		return time.Time{}
	}
	return p.Effects.RelayLastReceive(p.Remote)
}

// home is the home relay's instance address and IP while the relay link is
// connected ("" otherwise).
func (p *Peer) home() (string, netip.Addr) {
	if p.HomeRelay == nil {
		return "", netip.Addr{}
	}
	return p.HomeRelay()
}

// relayInUse: WireGuard goes over the NetBird relay now.
func (p *Peer) relayInUse(m *fsm.Machine[*Peer]) bool {
	return m.In(OverRelay) || m.In(RelayOnlyRelayed)
}

// Guards.

// relayOnlyMsg: an offer or answer to pair over the relay only: this side
// forces relay, or the remote sent no ICE credentials but a relay address
// and this side has a relay.
var relayOnlyMsg = &fsm.Guard[*Peer]{Name: "relay-only", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	p, sm := m.Data, msg(e)
	if p.ForceRelay {
		return true
	}
	home, _ := p.home()
	return (sm.Ufrag == "" || sm.Pwd == "") && sm.RelayServerAddress != "" && home != ""
}}

var readyForTarget = &fsm.Guard[*Peer]{Name: "relay-ready", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	r, ok := e.Data.(relayuse.Ready)
	return ok && m.Data.relayAcquired && (r.Addr == m.Data.RelayTarget || m.Data.RelayTarget == "")
}}

var relayLostForTarget = &fsm.Guard[*Peer]{Name: "our-relay", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	addr, ok := e.Data.(string)
	return ok && m.Data.relayAcquired && (addr == m.Data.RelayTarget || m.Data.RelayTarget == "")
}}

// fallbackToRelay: a direct path went silent, stayed so after its probe,
// and the relay is ready.
var fallbackToRelay = &fsm.Guard[*Peer]{Name: "silent-probed-and-relay-ready", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	return m.Data.relayConn != nil && m.Data.probed && !pathAlive.Fn(m, e)
}}

// The relayed path's check (OverRelay, RelayOnlyRelayed): the official
// peer's handshake watchdog (PROTOCOL.md §5) in the direct path's terms.
// A relay that stays connected tells nothing about the remote: one that
// restarted with the same key is on the relay under the same id, and what
// WireGuard sends it there is dropped, while the relay reports nobody
// offline (the soak's stuck pair). Silence for a path timeout is probed
// with a handshake, as on a direct path; still silent, the session ends
// and a new offer follows.
var (
	relayPathAlive = &fsm.Guard[*Peer]{Name: "relay-path-alive", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
		p := m.Data
		return p.relayInUse(m) && p.signOfLife(p.relayLastReceive(), p.relaySince)
	}}
	relayPathUnprobed = &fsm.Guard[*Peer]{Name: "relay-path-unprobed", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
		return m.Data.relayInUse(m) && !m.Data.probed
	}}
	relayPathSilentSignalUp = &fsm.Guard[*Peer]{Name: "relay-path-silent-signal-up", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
		return m.Data.relayInUse(m) && m.Data.SignalUp
	}}
	relayPathSilent = &fsm.Guard[*Peer]{Name: "relay-path-silent", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
		return m.Data.relayInUse(m)
	}}
)

// relayReportUnprobed: the relay watching the remote for a fallback
// reports it gone or back (its relay connection dropped or came anew:
// the relay restarted, or the remote did, with the same key), and the
// direct path is not being probed already.
var relayReportUnprobed = &fsm.Guard[*Peer]{Name: "relay-report-unprobed", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	return m.Data.probeAt.IsZero() && relayLostForTarget.Fn(m, e)
}}

// remoteBackSignalDown: the relay reports the remote back, but signal is
// down (no offer can be sent: the peer waits parked for signal).
var remoteBackSignalDown = &fsm.Guard[*Peer]{Name: "remote-back-signal-down", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	return !m.Data.SignalUp && relayLostForTarget.Fn(m, e)
}}

var relayAcquired = &fsm.Guard[*Peer]{Name: "relay-acquired", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	return m.Data.relayAcquired
}}

// agentRunningSignalUp: back to checking only while signal is up; with
// signal down a peer never enters checking (it could get no new
// candidates), it parks.
var agentRunningSignalUp = &fsm.Guard[*Peer]{Name: "agent-running-signal-up", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	return m.Data.ice != nil && m.Data.SignalUp
}}

// newRemoteRelay: a repeated offer or answer of the same remote session
// that names a relay this side does not use yet.
var newRemoteRelay = &fsm.Guard[*Peer]{Name: "new-relay", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	a := msg(e).RelayServerAddress
	return a != "" && a != m.Data.RemoteRelay && sameRemoteSession.Fn(m, e)
}}

// The pair's relay moves while WireGuard is on it (over-relay): acquiring
// the new one releases the old, which closes the path in use, so the peer
// goes back to checking until the new relay is ready (one check
// deadline; ICE goes on). newRelayMovesPath: a repeated offer or answer
// names a new relay of the remote, and it is the pair's now (the remote
// controls, and the home relay is up). relayUpMovesPath: the home relay
// came up, and the relay the controller rule now picks is another (a
// remote's new relay noted while the home relay was down, or a home relay
// back under a new instance address).
var (
	newRelayMovesPath = &fsm.Guard[*Peer]{Name: "new-relay-moves-path", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
		return newRemoteRelay.Fn(m, e) && m.Data.relayAcquired && m.Data.movesTo(msg(e).RelayServerAddress)
	}}
	relayUpMovesPath = &fsm.Guard[*Peer]{Name: "relay-up-moves-path", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
		return m.Data.relayAcquired && m.Data.movesTo(m.Data.RemoteRelay)
	}}
	// relayUpMovesPathSignalUp: as relayUpMovesPath, with signal up. With
	// signal down a peer never enters checking (the e135a24 rule): it
	// parks, and holds no relay.
	relayUpMovesPathSignalUp = &fsm.Guard[*Peer]{Name: "relay-up-moves-path-signal-up", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
		return m.Data.SignalUp && relayUpMovesPath.Fn(m, e)
	}}
)

func (p *Peer) movesTo(remoteRelay string) bool {
	_, ok := p.nextRelay(remoteRelay)
	return ok
}

// relayOnlyMovesRelay: a relay-only message that names a relay of the
// controller's this side did not know, this side is not the controller,
// and that relay is not the one the session holds: the pair's relay is
// that one (the controller's first offer or answer went out before its
// home relay was up, and its home is another server than ours). When it
// names the relay held (one server for both, the common case), the
// session stays where it is: moving would close the path in use and wait,
// until the relay deadline, for a Ready that never comes (the relay is
// acquired already), while the controller's handshakes go nowhere; that
// was the relay-only pair's ~20 s first ping (issue 11).
var relayOnlyMovesRelay = &fsm.Guard[*Peer]{Name: "relay-only-moves-relay", Fn: func(m *fsm.Machine[*Peer], e fsm.Envelope) bool {
	p, a := m.Data, msg(e).RelayServerAddress
	return relayOnlyMsg.Fn(m, e) && a != "" && a != p.RemoteRelay && !Controlling(p.Own, p.Remote) &&
		(!p.relayAcquired || a != p.heldRelay())
}}

// heldRelay is the address of the relay the session acquired (the home
// relay's, when it was acquired as "the home relay" before its address was
// known).
func (p *Peer) heldRelay() string {
	if p.RelayTarget == "" {
		home, _ := p.home()
		return home
	}
	return p.RelayTarget
}

// Actions.

// relayCameUp: acquire the relay now, and offer again (same credentials
// and session id) if the remote does not know our relay yet.
func relayCameUp(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	acquireRelay(m)
	offerRelayIfUnsent(m)
}

// relayBesideICE starts the relay path of a new agent: the relay is
// acquired, and if the offer the remote answered went out before the home
// relay was up, the offer goes again with its address (the home relay's
// relay-up came while offering, and the answer ended the resends that
// would have carried it). Without it the remote, controller or not, knows
// no relay of ours: a controller acquires none (the remote's address is
// how it knows the remote supports the relay, RELAY.md §5.2), and with ICE
// impossible the pair waited for ICE to fail (~12 s) and a new session.
func relayBesideICE(m *fsm.Machine[*Peer]) {
	acquireRelay(m)
	offerRelayIfUnsent(m)
}

// acquireOnRelayUp: the home relay came up during a relay-only session.
func acquireOnRelayUp(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	acquireRelay(m)
	offerRelayIfUnsent(m)
}

// offerRelayIfUnsent: a side whose last offer or answer went out before
// its home relay was up (or with an address the relay no longer has) sent
// no usable relay address: it offers again (same session), now with the
// address; the remote answers a repeated offer. Both roles need it: the
// controller's relay is the pair's (without its address the remote would
// wait on its own home relay for good), and the other side's address is
// how the controller knows the remote can use the relay at all (a remote
// without one is not paired over the relay, RELAY.md §5.2).
// relayUnsent: the home relay is up and the last offer or answer did not
// carry its address. A session waiting after MaxOffers unanswered offers
// that went out before the relay was up offers again once (the remote may
// be relay-only: its answers without ICE credentials could not be taken
// without our relay); after that the address has gone out and a relay-up
// does not wake it again.
var relayUnsent = &fsm.Guard[*Peer]{Name: "relay-unsent", Fn: func(m *fsm.Machine[*Peer], _ fsm.Envelope) bool {
	home, _ := m.Data.home()
	return home != "" && m.Data.sentRelay != home
}}

func offerRelayIfUnsent(m *fsm.Machine[*Peer]) {
	p := m.Data
	if home, _ := p.home(); home != "" && p.sentRelay != home {
		p.Effects.Send(m.Worker(), p.message(sigwire.Offer))
	}
}

func answerAgainWithRelay(m *fsm.Machine[*Peer], e fsm.Envelope) {
	noteAndAcquire(m, e)
	answerAgain(m, e)
}

// noteAndAcquire: the remote's relay became known in a repeated message.
func noteAndAcquire(m *fsm.Machine[*Peer], e fsm.Envelope) {
	noteRemoteRelay(m.Data, e)
	acquireRelay(m)
}

// noteRemoteRelay keeps the remote's relay address (and IP) of an offer or
// answer.
func noteRemoteRelay(p *Peer, e fsm.Envelope) {
	if sm := msg(e); sm.RelayServerAddress != "" {
		p.RemoteRelay, p.RemoteRelayIP = sm.RelayServerAddress, sm.RelayServerIP
	}
}

// acquireRelay asks the relay link for the relay the controller rule picks
// (once per target and session).
func acquireRelay(m *fsm.Machine[*Peer]) {
	p := m.Data
	target, ok := p.nextRelay(p.RemoteRelay)
	if !ok {
		return
	}
	releaseRelay(m)
	p.RelayTarget, p.relayAcquired = target, true
	m.Send(relayuse.ID, relayuse.EvAcquire, relayuse.Use{Peer: m.ID(), Addr: target, Remote: relay.HashID(p.Remote.String()),
		IP: p.RemoteRelayIP})
}

// nextRelay is the relay acquireRelay would acquire if the remote's relay
// were remoteRelay, and whether it would (a new target). The controller
// rule picks it: the controller's home relay.
func (p *Peer) nextRelay(remoteRelay string) (string, bool) {
	home, _ := p.home()
	// Without the home relay's address a foreign relay cannot be told from
	// the home one (a second connection with our id would replace the
	// home connection on that server): wait for relay-up, except for the
	// home relay itself (ForceRelay controller, or no address from the
	// remote: the link tells us when it is up).
	if p.HomeRelay == nil || (remoteRelay == "" && !p.ForceRelay) {
		return "", false
	}
	controlling := Controlling(p.Own, p.Remote)
	if home == "" && !(p.ForceRelay && (controlling || remoteRelay == "")) {
		return "", false
	}
	target := remoteRelay
	if controlling {
		target = home
	}
	// "" is the home relay before its address was known; once it is up,
	// the same relay under its address (keepRelay recorded it) is no new
	// target: re-acquiring would close the path that is in use.
	if p.relayAcquired && (target == p.RelayTarget || target == "" && p.RelayTarget == home) {
		return "", false
	}
	return target, true
}

// releaseRelay gives the relay back and closes the path (session end).
func releaseRelay(m *fsm.Machine[*Peer]) {
	p := m.Data
	if p.relayAcquired {
		m.Send(relayuse.ID, relayuse.EvRelease, relayuse.Use{Peer: m.ID(), Addr: p.RelayTarget})
	}
	p.relayAcquired, p.RelayTarget, p.relayConn, p.relayCarried = false, "", nil, false
	closeRelayPath(p)
}

func closeRelayPath(p *Peer) {
	if p.relayPath != nil {
		_ = p.relayPath.Close()
		p.relayPath = nil
	}
}

// keepRelay remembers a ready relay without using it yet.
func keepRelay(m *fsm.Machine[*Peer], e fsm.Envelope) {
	if r, ok := e.Data.(relayuse.Ready); ok && r.Conn != nil {
		m.Data.relayConn = r.Conn
		if m.Data.RelayTarget == "" {
			m.Data.RelayTarget = r.Addr // acquired as "the home relay" before it was up
		}
	}
}

// forgetRelayKeepDirect: the relay went while the path is direct. With the
// relay path open in the background, WireGuard follows the remote's
// datagrams that come over it (roaming: a remote that was still on the
// relay, or a late datagram of the switch), and its endpoint may be the
// relay bridge's; closed with the relay, it would carry nothing while the
// machine says direct (issue 13). The endpoint is set to the direct pair
// again (an endpoint change: the WireGuard session stays).
func forgetRelayKeepDirect(m *fsm.Machine[*Peer], e fsm.Envelope) {
	p := m.Data
	hadPath := p.relayPath != nil
	forgetRelay(m, e)
	if hadPath {
		configure(m, WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs, Keepalive: Keepalive, Endpoint: p.Pair.Remote})
	}
}

func forgetRelay(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	m.Data.relayConn = nil
	closeRelayPath(m.Data)
}

// openRelayPath opens the virtual connection to the remote on the ready
// relay (in-process, no I/O); a relay that is ready again replaces it.
func openRelayPath(m *fsm.Machine[*Peer], e fsm.Envelope) {
	p := m.Data
	keepRelay(m, e)
	if p.relayConn == nil {
		return
	}
	c, err := p.relayConn.Open(relay.HashID(p.Remote.String()))
	if err != nil {
		p.relayErr = err
		p.log(m).Debug("relay path not opened", zap.Error(err))
		return
	}
	p.relayPath = &relayPath{Conn: c, controlled: !Controlling(p.Own, p.Remote)}
}

// useRelayPath points WireGuard at the relay. A relay path that could not
// be opened, or bridged, is EvRelayFailed.
func useRelayPath(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	if p.relayPath == nil {
		err := p.relayErr
		if err == nil {
			err = errors.New("no connection to the remote on the relay")
		}
		p.relayErr = nil
		m.Raise(EvRelayFailed, fmt.Errorf("%w: %w", ErrRelayBridge, err))
		return
	}
	fellBack := p.fellBack
	p.fellBack = false
	if rp, ok := p.relayPath.(*relayPath); ok && (p.relayCarried || p.rejoin || fellBack) {
		// Not the first path of the session (a relay back, a fallback):
		// the session is established, and the endpoint WireGuard has is
		// gone, so the controlled side sets it too (no crossing handshake).
		// Nor after the remote was offline: this side's WireGuard peer was
		// removed, the remote's may still hold its session keys and would
		// not start a handshake before its own 15 s rekey timer; a
		// remote that really restarted may cross our initiation (a 5 s
		// stall at worst).
		rp.controlled = false
	}
	p.rejoin = false
	// A fallback judges the relay after ProbeTimeout, not a path timeout:
	// the direct path's silence already lasted a path timeout and a probe,
	// and a remote that restarted with the same key is on the relay under
	// the same id, where nothing answers for it (a full path timeout more
	// was the soak's unconverged pair of seed 8905832664008189321). The
	// controlling side probes at once; the other listens first and probes
	// only if the controller's probe did not come (both sides often fall
	// back together, and crossing initiations stall wireguard-go).
	probe := fellBack && Controlling(p.Own, p.Remote)
	if !configure(m, WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs, Relay: p.relayPath, Keepalive: Keepalive, Probe: probe}) {
		return
	}
	p.relayCarried = true
	p.Attempt = 0
	p.relaySince = p.Effects.Now()
	if fellBack {
		beginProbe(m, probe)
	} else {
		p.endProbe()
		rearm(m, p.pathTimeout(), EvPathCheck)
	}
	p.log(m).Info("peer connected over the relay", zap.String("relay", p.RelayTarget), zap.Bool("fallback", fellBack))
}

func rearmRelayCheck(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	p.endProbe()
	_, next := PathVerdict(p.Effects.Now(), p.relayLastReceive(), p.relaySince, p.pathTimeout())
	rearm(m, next, EvPathCheck)
}

// probeRelayPath: nothing came over the relay for a path timeout; as on a
// direct path (probePath), a handshake initiation's response proves it.
func probeRelayPath(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	p.log(m).Debug("relay path silent: probing it with a handshake", zap.String("relay", p.RelayTarget))
	p.Effects.Probe(p.Remote)
	beginProbe(m, true)
}

func relayPathLost(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	p.LastErr = "no traffic from the remote over the relay for " + p.pathTimeout().String()
	p.log(m).Info("relay path silent after its probe: a new session", zap.String("relay", p.RelayTarget))
}

// fallBack: the direct path went silent; the relay takes over.
func fallBack(m *fsm.Machine[*Peer], e fsm.Envelope) {
	pathLost(m, e)
	p := m.Data
	p.fellBack = true
	p.log(m).Info("direct path lost: back to the relay", zap.String("relay", p.RelayTarget))
	if p.relayPath == nil { // kept open in the background, normally
		openRelayPath(m, fsm.Envelope{})
	}
}

// acceptRelayOffer: adopt a relay-only offer; the answer goes out on entry.
func acceptRelayOffer(m *fsm.Machine[*Peer], e fsm.Envelope) {
	noteRemoteRelay(m.Data, e)
	m.Data.answerPending = true
}

func adoptRelayAnswer(m *fsm.Machine[*Peer], e fsm.Envelope) { noteRemoteRelay(m.Data, e) }

// startRelayOnly: key and allowed IPs only, the pending answer, the relay.
func startRelayOnly(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	configure(m, WGPeer{Key: p.Remote, AllowedIPs: p.AllowedIPs})
	if p.answerPending {
		p.Effects.Send(m.Worker(), p.message(sigwire.Answer))
		p.answerPending = false
	}
	acquireRelay(m)
	offerRelayIfUnsent(m)
}

func stopRelayOnly(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	removeWG(m)
	closeRelayPath(m.Data)
}

// ErrRemoteOffline is the peer's LastErr when the relay reported the
// remote gone.
const ErrRemoteOffline = "the relay reports the remote offline"

func remoteGone(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	p := m.Data
	p.LastErr = ErrRemoteOffline
	p.rejoin = true
	p.log(m).Info("the relay reports the remote offline: path closed", zap.String("relay", p.RelayTarget))
}

// enterRemoteOffline: the path is closed (leaving the relay-only or ICE
// state removed the WireGuard peer and its relay bridge); the relay stays
// acquired, so that it keeps watching the remote.
func enterRemoteOffline(m *fsm.Machine[*Peer], _ fsm.Envelope) { closeRelayPath(m.Data) }

// leaveRemoteOffline gives the relay back: whatever comes next acquires it
// afresh (and is told when it is ready).
func leaveRemoteOffline(m *fsm.Machine[*Peer], _ fsm.Envelope) { releaseRelay(m) }

func armRelayDeadline(m *fsm.Machine[*Peer], _ fsm.Envelope) {
	m.After(CheckTimeout, EvCheckTimeout, nil)
}

// relayFailed: the relay path could not carry WireGuard: it is closed (the
// relay stays acquired; its next ready opens a new one).
func relayFailed(m *fsm.Machine[*Peer], e fsm.Envelope) {
	recordErr(m, e)
	m.Data.log(m).Info("relay not bridged to WireGuard", zap.String("relay", m.Data.RelayTarget), zap.String("err", m.Data.LastErr))
	forgetRelay(m, e)
}

// probeOnRelayReport: the relay saw the remote's relay connection go or
// come while WireGuard is direct. A remote that restarted with the same
// key does both, and its new instance has no WireGuard session for us:
// the direct path is dead, but only its path timeout (75 s) would tell,
// while the new instance, its offers lost if our signal was down, waits
// for ours. A handshake initiation finds out in ProbeTimeout (a live
// remote answers it; one datagram per report). Both sides are told at
// once when the relay restarts, and crossing initiations stall
// wireguard-go (the soak saw a pair whose pings then failed): the
// controlling side probes now; the other listens for ProbeTimeout, and
// its check probes if nothing came (the controller had no report, or is
// the one gone).
func probeOnRelayReport(m *fsm.Machine[*Peer], e fsm.Envelope) {
	p := m.Data
	controlling := Controlling(p.Own, p.Remote)
	if controlling {
		p.log(m).Debug("the relay reports the remote's connection changed: probing the direct path",
			zap.String("event", string(e.Event)), zap.Stringer("endpoint", p.Pair.Remote))
		p.Effects.Probe(p.Remote)
	} else {
		p.log(m).Debug("the relay reports the remote's connection changed: listening for the controller's probe",
			zap.String("event", string(e.Event)), zap.Stringer("endpoint", p.Pair.Remote))
	}
	beginProbe(m, controlling)
}

// stopAgent: ICE failed while the relay carries WireGuard: the agent goes,
// the relay stays.
func stopAgent(m *fsm.Machine[*Peer], e fsm.Envelope) {
	p := m.Data
	recordErr(m, e)
	if p.ice != nil {
		p.ice.Stop()
		p.ice = nil
		m.NewGeneration()
	}
}

// relayRows are the transitions of the relay path, kept apart from the ICE
// rows so that both can change independently.
var relayRows = []fsm.Transition[*Peer]{
	// The relayed path's check, for both states that carry WireGuard over
	// the relay (Direct's own rows come first; elsewhere it is late).
	{From: Session, Event: EvPathCheck, Guard: relayPathAlive, Action: rearmRelayCheck},
	{From: Session, Event: EvPathCheck, Guard: relayPathUnprobed, Action: probeRelayPath,
		Doc: "nothing over the relay for a path timeout: a WireGuard handshake initiation, whose response proves it"},
	{From: Session, Event: EvPathCheck, Guard: relayPathSilentSignalUp, To: Backoff, Action: relayPathLost,
		Doc: "still silent ProbeTimeout after the probe (a remote restarted with the same key is on the relay under the same id)"},
	{From: Session, Event: EvPathCheck, Guard: relayPathSilent, To: Parked, Action: relayPathLost},
	// Relay-only pairing: listed before the ICE rows of the same states.
	{From: Parked, Event: EvOffer, Guard: relayOnlyMsg, To: RelayOnly, Action: acceptRelayOffer,
		Doc: "no ICE credentials (or ForceRelay): relay only"},
	{From: Offering, Event: EvOffer, Guard: relayOnlyMsg, To: RelayOnly, Action: acceptRelayOffer},
	{From: Offering, Event: EvAnswer, Guard: relayOnlyMsg, To: RelayOnly, Action: adoptRelayAnswer},
	{From: Checking, Event: EvAnswer, Guard: relayOnlyMsg, To: RelayOnly, Action: adoptRelayAnswer,
		Doc: "the remote dropped ICE"},
	{From: Backoff, Event: EvOffer, Guard: relayOnlyMsg, To: RelayOnly, Action: acceptRelayOffer},
	{From: Idle, Event: EvOffer, Guard: relayOnlyMsg, To: RelayOnly, Action: acceptRelayOffer},
	{From: RelayOnly, Event: EvRelayUp, Action: acquireOnRelayUp, Doc: "the home relay came up: acquire now"},
	{From: RelayOnly, Event: EvOffer, Guard: relayOnlyMovesRelay, To: RelayWaiting, Action: answerAgainWithRelay,
		Doc: "the controller's relay is known now: move to it (its first message had no relay address)"},
	{From: RelayOnly, Event: EvAnswer, Guard: relayOnlyMovesRelay, To: RelayWaiting, Action: noteAndAcquire},
	{From: RelayOnly, Event: EvOffer, Guard: relayOnlyMsg, Action: answerAgainWithRelay, Doc: "repeated offer: answered"},
	{From: RelayOnly, Event: EvAnswer, Guard: relayOnlyMsg, Action: nothing, Doc: "repeated answer"},
	{From: RelayOnly, Event: EvAnswer, Action: countBad, Doc: "an answer with credentials to an older offer"},
	{From: RelayWaiting, Event: relayuse.EvReady, Guard: readyForTarget, To: RelayOnlyRelayed, Action: openRelayPath},
	{From: RelayWaiting, Event: EvCheckTimeout, Guard: signalIsUp, To: Backoff},
	{From: RelayWaiting, Event: EvCheckTimeout, To: Parked},
	{From: RelayOnlyRelayed, Event: relayuse.EvLost, Guard: relayLostForTarget, To: RelayWaiting, Action: forgetRelay,
		Doc: "wait for the relay to come back (one deadline)"},
	{From: RelayOnlyRelayed, Event: EvPark, Action: signalDown, Doc: "WireGuard does not need signal: stay"},
	{From: RelayOnlyRelayed, Event: EvRelayFailed, Guard: wgStale, Action: nothing, Doc: "late: for a WireGuard peer removed since"},
	{From: RelayOnlyRelayed, Event: EvRelayFailed, Guard: signalIsUp, To: Backoff, Action: relayFailed,
		Doc: "the relay, the only path, could not be bridged to WireGuard: backoff"},
	{From: RelayOnlyRelayed, Event: EvRelayFailed, To: Parked, Action: relayFailed},
	{From: RelayOnly, Event: EvWGFailed, Guard: wgCurrentSignalUp, To: Backoff, Action: recordErr},
	{From: RelayOnly, Event: EvWGFailed, Guard: wgCurrent, To: Parked, Action: recordErr},
	{From: RelayOnlyRelayed, Event: EvSignalUp, Action: signalUp},

	// Relay beside ICE.
	{From: OverRelay, Event: EvRelayUp, Guard: relayUpMovesPathSignalUp, To: Checking, Action: relayCameUp,
		Doc: "the pair's relay is another now: WireGuard waits for it there (one check deadline), ICE goes on"},
	{From: OverRelay, Event: EvRelayUp, Guard: relayUpMovesPath, To: Parked, Action: forgetRelay,
		Doc: "the same with signal down: parked (no offer could go), holding no relay"},
	{From: ICE, Event: EvRelayUp, Action: relayCameUp, Doc: "the home relay came up after the agent started"},
	{From: OverRelay, Event: EvOffer, Guard: newRelayMovesPath, To: Checking, Action: answerAgainWithRelay,
		Doc: "the controller moved to another relay: WireGuard waits for it there (one check deadline), ICE goes on"},
	{From: OverRelay, Event: EvAnswer, Guard: newRelayMovesPath, To: Checking, Action: noteAndAcquire},
	{From: ICE, Event: EvOffer, Guard: newRemoteRelay, Action: answerAgainWithRelay},
	{From: ICE, Event: EvAnswer, Guard: newRemoteRelay, Action: noteAndAcquire},
	{From: Checking, Event: EvICEFailed, Guard: relayAcquired, Action: stopAgent,
		Doc: "no ICE path, a relay acquired: wait for it until the check deadline"},
	{From: Checking, Event: relayuse.EvReady, Guard: readyForTarget, To: OverRelay, Action: openRelayPath,
		Doc: "WireGuard over the relay while ICE checks"},
	{From: OverRelay, Event: EvICEConnected, Guard: pairRelayed, To: Relayed, Action: recordPair},
	{From: OverRelay, Event: EvICEConnected, To: Direct, Action: recordPair, Doc: "upgrade: the endpoint is switched"},
	{From: OverRelay, Event: EvICEFailed, Action: stopAgent, Doc: "no direct path: the relay stays"},
	{From: OverRelay, Event: relayuse.EvLost, Guard: agentRunningSignalUp, To: Checking, Action: forgetRelay},
	{From: OverRelay, Event: relayuse.EvLost, Guard: signalIsUp, To: Backoff, Action: forgetRelay},
	{From: OverRelay, Event: relayuse.EvLost, To: Parked, Action: forgetRelay},
	{From: OverRelay, Event: EvPark, Action: signalDown, Doc: "WireGuard does not need signal: stay"},
	{From: OverRelay, Event: EvRelayFailed, Guard: wgStale, Action: nothing, Doc: "late: for a WireGuard peer removed since"},
	{From: OverRelay, Event: EvRelayFailed, Guard: agentRunningSignalUp, To: Checking, Action: relayFailed,
		Doc: "the relay could not be bridged to WireGuard: not used; ICE goes on"},
	{From: OverRelay, Event: EvRelayFailed, Guard: signalIsUp, To: Backoff, Action: relayFailed},
	{From: OverRelay, Event: EvRelayFailed, To: Parked, Action: relayFailed},
	{From: OverRelay, Event: EvSignalUp, Action: signalUp},
	{From: Direct, Event: EvPathCheck, Guard: fallbackToRelay, To: OverRelay, Action: fallBack,
		Doc: "direct path silent: back to the relay, no renegotiation"},
	{From: Connected, Event: relayuse.EvReady, Guard: readyForTarget, Action: keepRelay, Doc: "kept for a fallback"},
	{From: Direct, Event: relayuse.EvLost, Action: forgetRelayKeepDirect,
		Doc: "WireGuard may have followed the remote onto the relay: its endpoint is the direct pair's again"},
	{From: Connected, Event: relayuse.EvLost, Action: forgetRelay},
	{From: Direct, Event: relayuse.EvRemoteOffline, Guard: relayReportUnprobed, Action: probeOnRelayReport,
		Doc: "the remote left the relay: probe the direct path now (a remote restarted with the same key has no session for us)"},
	{From: Direct, Event: relayuse.EvRemoteOnline, Guard: relayReportUnprobed, Action: probeOnRelayReport,
		Doc: "the remote came (back) on the relay: probe the direct path now"},

	// The relay's reports of the remote's presence (it watches the remote
	// while the session holds the relay).
	{From: RelayOnlyRelayed, Event: relayuse.EvRemoteOffline, Guard: relayLostForTarget, To: RemoteOffline, Action: remoteGone,
		Doc: "the relay, the only path, reports the remote gone: leave connected now"},
	{From: OverRelay, Event: relayuse.EvRemoteOffline, Guard: relayLostForTarget, To: RemoteOffline, Action: remoteGone,
		Doc: "the relay carried WireGuard: the remote is gone (its agent goes too)"},
	{From: RemoteOffline, Event: relayuse.EvRemoteOnline, Guard: remoteBackSignalDown, To: Parked,
		Doc: "the remote is back but signal is down: no offer can go; parked until signal is up"},
	{From: RemoteOffline, Event: relayuse.EvRemoteOnline, Guard: relayLostForTarget, To: Session,
		Doc: "the remote is back on the relay: a new session offers"},
	{From: RemoteOffline, Event: EvOffer, Guard: relayOnlyMsg, To: RelayOnly, Action: acceptRelayOffer,
		Doc: "the remote is back and offers relay-only"},
	{From: RemoteOffline, Event: EvAnswer, Action: countBad},
	// Elsewhere the reports are ignored (the spec's root Ignore): another
	// path, or none yet, is judged by its own checks.

	// Everywhere else a relay message is late or for another target: a
	// member does nothing with it unless its state says otherwise.
	{From: Waiting, Event: EvRelayUp, Guard: relayUnsent, To: Offering, Action: offerAgain,
		Doc: "our offers went out before the home relay was up: offer again with it (a relay-only remote pairs only on a relay it knows)"},
	{From: Member, Event: EvRelayUp, Action: nothing, Doc: "a session's next offer or answer carries the relay"},
	{From: Session, Event: relayuse.EvReady, Guard: readyForTarget, Action: keepRelay},
	{From: Member, Event: relayuse.EvReady, Action: nothing},
	{From: Session, Event: relayuse.EvLost, Action: forgetRelay},
	{From: Member, Event: relayuse.EvLost, Action: nothing},
}

// relayStates are the states of the relay path.
var relayStates = []fsm.StateDef[*Peer]{
	{Name: OverRelay, Parent: ICE, Doc: "WireGuard over the NetBird relay; ICE still checking (or failed: agent stopped)",
		Entry: useRelayPath},
	{Name: RelayOnly, Parent: Session, Initial: RelayWaiting, Doc: "no ICE: the remote sent no credentials, or ForceRelay",
		Entry: startRelayOnly, Exit: stopRelayOnly},
	{Name: RelayWaiting, Parent: RelayOnly, Doc: "relay acquired, waiting for it to be ready; one deadline", Entry: armRelayDeadline},
	{Name: RelayOnlyRelayed, Parent: RelayOnly, Doc: "WireGuard over the NetBird relay", Entry: useRelayPath},
	{Name: RemoteOffline, Parent: Session, Doc: "the relay reported the remote gone: no WireGuard peer, no timer; the relay watches it; its return (or its offer) starts over",
		Entry: enterRemoteOffline, Exit: leaveRemoteOffline},
}
