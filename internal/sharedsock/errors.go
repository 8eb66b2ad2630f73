package sharedsock

import "errors"

// Sentinel errors of the package. Callers check them with errors.Is.
var (
	// ErrClosed is returned by operations on a closed Socket.
	ErrClosed = errors.New("sharedsock: socket closed")
	// ErrBadAddress is returned by Listen for an invalid or zoned address.
	ErrBadAddress = errors.New("sharedsock: bad listen address")
	// ErrBadEndpoint is returned by the Bind's ParseEndpoint for text that is
	// not ip:port.
	ErrBadEndpoint = errors.New("sharedsock: bad endpoint")
	// ErrUnknownRelay is returned for a relay address that names no live
	// relay endpoint.
	ErrUnknownRelay = errors.New("sharedsock: unknown relay endpoint")
	// ErrRelayClosed is returned when sending through a stopped relay
	// endpoint.
	ErrRelayClosed = errors.New("sharedsock: relay endpoint stopped")
	// ErrWrongEndpoint is returned by Send for an endpoint this Bind did not
	// create.
	ErrWrongEndpoint = errors.New("sharedsock: endpoint not created by this bind")
	// ErrBadCredentials is returned by Respond for an empty ufrag or
	// password, or a ufrag containing ':'.
	ErrBadCredentials = errors.New("sharedsock: bad ICE credentials")
)

// ErrPortFixed is returned by the Bind's Open for a port other than the
// socket's: the shared socket cannot move, because ICE candidates already
// name it.
var ErrPortFixed = errors.New("sharedsock: listen port is fixed at Listen")

// Errors of the STUN checks (stuncheck.go).
var (
	// ErrBadSTUN is a message whose header or attributes do not parse.
	ErrBadSTUN = errors.New("sharedsock: malformed stun message")
	// ErrBadFingerprint is a FINGERPRINT that does not match the message.
	ErrBadFingerprint = errors.New("sharedsock: stun fingerprint mismatch")
	// ErrNoFingerprint is a message without FINGERPRINT.
	ErrNoFingerprint = errors.New("sharedsock: stun message has no fingerprint")
	// ErrBadIntegrity is a MESSAGE-INTEGRITY that does not match the key.
	ErrBadIntegrity = errors.New("sharedsock: stun message integrity mismatch")
	// ErrNoIntegrity is a message without MESSAGE-INTEGRITY.
	ErrNoIntegrity = errors.New("sharedsock: stun message has no integrity")
)
