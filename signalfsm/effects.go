package signalfsm

import "github.com/nbfsm/nbfsm/fsm"

// Effects is what the signal machine asks of the world. Calls come from the
// loop goroutine and must not block: they start a worker and return.
type Effects interface {
	// Connect starts a worker that opens the stream to srv and posts, through
	// w, EvUp when the registered header arrives, then EvStreamClosed when
	// the stream ends, or EvConnectFailed if it never came up. Incoming
	// messages go straight to the peer machines (see Dialer.Deliver), not to
	// this machine. cancel ends the worker without waiting for it.
	Connect(w fsm.Sender, srv Server) (cancel func())
}
