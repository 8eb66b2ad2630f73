package sharedsock

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// setMark sets SO_MARK, as wireguard-go's own Bind does, so that policy
// routing can keep tunnel packets out of the tunnel.
func setMark(c *net.UDPConn, mark uint32) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("sharedsock: set mark: %w", err)
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) {
		opErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	}); err != nil {
		return fmt.Errorf("sharedsock: set mark: %w", err)
	}
	if opErr != nil {
		return fmt.Errorf("sharedsock: set mark %d: %w", mark, opErr)
	}
	return nil
}
