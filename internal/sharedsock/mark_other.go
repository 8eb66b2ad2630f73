//go:build !linux

package sharedsock

import "net"

// setMark is a no-op where SO_MARK does not exist.
func setMark(*net.UDPConn, uint32) error { return nil }

// setBuffers enlarges the socket buffers as far as the system allows.
func setBuffers(c *net.UDPConn) {
	_ = c.SetReadBuffer(7 << 20)
	_ = c.SetWriteBuffer(7 << 20)
}
