package sigwire

import (
	"errors"
	"sync/atomic"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
)

// Drop reasons, as counted and logged.
const (
	reasonBadSender     = "bad-sender"
	reasonNotForUs      = "not-for-us"
	reasonUnknownSender = "unknown-sender"
	reasonOversize      = "oversize"
	reasonShortBody     = "short-body"
	reasonDecrypt       = "decrypt"
	reasonDecode        = "decode"
	reasonIgnored       = "ignored"
	reasonUnknownType   = "unknown-type"
	reasonBadPayload    = "bad-payload"
	reasonOther         = "other"
)

// reasonOf names the reason of a Decode error.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, ErrBadSender):
		return reasonBadSender
	case errors.Is(err, ErrNotForUs):
		return reasonNotForUs
	case errors.Is(err, ErrUnknownSender):
		return reasonUnknownSender
	case errors.Is(err, nbcrypto.ErrOversize):
		return reasonOversize
	case errors.Is(err, nbcrypto.ErrShortBody):
		return reasonShortBody
	case errors.Is(err, nbcrypto.ErrDecrypt):
		return reasonDecrypt
	case errors.Is(err, nbcrypto.ErrDecode):
		return reasonDecode
	case errors.Is(err, ErrIgnored):
		return reasonIgnored
	case errors.Is(err, ErrUnknownType):
		return reasonUnknownType
	case errors.Is(err, ErrBadPayload):
		return reasonBadPayload
	}
	return reasonOther
}

// Stats counts a Client's messages. Counters only grow.
type Stats struct {
	in, out, sendErrors                        atomic.Uint64
	badSender, notForUs, unknownSender         atomic.Uint64
	oversize, shortBody, decrypt, decode       atomic.Uint64
	ignored, unknownType, badPayload, otherBad atomic.Uint64
}

// StatsSnapshot is a copy of the counters at one instant.
type StatsSnapshot struct {
	In         uint64 // valid messages delivered by Recv
	Out        uint64 // messages the server accepted from Send
	SendErrors uint64 // Send calls that failed

	// Dropped received messages, per reason.
	BadSender, NotForUs, UnknownSender uint64
	Oversize, ShortBody, Decrypt       uint64
	Decode, UnknownType, BadPayload    uint64
	Other                              uint64
	// Ignored counts valid HEARTBEAT and MODE messages.
	Ignored uint64
}

// Dropped is the number of received messages dropped for any reason
// (ignored ones not included).
func (s StatsSnapshot) Dropped() uint64 {
	return s.BadSender + s.NotForUs + s.UnknownSender + s.Oversize + s.ShortBody +
		s.Decrypt + s.Decode + s.UnknownType + s.BadPayload + s.Other
}

func (s *Stats) snapshot() StatsSnapshot {
	return StatsSnapshot{
		In: s.in.Load(), Out: s.out.Load(), SendErrors: s.sendErrors.Load(),
		BadSender: s.badSender.Load(), NotForUs: s.notForUs.Load(), UnknownSender: s.unknownSender.Load(),
		Oversize: s.oversize.Load(), ShortBody: s.shortBody.Load(), Decrypt: s.decrypt.Load(),
		Decode: s.decode.Load(), UnknownType: s.unknownType.Load(), BadPayload: s.badPayload.Load(),
		Other: s.otherBad.Load(), Ignored: s.ignored.Load(),
	}
}

// count adds one to the counter of reason.
func (s *Stats) count(reason string) {
	var c *atomic.Uint64
	switch reason {
	case reasonBadSender:
		c = &s.badSender
	case reasonNotForUs:
		c = &s.notForUs
	case reasonUnknownSender:
		c = &s.unknownSender
	case reasonOversize:
		c = &s.oversize
	case reasonShortBody:
		c = &s.shortBody
	case reasonDecrypt:
		c = &s.decrypt
	case reasonDecode:
		c = &s.decode
	case reasonIgnored:
		c = &s.ignored
	case reasonUnknownType:
		c = &s.unknownType
	case reasonBadPayload:
		c = &s.badPayload
	default:
		c = &s.otherBad
	}
	c.Add(1)
}
