//go:build unix

package grpchost

import "syscall"

// reuseAddr sets SO_REUSEADDR, so that a restarted server can bind the port
// its previous listener held while old connections sit in TIME_WAIT.
func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	}); err != nil {
		return err
	}
	return serr
}
