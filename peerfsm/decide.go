package peerfsm

import (
	"bytes"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/sigwire"
)

// Controlling reports whether this side is ICE controlling: the side whose
// base64 public key is greater (plain string comparison) controls
// (PROTOCOL.md §5).
func Controlling(own, remote wgtypes.Key) bool { return own.String() > remote.String() }

// credentialsOf extracts the remote's credentials from an offer or answer.
func credentialsOf(m sigwire.Message) Credentials {
	return Credentials{Ufrag: m.Ufrag, Pwd: m.Pwd, SessionID: bytes.Clone(m.SessionID)}
}

// sameSession: the message continues the remote session we know.
func sameSession(known Credentials, haveRemote bool, m sigwire.Message) bool {
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

// Bounds of HandshakeGrace.
const (
	minHandshakeGrace = 150 * time.Millisecond
	maxHandshakeGrace = time.Second
)

// HandshakeGrace is how long the ICE-controlled side of a direct pair waits
// for the controller's WireGuard handshake before it initiates one itself.
//
// Why wait at all: wireguard-go stalls on crossing initiations. A side that
// consumes the other's initiation replaces its own pending one (its index
// goes away), so when both sides send an initiation before either receives
// the other's, both answer as responders, both drop the response to their
// own, and neither has a session until the 5 s retransmit (RekeyTimeout).
// The controlled side learns the selected pair first (on the controller's
// USE-CANDIDATE request), about half an RTT before the controller does; an
// initiation sent at once would cross any controller that initiates within
// that half RTT plus our own processing time, which is the normal case.
//
// Why not wait for the controller alone: an official controller that had
// traffic queued before its endpoint was set is held back by wireguard-go's
// 5 s retry timer (PROTOCOL.md §5), and official controlled peers wait 5 s
// before they set an endpoint. So the controlled side waits a few RTTs
// (never under 150 ms, never over 1 s), then initiates if nothing arrived.
// A controller that initiates normally is heard within that time, and one
// that is held back is not about to send: crossing needs the controller's
// retry to fire within one RTT of our initiation.
func HandshakeGrace(rtt time.Duration) time.Duration {
	return min(max(4*rtt, minHandshakeGrace), maxHandshakeGrace)
}
