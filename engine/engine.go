package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/signal"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Pacing of unparking: a token bucket as a timer-driven state. On signal up,
// UnparkBurst parked peers are released at once, then UnparkBatch every
// UnparkTick: 1000 parked peers all have offered within 3.2 s (32 + 31×32
// after 31 ticks), and no millisecond sees more than 32 offers.
const (
	UnparkBurst = 32
	UnparkBatch = 32
	UnparkTick  = 100 * time.Millisecond
)

// Config is what an engine needs.
type Config struct {
	PrivateKey wgtypes.Key
	// SetupKey registers the peer on first login (secret: never logged).
	SetupKey string
	Logger   *zap.Logger
	// Effects of the three machine kinds. Production wiring (New's caller,
	// cmd/netbird) passes the real workers; tests may pass fakes.
	Mgmt   mgmtfsm.Effects
	Signal signalfsm.Effects
	Peers  peerfsm.Effects
	// Dataplane brings the interface up on login and takes ICE servers
	// from the management config (nil in tests of the machines alone).
	Dataplane Dataplane
	// Rand draws jitter (nil: the global source).
	Rand *rand.Rand
	// Ring, if set, receives every transition (for `netbird events`).
	Ring *fsm.Ring
	// Observers are told of every transition, in the loop goroutine.
	Observers []fsm.Observer
}

// Dataplane is what the engine asks of the data path, from the loop
// goroutine (in-process calls, no network I/O).
type Dataplane interface {
	// Up creates the WireGuard interface with the overlay address management
	// assigned (first login; a no-op when it is up with that address).
	Up(addr netip.Prefix, mtu int) error
	// SetConfig hands over STUN/TURN servers for the next ICE agents.
	SetConfig(c mgmt.Config)
}

// Engine is the running client: one loop owning the engine machine, the two
// links and one machine per peer.
type Engine struct {
	loop *fsm.Loop
	log  *zap.Logger
	own  wgtypes.Key // public
	cfg  Config

	// Loop-owned.
	m       *fsm.Machine[*Engine]
	mgmt    *fsm.Machine[*mgmtfsm.Link]
	sig     *fsm.Machine[*signalfsm.Link]
	peers   map[wgtypes.Key][]netip.Prefix // as applied
	queue   []string                       // peers waiting for their unpark turn
	login   *mgmt.LoginResult
	config  *mgmt.Config
	lastMap *mgmt.NetworkMap
	skipped int

	known atomic.Pointer[map[wgtypes.Key]struct{}] // the map's keys, for the signal worker

	runOnce sync.Once
	done    chan struct{}
	cancel  context.CancelFunc
}

// ErrRunning: Start was called twice.
var ErrRunning = errors.New("engine: already started")

// New builds an engine; nothing runs until Start.
func New(cfg Config) (*Engine, error) {
	if cfg.Mgmt == nil || cfg.Signal == nil || cfg.Peers == nil {
		return nil, fmt.Errorf("engine: config needs the effects of every machine kind")
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	e := &Engine{
		log:   cfg.Logger.Named("engine"),
		own:   cfg.PrivateKey.PublicKey(),
		cfg:   cfg,
		peers: map[wgtypes.Key][]netip.Prefix{},
		done:  make(chan struct{}),
	}
	empty := map[wgtypes.Key]struct{}{}
	e.known.Store(&empty)
	e.loop = fsm.NewLoop(fsm.Options{Logger: cfg.Logger})
	e.loop.Observe(fsm.ZapObserver{Log: cfg.Logger.Named("fsm")})
	if cfg.Ring != nil {
		e.loop.Observe(cfg.Ring)
	}
	for _, o := range cfg.Observers {
		e.loop.Observe(o)
	}
	var err error
	if e.m, err = fsm.Add(e.loop, Spec, ID, e, nil); err != nil {
		return nil, err
	}
	if e.mgmt, err = mgmtfsm.New(e.loop, &mgmtfsm.Link{Effects: cfg.Mgmt, SetupKey: cfg.SetupKey, Rand: cfg.Rand}, e.m); err != nil {
		return nil, err
	}
	if e.sig, err = signalfsm.New(e.loop, &signalfsm.Link{Effects: cfg.Signal, Rand: cfg.Rand}, e.m); err != nil {
		return nil, err
	}
	return e, nil
}

// Loop returns the engine's loop (tests and the daemon observe it).
func (e *Engine) Loop() *fsm.Loop { return e.loop }

// Known reports whether k is in the current network map. It is safe from
// any goroutine: the signal worker calls it before decrypting a message, so
// strangers cost no crypto and create no state.
func (e *Engine) Known(k wgtypes.Key) bool {
	_, ok := (*e.known.Load())[k]
	return ok
}

// Deliver posts a decrypted signal message to the machine of its sender
// (called from the signal worker). A sender without a machine is counted by
// the loop and dropped.
func (e *Engine) Deliver(m signal.Message) {
	ev, ok := peerfsm.EventFor(m.Kind)
	if !ok {
		return
	}
	_ = e.loop.Post(fsm.Envelope{To: peerfsm.ID(m.From), Event: ev, Data: m})
}

// Start runs the loop and starts the engine.
func (e *Engine) Start(ctx context.Context) error {
	started := false
	e.runOnce.Do(func() {
		started = true
		ctx, e.cancel = context.WithCancel(ctx)
		go func() {
			defer close(e.done)
			e.loop.Run(ctx)
		}()
	})
	if !started {
		return ErrRunning
	}
	return e.loop.Post(fsm.Envelope{To: ID, Event: EvStart})
}

// Stop stops links and peers and ends the loop; it waits for the loop.
func (e *Engine) Stop() {
	if e.cancel == nil {
		return
	}
	_ = e.loop.Post(fsm.Envelope{To: ID, Event: EvStop})
	_ = e.loop.Do(func() {}) // the stop has run
	e.cancel()
	<-e.done
}

// SetSetupKey hands the engine a new setup key (leaves needs-login).
func (e *Engine) SetSetupKey(k string) error {
	return e.loop.Post(fsm.Envelope{To: ID, Event: EvSetupKey, Data: k})
}

// NetworkChanged tells the links that the OS network changed (up: a new
// route or address; down: no default route).
func (e *Engine) NetworkChanged(up bool) error {
	return e.loop.Post(fsm.Envelope{To: ID, Event: EvNetworkChanged, Data: up})
}

// Actions.

func startManagement(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	m.Send(mgmtfsm.ID, mgmtfsm.EvStart, nil)
}

func forwardSetupKey(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	m.Send(mgmtfsm.ID, mgmtfsm.EvSetupKey, ev.Data)
}

func forwardNetwork(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	up, _ := ev.Data.(bool)
	mev, sev := mgmtfsm.EvNetworkDown, signalfsm.EvNetworkDown
	if up {
		mev, sev = mgmtfsm.EvNetworkUp, signalfsm.EvNetworkUp
	}
	m.Send(mgmtfsm.ID, mev, nil)
	m.Send(signalfsm.ID, sev, nil)
}

func signalServer(c mgmt.Config) signalfsm.Server {
	return signalfsm.Server{Addr: c.Signal.URI, TLS: c.Signal.TLS()}
}

func applyLogin(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	r, ok := ev.Data.(*mgmt.LoginResult)
	if !ok {
		return
	}
	e := m.Data
	e.login = r
	e.config = &r.Config
	if dp := e.cfg.Dataplane; dp != nil {
		if err := dp.Up(r.Peer.Address, r.Peer.MTU); err != nil {
			e.log.Error("interface up failed", zap.String("endpoint", r.Peer.Address.String()), zap.Error(err))
		}
		dp.SetConfig(r.Config)
	}
	if r.Config.Signal.URI == "" {
		e.log.Warn("management gave no usable signal server; peers stay parked")
		return
	}
	m.Send(signalfsm.ID, signalfsm.EvStart, signalServer(r.Config))
	m.Send(signalfsm.ID, signalfsm.EvServer, signalServer(r.Config))
}

func applyConfig(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	c, ok := ev.Data.(*mgmt.Config)
	if !ok {
		return
	}
	e := m.Data
	merged := MergeConfig(e.config, *c)
	e.config = &merged
	if dp := e.cfg.Dataplane; dp != nil {
		dp.SetConfig(merged)
	}
	if merged.Signal.URI != "" {
		m.Send(signalfsm.ID, signalfsm.EvServer, signalServer(merged))
	}
}

// MergeConfig applies a Sync config update to the current config: as NetBird
// servers send them, an update carries only what changed (rotated TURN
// credentials, say); a zero Signal, an empty STUN or TURN list or a zero
// relay keeps the current one.
func MergeConfig(cur *mgmt.Config, upd mgmt.Config) mgmt.Config {
	var out mgmt.Config
	if cur != nil {
		out = *cur
	}
	if upd.Signal.URI != "" {
		out.Signal = upd.Signal
	}
	if len(upd.STUNs) > 0 {
		out.STUNs = upd.STUNs
	}
	if len(upd.TURNs) > 0 {
		out.TURNs = upd.TURNs
	}
	if len(upd.Relay.URLs) > 0 || upd.Relay.TokenPayload != "" {
		out.Relay = upd.Relay
	}
	return out
}

// syncSignalState: entering running, the engine's substate follows the
// signal link as it is now (it may have stayed connected through a
// re-login).
func syncSignalState(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	if m.Data.sig.In(signalfsm.Connected) {
		m.Raise(EvSignalUp, nil)
	}
}

func applyMap(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	nm, ok := ev.Data.(*mgmt.NetworkMap)
	if !ok {
		return
	}
	e := m.Data
	e.lastMap = nm
	e.skipped = len(nm.Skipped)
	for _, s := range nm.Skipped {
		e.log.Debug("network map entry skipped", zap.String("peer", s.Entry), zap.Error(s.Reason))
	}
	plan := Reconcile(e.peers, nm.Peers)
	if plan.Empty() {
		return
	}
	if len(plan.Add) > 0 || len(plan.Remove) > 0 {
		known := make(map[wgtypes.Key]struct{}, len(nm.Peers))
		for _, p := range nm.Peers {
			known[p.Key] = struct{}{}
		}
		e.known.Store(&known)
	}
	for _, k := range plan.Remove {
		delete(e.peers, k)
		id := peerfsm.ID(k)
		m.Send(id, peerfsm.EvRemove, nil)
		m.Raise(EvReap, id) // after the peer has processed its removal
	}
	for _, rp := range plan.Change {
		e.peers[rp.Key] = rp.AllowedIPs
		m.Send(peerfsm.ID(rp.Key), peerfsm.EvUpdate, rp.AllowedIPs)
	}
	up := m.In(SignalUp)
	for _, rp := range plan.Add {
		e.peers[rp.Key] = rp.AllowedIPs
		p := &peerfsm.Peer{Own: e.own, Remote: rp.Key, AllowedIPs: rp.AllowedIPs, Effects: e.cfg.Peers,
			Rand: e.cfg.Rand, SignalUp: up}
		pm, err := peerfsm.Add(e.loop, p, m)
		if err != nil {
			e.log.Warn("unexpected: cannot add peer", zap.String("peer", nbcrypto.Fingerprint(rp.Key)), zap.Error(err))
			continue
		}
		if up {
			e.queue = append(e.queue, pm.ID())
		}
	}
	if up && len(e.queue) > 0 {
		m.Raise(EvQueued, nil) // from steady, back through the bucket
	}
}

func reap(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	if id, ok := ev.Data.(string); ok {
		m.Loop().Remove(id)
	}
}

func parkPeers(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	m.Data.queue = m.Data.queue[:0]
	n := m.Broadcast(peerfsm.Kind, "", peerfsm.EvPark, nil)
	kept := 0
	m.Children(peerfsm.Kind, func(c fsm.Node) bool {
		if c.State() == peerfsm.Direct || c.State() == peerfsm.Relayed {
			kept++
		}
		return true
	})
	if n > 0 {
		m.Data.log.Info("signal down: peers without a tunnel parked, tunnels kept",
			zap.Int("parked", n-kept), zap.Int("connected", kept))
	}
}

func signalIsUp(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	e := m.Data
	e.queue = e.queue[:0]
	defer func() {
		if len(e.queue) > 0 {
			e.log.Info("signal up: unparking peers", zap.Int("parked", len(e.queue)))
		}
	}()
	m.Children(peerfsm.Kind, func(n fsm.Node) bool {
		if n.State() == peerfsm.Parked {
			e.queue = append(e.queue, n.ID())
		} else {
			m.Send(n.ID(), peerfsm.EvSignalUp, nil)
		}
		return true
	})
}

func startUnparking(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	release(m, UnparkBurst)
}

func unparkBatch(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	release(m, UnparkBatch)
}

// release hands up to n queued peers their unpark, then arms the next tick
// or declares the queue drained.
func release(m *fsm.Machine[*Engine], n int) {
	e := m.Data
	k := min(n, len(e.queue))
	for _, id := range e.queue[:k] {
		m.Send(id, peerfsm.EvUnpark, nil)
	}
	e.queue = e.queue[k:]
	if len(e.queue) == 0 {
		m.Raise(EvUnparked, nil)
		return
	}
	m.After(UnparkTick, EvUnparkTick, nil)
}

var queueEmpty = &fsm.Guard[*Engine]{Name: "queue-empty", Fn: func(m *fsm.Machine[*Engine], _ fsm.Envelope) bool {
	return len(m.Data.queue) == 0
}}

func nextTick(m *fsm.Machine[*Engine], _ fsm.Envelope) { m.After(UnparkTick, EvUnparkTick, nil) }

func stopAll(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	e := m.Data
	for k := range e.peers {
		id := peerfsm.ID(k)
		m.Send(id, peerfsm.EvRemove, nil)
		m.Raise(EvReap, id)
	}
	clear(e.peers)
	m.Send(signalfsm.ID, signalfsm.EvStop, nil)
	m.Send(mgmtfsm.ID, mgmtfsm.EvStop, nil)
	m.Raise(EvStopped, nil)
}
