package daemon

import (
	"sync"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Counters is an fsm.Observer of every engine the daemon runs: transitions
// per machine kind and state entered, peers' send failures, link
// reconnects. Observe runs in the loop goroutine; readers take the lock.
type Counters struct {
	mu          sync.Mutex
	transitions map[[2]string]uint64 // {kind, state}
	sendFailed  uint64
	reconnects  map[string]uint64
	netChanges  uint64
}

// NewCounters returns zeroed counters.
func NewCounters() *Counters {
	return &Counters{transitions: map[[2]string]uint64{}, reconnects: map[string]uint64{}}
}

// Observe counts r.
func (c *Counters) Observe(r fsm.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Kind == peerfsm.Kind && r.Event == peerfsm.EvSendFailed {
		c.sendFailed++
	}
	if r.Kind == engine.Kind && r.Event == engine.EvNetworkChanged {
		c.netChanges++
	}
	if r.Internal {
		return
	}
	c.transitions[[2]string{r.Kind, string(r.To)}]++
	switch {
	case r.Kind == mgmtfsm.Kind && r.From == mgmtfsm.Backoff && r.To != mgmtfsm.Stopped,
		r.Kind == signalfsm.Kind && r.From == signalfsm.Backoff && r.To != signalfsm.Stopped:
		c.reconnects[r.Kind]++
	case r.Kind == mgmtfsm.Kind && r.Event == mgmtfsm.EvNetworkUp && r.From != r.To:
		c.reconnects[r.Kind]++ // a re-dial on network up, without backoff
	}
}

// CountersSnapshot is a copy of the counters.
type CountersSnapshot struct {
	Transitions    map[[2]string]uint64
	SendFailures   uint64
	Reconnects     map[string]uint64
	NetworkChanges uint64
}

// Snapshot copies the counters.
func (c *Counters) Snapshot() CountersSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := CountersSnapshot{Transitions: make(map[[2]string]uint64, len(c.transitions)), SendFailures: c.sendFailed,
		Reconnects: make(map[string]uint64, len(c.reconnects)), NetworkChanges: c.netChanges}
	for k, v := range c.transitions {
		s.Transitions[k] = v
	}
	for k, v := range c.reconnects {
		s.Reconnects[k] = v
	}
	return s
}

// SignalRejected names the signal drop counters by reason.
func SignalRejected(s sigwire.StatsSnapshot) map[string]uint64 {
	return map[string]uint64{"bad-sender": s.BadSender, "not-for-us": s.NotForUs, "unknown-sender": s.UnknownSender,
		"oversize": s.Oversize, "short-body": s.ShortBody, "decrypt": s.Decrypt, "decode": s.Decode,
		"unknown-type": s.UnknownType, "bad-payload": s.BadPayload, "other": s.Other}
}
