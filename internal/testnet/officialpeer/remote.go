package officialpeer

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/sigwire"
)

// Timing of official peers (PROTOCOL.md §5).
const (
	checkEvery       = 2 * time.Second // Binding request on the selected pair
	deadAfter        = 6 * time.Second // without an answer: path dead
	endpointFallback = 5 * time.Second // controlled side: endpoint after this unless a handshake arrived
	keepalive        = 25              // WireGuard persistent keepalive, seconds
	defaultWGPort    = 51820
)

// attrCandidatePairID is the comprehension-optional attribute official
// peers' ICE appends after FINGERPRINT.
const attrCandidatePairID stun.AttrType = 0x8100

// remote is the double's connection to one remote peer. Every field is
// guarded by Peer.mu; gen is bumped for every new agent and session, and
// callbacks of an older generation do nothing.
type remote struct {
	p           *Peer
	key         wgtypes.Key
	allowed     []netip.Prefix
	controlling bool
	closed      bool
	gen         int

	// local session
	ufrag, pwd string
	session    []byte
	answered   bool
	offers     int
	resend     *time.Timer

	// remote session
	haveRemote    bool
	rUfrag, rPwd  string
	rSession      []byte
	rPort         uint32
	pending       []string
	agent         *ice.Agent
	agentCancel   context.CancelFunc
	selected      netip.AddrPort
	check, dead   *time.Timer
	fallback      *time.Timer
	tiebreaker    uint64
	pairID        string
	endpointIsSet bool
}

func (r *remote) log() *zap.Logger {
	return r.p.log.With(zap.String("peer", r.key.String()[:8]))
}

// openLocked creates the WireGuard peer without endpoint, queues one packet
// to it (the traffic that opens a lazy connection), and offers.
func (r *remote) openLocked() {
	r.addWGPeer()
	if len(r.allowed) > 0 {
		to := netip.AddrPortFrom(r.allowed[0].Addr(), 9)
		r.p.wg.Add(1)
		go func() {
			defer r.p.wg.Done()
			if c, err := r.p.tnet.DialUDPAddrPort(netip.AddrPort{}, to); err == nil {
				_, _ = c.Write([]byte("lazy connection trigger"))
				_ = c.Close()
			}
		}()
	}
	r.newSessionLocked()
	r.sendOfferLocked()
}

func (r *remote) addWGPeer() {
	var b strings.Builder
	fmt.Fprintf(&b, "public_key=%x\nreplace_allowed_ips=true\n", r.key[:])
	for _, a := range r.allowed {
		fmt.Fprintf(&b, "allowed_ip=%s\n", a)
	}
	r.p.ipc(b.String())
}

func (r *remote) setEndpointLocked() {
	if r.endpointIsSet || !r.selected.IsValid() {
		return
	}
	r.endpointIsSet = true
	r.p.ipc(fmt.Sprintf("public_key=%x\nupdate_only=true\nendpoint=%s\npersistent_keepalive_interval=%d\n",
		r.key[:], r.selected, keepalive))
}

// newSessionLocked starts a new local session: credentials, session id.
func (r *remote) newSessionLocked() {
	r.gen++
	r.ufrag, r.pwd = randomLetters(16), randomLetters(32)
	r.session = []byte(randomLetters(5))
	r.answered, r.offers = false, 0
	r.haveRemote = false
	r.rSession = nil
}

func (r *remote) message(k sigwire.Kind) sigwire.Message {
	return sigwire.Message{To: r.key, Kind: k, Ufrag: r.ufrag, Pwd: r.pwd, SessionID: r.session,
		WGListenPort: uint32(r.p.sock.port())}
}

// sendOfferLocked offers, and again with backoff (1 s doubling to 8 s)
// until an answer or an offer arrives.
func (r *remote) sendOfferLocked() {
	r.p.send(r.message(sigwire.Offer))
	d := time.Second << min(r.offers, 3)
	r.offers++
	gen := r.gen
	stopTimer(r.resend)
	r.resend = time.AfterFunc(d, func() {
		r.p.mu.Lock()
		defer r.p.mu.Unlock()
		if !r.closed && r.gen == gen && !r.answered {
			r.sendOfferLocked()
		}
	})
}

func (r *remote) onOfferLocked(m sigwire.Message) {
	if len(m.SessionID) == 0 || r.closed {
		return // official peers ignore an offer without session id
	}
	r.p.send(r.message(sigwire.Answer)) // every offer is answered
	if r.haveRemote && string(m.SessionID) == string(r.rSession) {
		return // repeated: answered, ignored
	}
	r.adoptLocked(m)
}

func (r *remote) onAnswerLocked(m sigwire.Message) {
	if r.closed || r.haveRemote && string(m.SessionID) == string(r.rSession) {
		return
	}
	r.adoptLocked(m)
}

// adoptLocked takes the remote's credentials and (re)builds the agent.
func (r *remote) adoptLocked(m sigwire.Message) {
	r.log().Debug("adopting remote session", zap.Stringer("event", m.Kind), zap.Binary("session", m.SessionID))
	r.haveRemote, r.answered = true, true
	stopTimer(r.resend)
	r.rUfrag, r.rPwd, r.rSession, r.rPort = m.Ufrag, m.Pwd, append([]byte(nil), m.SessionID...), m.WGListenPort
	r.startAgentLocked()
}

func (r *remote) onCandidateLocked(text string) {
	r.log().Debug("remote candidate", zap.Bool("agent", r.agent != nil), zap.String("candidate", text))
	if r.agent == nil {
		if len(r.pending) < 32 {
			r.pending = append(r.pending, text)
		}
		return
	}
	if c, err := ice.UnmarshalCandidate(text); err == nil {
		_ = r.agent.AddRemoteCandidate(c)
	}
}

func (r *remote) startAgentLocked() {
	r.stopPathLocked()
	r.closeAgentLocked()
	r.gen++
	gen := r.gen
	keepaliveOff, disconnectedOff, failed := time.Duration(0), time.Duration(0), time.Hour
	agent, err := ice.NewAgent(&ice.AgentConfig{
		LocalUfrag: r.ufrag, LocalPwd: r.pwd,
		NetworkTypes:     []ice.NetworkType{ice.NetworkTypeUDP4},
		CandidateTypes:   []ice.CandidateType{ice.CandidateTypeHost},
		MulticastDNSMode: ice.MulticastDNSModeDisabled,
		UDPMux:           r.p.mux,
		// The double sends its own checks (with 0x8100) and judges the
		// path itself; pion's keepalive and disconnect logic is off.
		KeepaliveInterval:   &keepaliveOff,
		DisconnectedTimeout: &disconnectedOff,
		FailedTimeout:       &failed,
	})
	if err != nil {
		r.log().Warn("new agent", zap.Error(err))
		return
	}
	ctx, cancel := context.WithCancel(r.p.ctx)
	r.agent, r.agentCancel = agent, cancel
	r.tiebreaker = uint64(time.Now().UnixNano())
	for _, text := range r.pending {
		if c, err := ice.UnmarshalCandidate(text); err == nil {
			_ = agent.AddRemoteCandidate(c)
		}
	}
	r.pending = nil
	_ = agent.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			return
		}
		r.p.mu.Lock()
		defer r.p.mu.Unlock()
		if r.gen == gen && !r.closed {
			r.p.send(sigwire.Message{To: r.key, Kind: sigwire.Candidate, Candidate: c.Marshal()})
		}
	})
	controlling, rUfrag, rPwd := r.controlling, r.rUfrag, r.rPwd
	r.p.wg.Add(1)
	go func() {
		defer r.p.wg.Done()
		if err := agent.GatherCandidates(); err != nil {
			return
		}
		var err error
		if controlling {
			_, err = agent.Dial(ctx, rUfrag, rPwd)
		} else {
			_, err = agent.Accept(ctx, rUfrag, rPwd)
		}
		if err != nil {
			return
		}
		pair, err := agent.GetSelectedCandidatePair()
		if err != nil || pair == nil {
			return
		}
		ip, err := netip.ParseAddr(pair.Remote.Address())
		if err != nil {
			return
		}
		r.p.mu.Lock()
		defer r.p.mu.Unlock()
		if r.gen == gen && !r.closed {
			r.connectedLocked(netip.AddrPortFrom(ip.Unmap(), uint16(pair.Remote.Port())),
				pair.Local.String()+"|"+pair.Remote.String())
		}
	}()
}

// connectedLocked: punch, WireGuard endpoint by role, path checks.
func (r *remote) connectedLocked(to netip.AddrPort, pairID string) {
	r.selected = to
	r.pairID = pairID
	select {
	case r.p.connected <- struct{}{}:
	default:
	}
	port := r.rPort
	if port == 0 {
		port = defaultWGPort
	}
	r.p.sock.send([]byte("nb"), netip.AddrPortFrom(to.Addr(), uint16(port)))
	gen := r.gen
	if r.controlling {
		r.setEndpointLocked()
	} else {
		r.fallback = time.AfterFunc(endpointFallback, func() {
			arrived := r.p.handshakeArrived(r.key)
			r.p.mu.Lock()
			defer r.p.mu.Unlock()
			if r.gen == gen && !r.closed && !arrived {
				r.setEndpointLocked()
			}
		})
	}
	r.armDeadLocked(gen)
	r.sendCheckLocked(gen)
}

func (r *remote) armDeadLocked(gen int) {
	stopTimer(r.dead)
	r.dead = time.AfterFunc(deadAfter, func() {
		r.p.mu.Lock()
		defer r.p.mu.Unlock()
		if r.gen == gen && !r.closed {
			r.pathDeadLocked()
		}
	})
}

// sendCheckLocked sends one Binding request on the selected pair, as
// official peers' ICE does every 2 s: 0x8100 after FINGERPRINT.
func (r *remote) sendCheckLocked(gen int) {
	role := stun.Setter(ice.AttrControlled(r.tiebreaker))
	if r.controlling {
		role = ice.AttrControlling(r.tiebreaker)
	}
	m, err := stun.Build(stun.BindingRequest, stun.TransactionID,
		stun.NewUsername(r.rUfrag+":"+r.ufrag), role, ice.PriorityAttr(2130706431),
		stun.NewShortTermIntegrity(r.rPwd), stun.Fingerprint, pairIDAttr(r.pairID))
	if err == nil {
		rPwd := r.rPwd
		r.p.sock.expect(m.TransactionID, func(resp *stun.Message) {
			if resp.Type != stun.BindingSuccess || stun.MessageIntegrity([]byte(rPwd)).Check(resp) != nil {
				return
			}
			r.p.answers.Add(1)
			r.p.mu.Lock()
			defer r.p.mu.Unlock()
			if r.gen == gen && !r.closed {
				r.armDeadLocked(gen)
			}
		})
		r.p.checks.Add(1)
		r.p.sock.send(m.Raw, r.selected)
		id := m.TransactionID
		time.AfterFunc(deadAfter, func() { r.p.sock.forget(id) })
	}
	stopTimer(r.check)
	r.check = time.AfterFunc(checkEvery, func() {
		r.p.mu.Lock()
		defer r.p.mu.Unlock()
		if r.gen == gen && !r.closed {
			r.sendCheckLocked(gen)
		}
	})
}

// pathDeadLocked is what official peers do after 6 s without answers:
// remove the WireGuard endpoint (delete and re-add the peer), close the
// agent, offer a new session.
func (r *remote) pathDeadLocked() {
	r.p.drops.Add(1)
	r.log().Info("path dead: no answer to checks", zap.Duration("after", deadAfter))
	r.stopPathLocked()
	r.closeAgentLocked()
	r.p.ipc(fmt.Sprintf("public_key=%x\nremove=true\n", r.key[:]))
	r.addWGPeer()
	r.newSessionLocked()
	r.sendOfferLocked()
}

func (r *remote) stopPathLocked() {
	stopTimer(r.check)
	stopTimer(r.dead)
	stopTimer(r.fallback)
	r.selected = netip.AddrPort{}
	r.endpointIsSet = false
}

func (r *remote) closeAgentLocked() {
	a, cancel := r.agent, r.agentCancel
	r.agent, r.agentCancel = nil, nil
	if a == nil {
		return
	}
	cancel()
	r.p.wg.Add(1)
	go func() {
		defer r.p.wg.Done()
		_ = a.Close()
	}()
}

func (r *remote) close() {
	r.p.mu.Lock()
	defer r.p.mu.Unlock()
	r.closed = true
	stopTimer(r.resend)
	r.stopPathLocked()
	r.closeAgentLocked()
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

type pairIDAttr string

func (a pairIDAttr) AddTo(m *stun.Message) error {
	m.Add(attrCandidatePairID, []byte(a))
	return nil
}
