package mgmtfsm

import (
	"errors"
	"math/rand/v2"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/link"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/mgmt"
)

// Kind is the machine kind; the link's id is ID.
const (
	Kind = "mgmt"
	ID   = "mgmt"
)

// Link is the management machine's data.
type Link struct {
	Effects Effects
	// Backoff is the retry policy (zero: backoff.Links).
	Backoff backoff.Policy
	Rand    *rand.Rand

	// SetupKey registers this peer when the server does not know it. It is a
	// secret: never logged, never in status.
	SetupKey string

	ServerKey wgtypes.Key
	Maps      mgmt.Serials // of the applied network maps, across sessions
	Stale     int          // maps dropped for a lower serial
	// Core's LastErr is why the link is not synced (status).
	link.Core
}

// RetryPolicy is the link shape's backoff.
func (l *Link) RetryPolicy() (backoff.Policy, *rand.Rand) { return l.Backoff, l.Rand }

// New adds a management link machine to loop l under parent (or nil).
func New(l *fsm.Loop, d *Link, parent fsm.Node) (*fsm.Machine[*Link], error) {
	return fsm.Add(l, Spec, ID, d, parent)
}

func setSetupKey(m *fsm.Machine[*Link], e fsm.Envelope) {
	if k, ok := e.Data.(string); ok {
		m.Data.SetupKey = k
	}
}

// endSession closes the session's connection (its calls' workers are
// cancelled by the states that started them).
func endSession(m *fsm.Machine[*Link], _ fsm.Envelope) { m.Data.Effects.EndSession() }

func fetchKey(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Data.SetCancel(m.Data.Effects.FetchKey(m.Worker()))
}

func setServerKey(m *fsm.Machine[*Link], e fsm.Envelope) {
	if k, ok := e.Data.(wgtypes.Key); ok {
		m.Data.ServerKey = k
	}
}

func login(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Data.SetCancel(m.Data.Effects.Login(m.Worker(), m.Data.ServerKey, ""))
}

func register(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Data.SetCancel(m.Data.Effects.Login(m.Worker(), m.Data.ServerKey, m.Data.SetupKey))
}

var hasSetupKey = &fsm.Guard[*Link]{Name: "has-setup-key", Fn: func(m *fsm.Machine[*Link], _ fsm.Envelope) bool {
	return m.Data.SetupKey != ""
}}

func loggedIn(m *fsm.Machine[*Link], e fsm.Envelope) {
	m.Data.LastErr = ""
	if r, ok := e.Data.(*mgmt.LoginResult); ok {
		m.Notify(NotifyLogin, r)
	}
}

func openSync(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Data.SetCancel(m.Data.Effects.Sync(m.Worker(), m.Data.ServerKey))
}

func synced(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Data.Succeeded()
}

func updateOf(e fsm.Envelope) (mgmt.Update, bool) {
	u, ok := e.Data.(mgmt.Update)
	return u, ok
}

// freshMap: the update carries a map not older than the applied one.
var freshMap = &fsm.Guard[*Link]{Name: "fresh-map", Fn: func(m *fsm.Machine[*Link], e fsm.Envelope) bool {
	u, ok := updateOf(e)
	return ok && u.Map != nil && !m.Data.Maps.Stale(u.Map.Serial)
}}

// staleMap: the update carries a map older than the applied one.
var staleMap = &fsm.Guard[*Link]{Name: "stale-map", Fn: func(m *fsm.Machine[*Link], e fsm.Envelope) bool {
	u, ok := updateOf(e)
	return ok && u.Map != nil && m.Data.Maps.Stale(u.Map.Serial)
}}

func dropStale(m *fsm.Machine[*Link], e fsm.Envelope) {
	m.Data.Stale++
	u, _ := updateOf(e)
	applied, _ := m.Data.Maps.Last()
	m.Log().Debug("stale network map dropped", zap.Uint64("serial", u.Map.Serial), zap.Uint64("applied", applied))
}

func applyUpdate(m *fsm.Machine[*Link], e fsm.Envelope) {
	u, ok := updateOf(e)
	if !ok {
		return
	}
	if u.Config != nil {
		m.Notify(NotifyConfig, u.Config)
	}
	if u.Map != nil {
		m.Data.Maps.Take(u.Map.Serial)
		m.Notify(NotifyMap, u.Map)
	}
}

func needsLogin(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Log().Info("management: login needed (setup key missing or rejected); waiting for a new setup key",
		zap.String("err", m.Data.LastErr))
}

// LoginEvent classifies the result of one Login call into the event the
// machine understands: a pure decision, tested from a table.
func LoginEvent(err error) fsm.Event {
	switch {
	case err == nil:
		return EvLoginOK
	case errors.Is(err, mgmt.ErrNotRegistered):
		return EvNotRegistered
	case errors.Is(err, mgmt.ErrSetupKeyRejected):
		return EvKeyRejected
	default:
		return EvFailed
	}
}
