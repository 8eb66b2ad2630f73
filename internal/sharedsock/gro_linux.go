package sharedsock

import (
	"encoding/binary"
	"errors"
	"net"

	"golang.org/x/sys/unix"
)

// enableGRO turns on UDP receive coalescing (UDP_GRO, Linux ≥ 5.0) and
// reports whether it is on, read back with getsockopt: kernels before 5.12
// cannot answer, and wireguard-go's own Bind leaves GRO off on them too.
// With GRO on, a run of datagrams of one flow with one size (the last may
// be shorter) arrives as one buffer plus a UDP_GRO control message giving
// the segment size; see splitGRO.
func enableGRO(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	on := false
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO, 1) != nil {
			return
		}
		v, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_GRO)
		on = err == nil && v == 1
	})
	return on
}

// groOOBSize is the control buffer of one receive: room for the UDP_GRO
// message (an int) with headroom.
var groOOBSize = unix.CmsgSpace(4) * 2

// errBadControl is a control message the kernel should never write.
var errBadControl = errors.New("sharedsock: malformed control message")

// groSegmentSize returns the segment size of the UDP_GRO control message
// in oob, 0 if there is none (the datagram was not coalesced).
func groSegmentSize(oob []byte) (int, error) {
	for len(oob) > 0 {
		if len(oob) < unix.SizeofCmsghdr {
			return 0, errBadControl // x/sys would read a header past the buffer
		}
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0, errBadControl
		}
		if hdr.Level == unix.SOL_UDP && hdr.Type == unix.UDP_GRO {
			switch {
			case len(data) >= 4:
				return int(binary.NativeEndian.Uint32(data)), nil
			case len(data) >= 2:
				return int(binary.NativeEndian.Uint16(data)), nil
			default:
				return 0, errBadControl
			}
		}
		oob = rest
	}
	return 0, nil
}
