package signalfsm

import (
	"math/rand/v2"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/link"
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
	// Backoff is the retry policy (zero: backoff.Links).
	Backoff backoff.Policy
	// Rand draws the jitter (nil: the global source). Tests seed it.
	Rand *rand.Rand

	Server Server
	link.Core
}

// RetryPolicy is the link shape's backoff.
func (l *Link) RetryPolicy() (backoff.Policy, *rand.Rand) { return l.Backoff, l.Rand }

// New adds a signal link machine to loop l under parent (the engine, or nil).
func New(l *fsm.Loop, d *Link, parent fsm.Node) (*fsm.Machine[*Link], error) {
	return fsm.Add(l, Spec, ID, d, parent)
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

func connect(m *fsm.Machine[*Link]) func() { return m.Data.Effects.Connect(m.Worker(), m.Data.Server) }

func connected(m *fsm.Machine[*Link], _ fsm.Envelope) { m.Data.Succeeded() }
