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

// socketBufferSize is wireguard-go's own: at a few hundred thousand
// datagrams a second the kernel's 208 KiB default overflows (measured: 15 %
// of datagrams dropped under iperf3, each one a TCP retransmit inside).
const socketBufferSize = 7 << 20

// setBuffers enlarges the socket's receive and send buffers, past
// net.core.rmem_max/wmem_max when the process may (CAP_NET_ADMIN), as
// wireguard-go's standard Bind does. Failure only costs throughput.
func setBuffers(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[0], socketBufferSize) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[1], socketBufferSize)
			}
		}
	})
}
