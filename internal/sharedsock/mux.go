package sharedsock

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// muxQueueLen bounds the STUN datagrams waiting for the mux's reader. STUN
// is a few packets per agent per second; overflow is dropped and counted
// rather than stall wireguard-go's receive path.
const muxQueueLen = 256

type muxPacket struct {
	data []byte
	from *net.UDPAddr
}

// muxConn is the net.PacketConn the pion UDP mux reads and writes. Reads
// come from the socket's demultiplexer, writes go straight to the socket.
// Close detaches the mux only: the socket belongs to Socket.
//
// pion requires: ReadFrom returns *net.UDPAddr, io.EOF once closed, and
// LocalAddr is the real bound address.
type muxConn struct {
	s         *Socket
	in        chan muxPacket
	closed    chan struct{}
	closeOnce sync.Once
}

var _ net.PacketConn = (*muxConn)(nil)

func newMuxConn(s *Socket) *muxConn {
	return &muxConn{s: s, in: make(chan muxPacket, muxQueueLen), closed: make(chan struct{})}
}

// deliver queues a copy of a STUN datagram for the mux, or drops it.
func (c *muxConn) deliver(b []byte, from netip.AddrPort) {
	p := muxPacket{data: append([]byte(nil), b...), from: net.UDPAddrFromAddrPort(from)}
	select {
	case c.in <- p:
	default:
		c.s.stats.dropped.Add(1)
	}
}

// ReadFrom blocks until a STUN datagram arrives or the conn is closed.
func (c *muxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.in:
		return copy(b, p.data), p.from, nil
	case <-c.closed:
		return 0, nil, io.EOF
	}
}

// WriteTo sends a datagram of an ICE agent on the shared socket.
func (c *muxConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, io.ErrClosedPipe
	default:
	}
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, fmt.Errorf("%w: %T", ErrBadEndpoint, addr)
	}
	to := canonical(ua.AddrPort())
	if c.s.faulty(to) {
		return len(b), nil
	}
	n, err := c.s.udp.WriteToUDPAddrPort(b, to)
	if err == nil {
		c.s.stats.stunOut.Add(1)
	}
	return n, err
}

// Close detaches the mux; the socket stays open.
func (c *muxConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

// LocalAddr is the socket's bound address.
func (c *muxConn) LocalAddr() net.Addr { return c.s.udp.LocalAddr() }

// SetDeadline is not supported: the mux never sets one. It returns nil.
func (c *muxConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline is a no-op, see SetDeadline.
func (c *muxConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline is a no-op, see SetDeadline.
func (c *muxConn) SetWriteDeadline(time.Time) error { return nil }
