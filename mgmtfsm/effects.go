package mgmtfsm

import (
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
)

// Effects is what the management machine asks of the world. Calls come from
// the loop goroutine and must not block: each starts one worker that posts
// its result through w, and returns a cancel that ends it without waiting.
// The calls of one session share one connection; EndSession closes it.
type Effects interface {
	// FetchKey posts EvKey (Data: wgtypes.Key) or EvFailed.
	FetchKey(w fsm.Sender) (cancel func())
	// Login posts the event LoginEvent gives for its result (EvLoginOK with
	// *mgmt.LoginResult, EvNotRegistered, EvKeyRejected, EvFailed).
	Login(w fsm.Sender, serverKey wgtypes.Key, setupKey string) (cancel func())
	// Sync posts EvUpdate (Data: mgmt.Update) for each message of the
	// stream, then EvStreamClosed.
	Sync(w fsm.Sender, serverKey wgtypes.Key) (cancel func())
	// EndSession closes the session's connection.
	EndSession()
}
