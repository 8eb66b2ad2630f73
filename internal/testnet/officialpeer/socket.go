package officialpeer

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun"
	"golang.zx2c4.com/wireguard/conn"
)

// udpSocket is the one UDP socket of the double, demultiplexed as official
// peers do: ≥ 32 bytes with LE type 1..4 → WireGuard, STUN → ICE (or the
// double's own path checks, by transaction id), "nb" → dropped.
type udpSocket struct {
	udp   *net.UDPConn
	wg    chan packet
	stun  chan packet
	local *net.UDPAddr

	// checks maps the transaction ids of pending path checks to the
	// function told of their answer.
	mu     sync.Mutex
	checks map[[stun.TransactionIDSize]byte]func(*stun.Message)

	done chan struct{}
	read sync.WaitGroup
}

type packet struct {
	b    []byte
	from netip.AddrPort
}

func listenUDP() (*udpSocket, error) {
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	s := &udpSocket{udp: udp, wg: make(chan packet, 256), stun: make(chan packet, 256),
		local: udp.LocalAddr().(*net.UDPAddr), checks: make(map[[stun.TransactionIDSize]byte]func(*stun.Message)),
		done: make(chan struct{})}
	s.read.Add(1)
	go s.readLoop()
	return s, nil
}

func (s *udpSocket) port() uint16 { return uint16(s.local.Port) }

func (s *udpSocket) readLoop() {
	defer s.read.Done()
	for {
		buf := make([]byte, 65535)
		n, from, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		b := buf[:n]
		p := packet{b: b, from: netip.AddrPortFrom(from.Addr().Unmap(), from.Port())}
		switch {
		case n >= 32 && binary.LittleEndian.Uint32(b) >= 1 && binary.LittleEndian.Uint32(b) <= 4:
			select {
			case s.wg <- p:
			default:
			}
		case stun.IsMessage(b):
			if s.checkAnswer(b) {
				continue
			}
			select {
			case s.stun <- p:
			default:
			}
		}
	}
}

// checkAnswer hands a response to a pending path check to its waiter.
func (s *udpSocket) checkAnswer(b []byte) bool {
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if m.Decode() != nil || m.Type.Class == stun.ClassRequest {
		return false
	}
	s.mu.Lock()
	f := s.checks[m.TransactionID]
	delete(s.checks, m.TransactionID)
	s.mu.Unlock()
	if f == nil {
		return false
	}
	f(m)
	return true
}

// expect registers f for the answer to the check with transaction id id.
func (s *udpSocket) expect(id [stun.TransactionIDSize]byte, f func(*stun.Message)) {
	s.mu.Lock()
	s.checks[id] = f
	s.mu.Unlock()
}

func (s *udpSocket) forget(id [stun.TransactionIDSize]byte) {
	s.mu.Lock()
	delete(s.checks, id)
	s.mu.Unlock()
}

func (s *udpSocket) send(b []byte, to netip.AddrPort) {
	_, _ = s.udp.WriteToUDPAddrPort(b, to)
}

func (s *udpSocket) close() {
	close(s.done)
	_ = s.udp.Close()
	s.read.Wait()
}

// muxConn is the PacketConn pion's UDP mux reads and writes.
type muxConn struct{ s *udpSocket }

func (c muxConn) ReadFrom(b []byte) (int, net.Addr, error) {
	select {
	case p := <-c.s.stun:
		return copy(b, p.b), net.UDPAddrFromAddrPort(p.from), nil
	case <-c.s.done:
		return 0, nil, io.EOF
	}
}

func (c muxConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, errors.New("officialpeer: not a UDP address")
	}
	return c.s.udp.WriteToUDP(b, ua)
}

func (c muxConn) Close() error                     { return nil }
func (c muxConn) LocalAddr() net.Addr              { return c.s.local }
func (c muxConn) SetDeadline(time.Time) error      { return nil }
func (c muxConn) SetReadDeadline(time.Time) error  { return nil }
func (c muxConn) SetWriteDeadline(time.Time) error { return nil }

// wgBind is the conn.Bind of wireguard-go on the shared socket.
type wgBind struct {
	s      *udpSocket
	mu     sync.Mutex
	closed chan struct{}
}

func (b *wgBind) Open(uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	closed := make(chan struct{})
	b.closed = closed
	b.mu.Unlock()
	recv := func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		select {
		case p := <-b.s.wg:
			sizes[0] = copy(bufs[0], p.b)
			eps[0] = &conn.StdNetEndpoint{AddrPort: p.from}
			return 1, nil
		case <-closed:
			return 0, net.ErrClosed
		case <-b.s.done:
			return 0, net.ErrClosed
		}
	}
	return []conn.ReceiveFunc{recv}, b.s.port(), nil
}

func (b *wgBind) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed != nil {
		close(b.closed)
		b.closed = nil
	}
	return nil
}

func (b *wgBind) SetMark(uint32) error { return nil }
func (b *wgBind) BatchSize() int       { return 1 }

func (b *wgBind) Send(bufs [][]byte, ep conn.Endpoint) error {
	to, err := netip.ParseAddrPort(ep.DstToString())
	if err != nil {
		return err
	}
	for _, p := range bufs {
		if _, err := b.s.udp.WriteToUDPAddrPort(p, to); err != nil {
			return err
		}
	}
	return nil
}

func (b *wgBind) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &conn.StdNetEndpoint{AddrPort: ap}, nil
}
