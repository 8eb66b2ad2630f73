package modelcheck

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/peerfsm"
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
	offers int
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
	return nil
}

func (f *peersFake) RemovePeer(k wgtypes.Key) error {
	delete(f.wg, k)
	delete(f.failed, k)
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
func (f *peersFake) RelayLastReceive(wgtypes.Key) time.Time              { return time.Time{} } // the model opens no relay bridge
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
