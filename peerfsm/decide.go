package peerfsm

import (
	"bytes"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/signal"
)

// Controlling reports whether this side is ICE controlling: the side whose
// base64 public key is greater (plain string comparison) controls
// (PROTOCOL.md §5).
func Controlling(own, remote wgtypes.Key) bool { return own.String() > remote.String() }

// credentialsOf extracts the remote's credentials from an offer or answer.
func credentialsOf(m signal.Message) Credentials {
	return Credentials{Ufrag: m.Ufrag, Pwd: m.Pwd, SessionID: bytes.Clone(m.SessionID)}
}

// sameSession: the message continues the remote session we know.
func sameSession(known Credentials, haveRemote bool, m signal.Message) bool {
	return haveRemote && len(m.SessionID) > 0 && bytes.Equal(known.SessionID, m.SessionID)
}

// PathVerdict decides, when a direct path's check timer fires, whether the
// path is alive and when to look again. A path is alive while something
// arrived from the remote within timeout (WireGuard keepalives every 25 s,
// official peers' STUN checks every 4 s); the path's start counts as the
// first arrival, so a path that never carried anything dies after timeout.
func PathVerdict(now, last, since time.Time, timeout time.Duration) (alive bool, next time.Duration) {
	if last.Before(since) {
		last = since
	}
	idle := now.Sub(last)
	if idle >= timeout {
		return false, 0
	}
	return true, timeout - idle
}
