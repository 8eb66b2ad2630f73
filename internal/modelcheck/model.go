// Package modelcheck is a model check of the composed engine: the engine
// machine, both links and a few peer machines, with recording fakes for every
// effect, driven through sequences of every external event (signal up and
// down, network maps, remote offers, answers, candidates and GO_IDLE, with
// or without a relay address, ICE results, the home and a foreign relay
// connecting, failing, closing, reporting remotes and refusing a path,
// timers, needs-login and a new setup key, network up and down, stop and
// start). After every step the invariants of Check hold, or the run
// fails with its seed and a shortened (delta-debugged) failing sequence.
//
// The model plays every worker: it posts through the Sender a machine handed
// to its effect, so results of old generations are exercised as well. Time
// moves only when the model fires a timer. Unparking runs with a burst and a
// batch of 1, so that a handful of peers exercise the pacing that 1000 do in
// production.
package modelcheck

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Keys is the size of the pool of remote peers maps are drawn from.
const Keys = 5

// Kind is one kind of external event.
type Kind uint8

// The external events.
const (
	Start Kind = iota
	Stop
	SetupKey
	NetworkUp
	NetworkDown
	MgmtKey
	MgmtLoginOK
	MgmtNotRegistered
	MgmtKeyRejected
	MgmtFailed
	MgmtStreamClosed
	Map // V: which pool peers are in the map (bit mask); P: allowed-IPs variant (bit mask)
	SignalUp
	SignalFailed
	SignalClosed
	RemoteOffer // V: remote session id (0: an offer without credentials)
	RemoteAnswer
	RemoteCandidate
	RemoteGoIdle
	ICEConnected // V: 1 relayed
	ICEFailed
	ICELocalCandidate
	ICEStale // an event of a stopped agent
	SendFailed
	Traffic     // something arrived from the remote's endpoint
	Timer       // M, E: the oldest armed timer of machine M with event E
	IfaceBroken // from now on the interface cannot be created
	IfaceFixed  // from now on it can
	WGFailed    // a WireGuard configuration of peer P fails in the worker; V: 0 the newest, 1 the oldest (late)
	WGRefused   // the next WireGuard configuration of peer P is refused at once (a relay bridge if it asks for one)
	// The relay: V names the URL dialed (relayURL: 0 the home link's, 1–3
	// a foreign relay's).
	RelayUp            // the relay's pending dial authenticates; the home link's as instance P (0 home, 1 home-b)
	RelayFailed        // the pending dial fails
	RelayClosed        // the connection ends
	RelayHealth        // a health check arrives
	RelayStale         // a cancelled dial of the relay posts its EvUp (must be dropped)
	RelayRemoteOnline  // the relay reports pool peer P's remote on it
	RelayRemoteOffline // the relay reports it gone
	RelayRefuse        // the relay's next virtual connection fails to open
	nKinds
)

var kindNames = [...]string{"start", "stop", "setup-key", "network-up", "network-down", "mgmt-key", "mgmt-login-ok",
	"mgmt-not-registered", "mgmt-key-rejected", "mgmt-failed", "mgmt-stream-closed", "map", "signal-up",
	"signal-failed", "signal-closed", "remote-offer", "remote-answer", "remote-candidate", "remote-go-idle",
	"ice-connected", "ice-failed", "ice-local-candidate", "ice-stale", "send-failed", "traffic", "timer",
	"interface-broken", "interface-fixed", "wg-failed", "wg-refused", "relay-up", "relay-failed", "relay-closed",
	"relay-health", "relay-stale", "relay-remote-online", "relay-remote-offline", "relay-refuse"}

func (k Kind) String() string { return kindNames[k] }

// Op is one external event with its parameters. It names what it acts on
// (a pool peer, a timer by machine and event), not an index into the
// current state, so that a shortened sequence replays meaningfully; an op
// that does not apply in the state reached is skipped.
type Op struct {
	K    Kind
	P, V int
	M    string
	E    fsm.Event
}

func (o Op) String() string {
	switch o.K {
	case Map:
		var in []string
		for i := range Keys {
			if o.V&(1<<i) != 0 {
				in = append(in, fmt.Sprintf("p%d/%d", i, (o.P>>i)&1))
			}
		}
		return "map{" + strings.Join(in, " ") + "}"
	case Timer:
		return fmt.Sprintf("timer %s %s", short(o.M), o.E)
	case RemoteOffer, RemoteAnswer:
		return fmt.Sprintf("%s p%d v%d%s", o.K, o.P, o.V&3, relayNote(o.V>>2))
	case RelayUp:
		if o.V%nRelays == 0 {
			return fmt.Sprintf("%s %s as %s", o.K, relayName(o.V), relayName(homeInstance(o.P)))
		}
		return fmt.Sprintf("%s %s", o.K, relayName(o.V))
	case RelayFailed, RelayClosed, RelayHealth, RelayStale, RelayRefuse:
		return fmt.Sprintf("%s %s", o.K, relayName(o.V))
	case RelayRemoteOnline, RelayRemoteOffline:
		return fmt.Sprintf("%s p%d %s", o.K, o.P, relayName(o.V))
	case ICEConnected, Traffic:
		return fmt.Sprintf("%s p%d v%d", o.K, o.P, o.V)
	case WGFailed:
		return fmt.Sprintf("%s p%d v%d", o.K, o.P, o.V)
	case RemoteCandidate, RemoteGoIdle, ICEFailed, ICELocalCandidate, ICEStale, SendFailed, WGRefused:
		return fmt.Sprintf("%s p%d", o.K, o.P)
	}
	return o.K.String()
}

func relayName(v int) string {
	return [...]string{"home-link", "other", "home", "home-b"}[v%nRelays]
}

// homeInstance is the relayURL index of the home link's instance address p.
func homeInstance(p int) int { return 2 + p%2 }

// noteRelays maps the relay r an offer or answer names (0 none, 1 home, 2
// other, 3 home-b) to its relayURL index.
var noteRelays = [...]int{0, 2, 1, 3}

// relayNote is the relay address an offer or answer carries.
func relayNote(r int) string {
	if r%4 == 0 {
		return ""
	}
	return " relay " + relayName(noteRelays[r%4])
}

func short(id string) string {
	for i := range Keys {
		if id == peerfsm.ID(poolKey(i)) {
			return fmt.Sprintf("p%d", i)
		}
	}
	return id
}

var ownKey = wgtypes.Key{0x77, 1, 2, 3} // controls some pool peers, not others

func poolKey(i int) wgtypes.Key {
	// Public keys whose base64 form is below and above ownKey's.
	var k wgtypes.Key
	k[0] = byte(0x30 + 0x20*i)
	k[1] = byte(i)
	k[31] = 0xa5
	return k
}

func endpoint(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), 51820)
}

func allowedIPs(i, variant int) []netip.Prefix {
	return []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, byte(variant), byte(10 + i)}), 32)}
}

var loginResult = &mgmt.LoginResult{
	Config: mgmt.Config{Signal: mgmt.HostConfig{URI: "127.0.0.1:1", Protocol: mgmt.ProtocolHTTP},
		Relay: mgmt.RelayConfig{URLs: []string{relayURL(0)}, TokenPayload: "p", TokenSignature: "s"}},
	Peer: mgmt.PeerConfig{Address: netip.MustParsePrefix("100.64.0.1/10")},
}

// Model is one engine with fakes, and what the model knows it was told.
type Model struct {
	E      *engine.Engine
	l      *fsm.Loop
	clk    *clock
	ts     *timers
	mf     *mgmtFake
	sf     *sigFake
	pf     *peersFake
	rf     *relayFake
	dp     *planeFake
	serial uint64
	// want is the peer set of the last map the engine applied (nil: none).
	want map[wgtypes.Key]bool
}

// New builds a model whose jitter is drawn from seed.
func New(seed uint64) (*Model, error) {
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := &Model{clk: clk, ts: &timers{c: clk}, mf: &mgmtFake{}, sf: &sigFake{}, pf: newPeersFake(clk), rf: &relayFake{}, dp: &planeFake{}}
	var priv wgtypes.Key
	priv[0] = 1
	e, err := engine.New(engine.Config{PrivateKey: priv, SetupKey: "setup", Mgmt: m.mf, Signal: m.sf, Peers: m.pf, Relay: m.rf,
		Rand: rand.New(rand.NewPCG(seed, 7)), Now: clk.Now, Dataplane: m.dp,
		Timers: m.ts, UnparkBurst: 1, UnparkBatch: 1,
		Go: func(f func()) { f() }}) // workers run in place: the model stays deterministic
	if err != nil {
		return nil, err
	}
	m.E, m.l = e, e.Loop()
	return m, nil
}

func (m *Model) node(id string) fsm.Node {
	n := m.l.Machine(id)
	if n == nil {
		return nil
	}
	return n
}

func (m *Model) in(id string, s fsm.State) bool {
	n := m.node(id)
	return n != nil && n.In(s)
}

func (m *Model) post(id string, ev fsm.Event, data any) {
	_ = m.l.Post(fsm.Envelope{To: id, Event: ev, Data: data})
}

func (m *Model) remote(i int, k sigwire.Kind, sid, rl int) {
	msg := sigwire.Message{From: poolKey(i), To: ownKey, Kind: k}
	if rl > 0 {
		msg.RelayServerAddress, msg.RelayServerIP = relayURL(noteRelays[rl%4]), netip.AddrFrom4([4]byte{198, 18, 1, byte(rl)})
	}
	if sid > 0 {
		msg.Ufrag, msg.Pwd, msg.SessionID = fmt.Sprintf("ru%d", sid), "rp", []byte{byte(sid), 0xcc}
	}
	if k == sigwire.Candidate {
		msg.Candidate = fmt.Sprintf("candidate:1 1 udp 2130706431 198.18.0.%d 51820 typ host", 10+i)
	}
	m.E.Deliver(msg)
}

// Apply runs one op and everything it causes. It reports whether the op
// applied in the current state.
func (m *Model) Apply(o Op) bool {
	ok := m.apply(o)
	m.l.Drain()
	return ok
}

func (m *Model) apply(o Op) bool {
	mg, sg := mgmtfsm.ID, signalfsm.ID
	k := poolKey(o.P % Keys)
	switch o.K {
	case Start:
		if !m.in(engine.ID, engine.Idle) && !m.in(engine.ID, engine.Stopped) {
			return false
		}
		m.post(engine.ID, engine.EvStart, nil)
	case Stop:
		m.post(engine.ID, engine.EvStop, nil)
		if !m.in(engine.ID, engine.Idle) && !m.in(engine.ID, engine.Stopped) {
			m.want = nil
		}
	case SetupKey:
		_ = m.E.SetSetupKey("setup")
	case NetworkUp, NetworkDown:
		_ = m.E.NetworkChanged(o.K == NetworkUp)
	case MgmtKey, MgmtLoginOK, MgmtNotRegistered, MgmtKeyRejected, MgmtFailed:
		if !m.mf.have || !m.in(mg, mgmtfsm.Connecting) {
			return false
		}
		ev, data := map[Kind]fsm.Event{MgmtKey: mgmtfsm.EvKey, MgmtLoginOK: mgmtfsm.EvLoginOK,
			MgmtNotRegistered: mgmtfsm.EvNotRegistered, MgmtKeyRejected: mgmtfsm.EvKeyRejected, MgmtFailed: mgmtfsm.EvFailed}[o.K], any(nil)
		switch o.K {
		case MgmtKey:
			data = wgtypes.Key{9}
		case MgmtLoginOK:
			data = loginResult
		case MgmtFailed:
			data = errors.New("unavailable")
		}
		_ = m.mf.w.Post(ev, data)
	case MgmtStreamClosed:
		if !m.mf.have || !m.in(mg, mgmtfsm.Online) {
			return false
		}
		_ = m.mf.w.Post(mgmtfsm.EvStreamClosed, errors.New("eof"))
	case Map:
		if !m.mf.have || !m.in(mg, mgmtfsm.Online) {
			return false
		}
		m.serial++
		nm := &mgmt.NetworkMap{Serial: m.serial}
		want := map[wgtypes.Key]bool{}
		for i := range Keys {
			if o.V&(1<<i) != 0 {
				nm.Peers = append(nm.Peers, mgmt.RemotePeer{Key: poolKey(i), AllowedIPs: allowedIPs(i, (o.P>>i)&1)})
				want[poolKey(i)] = true
			}
		}
		if m.in(engine.ID, engine.Starting) || m.in(engine.ID, engine.IfaceFailed) || m.in(engine.ID, engine.Running) {
			m.want = want
		}
		_ = m.mf.w.Post(mgmtfsm.EvUpdate, mgmt.Update{Map: nm})
	case SignalUp, SignalFailed:
		if !m.sf.have || !m.in(sg, signalfsm.Connecting) {
			return false
		}
		if o.K == SignalUp {
			_ = m.sf.w.Post(signalfsm.EvUp, nil)
		} else {
			_ = m.sf.w.Post(signalfsm.EvConnectFailed, errors.New("refused"))
		}
	case SignalClosed:
		if !m.sf.have || !m.in(sg, signalfsm.Connected) {
			return false
		}
		_ = m.sf.w.Post(signalfsm.EvStreamClosed, errors.New("eof"))
	case RemoteOffer, RemoteAnswer, RemoteCandidate, RemoteGoIdle:
		// Remote messages arrive only over a connected signal stream.
		if !m.in(sg, signalfsm.Connected) {
			return false
		}
		kind := map[Kind]sigwire.Kind{RemoteOffer: sigwire.Offer, RemoteAnswer: sigwire.Answer,
			RemoteCandidate: sigwire.Candidate, RemoteGoIdle: sigwire.GoIdle}[o.K]
		sid, rl := o.V&3, (o.V>>2)%4
		if o.K == RemoteCandidate || o.K == RemoteGoIdle {
			sid, rl = 0, 0
		}
		m.remote(o.P%Keys, kind, sid, rl)
	case ICEConnected, ICEFailed, ICELocalCandidate:
		a := m.pf.live(k)
		if a == nil {
			return false
		}
		switch o.K {
		case ICEConnected:
			p := peerfsm.Pair{Relayed: o.V == 1, LocalType: "host", RemoteType: "host",
				Local: netip.MustParseAddrPort("198.18.0.1:51820"), Remote: endpoint(o.P % Keys)}
			if p.Relayed {
				p.LocalType, p.RemoteType = "relay", "relay"
			}
			_ = a.w.Post(peerfsm.EvICEConnected, p)
		case ICEFailed:
			_ = a.w.Post(peerfsm.EvICEFailed, errors.New("ice failed"))
		case ICELocalCandidate:
			_ = a.w.Post(peerfsm.EvLocalCandidate, "candidate:2 1 udp 1 198.18.0.1 51820 typ host")
		}
	case ICEStale:
		a := m.pf.stale(k)
		if a == nil {
			return false
		}
		_ = a.w.Post(peerfsm.EvICEFailed, errors.New("late"))
	case SendFailed:
		w, ok := m.pf.send[k]
		if !ok {
			return false
		}
		_ = w.Post(peerfsm.EvSendFailed, errors.New("send failed"))
	case Traffic:
		if o.V == 1 {
			m.pf.relayRecv[k] = m.clk.now
		} else {
			m.pf.recv[endpoint(o.P%Keys)] = m.clk.now
		}
	case Timer:
		return m.ts.fire(o.M, o.E)
	case IfaceBroken, IfaceFixed:
		m.dp.broken = o.K == IfaceBroken
	case WGFailed:
		r := m.pf.rep(k, o.V == 0)
		if r == nil {
			return false
		}
		id := peerfsm.ID(k)
		if r == m.pf.rep(k, true) && (m.in(id, peerfsm.ICE) || m.in(id, peerfsm.RelayOnly)) {
			m.pf.failed[k] = true // the configuration in force failed
		}
		_ = r.Post(peerfsm.EvWGFailed, errFailed)
	case WGRefused:
		m.pf.refuse[k] = true
	case RelayUp, RelayFailed, RelayClosed, RelayHealth, RelayRefuse, RelayRemoteOnline, RelayRemoteOffline:
		return m.relayOp(o, k)
	case RelayStale:
		d := m.rf.stale(relayURL(o.V))
		if d == nil {
			return false
		}
		c := newRelayConn(d.url)
		c.dead = true // the cancelled worker closes what it authenticated
		_ = d.w.Post(relayfsm.EvUp, relayfsm.Up{Conn: c, Addr: d.url, URL: d.url})
	default:
		return false
	}
	return true
}

// relayOp plays the current dial of relay o.V.
func (m *Model) relayOp(o Op, k wgtypes.Key) bool {
	d := m.rf.current(relayURL(o.V))
	if d == nil || (d.conn == nil) != (o.K == RelayUp || o.K == RelayFailed) {
		return false
	}
	switch o.K {
	case RelayUp:
		addr := d.url
		if o.V%nRelays == 0 {
			addr = relayURL(homeInstance(o.P))
		}
		d.conn = newRelayConn(addr)
		_ = d.w.Post(relayfsm.EvUp, relayfsm.Up{Conn: d.conn, Addr: addr, ServerIP: netip.AddrFrom4([4]byte{198, 18, 1, 1}), URL: d.url})
	case RelayFailed:
		d.ended = true
		_ = d.w.Post(relayfsm.EvConnectFailed, errors.New("relay: refused"))
	case RelayClosed:
		d.ended, d.conn.dead = true, true
		_ = d.w.Post(relayfsm.EvClosed, errors.New("relay: EOF"))
	case RelayHealth:
		_ = d.w.Post(relayfsm.EvHealth, nil)
	case RelayRefuse:
		d.conn.refuse = true
	case RelayRemoteOnline:
		_ = d.w.Post(relayfsm.EvPeersOnline, []relay.PeerID{relay.HashID(k.String())})
	case RelayRemoteOffline:
		_ = d.w.Post(relayfsm.EvPeersOffline, []relay.PeerID{relay.HashID(k.String())})
	}
	return true
}

// Chooser draws the choices of Gen: a *rand.Rand, or the bytes of a fuzz
// input (fsmtest.Input).
type Chooser interface {
	IntN(n int) int
}

// Gen draws a random op that applies in the current state (most of the
// time: a few are drawn blind, to exercise events in states that do not
// expect them).
func (m *Model) Gen(r Chooser) Op {
	if r.IntN(8) == 0 {
		return Op{K: Kind(r.IntN(int(Timer))), P: r.IntN(Keys), V: r.IntN(4)}
	}
	var c []Op
	add := func(o Op, w int) {
		for range w {
			c = append(c, o)
		}
	}
	p := r.IntN(Keys)
	add(Op{K: Start}, 1)
	add(Op{K: Stop}, 1)
	add(Op{K: SetupKey}, 1)
	add(Op{K: NetworkUp}, 1)
	add(Op{K: NetworkDown}, 1)
	add(Op{K: Traffic, P: p, V: r.IntN(2)}, 1)
	add(Op{K: IfaceBroken}, 1)
	add(Op{K: IfaceFixed}, 2)
	mg, sg := mgmtfsm.ID, signalfsm.ID
	// Once signal is connected the sessions' events weigh f times more:
	// without it a run spends most of its steps bringing the engine up
	// again after a stop, and rarely reaches a relayed path.
	f := 1
	if m.in(sg, signalfsm.Connected) {
		f = 3
	}
	switch {
	case m.in(mg, mgmtfsm.FetchingKey):
		add(Op{K: MgmtKey}, 4)
		add(Op{K: MgmtFailed}, 1)
	case m.in(mg, mgmtfsm.LoggingIn), m.in(mg, mgmtfsm.Registering):
		add(Op{K: MgmtLoginOK}, 4)
		add(Op{K: MgmtNotRegistered}, 1)
		add(Op{K: MgmtKeyRejected}, 1)
		add(Op{K: MgmtFailed}, 1)
	case m.in(mg, mgmtfsm.Online):
		add(Op{K: Map, V: r.IntN(1 << Keys), P: r.IntN(1 << Keys)}, 3)
		add(Op{K: MgmtStreamClosed}, 1)
	}
	switch {
	case m.in(sg, signalfsm.Connecting):
		add(Op{K: SignalUp}, 4)
		add(Op{K: SignalFailed}, 1)
	case m.in(sg, signalfsm.Connected):
		add(Op{K: SignalClosed}, 1)
		add(Op{K: RemoteOffer, P: p, V: r.IntN(16)}, 3*f)
		add(Op{K: RemoteAnswer, P: p, V: r.IntN(16)}, 2*f)
		add(Op{K: RemoteCandidate, P: p}, f)
		add(Op{K: RemoteGoIdle, P: p}, f)
	}
	for i := range Keys {
		if m.pf.live(poolKey(i)) != nil {
			add(Op{K: ICEConnected, P: i, V: r.IntN(2)}, 2*f)
			add(Op{K: ICEFailed, P: i}, f)
			add(Op{K: ICELocalCandidate, P: i}, f)
		}
		if m.pf.stale(poolKey(i)) != nil {
			add(Op{K: ICEStale, P: i}, 1)
		}
		if _, ok := m.pf.send[poolKey(i)]; ok {
			add(Op{K: SendFailed, P: i}, 1)
		}
		if m.pf.rep(poolKey(i), true) != nil {
			add(Op{K: WGFailed, P: i, V: r.IntN(2)}, 1)
		}
	}
	add(Op{K: WGRefused, P: p}, 1)
	for v := range nRelays {
		d := m.rf.current(relayURL(v))
		switch {
		case d != nil && d.conn == nil:
			add(Op{K: RelayUp, V: v, P: r.IntN(4) / 3}, 3*f) // the home link mostly as the same instance
			add(Op{K: RelayFailed, V: v}, f)
		case d != nil:
			add(Op{K: RelayClosed, V: v}, f)
			add(Op{K: RelayHealth, V: v}, f)
			add(Op{K: RelayRefuse, V: v}, f)
			add(Op{K: RelayRemoteOnline, P: p, V: v}, f)
			add(Op{K: RelayRemoteOffline, P: p, V: v}, f)
		}
		if m.rf.stale(relayURL(v)) != nil {
			add(Op{K: RelayStale, V: v}, 1)
		}
	}
	for _, t := range m.ts.kinds() {
		add(Op{K: Timer, M: t[0], E: fsm.Event(t[1])}, 2*f)
	}
	return c[r.IntN(len(c))]
}

// Violation is one broken invariant.
type Violation struct {
	Invariant string // a fixed name: timer-owner, unhandled, ...
	Detail    string
}

func (v *Violation) Error() string { return v.Invariant + ": " + v.Detail }

func violation(name, format string, args ...any) error {
	return &Violation{Invariant: name, Detail: fmt.Sprintf(format, args...)}
}

// Invariants returns the names of the invariants an error breaks.
func Invariants(err error) []string {
	var out []string
	var walk func(error)
	walk = func(e error) {
		var v *Violation
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
		} else if errors.As(e, &v) {
			out = append(out, v.Invariant)
		}
	}
	walk(err)
	return out
}

// Check tests every invariant in the quiescent state reached after a step.
func (m *Model) Check() error {
	var errs []error
	eng, sig := m.node(engine.ID), m.node(signalfsm.ID)
	sigUp := sig.In(signalfsm.Connected)
	var peers []fsm.Node
	m.l.Each(func(n fsm.Node) {
		// Every armed timer belongs to a state the machine is in.
		for _, s := range n.TimerOwners() {
			if !n.In(s) {
				errs = append(errs, violation("timer-owner", "%s in %s has a timer of state %s", short(n.ID()), n.State(), s))
			}
		}
		if n.Kind() == peerfsm.Kind {
			peers = append(peers, n)
		}
	})
	if st := m.l.Stats(); st.Unhandled != 0 {
		errs = append(errs, violation("unhandled", "%d events had no declared outcome", st.Unhandled))
	}
	running := eng.In(engine.Running)
	if running && eng.In(engine.SignalUp) != sigUp {
		errs = append(errs, violation("engine-follows-signal", "engine in %s while signal is in %s", eng.State(), sig.State()))
	}
	if eng.In(engine.Configuring) {
		errs = append(errs, violation("configuring-is-transient", "engine rests in %s", eng.State()))
	}
	if eng.In(engine.IfaceFailed) && eng.Timers() == 0 {
		errs = append(errs, violation("interface-retry-armed", "engine in %s with no retry armed", eng.State()))
	}
	if eng.In(engine.Unparking) && eng.Timers() == 0 {
		errs = append(errs, violation("unpark-turn-comes", "engine unparking with no tick armed"))
	}
	active := !eng.In(engine.Idle) && !eng.In(engine.Stopped)
	for _, p := range peers {
		switch {
		case sigUp && eng.In(engine.Steady) && p.In(peerfsm.Parked):
			errs = append(errs, violation("no-peer-parked-for-good", "%s parked: signal connected, engine %s", short(p.ID()), eng.State()))
		case !sigUp && active && (p.In(peerfsm.Offering) || p.In(peerfsm.Checking)):
			errs = append(errs, violation("signal-down-no-offers", "%s in %s while signal is %s (engine %s)", short(p.ID()), p.State(), sig.State(), eng.State()))
		}
	}
	// The peer machines are the map's peers: no more, no fewer.
	have := map[string]bool{}
	for _, p := range peers {
		have[p.ID()] = true
	}
	for k := range m.want {
		if !have[peerfsm.ID(k)] {
			errs = append(errs, violation("machines-are-the-map", "%s is in the map but has no machine", short(peerfsm.ID(k))))
		}
		delete(have, peerfsm.ID(k))
	}
	for id := range have {
		errs = append(errs, violation("machines-are-the-map", "%s has a machine but is not in the map", short(id)))
	}
	// A WireGuard peer exists exactly while its machine is in a session
	// that configured one (session.ice, session.relay-only): a failed
	// configuration is never left standing, nor a removed one.
	for i := range Keys {
		k := poolKey(i)
		id := peerfsm.ID(k)
		inSession := m.in(id, peerfsm.ICE) || m.in(id, peerfsm.RelayOnly)
		if m.pf.wg[k] != inSession {
			errs = append(errs, violation("wireguard-peer-is-the-session", "%s: WireGuard peer %v, machine in %s",
				short(id), m.pf.wg[k], stateOf(m.node(id))))
		}
		if m.pf.failed[k] && m.pf.wg[k] {
			errs = append(errs, violation("failed-configuration-ends-session", "%s: its WireGuard configuration failed, machine still in %s",
				short(id), stateOf(m.node(id))))
		}
	}
	errs = append(errs, m.checkRelay(active)...)
	return errors.Join(errs...)
}

// checkRelay tests the relay's invariants: what holds a relay, what its
// paths are on, what it watches, and nothing left open after a stop.
func (m *Model) checkRelay(active bool) []error {
	var errs []error
	inSession := func(id string) bool { return m.in(id, peerfsm.Session) }
	// Only peers in a session hold a relay (parked, backing off or idle
	// peers hold nothing), and a connected relay watches exactly its
	// holders' remotes.
	holders := func(name string, ids []string, c relayfsm.Conn) {
		want := map[relay.PeerID]bool{}
		for _, id := range ids {
			if !inSession(id) {
				errs = append(errs, violation("relay-held-in-session", "%s holds the %s relay in %s", short(id), name, stateOf(m.node(id))))
			}
			for i := range Keys {
				if peerfsm.ID(poolKey(i)) == id {
					want[relay.HashID(poolKey(i).String())] = true
				}
			}
		}
		if rc, ok := c.(*relayConn); ok && len(rc.watched) != len(want) {
			errs = append(errs, violation("relay-watches-holders", "the %s relay watches %d remotes, %d holders", name, len(rc.watched), len(want)))
		} else if ok {
			for r := range rc.watched {
				if !want[r] {
					errs = append(errs, violation("relay-watches-holders", "the %s relay watches a remote none of its holders has", name))
				}
			}
		}
	}
	if l, ok := m.node(relayfsm.ID).(*fsm.Machine[*relayfsm.Link]); ok {
		holders("home", l.Data.Holders(), l.Data.Conn())
		for _, f := range l.Data.Foreign() {
			var c relayfsm.Conn
			if f.In(relayfsm.ForeignUp) {
				c = m.rf.current(f.Data.Addr).connOrNil()
			}
			holders("foreign", f.Data.Holders(), c)
		}
	}
	// A relay path open is a session's, one per peer, on a relay that is
	// still connected.
	open := map[relay.PeerID]int{}
	for _, v := range m.rf.paths() {
		if v.closed {
			continue
		}
		open[v.remote]++
		if v.c.dead {
			errs = append(errs, violation("relay-path-on-live-relay", "a path to %s is open on a closed relay (%s)", shortRemote(v.remote), v.c.addr))
		}
		if id := remoteID(v.remote); id != "" && !inSession(id) {
			errs = append(errs, violation("relay-path-in-session", "%s has a relay path open in %s", short(id), stateOf(m.node(id))))
		}
	}
	for r, n := range open {
		if n > 1 {
			errs = append(errs, violation("relay-path-in-session", "%s has %d relay paths open", shortRemote(r), n))
		}
	}
	// A peer whose WireGuard goes over the relay has it configured on an
	// open path.
	for i := range Keys {
		k := poolKey(i)
		id := peerfsm.ID(k)
		if !m.in(id, peerfsm.OverRelay) && !m.in(id, peerfsm.RelayOnlyRelayed) {
			continue
		}
		if v := m.pf.relay[k]; v == nil || v.closed {
			errs = append(errs, violation("relayed-over-open-path", "%s in %s: WireGuard is not on an open relay path", short(id), stateOf(m.node(id))))
		}
	}
	// A stopped engine has no relay connection or dial left.
	if !active {
		for _, d := range m.rf.dials {
			if d.live() {
				errs = append(errs, violation("stopped-holds-no-relay", "a dial of %s is live with the engine stopped", d.url))
			}
		}
	}
	return errs
}

func (d *dial) connOrNil() relayfsm.Conn {
	if d == nil || d.conn == nil {
		return nil
	}
	return d.conn
}

// remoteID is the machine id of the pool peer whose relay id is r.
func remoteID(r relay.PeerID) string {
	for i := range Keys {
		if relay.HashID(poolKey(i).String()) == r {
			return peerfsm.ID(poolKey(i))
		}
	}
	return ""
}

func shortRemote(r relay.PeerID) string { return short(remoteID(r)) }

func stateOf(n fsm.Node) fsm.State {
	if n == nil {
		return "(none)"
	}
	return n.State()
}

// Failure is a failed run.
type Failure struct {
	Seed  uint64
	Step  int // of the original run, 1-based
	Err   error
	Ops   []Op // the shortened failing sequence
	Steps int  // length of the original failing prefix
}

func (f *Failure) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: invariant broken after step %d: %v\nshortened to %d steps:\n", f.Seed, f.Step, f.Err, len(f.Ops))
	for i, o := range f.Ops {
		fmt.Fprintf(&b, "  %2d. %s\n", i+1, o)
	}
	return b.String()
}

// Run drives a fresh model through steps random ops drawn from seed. It
// returns nil or the failure with its shortened sequence.
func Run(seed uint64, steps int) *Failure {
	m, err := New(seed)
	if err != nil {
		return &Failure{Seed: seed, Err: err}
	}
	defer m.Close()
	r := rand.New(rand.NewPCG(seed, 1))
	var ops []Op
	for i := range steps {
		o := m.Gen(r)
		if i == 0 {
			o = Op{K: Start}
		}
		ops = append(ops, o)
		m.Apply(o)
		if err := m.Check(); err != nil {
			return &Failure{Seed: seed, Step: i + 1, Err: err, Ops: Shrink(seed, ops), Steps: len(ops)}
		}
	}
	return nil
}

// Replay runs ops on a fresh model and returns the first invariant error.
func Replay(seed uint64, ops []Op) error {
	m, err := New(seed)
	if err != nil {
		return err
	}
	defer m.Close()
	for i, o := range ops {
		m.Apply(o)
		if err := m.Check(); err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, o, err)
		}
	}
	return nil
}

// Close stops the model's engine (nothing runs in the background: this
// only releases its machines).
func (m *Model) Close() { m.l.Deliver(fsm.Envelope{To: engine.ID, Event: engine.EvStop}) }

// Shrink delta-debugs a failing sequence (ddmin): it removes chunks, then
// single ops, as long as the shortened sequence still breaks an invariant.
func Shrink(seed uint64, ops []Op) []Op {
	fails := func(s []Op) bool { return Replay(seed, s) != nil }
	if !fails(ops) {
		return ops
	}
	n := 2
	for len(ops) >= 2 {
		chunk := (len(ops) + n - 1) / n
		reduced := false
		for start := 0; start < len(ops); start += chunk {
			end := min(start+chunk, len(ops))
			cand := append(append([]Op{}, ops[:start]...), ops[end:]...)
			if fails(cand) {
				ops, n, reduced = cand, max(n-1, 2), true
				break
			}
		}
		if !reduced {
			if n >= len(ops) {
				break
			}
			n = min(2*n, len(ops))
		}
	}
	return ops
}

// Prefix brings a model to signal up with two peers in the map, one of
// them still waiting for its unpark turn (pacing of 1): where the
// exhaustive search starts.
var Prefix = []Op{{K: Start}, {K: MgmtKey}, {K: MgmtLoginOK}, {K: Map, V: 0b11}, {K: SignalUp}}

// Alphabet is the concrete ops the exhaustive search combines: every kind
// of external event, for the two peers of Prefix, and the home relay
// coming and going, an offer naming it and an answer naming a foreign one.
func Alphabet() []Op {
	p0, p1 := peerfsm.ID(poolKey(0)), peerfsm.ID(poolKey(1))
	return []Op{
		{K: SignalClosed}, {K: SignalUp}, {K: Timer, M: signalfsm.ID, E: signalfsm.EvRetry},
		{K: MgmtStreamClosed}, {K: MgmtKey}, {K: MgmtLoginOK}, {K: MgmtKeyRejected}, {K: SetupKey},
		{K: Timer, M: mgmtfsm.ID, E: mgmtfsm.EvRetry},
		{K: Map, V: 0b01}, {K: Map, V: 0b11, P: 0b10}, {K: NetworkUp}, {K: NetworkDown}, {K: Stop}, {K: Start},
		{K: IfaceBroken}, {K: IfaceFixed},
		{K: RemoteOffer, P: 0, V: 1}, {K: RemoteOffer, P: 1, V: 2}, {K: RemoteAnswer, P: 0, V: 1}, {K: RemoteGoIdle, P: 1},
		{K: ICEConnected, P: 0}, {K: ICEConnected, P: 1, V: 1}, {K: ICEFailed, P: 0}, {K: ICEFailed, P: 1},
		{K: WGFailed, P: 0}, {K: WGRefused, P: 1},
		{K: Timer, M: engine.ID, E: engine.EvUnparkTick},
		{K: Timer, M: p0, E: peerfsm.EvResend}, {K: Timer, M: p1, E: peerfsm.EvCheckTimeout},
		{K: Timer, M: p0, E: peerfsm.EvRetry}, {K: Timer, M: p1, E: peerfsm.EvRetry}, {K: Timer, M: p0, E: peerfsm.EvPathCheck},
		{K: RelayUp}, {K: RelayClosed}, {K: RemoteOffer, P: 0, V: 1 | 1<<2}, {K: RemoteAnswer, P: 1, V: 2 | 2<<2},
		{K: RelayRemoteOffline, P: 0},
	}
}

// Exhaustive replays prefix followed by every sequence of depth ops from
// alphabet, checking the invariants after every step. It returns how many
// sequences it ran and the first failure (shortened), if any.
func Exhaustive(prefix, alphabet []Op, depth int) (int, *Failure) {
	runs := 0
	idx := make([]int, depth)
	for {
		seq := append([]Op{}, prefix...)
		for _, i := range idx {
			seq = append(seq, alphabet[i])
		}
		runs++
		if err := Replay(0, seq); err != nil {
			return runs, &Failure{Err: err, Ops: Shrink(0, seq), Steps: len(seq)}
		}
		// Next index vector (odometer).
		k := depth - 1
		for k >= 0 {
			idx[k]++
			if idx[k] < len(alphabet) {
				break
			}
			idx[k] = 0
			k--
		}
		if k < 0 {
			return runs, nil
		}
	}
}
