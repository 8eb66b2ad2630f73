package relayfsm

import (
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/relay"
)

// ForeignKind is the machine kind of a foreign relay; ForeignID its id.
const ForeignKind = "relay-foreign"

// ForeignID is the machine id of the foreign relay at instance address addr.
func ForeignID(addr string) string { return "relay/" + addr }

// Linger is how long an unused foreign relay stays open (RELAY.md §4:
// upstream closes unused ones older than 5 s).
const Linger = 5 * time.Second

// States of a foreign relay.
const (
	Open           fsm.State = "open"
	ForeignDialing fsm.State = "open.connecting"
	ForeignUp      fsm.State = "open.connected"
	ForeignUsed    fsm.State = "open.connected.used"
	ForeignUnused  fsm.State = "open.connected.unused"
	ForeignClosed  fsm.State = "closed"
)

// EvLinger is the timer of an unused foreign relay.
const EvLinger fsm.Event = "linger"

var foreignEvents = []fsm.Event{EvStop, EvUp, EvConnectFailed, EvClosed, EvHealth, EvSilent, EvAcquire, EvRelease, EvLinger,
	EvPeersOnline, EvPeersOffline}

// Foreign is a foreign relay machine's data.
type Foreign struct {
	Effects      Effects
	Addr         string     // instance address, also the URL dialed
	IP           netip.Addr // relayServerIP of the first user's remote: dialed first (RELAY.md §5.2)
	Token        Token
	HealthWindow time.Duration
	Linger       time.Duration
	LastErr      string

	conn   Conn
	cancel func()
	hc     fsm.TimerID
	users  map[string]relay.PeerID
}

// Users is how many peers use the foreign relay.
func (f *Foreign) Users() int { return len(f.users) }

// Holders lists the peer machines that hold the foreign relay, sorted.
func (f *Foreign) Holders() []string { return sortedUsers(f.users) }

func addForeign(m *fsm.Machine[*Link], addr string, ip netip.Addr) (*fsm.Machine[*Foreign], error) {
	l := m.Data
	f := &Foreign{Effects: l.Effects, Addr: addr, IP: ip, Token: l.Config.Token, HealthWindow: l.HealthWindow,
		Linger: l.Linger, users: map[string]relay.PeerID{}}
	fm, err := fsm.Add(m.Loop(), ForeignSpec, ForeignID(addr), f, m)
	if err != nil {
		return nil, err
	}
	l.foreign[addr] = fm
	return fm, nil
}

// ForeignSpec is a foreign relay. Its diagram is docs/diagrams/relay-foreign.md.
var ForeignSpec = fsm.MustCompile(fsm.Spec[*Foreign]{
	Kind: ForeignKind,
	Doc: "A foreign relay: the controller of a pairing lives on another relay server. Opened on the first " +
		"acquire with the home link's identity and token; users are told when it is connected. Unused, it " +
		"lingers for one timer, then closes; a failed dial, a drop or a silent server closes it too (the next " +
		"acquire opens a new one, as upstream evicts and re-dials). Closed, the home link reaps it.",
	Initial: Open,
	Events:  foreignEvents,
	States: []fsm.StateDef[*Foreign]{
		{Name: Open, Initial: ForeignDialing, Doc: "one connection: a worker", Entry: foreignDial, Exit: foreignHangUp},
		{Name: ForeignDialing, Parent: Open, Doc: "dialing and authenticating",
			Ignore: []fsm.Event{EvHealth, EvSilent, EvLinger, EvPeersOnline, EvPeersOffline}},
		{Name: ForeignUp, Parent: Open, Initial: ForeignUsed, Doc: "authenticated; one health-check deadline", Entry: foreignConnected,
			Ignore: []fsm.Event{EvUp, EvConnectFailed}},
		{Name: ForeignUsed, Parent: ForeignUp, Doc: "peers use it", Ignore: []fsm.Event{EvLinger}},
		{Name: ForeignUnused, Parent: ForeignUp, Doc: "nobody uses it: one linger timer", Entry: armLinger},
		{Name: ForeignClosed, Doc: "closed: users told; the home link reaps the machine", Entry: foreignGone,
			Ignore: []fsm.Event{EvStop, EvUp, EvConnectFailed, EvClosed, EvHealth, EvSilent, EvRelease, EvLinger,
				EvPeersOnline, EvPeersOffline}},
	},
	Transitions: []fsm.Transition[*Foreign]{
		{From: Open, Event: EvAcquire, Action: addUser},
		{From: Open, Event: EvRelease, Action: removeUser},
		{From: Open, Event: EvStop, To: ForeignClosed},
		{From: Open, Event: EvClosed, To: ForeignClosed, Action: foreignErr},
		{From: ForeignDialing, Event: EvUp, Guard: hasUsers, To: ForeignUsed, Action: foreignKeep},
		{From: ForeignDialing, Event: EvUp, To: ForeignUnused, Action: foreignKeep, Doc: "every user left while dialing"},
		{From: ForeignDialing, Event: EvConnectFailed, To: ForeignClosed, Action: foreignErr},
		{From: ForeignUp, Event: EvHealth, Action: foreignRearmHealth},
		{From: ForeignUp, Event: EvPeersOnline, Action: foreignTellOnline, Doc: "watched remotes came: their users are told"},
		{From: ForeignUp, Event: EvPeersOffline, Action: foreignTellOffline},
		{From: ForeignUp, Event: EvSilent, To: ForeignClosed, Action: foreignSilence},
		{From: ForeignUsed, Event: EvRelease, Guard: lastUser, To: ForeignUnused, Action: removeUser},
		{From: ForeignUnused, Event: EvAcquire, Guard: isUse, To: ForeignUsed, Action: addUser,
			Doc: "a user (an acquire without one changes nothing: open's row)"},
		{From: ForeignUnused, Event: EvLinger, To: ForeignClosed},
		{From: ForeignClosed, Event: EvAcquire, Action: requeue,
			Doc: "raced with the close: back to the home link, which reaps this machine first and opens a new one"},
	},
})

var hasUsers = &fsm.Guard[*Foreign]{Name: "users", Fn: func(m *fsm.Machine[*Foreign], _ fsm.Envelope) bool {
	return len(m.Data.users) > 0
}}

// isUse: the event carries a Use (a user to add).
var isUse = &fsm.Guard[*Foreign]{Name: "use", Fn: func(_ *fsm.Machine[*Foreign], e fsm.Envelope) bool {
	u, ok := e.Data.(Use)
	return ok && u.Peer != ""
}}

var lastUser = &fsm.Guard[*Foreign]{Name: "last-user", Fn: func(m *fsm.Machine[*Foreign], e fsm.Envelope) bool {
	u, ok := e.Data.(Use)
	if !ok {
		return false
	}
	_, in := m.Data.users[u.Peer]
	return in && len(m.Data.users) == 1
}}

func (f *Foreign) healthWindow() time.Duration {
	if f.HealthWindow > 0 {
		return f.HealthWindow
	}
	return relay.HealthWindow
}

func (f *Foreign) linger() time.Duration {
	if f.Linger > 0 {
		return f.Linger
	}
	return Linger
}

func foreignDial(m *fsm.Machine[*Foreign], _ fsm.Envelope) {
	m.NewGeneration()
	f := m.Data
	if v, ok := f.Effects.(ViaIP); ok && f.IP.IsValid() {
		f.cancel = v.ConnectVia(m.Worker(), f.Addr, f.IP, f.Token)
		return
	}
	f.cancel = f.Effects.Connect(m.Worker(), []string{f.Addr}, f.Token)
}

func foreignHangUp(m *fsm.Machine[*Foreign], _ fsm.Envelope) {
	if m.Data.cancel != nil {
		m.Data.cancel()
		m.Data.cancel = nil
	}
	m.Data.conn = nil
	m.NewGeneration()
}

func foreignKeep(m *fsm.Machine[*Foreign], e fsm.Envelope) {
	if s, ok := e.Data.(Up); ok {
		m.Data.conn = s.Conn
	}
}

func foreignConnected(m *fsm.Machine[*Foreign], _ fsm.Envelope) {
	f := m.Data
	f.LastErr = ""
	f.hc = m.After(f.healthWindow(), EvSilent, nil)
	m.Log().Debug("foreign relay connected", zap.String("address", f.Addr), zap.Int("users", len(f.users)))
	for _, id := range sortedUsers(f.users) {
		watch(f.conn, f.users[id])
		m.Send(id, EvReady, Ready{Addr: f.Addr, Conn: f.conn})
	}
}

func foreignTellOnline(m *fsm.Machine[*Foreign], e fsm.Envelope) {
	tellUsers(m.Send, m.Data.users, m.Data.Addr, EvRemoteOnline, e)
}

func foreignTellOffline(m *fsm.Machine[*Foreign], e fsm.Envelope) {
	tellUsers(m.Send, m.Data.users, m.Data.Addr, EvRemoteOffline, e)
}

// foreignRearmHealth re-arms the health deadline as connected's (not the
// leaf's): a deadline re-armed while used must survive the move to unused
// and back, or a relay re-acquired after a health check has none and a
// silent server is never noticed (found by FuzzRelayLink).
func foreignRearmHealth(m *fsm.Machine[*Foreign], _ fsm.Envelope) {
	m.Cancel(m.Data.hc)
	m.Data.hc = m.AfterIn(ForeignUp, m.Data.healthWindow(), EvSilent, nil)
}

func addUser(m *fsm.Machine[*Foreign], e fsm.Envelope) {
	u, ok := e.Data.(Use)
	if !ok || u.Peer == "" {
		return
	}
	rewatch(m.Data.conn, m.Data.users, u)
	if m.In(ForeignUp) {
		m.Send(u.Peer, EvReady, Ready{Addr: m.Data.Addr, Conn: m.Data.conn})
	}
}

func removeUser(m *fsm.Machine[*Foreign], e fsm.Envelope) {
	if u, ok := e.Data.(Use); ok {
		if r, in := m.Data.users[u.Peer]; in {
			unwatch(m.Data.conn, r)
			delete(m.Data.users, u.Peer)
		}
	}
}

func armLinger(m *fsm.Machine[*Foreign], _ fsm.Envelope) {
	m.After(m.Data.linger(), EvLinger, nil)
}

func foreignErr(m *fsm.Machine[*Foreign], e fsm.Envelope) {
	if err, ok := e.Data.(error); ok && err != nil {
		m.Data.LastErr = err.Error()
	}
}

func foreignSilence(m *fsm.Machine[*Foreign], _ fsm.Envelope) { m.Data.LastErr = ErrSilent.Error() }

func foreignGone(m *fsm.Machine[*Foreign], _ fsm.Envelope) {
	f := m.Data
	for _, id := range sortedUsers(f.users) {
		m.Send(id, EvLost, f.Addr)
	}
	clear(f.users)
	m.Log().Debug("foreign relay closed", zap.String("address", f.Addr), zap.String("err", f.LastErr))
	m.Notify(EvForeignClosed, f.Addr)
}

func requeue(m *fsm.Machine[*Foreign], e fsm.Envelope) { m.Notify(EvAcquire, e.Data) }
