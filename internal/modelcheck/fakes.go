package modelcheck

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// The fakes record what the machines ask for and start nothing: the model
// plays every worker by posting through the Sender the machine handed over,
// so late results of an old generation are exercised too.

// clock is the model's time: it moves only when a timer fires.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

// timers is the loop's TimerFactory: armed timers wait for the model.
type timers struct {
	c       *clock
	seq     uint64
	pending []*timer
}

type timer struct {
	seq     uint64
	to      string
	ev      fsm.Event
	due     time.Time
	f       func()
	stopped bool
}

func (t *timer) Stop() bool {
	was := !t.stopped
	t.stopped = true
	return was
}

func (ts *timers) AfterFunc(d time.Duration, to string, ev fsm.Event, f func()) fsm.Timer {
	ts.seq++
	t := &timer{seq: ts.seq, to: to, ev: ev, due: ts.c.now.Add(d), f: f}
	ts.pending = append(ts.pending, t)
	return t
}

// live returns the armed timers, oldest first, dropping stopped ones.
func (ts *timers) live() []*timer {
	out := ts.pending[:0]
	for _, t := range ts.pending {
		if !t.stopped {
			out = append(out, t)
		}
	}
	ts.pending = out
	return out
}

// fire fires the oldest armed timer of machine to with event ev (any event
// if ev is ""); the clock moves to its deadline if that is later.
func (ts *timers) fire(to string, ev fsm.Event) bool {
	for _, t := range ts.live() {
		if t.to == to && (ev == "" || t.ev == ev) {
			t.stopped = true
			if t.due.After(ts.c.now) {
				ts.c.now = t.due
			}
			t.f()
			return true
		}
	}
	return false
}

// kinds lists (machine, event) of the armed timers, sorted, for op choice.
func (ts *timers) kinds() [][2]string {
	seen := map[[2]string]bool{}
	var out [][2]string
	for _, t := range ts.live() {
		k := [2]string{t.to, string(t.ev)}
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0]+out[i][1] < out[j][0]+out[j][1] })
	return out
}

// mgmtFake records the Sender of the management link's current worker.
type mgmtFake struct {
	w    fsm.Sender
	have bool
}

func (f *mgmtFake) FetchKey(w fsm.Sender) func() { f.w, f.have = w, true; return func() {} }
func (f *mgmtFake) Login(w fsm.Sender, _ wgtypes.Key, _ string) func() {
	f.w, f.have = w, true
	return func() {}
}
func (f *mgmtFake) Sync(w fsm.Sender, _ wgtypes.Key) func() { f.w, f.have = w, true; return func() {} }
func (f *mgmtFake) EndSession()                             {}

// sigFake records the Sender of the signal link's current worker.
type sigFake struct {
	w    fsm.Sender
	have bool
}

func (f *sigFake) Connect(w fsm.Sender, _ signalfsm.Server) func() {
	f.w, f.have = w, true
	return func() {}
}

// planeFake is the data path: its interface can be broken by the model.
type planeFake struct{ broken bool }

func (f *planeFake) Up(_, _ netip.Prefix, _ int) (engine.Interface, error) {
	if f.broken {
		return nil, errors.New("cannot create the interface")
	}
	return nopIface{}, nil
}

type nopIface struct{}

func (nopIface) Install()                      {}
func (nopIface) Close() error                  { return nil }
func (f *planeFake) SetConfig(mgmt.Config)     {}
func (f *planeFake) SetFirewall(mgmt.Firewall) {}

// agent is one ICE agent the model plays.
type agent struct {
	w       fsm.Sender
	stopped bool
}

func (a *agent) AddRemoteCandidate(string) {}
func (a *agent) Stop()                     { a.stopped = true }

// peersFake records, per remote peer, the sends, agents and WireGuard peers.
type peersFake struct {
	c      *clock
	n      int
	send   map[wgtypes.Key]fsm.Sender // of the last send
	agents map[wgtypes.Key][]*agent   // newest last
	wg     map[wgtypes.Key]bool       // a WireGuard peer is configured
	recv   map[netip.AddrPort]time.Time
	// relayRecv: when something last arrived from the remote over its
	// relay path; relay the vconn of the peer's last configuration (nil:
	// not over the NetBird relay).
	relayRecv map[wgtypes.Key]time.Time
	relay     map[wgtypes.Key]*vconn
	offers    int
	// reps are the Posters of the peer's SetPeer calls, oldest first: the
	// model plays the configuration worker's failures through them.
	reps map[wgtypes.Key][]peerfsm.Poster
	// refuse makes the peer's next SetPeer fail at once (a relay bridge
	// when it asks for one, else WireGuard).
	refuse map[wgtypes.Key]bool
	// failed: the worker failed the peer's current configuration; only
	// its removal clears it.
	failed map[wgtypes.Key]bool
}

// errRefused is a configuration refused at once; errFailed one the worker
// posts.
var (
	errRefused = errors.New("configuration queue full")
	errFailed  = errors.New("wgctrl: device error")
)

func newPeersFake(c *clock) *peersFake {
	return &peersFake{c: c, send: map[wgtypes.Key]fsm.Sender{}, agents: map[wgtypes.Key][]*agent{},
		wg: map[wgtypes.Key]bool{}, recv: map[netip.AddrPort]time.Time{},
		relayRecv: map[wgtypes.Key]time.Time{}, relay: map[wgtypes.Key]*vconn{},
		reps: map[wgtypes.Key][]peerfsm.Poster{}, refuse: map[wgtypes.Key]bool{}, failed: map[wgtypes.Key]bool{}}
}

func (f *peersFake) NewCredentials() peerfsm.Credentials {
	f.n++
	return peerfsm.Credentials{Ufrag: fmt.Sprintf("lu%d", f.n), Pwd: "lp", SessionID: []byte{byte(f.n), byte(f.n >> 8), 0xee}}
}

func (f *peersFake) Send(w fsm.Sender, m sigwire.Message) {
	f.send[m.To] = w
	if m.Kind == sigwire.Offer {
		f.offers++
	}
}

func (f *peersFake) StartICE(w fsm.Sender, a peerfsm.Agent) peerfsm.ICEHandle {
	ag := &agent{w: w}
	f.agents[a.Peer] = append(f.agents[a.Peer], ag)
	return ag
}

// SetPeer configures the peer, or refuses at once if the model said so;
// its Poster is kept for the worker's later failures.
func (f *peersFake) SetPeer(r peerfsm.Poster, p peerfsm.WGPeer) error {
	if f.refuse[p.Key] {
		delete(f.refuse, p.Key)
		if p.Relay != nil {
			return fmt.Errorf("%w: %w", peerfsm.ErrRelayBridge, errRefused)
		}
		return errRefused
	}
	f.reps[p.Key] = append(f.reps[p.Key], r)
	f.wg[p.Key] = true
	f.relay[p.Key] = vconnOf(p.Relay)
	return nil
}

func (f *peersFake) RemovePeer(k wgtypes.Key) error {
	delete(f.wg, k)
	delete(f.failed, k)
	delete(f.relay, k)
	return nil
}

// rep is the peer's newest (newest) or oldest Poster, if any.
func (f *peersFake) rep(k wgtypes.Key, newest bool) peerfsm.Poster {
	rs := f.reps[k]
	switch {
	case len(rs) == 0:
		return nil
	case newest:
		return rs[len(rs)-1]
	}
	return rs[0]
}
func (f *peersFake) HoldPath(peerfsm.Credentials, netip.AddrPort) func() { return func() {} }
func (f *peersFake) LastReceive(a netip.AddrPort) time.Time              { return f.recv[a] }
func (f *peersFake) RelayLastReceive(k wgtypes.Key) time.Time            { return f.relayRecv[k] }
func (f *peersFake) CurrentEndpoint(wgtypes.Key) netip.AddrPort          { return netip.AddrPort{} }
func (f *peersFake) Probe(wgtypes.Key)                                   {} // the model's remote answers nothing: recv says what arrives
func (f *peersFake) Now() time.Time                                      { return f.c.now }

// live returns the peer's running agent, if any.
func (f *peersFake) live(k wgtypes.Key) *agent {
	as := f.agents[k]
	if len(as) > 0 && !as[len(as)-1].stopped {
		return as[len(as)-1]
	}
	return nil
}

// stale returns an agent of the peer that was stopped (its events must be
// dropped), if any.
func (f *peersFake) stale(k wgtypes.Key) *agent {
	for _, a := range f.agents[k] {
		if a.stopped {
			return a
		}
	}
	return nil
}

// The relay. relayURL(0) is the URL management hands out, which the home
// link dials; its AuthResponse gives one of two instance addresses,
// relayURL(2) or relayURL(3) (the home relay can come back as another
// instance). relayURL(1), (2) and (3) are what remotes name in offers: the
// home relay's address, or a foreign one, which its machine dials.
func relayURL(v int) string {
	return [...]string{"rels://relay.mgmt:443", "rels://other.relay:443", "rels://home.relay:443", "rels://home-b.relay:443"}[v%nRelays]
}

// nRelays is how many relay URLs the model knows.
const nRelays = 4

// relayFake is the relay machines' Effects: each Connect is one dial the
// model plays through its Sender, found by the URL dialed.
type relayFake struct{ dials []*dial }

// dial is one relay worker: pending, then up (conn), and over when the
// model posted its end (failed, closed) or the machine cancelled it.
type dial struct {
	w         fsm.Sender
	url       string
	conn      *relayConn
	ended     bool
	cancelled bool
}

func (d *dial) live() bool { return !d.ended && !d.cancelled }

func (f *relayFake) Connect(w fsm.Sender, urls []string, _ relayfsm.Token) func() {
	d := &dial{w: w}
	if len(urls) > 0 {
		d.url = urls[0]
	}
	f.dials = append(f.dials, d)
	return func() {
		d.cancelled = true
		if d.conn != nil {
			d.conn.dead = true // the worker closes it
		}
	}
}

// current is the newest live dial of url.
func (f *relayFake) current(url string) *dial {
	for i := len(f.dials) - 1; i >= 0; i-- {
		if d := f.dials[i]; d.url == url && d.live() {
			return d
		}
	}
	return nil
}

// stale is the newest cancelled dial of url: its events must be dropped.
func (f *relayFake) stale(url string) *dial {
	for i := len(f.dials) - 1; i >= 0; i-- {
		if d := f.dials[i]; d.url == url && d.cancelled {
			return d
		}
	}
	return nil
}

// relayConn is an authenticated relay connection: the virtual connections
// opened on it and the remotes watched.
type relayConn struct {
	addr    string
	dead    bool
	refuse  bool // the next Open fails
	paths   []*vconn
	watched map[relay.PeerID]bool
}

func newRelayConn(addr string) *relayConn {
	return &relayConn{addr: addr, watched: map[relay.PeerID]bool{}}
}

var errRelayRefused = errors.New("relay: peer connection refused")

func (c *relayConn) Open(r relay.PeerID) (net.Conn, error) {
	if c.refuse || c.dead {
		c.refuse = false
		return nil, errRelayRefused
	}
	v := &vconn{c: c, remote: r}
	c.paths = append(c.paths, v)
	return v, nil
}

func (c *relayConn) Watch(r relay.PeerID)   { c.watched[r] = true }
func (c *relayConn) Unwatch(r relay.PeerID) { delete(c.watched, r) }

// vconn is a virtual connection to a remote on a relay. Nothing reads it
// in the model (the WireGuard fake keeps it only to know where a peer's
// configuration points).
type vconn struct {
	c      *relayConn
	remote relay.PeerID
	closed bool
}

func (v *vconn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (v *vconn) Write(b []byte) (int, error)      { return len(b), nil }
func (v *vconn) Close() error                     { v.closed = true; return nil }
func (v *vconn) LocalAddr() net.Addr              { return vaddr{v} }
func (v *vconn) RemoteAddr() net.Addr             { return vaddr{v} }
func (v *vconn) SetDeadline(time.Time) error      { return nil }
func (v *vconn) SetReadDeadline(time.Time) error  { return nil }
func (v *vconn) SetWriteDeadline(time.Time) error { return nil }

// vaddr is a vconn's address: the peer's relay path wraps the vconn, and
// its RemoteAddr is how the model finds it again.
type vaddr struct{ v *vconn }

func (vaddr) Network() string  { return "relay" }
func (a vaddr) String() string { return a.v.c.addr }

// vconnOf is the vconn under a WireGuard peer's relay connection, if any.
func vconnOf(c net.Conn) *vconn {
	if c == nil {
		return nil
	}
	if a, ok := c.RemoteAddr().(vaddr); ok {
		return a.v
	}
	return nil
}

// paths lists every virtual connection opened on any relay, oldest first.
func (f *relayFake) paths() []*vconn {
	var out []*vconn
	for _, d := range f.dials {
		if d.conn != nil {
			out = append(out, d.conn.paths...)
		}
	}
	return out
}
