package sharedsock

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP generic segmentation offload: a run of equal-sized datagrams to one
// endpoint goes to the kernel as one message with a UDP_SEGMENT control
// message, and the kernel cuts it into datagrams (Linux ≥ 4.18). One trip
// through the stack carries up to maxGSOSegments datagrams. wireguard-go's
// own Bind does the same.
const (
	gsoAvailable   = true
	maxGSOSegments = 64
	maxGSOBytes    = 65000
)

// gsoControlSize is the control buffer of one segmented message.
var gsoControlSize = unix.CmsgSpace(2)

// gsoControl is the control message that sets the segment size.
func gsoControl(size uint16) []byte {
	return putGSOControl(make([]byte, gsoControlSize), size)
}

// putGSOControl writes the control message that sets the segment size into
// oob (gsoControlSize bytes) and returns it.
func putGSOControl(oob []byte, size uint16) []byte {
	oob = oob[:gsoControlSize]
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], size)
	return oob
}

// gsoUnsupported reports whether a send error means that this socket, kernel
// or device cannot do UDP segmentation (as wireguard-go decides it): EIO
// from a device without checksum offload, EINVAL, ENOPROTOOPT or EOPNOTSUPP
// from a kernel without UDP_SEGMENT. Anything else (ECONNREFUSED after an
// ICMP port unreachable, ENOBUFS, a route gone) is the send's own failure.
func gsoUnsupported(err error) bool {
	return errors.Is(err, unix.EIO) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOPROTOOPT) ||
		errors.Is(err, unix.EOPNOTSUPP)
}
