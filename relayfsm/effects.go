package relayfsm

import (
	"net/netip"

	"github.com/nbfsm/nbfsm/fsm"
)

// Effects is what the relay machines ask of the world. Calls come from the
// loop goroutine and must not block: they start a worker and return.
type Effects interface {
	// Connect starts a worker that dials the first of urls that
	// authenticates with token and posts, through w, EvUp (Data:
	// Up), then EvHealth for every health check the server sends
	// (the worker has answered it already), then EvClosed (Data: error) when
	// the connection ends; EvConnectFailed (Data: error) if none came up.
	// cancel closes the connection (with a Close message) and ends the
	// worker without waiting for it.
	Connect(w fsm.Sender, urls []string, token Token) (cancel func())
}

// ViaIP is implemented by Effects that can dial a relay at an IP while
// keeping the URL's host for the HTTP Host header and TLS SNI. A foreign
// relay whose user passed the remote's relayServerIP connects through it
// (RELAY.md §5.2: the IP first, then the name by DNS); Effects without it
// dial by name.
type ViaIP interface {
	ConnectVia(w fsm.Sender, url string, ip netip.Addr, token Token) (cancel func())
}
