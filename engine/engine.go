package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
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
	// Relay is the effects of the relay link (nil: no relay link, as for
	// tests of the other machines alone).
	Relay relayfsm.Effects
	// ForceRelay disables ICE: peers pair over the NetBird relay only, as
	// official peers with NB_FORCE_RELAY=true.
	ForceRelay bool
	// RelayURLs, if set, replace management's relay URLs (the official
	// client's NB_HOME_RELAY_SERVERS).
	RelayURLs []string
	// Dataplane brings the interface up on login and takes ICE servers
	// from the management config (nil in tests of the machines alone).
	Dataplane Dataplane
	// Rand draws jitter (nil: the global source).
	Rand *rand.Rand
	// Ring, if set, receives every transition (for `netbird events`).
	Ring *fsm.Ring
	// Observers are told of every transition, in the loop goroutine.
	Observers []fsm.Observer
	// Now and Timers replace the loop's clock and timers (the model check
	// drives time itself; nil: the real ones).
	Now    func() time.Time
	Timers fsm.TimerFactory
	// UnparkBurst and UnparkBatch override the pacing of unparking (0: the
	// defaults). The model check sets 1 so that a few peers exercise it.
	UnparkBurst, UnparkBatch int
	// MeasureDispatch records the loop's longest dispatch (Status.Loop.MaxDispatch).
	MeasureDispatch bool
	// Go runs the engine's own workers (interface creation); nil: a
	// goroutine joined by Stop. The model check runs them in place.
	Go func(func())
}

// Dataplane is what the engine asks of the data path. SetConfig and
// SetFirewall are called from the loop goroutine (in-process, short); Up
// from a worker.
type Dataplane interface {
	// Up creates the WireGuard interface with the overlay addresses
	// management assigned, IPv4 and IPv6 (zero: none) (once: the addresses
	// of a registered peer do not change). It
	// runs in a worker goroutine, since creating a TUN device and its
	// configuration socket may block, and must not touch what the loop
	// reads: the loop calls Install on the result, or Close if the result
	// arrives when nothing can take it (the loop has stopped).
	Up(addr, addrV6 netip.Prefix, mtu int) (Interface, error)
	// SetConfig hands over STUN/TURN servers for the next ICE agents.
	SetConfig(c mgmt.Config)
	// SetFirewall applies the access policy of each network map (the
	// whole policy, every map: it replaces the previous one).
	SetFirewall(fw mgmt.Firewall)
}

// Interface is a created WireGuard interface, handed from the worker that
// created it to the loop.
type Interface interface {
	// Install makes it the data path's interface (loop goroutine).
	Install()
	// Close releases an interface that was never installed.
	Close() error
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
	relay   *fsm.Machine[*relayfsm.Link]   // nil without Config.Relay
	peers   map[wgtypes.Key][]netip.Prefix // as applied
	queue   []string                       // peers waiting for their unpark turn
	login   *mgmt.LoginResult
	config  *mgmt.Config
	lastMap *mgmt.NetworkMap
	skipped int
	// ifaceErr is why the interface could not be created ("" when up);
	// ifaceAttempt counts the retries since the last success.
	ifaceErr     string
	ifaceAttempt int
	ifaceUp      bool // installed
	creating     bool // a worker is creating it
	workers      sync.WaitGroup

	known atomic.Pointer[map[wgtypes.Key]struct{}] // the map's keys, for the signal worker

	// life serializes Start and Stop (callable from any goroutine).
	life    sync.Mutex
	started bool
	stopped bool
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
	if cfg.UnparkBurst <= 0 {
		cfg.UnparkBurst = UnparkBurst
	}
	if cfg.UnparkBatch <= 0 {
		cfg.UnparkBatch = UnparkBatch
	}
	e.cfg = cfg
	e.loop = fsm.NewLoop(fsm.Options{Logger: cfg.Logger, Now: cfg.Now, Timers: cfg.Timers,
		MeasureDispatch: cfg.MeasureDispatch})
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
	if cfg.Relay != nil {
		if e.relay, err = relayfsm.New(e.loop, &relayfsm.Link{Effects: cfg.Relay, Rand: cfg.Rand}, e.m); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Loop returns the engine's loop (tests and the daemon observe it).
func (e *Engine) Loop() *fsm.Loop { return e.loop }

// WrapPeers replaces the peers' effects with wrap(the current ones). Call
// it before Start: the client's tests gate ICE with it.
func (e *Engine) WrapPeers(wrap func(peerfsm.Effects) peerfsm.Effects) {
	e.cfg.Peers = wrap(e.cfg.Peers)
}

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
func (e *Engine) Deliver(m sigwire.Message) {
	ev, ok := peerfsm.EventFor(m.Kind)
	if !ok {
		return
	}
	_ = e.loop.Post(fsm.Envelope{To: peerfsm.ID(m.From), Event: ev, Data: m})
}

// Start runs the loop and starts the engine. It may be called from any
// goroutine, once: again, or after Stop, it returns ErrRunning.
func (e *Engine) Start(ctx context.Context) error {
	e.life.Lock()
	defer e.life.Unlock()
	if e.started {
		return ErrRunning
	}
	e.started = true
	ctx, e.cancel = context.WithCancel(ctx)
	go func() {
		defer close(e.done)
		e.loop.Run(ctx)
	}()
	return e.loop.Post(fsm.Envelope{To: ID, Event: EvStart})
}

// Stop stops links and peers and ends the loop; it waits for the loop. It
// may be called from any goroutine, any number of times, before or after
// Start (before: a no-op).
func (e *Engine) Stop() {
	e.life.Lock()
	defer e.life.Unlock()
	if !e.started || e.stopped {
		return
	}
	e.stopped = true
	_ = e.loop.Post(fsm.Envelope{To: ID, Event: EvStop})
	_ = e.loop.Do(func() {}) // the stop has run
	e.cancel()
	<-e.done
	e.workers.Wait() // an interface being created: closed by its worker
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
	if up {
		// Peers that gave up offering try again on the new network.
		m.Broadcast(peerfsm.Kind, peerfsm.Waiting, peerfsm.EvNetworkUp, nil)
	}
	if m.Data.relay != nil {
		rev := relayfsm.EvNetworkDown
		if up {
			rev = relayfsm.EvNetworkUp
		}
		m.Send(relayfsm.ID, rev, nil)
	}
}

// homeRelay is the home relay's instance address and IP while the relay
// link is connected: what peers put in their offers and answers. Loop
// goroutine only.
func (e *Engine) homeRelay() (string, netip.Addr) {
	if e.relay == nil || !e.relay.In(relayfsm.Connected) {
		return "", netip.Addr{}
	}
	return e.relay.Data.Addr, e.relay.Data.ServerIP
}

// hasRelay: the NetBird relay is configured (its link exists).
func (e *Engine) hasRelay() bool { return e.relay != nil }

// relayConfig is management's relay config with Config.RelayURLs applied.
func (e *Engine) relayConfig(r mgmt.RelayConfig) relayfsm.Config {
	rc := relayfsm.ConfigOf(r)
	if len(e.cfg.RelayURLs) > 0 {
		rc.URLs = slices.Clone(e.cfg.RelayURLs)
	}
	return rc
}

// relayUp tells the peers in a session that the home relay is up.
func relayUp(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	m.Broadcast(peerfsm.Kind, peerfsm.Session, peerfsm.EvRelayUp, nil)
}

func nothingToDo(*fsm.Machine[*Engine], fsm.Envelope) {}

// startRelay starts the relay link with the login's RelayConfig (a no-op
// when it runs: the config is then only kept for its next connect).
func startRelay(m *fsm.Machine[*Engine], c mgmt.Config) {
	if m.Data.relay == nil {
		return
	}
	rc := m.Data.relayConfig(c.Relay)
	m.Send(relayfsm.ID, relayfsm.EvStart, rc)
	m.Send(relayfsm.ID, relayfsm.EvConfig, rc)
}

func signalServer(c mgmt.Config) signalfsm.Server {
	return signalfsm.Server{Addr: c.Signal.URI, TLS: c.Signal.TLS()}
}

// storeLogin keeps the login's result for configuring.
func storeLogin(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	if r, ok := ev.Data.(*mgmt.LoginResult); ok {
		m.Data.login = r
		m.Data.config = &r.Config
	}
}

// bringUp is configuring's entry: a worker creates the interface for the
// login and posts interface-up (Data: Interface) or interface-failed. The
// loop does not wait for it.
func bringUp(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	e := m.Data
	dp := e.cfg.Dataplane
	if dp == nil || e.ifaceUp || e.login == nil {
		m.Raise(EvIfaceUp, nil)
		return
	}
	if e.creating {
		return // the running worker's result comes to this state
	}
	e.creating = true
	w, addr, addrV6, mtu := m.Worker(), e.login.Peer.Address, e.login.Peer.AddressV6, e.login.Peer.MTU
	e.spawn(func() {
		iface, err := dp.Up(addr, addrV6, mtu)
		if err != nil {
			_ = w.PostCause(EvIfaceFailed, fmt.Errorf("interface %s: %w", addr, err), err.Error())
			return
		}
		if w.Post(EvIfaceUp, iface) != nil {
			_ = iface.Close() // the loop has stopped: nothing will install it
		}
	})
}

func (e *Engine) spawn(f func()) {
	if e.cfg.Go != nil {
		e.cfg.Go(f)
		return
	}
	e.workers.Go(f)
}

// installIface takes a created interface (in whatever state it arrives:
// installed, it is released with the data path).
func installIface(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	e := m.Data
	if iface, ok := ev.Data.(Interface); ok && iface != nil {
		e.creating = false
		iface.Install()
		e.ifaceUp = true
	}
}

// ifaceFailed: the worker could not create the interface.
func ifaceFailed(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	m.Data.creating = false
	if err, ok := ev.Data.(error); ok {
		m.Data.ifaceErr = err.Error()
	}
}

// ifaceReady: configuring is done; ICE servers to the data path, signal on.
func ifaceReady(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	installIface(m, ev)
	e := m.Data
	e.ifaceErr, e.ifaceAttempt = "", 0
	if dp := e.cfg.Dataplane; dp != nil && e.config != nil {
		dp.SetConfig(*e.config)
	}
	startSignal(m, ev)
}

// armIfaceRetry is interface-failed's entry: peers cannot carry traffic
// without the interface, so none offers; one backoff timer retries.
func armIfaceRetry(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	e := m.Data
	if err, ok := ev.Data.(error); ok {
		e.ifaceErr = err.Error()
	}
	d := backoff.Links.Delay(e.ifaceAttempt, e.cfg.Rand)
	e.ifaceAttempt++
	e.log.Error("interface could not be created; retrying", zap.String("err", e.ifaceErr),
		zap.Int("attempt", e.ifaceAttempt), zap.Duration("delay", d))
	parkPeers(m, ev)
	m.After(d, EvIfaceRetry, nil)
}

// startSignal starts the signal link with the login's server, and the
// relay link with its RelayConfig.
func startSignal(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	e := m.Data
	if e.login != nil {
		startRelay(m, e.login.Config)
	}
	if e.login == nil || e.login.Config.Signal.URI == "" {
		e.log.Warn("management gave no usable signal server; peers stay parked")
		return
	}
	m.Send(signalfsm.ID, signalfsm.EvStart, signalServer(e.login.Config))
	m.Send(signalfsm.ID, signalfsm.EvServer, signalServer(e.login.Config))
}

// applyLogin: a re-login while running (management reconnected); the
// interface is up already.
func applyLogin(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	storeLogin(m, ev)
	if dp := m.Data.cfg.Dataplane; dp != nil {
		dp.SetConfig(*m.Data.config)
	}
	startSignal(m, ev)
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
	if e.relay != nil && (len(c.Relay.URLs) > 0 || c.Relay.TokenPayload != "") {
		// A refreshed token (config-only sync): used at the next connect.
		m.Send(relayfsm.ID, relayfsm.EvConfig, e.relayConfig(merged.Relay))
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

// signalConnected: entering running, the engine's substate is the signal
// link's as it is now (it may have stayed connected through a re-login).
// Deciding the target, instead of entering signal-down and raising
// signal-up, keeps the park broadcast of signal-down's entry from landing
// behind the signal-up that should have released its peers (issue 10,
// bug 1).
var signalConnected = &fsm.Guard[*Engine]{Name: "signal-connected", Fn: func(m *fsm.Machine[*Engine], _ fsm.Envelope) bool {
	return m.Data.sig.In(signalfsm.Connected)
}}

func applyMap(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	nm, ok := ev.Data.(*mgmt.NetworkMap)
	if !ok {
		return
	}
	e := m.Data
	e.lastMap = nm
	e.skipped = len(nm.Skipped) + len(nm.Firewall.Skipped)
	for _, s := range nm.Skipped {
		e.log.Debug("network map entry skipped", zap.String("peer", s.Entry), zap.Error(s.Reason))
	}
	if dp := e.cfg.Dataplane; dp != nil {
		dp.SetFirewall(nm.Firewall)
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
		if e.relay != nil {
			p.HomeRelay, p.HasRelay, p.ForceRelay = e.homeRelay, e.hasRelay, e.cfg.ForceRelay
		}
		// A new machine enters parked: the routing table queues it for its
		// unpark turn if signal is up.
		if _, err := peerfsm.Add(e.loop, p, m); err != nil {
			e.log.Warn("unexpected: cannot add peer", zap.String("peer", nbcrypto.Fingerprint(rp.Key)), zap.Error(err))
		}
	}
}

// queueParked queues a peer that entered parked while signal is up, if it
// is still parked (a later event may have moved it on).
func queueParked(m *fsm.Machine[*Engine], ev fsm.Envelope) {
	r, ok := ev.Data.(fsm.Record)
	if !ok {
		return
	}
	if n := m.Loop().Machine(r.Machine); n != nil && n.In(peerfsm.Parked) {
		m.Data.queue = append(m.Data.queue, r.Machine)
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
		// The states whose tunnel does not need signal (their park rows
		// stay): ICE-connected, and on the NetBird relay.
		if c.In(peerfsm.Connected) || c.In(peerfsm.OverRelay) || c.In(peerfsm.RelayOnlyRelayed) {
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
		if n.In(peerfsm.Parked) {
			e.queue = append(e.queue, n.ID())
		} else {
			m.Send(n.ID(), peerfsm.EvSignalUp, nil)
		}
		return true
	})
}

func startUnparking(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	release(m, m.Data.cfg.UnparkBurst)
}

func unparkBatch(m *fsm.Machine[*Engine], _ fsm.Envelope) {
	release(m, m.Data.cfg.UnparkBatch)
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
	if e.relay != nil {
		m.Send(relayfsm.ID, relayfsm.EvStop, nil)
	}
	m.Raise(EvStopped, nil)
}
