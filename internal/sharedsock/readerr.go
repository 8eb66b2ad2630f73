package sharedsock

import (
	"errors"
	"syscall"

	"go.uber.org/zap"
)

// maxReadErrors is how many transient read errors in a row, without a
// datagram between them, the Bind takes before it gives up on the socket.
// The kernel reports a transient error once per cause, so a run this long
// means the error is not transient.
const maxReadErrors = 16

// transientErrnos are the read errors the next read may not repeat: an
// ICMP error the kernel queued on the socket, or memory or buffer pressure.
var transientErrnos = []syscall.Errno{
	syscall.ECONNREFUSED, syscall.EHOSTUNREACH, syscall.ENETUNREACH,
	syscall.ENOBUFS, syscall.ENOMEM, syscall.EINTR,
}

func transientRead(err error) bool {
	for _, errno := range transientErrnos {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// readFailed counts a failed socket read (by wireguard-go's receive
// function or the standby reader) and decides what the reader does: true,
// read again at once (a transient error, fewer than maxReadErrors in a
// row); false, give up. Every error is counted in Stats.ReadErrors; the
// transient ones are logged at most once per ratelog.Every.
func (s *Socket) readFailed(err error, failed *int) bool {
	s.stats.readErrors.Add(1)
	if transientRead(err) && *failed < maxReadErrors {
		*failed++
		s.badRead.Warn("transient read error", "socket read failed, reading again", zap.Error(err))
		return true
	}
	s.log.Error("socket read failed; this socket reads no more datagrams until WireGuard's Bind is reopened (relayed ones still arrive)",
		zap.Error(err), zap.Int("errors in a row", *failed+1))
	return false
}

// readError is a read error the Bind gives up on. It is a net.Error that is
// neither temporary nor a timeout, so wireguard-go ends that receive
// routine at once; its copy in third_party has no sleep-and-retry either.
type readError struct{ err error }

func (e *readError) Error() string   { return "sharedsock: read: " + e.err.Error() }
func (e *readError) Unwrap() error   { return e.err }
func (e *readError) Timeout() bool   { return false }
func (e *readError) Temporary() bool { return false }
