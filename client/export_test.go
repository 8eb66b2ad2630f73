package client

import (
	"sync"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// Test hooks of the relay integration tests (relay_test.go). They exist in
// the test binary only.

// Socket is the client's shared socket (its SetFault drops a direct path).
func (c *Client) Socket() *sharedsock.Socket { return c.sock }

// SetPeerPathTimeout makes every peer machine of c use d as its direct
// path timeout instead of peerfsm.PathTimeout (75 s), so that a test sees
// a lost direct path within d. It is set on the peer's first transition
// (long before a direct path is held). Call before Start.
func (c *Client) SetPeerPathTimeout(d time.Duration) {
	l := c.Loop()
	l.Observe(fsm.ObserverFunc(func(r fsm.Record) {
		if r.Kind != peerfsm.Kind {
			return
		}
		if m, ok := l.Machine(r.Machine).(*fsm.Machine[*peerfsm.Peer]); ok && m.Data.PathTimeout != d {
			m.Data.PathTimeout = d
		}
	}))
}

// ICEGate holds back the remote candidates of every ICE agent of a client
// until Release: agents start, gather and signal their own candidates, but
// without the remote's none can check a pair, so no direct path is found
// (nor a peer-reflexive one, when both sides are gated). After Release the
// held candidates and all later ones go to the agents.
type ICEGate struct {
	loop *fsm.Loop
	mu   sync.Mutex
	open bool
	held []heldCandidate
}

type heldCandidate struct {
	h peerfsm.ICEHandle
	c string
}

// GateICE installs a closed gate on c's ICE agents. Call before Start.
func (c *Client) GateICE() *ICEGate {
	g := &ICEGate{loop: c.Loop()}
	c.WrapPeers(func(p peerfsm.Effects) peerfsm.Effects { return gatedPeers{Effects: p, g: g} })
	return g
}

// Release opens the gate: the held candidates go to their agents (in the
// loop goroutine, as the machines hand them over).
func (g *ICEGate) Release() {
	g.mu.Lock()
	g.open = true
	held := g.held
	g.held = nil
	g.mu.Unlock()
	_ = g.loop.Do(func() {
		for _, x := range held {
			x.h.AddRemoteCandidate(x.c)
		}
	})
}

type gatedPeers struct {
	peerfsm.Effects
	g *ICEGate
}

func (p gatedPeers) StartICE(w fsm.Sender, a peerfsm.Agent) peerfsm.ICEHandle {
	early := a.Candidates
	a.Candidates = nil
	h := &gatedHandle{ICEHandle: p.Effects.StartICE(w, a), g: p.g}
	for _, c := range early {
		h.AddRemoteCandidate(c)
	}
	return h
}

type gatedHandle struct {
	peerfsm.ICEHandle
	g *ICEGate
}

func (h *gatedHandle) AddRemoteCandidate(c string) {
	h.g.mu.Lock()
	if !h.g.open {
		h.g.held = append(h.g.held, heldCandidate{h: h.ICEHandle, c: c})
		h.g.mu.Unlock()
		return
	}
	h.g.mu.Unlock()
	h.ICEHandle.AddRemoteCandidate(c)
}
