package engine

import (
	"errors"
	"net/netip"
	"slices"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// ErrLocalAddrGone is why a peer re-gathers: the local address of its
// selected ICE pair left the host.
var ErrLocalAddrGone = errors.New("engine: the local address of the path is gone")

// PathsChanged re-checks connected peers after the OS network changed (the
// network monitor calls it; the engine is not restarted). A peer whose
// selected pair used a local address in gone re-gathers and re-offers: its
// session fails over to the peer machine's backoff and a new session. Every
// other peer on a direct path gets its path check now instead of at its
// timer: it keeps the path while WireGuard still hears from the remote
// (WireGuard roams), and re-offers at once if it does not.
func (e *Engine) PathsChanged(gone []netip.Addr) error {
	var fail, check []string
	err := e.loop.Do(func() {
		e.m.Children(peerfsm.Kind, func(n fsm.Node) bool {
			pm, ok := n.(*fsm.Machine[*peerfsm.Peer])
			if !ok || !pm.In(peerfsm.Connected) {
				return true
			}
			if local := pm.Data.Pair.Local; local.IsValid() && slices.Contains(gone, local.Addr().Unmap()) {
				fail = append(fail, pm.ID())
			} else if pm.In(peerfsm.Direct) {
				check = append(check, pm.ID())
			}
			return true
		})
	})
	if err != nil {
		return err
	}
	for _, id := range fail {
		if err := e.loop.Post(fsm.Envelope{To: id, Event: peerfsm.EvICEFailed, Data: ErrLocalAddrGone}); err != nil {
			return err
		}
	}
	for _, id := range check {
		if err := e.loop.Post(fsm.Envelope{To: id, Event: peerfsm.EvPathCheck}); err != nil {
			return err
		}
	}
	return nil
}
