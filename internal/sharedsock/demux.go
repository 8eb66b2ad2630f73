package sharedsock

import (
	"encoding/binary"

	"github.com/pion/stun"
)

// Class is what the demultiplexer decided a datagram is.
type Class int

// Datagram classes. The order of the checks in Classify is the order here:
// WireGuard first because it is the hot path.
const (
	// ClassWireGuard is a WireGuard message: at least 32 bytes whose first
	// four bytes are the little-endian message type 1..4 (initiation,
	// response, cookie reply, transport data). It goes to wireguard-go.
	ClassWireGuard Class = iota
	// ClassSTUN is a STUN message (RFC 5389 magic cookie at bytes 4..8).
	// It goes to the STUN responder or to the ICE UDP mux.
	ClassSTUN
	// ClassPunch is the 2-byte "nb" hole punch official peers send after
	// connecting. It is dropped.
	ClassPunch
	// ClassJunk is anything else, including WireGuard types shorter than
	// 32 bytes. It is dropped and counted.
	ClassJunk
)

// minWireGuardSize is wireguard-go's MinMessageSize: the size of a
// keepalive (an empty transport data message).
const minWireGuardSize = 32

// String names the class for logs.
func (c Class) String() string {
	switch c {
	case ClassWireGuard:
		return "wireguard"
	case ClassSTUN:
		return "stun"
	case ClassPunch:
		return "punch"
	default:
		return "junk"
	}
}

// Classify sorts one datagram. It never allocates and never panics, whatever
// the input.
func Classify(b []byte) Class {
	if len(b) >= minWireGuardSize {
		if t := binary.LittleEndian.Uint32(b[:4]); t >= 1 && t <= 4 {
			return ClassWireGuard
		}
	}
	if stun.IsMessage(b) {
		return ClassSTUN
	}
	if len(b) == 2 && b[0] == 'n' && b[1] == 'b' {
		return ClassPunch
	}
	return ClassJunk
}
