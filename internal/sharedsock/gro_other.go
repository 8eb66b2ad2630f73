//go:build !linux

package sharedsock

import "net"

// enableGRO is not available: datagrams arrive one by one.
func enableGRO(*net.UDPConn) bool { return false }

// groOOBSize is the control buffer of one receive (none needed).
const groOOBSize = 0

// groSegmentSize never finds a segment size: there is no coalescing.
func groSegmentSize([]byte) (int, error) { return 0, nil }
