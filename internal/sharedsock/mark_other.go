//go:build !linux

package sharedsock

import "net"

// setMark is a no-op where SO_MARK does not exist.
func setMark(*net.UDPConn, uint32) error { return nil }
