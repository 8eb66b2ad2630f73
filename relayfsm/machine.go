package relayfsm

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/link"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/relayuse"
)

// Kind is the machine kind of the home link; its id is ID.
const (
	Kind = "relay"
	ID   = relayuse.ID
)

// Token is the relay token as management hands it out. It is a secret:
// String never prints it.
type Token struct {
	Payload, Signature string
}

// String shows whether a token is present, never the token.
func (t Token) String() string {
	if t.Payload == "" && t.Signature == "" {
		return "none"
	}
	return "<redacted>"
}

// Config is what the link connects with: management's relay URLs and token.
type Config struct {
	URLs  []string
	Token Token
}

// ConfigOf converts management's RelayConfig.
func ConfigOf(r mgmt.RelayConfig) Config {
	return Config{URLs: slices.Clone(r.URLs), Token: Token{Payload: r.TokenPayload, Signature: r.TokenSignature}}
}

func (c Config) usable() bool {
	return len(c.URLs) > 0 && c.Token.Payload != "" && c.Token.Signature != ""
}

// Use, Ready and Opener are the contract with the relay's users
// (internal/relayuse).
type (
	Use    = relayuse.Use
	Ready  = relayuse.Ready
	Opener = relayuse.Opener
)

// Conn is what the machines use of an authenticated relay connection: its
// users' virtual connections (Open) and the peer-state subscriptions.
// Production's is a *relay.Conn (UpOf); the model check plays a fake.
type Conn interface {
	Opener
	Watch(remote relay.PeerID)
	Unwatch(remote relay.PeerID)
}

// Up is what EvUp carries: the authenticated connection and what the
// machine keeps of it.
type Up struct {
	Conn     Conn
	Addr     string // instance address from the AuthResponse
	ServerIP netip.Addr
	URL      string // the URL dialed
}

// UpOf describes an authenticated connection.
func UpOf(c *relay.Conn) Up {
	return Up{Conn: relayConn{c}, Addr: c.InstanceAddr(), ServerIP: c.ServerIP(), URL: c.URL()}
}

// relayConn is a *relay.Conn as a Conn.
type relayConn struct{ *relay.Conn }

func (c relayConn) Open(remote relay.PeerID) (net.Conn, error) { return c.OpenPeer(remote) }

// Link is the home relay link's data.
type Link struct {
	// Effects does the I/O; production wires Dialer, tests a recorder.
	Effects Effects
	// Backoff is the retry policy (zero: backoff.Links).
	Backoff backoff.Policy
	// Rand draws the jitter (nil: the global source).
	Rand *rand.Rand
	// HealthWindow overrides relay.HealthWindow (tests shorten it).
	HealthWindow time.Duration
	// Linger overrides the time an unused foreign relay stays open.
	Linger time.Duration

	Config   Config
	Addr     string     // instance address of the last AuthResponse
	ServerIP netip.Addr // of the connected server, for relayServerIP
	URL      string     // the URL the current connection was dialed with

	link.Core

	conn    Conn
	hc      fsm.TimerID
	users   map[string]relay.PeerID           // peer machine ids on the home relay → their remote
	away    map[string]string                 // peer machine ids on a foreign relay → its address
	foreign map[string]*fsm.Machine[*Foreign] // by instance address
}

// RetryPolicy is the link shape's backoff.
func (l *Link) RetryPolicy() (backoff.Policy, *rand.Rand) { return l.Backoff, l.Rand }

// New adds a home relay link machine to loop l under parent (or nil).
func New(l *fsm.Loop, d *Link, parent fsm.Node) (*fsm.Machine[*Link], error) {
	d.users = map[string]relay.PeerID{}
	d.away = map[string]string{}
	d.foreign = map[string]*fsm.Machine[*Foreign]{}
	return fsm.Add(l, Spec, ID, d, parent)
}

// Conn is the home connection while connected (nil otherwise).
func (l *Link) Conn() Conn { return l.conn }

// Holders lists the peer machines that hold the home relay, sorted.
func (l *Link) Holders() []string { return sortedUsers(l.users) }

// Users is how many peers use the home relay.
func (l *Link) Users() int { return len(l.users) }

// Foreign lists the foreign relay machines, sorted by address.
func (l *Link) Foreign() []*fsm.Machine[*Foreign] {
	out := make([]*fsm.Machine[*Foreign], 0, len(l.foreign))
	for _, f := range l.foreign {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b *fsm.Machine[*Foreign]) int {
		if a.Data.Addr < b.Data.Addr {
			return -1
		}
		if a.Data.Addr > b.Data.Addr {
			return 1
		}
		return 0
	})
	return out
}

func (l *Link) healthWindow() time.Duration {
	if l.HealthWindow > 0 {
		return l.HealthWindow
	}
	return relay.HealthWindow
}

var configured = &fsm.Guard[*Link]{Name: "configured", Fn: func(_ *fsm.Machine[*Link], e fsm.Envelope) bool {
	c, ok := e.Data.(Config)
	return ok && c.usable()
}}

func setConfig(m *fsm.Machine[*Link], e fsm.Envelope) {
	c, ok := e.Data.(Config)
	if !ok {
		return
	}
	if len(c.URLs) == 0 {
		c.URLs = m.Data.Config.URLs // a token refresh without URLs keeps them
	}
	m.Data.Config = c
}

func connect(m *fsm.Machine[*Link]) func() {
	return m.Data.Effects.Connect(m.Worker(), m.Data.Config.URLs, m.Data.Config.Token)
}

func keepConn(m *fsm.Machine[*Link], e fsm.Envelope) {
	if s, ok := e.Data.(Up); ok {
		m.Data.conn = s.Conn
		m.Data.Addr = s.Addr
		m.Data.ServerIP = s.ServerIP
		m.Data.URL = s.URL
	}
}

func connected(m *fsm.Machine[*Link], _ fsm.Envelope) {
	l := m.Data
	l.Succeeded()
	l.hc = m.After(l.healthWindow(), EvSilent, nil)
	m.Log().Info("relay connected", zap.String("address", l.Addr), zap.Int("users", len(l.users)))
	ready := Ready{Addr: l.Addr, Conn: l.conn}
	for _, id := range sortedUsers(l.users) {
		watch(l.conn, l.users[id])
		m.Send(id, EvReady, ready)
	}
}

func disconnected(m *fsm.Machine[*Link], _ fsm.Envelope) {
	l := m.Data
	l.conn = nil
	for _, id := range sortedUsers(l.users) {
		m.Send(id, EvLost, l.Addr)
	}
}

func rearmHealth(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Cancel(m.Data.hc)
	m.Data.hc = m.After(m.Data.healthWindow(), EvSilent, nil)
}

// ErrSilent: no health check arrived within the window.
var ErrSilent = errors.New("relay: no health check from the server within the window")

func recordSilence(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Data.LastErr = ErrSilent.Error()
}

// isHome: the address names the home relay (exact string equality with the
// AuthResponse address, as official peers compare).
func (l *Link) isHome(addr string) bool { return addr == "" || addr == l.Addr }

// acquire routes a peer's acquire to the home relay or a foreign one, and
// remembers where: a peer holds one relay, and its release goes where its
// acquire went. The release's address cannot route it: the home relay may
// have come back as another instance since (its old address is no longer
// home's), and that peer would have stayed a holder of the home relay for
// good (found by the model check).
func acquire(m *fsm.Machine[*Link], e fsm.Envelope) {
	u, ok := e.Data.(Use)
	if !ok || u.Peer == "" {
		return
	}
	l := m.Data
	if l.isHome(u.Addr) {
		leaveForeign(m, u)
		rewatch(l.conn, l.users, u)
		if m.In(Connected) {
			m.Send(u.Peer, EvReady, Ready{Addr: l.Addr, Conn: l.conn})
		}
		return
	}
	if m.In(Stopped) {
		return
	}
	f := l.foreign[u.Addr]
	if f == nil {
		var err error
		f, err = addForeign(m, u.Addr, u.IP)
		if err != nil {
			m.Log().Warn("unexpected: cannot add foreign relay", zap.String("address", u.Addr), zap.Error(err))
			return
		}
	}
	leaveHome(l, u.Peer)
	if prev, ok := l.away[u.Peer]; ok && prev != u.Addr {
		leaveForeign(m, u)
	}
	l.away[u.Peer] = u.Addr
	m.Send(f.ID(), EvAcquire, u)
}

func release(m *fsm.Machine[*Link], e fsm.Envelope) {
	u, ok := e.Data.(Use)
	if !ok {
		return
	}
	leaveForeign(m, u)
	leaveHome(m.Data, u.Peer)
}

// leaveHome ends the peer's hold of the home relay, if it has one.
func leaveHome(l *Link, peer string) {
	if r, ok := l.users[peer]; ok {
		unwatch(l.conn, r)
		delete(l.users, peer)
	}
}

// leaveForeign ends the peer's hold of the foreign relay it acquired, if
// any (its machine may be gone already).
func leaveForeign(m *fsm.Machine[*Link], u Use) {
	addr, ok := m.Data.away[u.Peer]
	if !ok {
		return
	}
	delete(m.Data.away, u.Peer)
	if f := m.Data.foreign[addr]; f != nil {
		u.Addr = addr
		m.Send(f.ID(), EvRelease, u)
	}
}

func reapForeign(m *fsm.Machine[*Link], e fsm.Envelope) {
	addr, ok := e.Data.(string)
	if !ok {
		return
	}
	if f := m.Data.foreign[addr]; f != nil && f.In(ForeignClosed) {
		delete(m.Data.foreign, addr)
		m.Loop().Remove(f.ID())
	}
}

func stopForeign(m *fsm.Machine[*Link], _ fsm.Envelope) {
	for _, f := range m.Data.foreign {
		m.Send(f.ID(), EvStop, nil)
	}
}

func sortedUsers(u map[string]relay.PeerID) []string {
	out := make([]string, 0, len(u))
	for id := range u {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// Peer-state subscriptions (RELAY.md §3.7): a use with a Remote watches it
// on the connection (relay.Conn.Watch: in-process, its reader goroutine
// writes the Subscribe); the relay's PeersOnline and PeersWentOffline go to
// the users whose remote they name.

func watch(c Conn, r relay.PeerID) {
	if c != nil && r != (relay.PeerID{}) {
		c.Watch(r)
	}
}

func unwatch(c Conn, r relay.PeerID) {
	if c != nil && r != (relay.PeerID{}) {
		c.Unwatch(r)
	}
}

// rewatch records u in users and moves the watch if its remote changed.
func rewatch(c Conn, users map[string]relay.PeerID, u Use) {
	prev, had := users[u.Peer]
	users[u.Peer] = u.Remote
	if had && prev == u.Remote {
		return
	}
	if had {
		unwatch(c, prev)
	}
	watch(c, u.Remote)
}

// tellUsers sends ev (Data: the relay's address) to the users whose remote
// is among the ids of e.
func tellUsers(send func(string, fsm.Event, any), users map[string]relay.PeerID, addr string, ev fsm.Event, e fsm.Envelope) {
	ids, ok := e.Data.([]relay.PeerID)
	if !ok {
		return
	}
	for _, id := range sortedUsers(users) {
		if slices.Contains(ids, users[id]) {
			send(id, ev, addr)
		}
	}
}

func tellOnline(m *fsm.Machine[*Link], e fsm.Envelope) {
	tellUsers(m.Send, m.Data.users, m.Data.Addr, EvRemoteOnline, e)
}

func tellOffline(m *fsm.Machine[*Link], e fsm.Envelope) {
	tellUsers(m.Send, m.Data.users, m.Data.Addr, EvRemoteOffline, e)
}
