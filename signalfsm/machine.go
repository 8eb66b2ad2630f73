package signalfsm

import (
	"math/rand/v2"

	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
)

// Kind is the machine kind; the link's id is ID.
const (
	Kind = "signal"
	ID   = "signal"
)

// Server is where the signal link dials: "host:port" and whether to use TLS
// (management's protocol HTTPS) or plaintext (HTTP).
type Server struct {
	Addr string
	TLS  bool
}

// Link is the signal machine's data.
type Link struct {
	// Effects does the I/O; production wires Dialer, tests a recorder.
	Effects Effects
	// Backoff is the retry policy (backoff.Links if zero).
	Backoff backoff.Policy
	// Rand draws the jitter (nil: the global source). Tests seed it.
	Rand *rand.Rand

	Server  Server
	Attempt int    // retries since the last success
	Dials   int    // stream attempts since start
	LastErr string // why the last session ended
	cancel  func()
}

// New adds a signal link machine to loop l under parent (the engine, or nil).
func New(l *fsm.Loop, link *Link, parent fsm.Node) (*fsm.Machine[*Link], error) {
	if link.Backoff == (backoff.Policy{}) {
		link.Backoff = backoff.Links
	}
	return fsm.Add(l, Spec, ID, link, parent)
}

func setServer(m *fsm.Machine[*Link], e fsm.Envelope) {
	if s, ok := e.Data.(Server); ok {
		m.Data.Server = s
	}
}

var serverChanged = &fsm.Guard[*Link]{Name: "changed", Fn: func(m *fsm.Machine[*Link], e fsm.Envelope) bool {
	s, ok := e.Data.(Server)
	return ok && s != m.Data.Server
}}

func startSession(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.NewGeneration()
	m.Data.Dials++
	m.Data.cancel = m.Data.Effects.Connect(m.Worker(), m.Data.Server)
}

func endSession(m *fsm.Machine[*Link], _ fsm.Envelope) {
	if m.Data.cancel != nil {
		m.Data.cancel()
		m.Data.cancel = nil
	}
	// Late events of this session's worker are dropped from now on.
	m.NewGeneration()
}

func connected(m *fsm.Machine[*Link], _ fsm.Envelope) {
	m.Data.Attempt = 0
	m.Data.LastErr = ""
}

func recordErr(m *fsm.Machine[*Link], e fsm.Envelope) {
	if err, ok := e.Data.(error); ok && err != nil {
		m.Data.LastErr = err.Error()
	}
}

func armRetry(m *fsm.Machine[*Link], _ fsm.Envelope) {
	d := m.Data.Backoff.Delay(m.Data.Attempt, m.Data.Rand)
	m.Data.Attempt++
	m.Log().Debug("signal backoff", zap.Int("attempt", m.Data.Attempt), zap.Duration("delay", d), zap.String("err", m.Data.LastErr))
	m.After(d, EvRetry, nil)
}
