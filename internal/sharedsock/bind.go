package sharedsock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"
)

// bind is the conn.Bind wireguard-go drives. wireguard-go closes and reopens
// its Bind on every Up, Down and listen-port change and waits for the
// receive functions to return net.ErrClosed; the socket and the ICE mux
// must survive that, so Close only detaches wireguard-go (the standby reader
// takes over the socket) and Open re-attaches to the same socket.
//
// Open returns two receive functions: one reads the UDP socket in batches,
// the other takes datagrams injected by relay endpoints.
type bind struct {
	s *Socket
	// Guarded by s.rd.
	gen  uint64
	done chan struct{} // closed by Close; ends the relay receive function
}

var _ conn.Bind = (*bind)(nil)

// Open attaches wireguard-go to the shared socket. port must be 0 or the
// socket's own port; the actual port is returned.
func (b *bind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	s := b.s
	s.rd.Lock()
	defer s.rd.Unlock()
	if s.rd.closed {
		return nil, 0, ErrClosed
	}
	if s.rd.bindOpen {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	if port != 0 && port != s.local.Port() {
		return nil, 0, fmt.Errorf("%w: asked %d, socket has %d", ErrPortFixed, port, s.local.Port())
	}
	s.stopStandbyLocked()
	s.rd.bindOpen = true
	b.gen++
	b.done = make(chan struct{})
	return []conn.ReceiveFunc{b.receiveSocket(b.gen), b.receiveRelay(b.done)}, s.local.Port(), nil
}

// Close detaches wireguard-go: its receive functions return net.ErrClosed,
// and the standby reader serves STUN until the next Open.
func (b *bind) Close() error {
	s := b.s
	s.rd.Lock()
	defer s.rd.Unlock()
	if !s.rd.bindOpen {
		return nil
	}
	s.rd.bindOpen = false
	close(b.done)
	if s.rd.bindReaders > 0 && !s.rd.closed {
		_ = s.udp.SetReadDeadline(time.Unix(1, 0))
		for s.rd.bindReaders > 0 {
			s.rd.cond.Wait()
		}
		_ = s.udp.SetReadDeadline(time.Time{})
	}
	s.startStandbyLocked()
	return nil
}

// SetMark sets SO_MARK on the socket (Linux; a no-op elsewhere).
func (b *bind) SetMark(mark uint32) error { return setMark(b.s.udp, mark) }

// BatchSize is the most datagrams one receive call returns.
func (b *bind) BatchSize() int { return conn.IdealBatchSize }

// ParseEndpoint turns "ip:port" into an Endpoint. An address inside
// RelayPrefix names a relay endpoint and must be live.
func (b *bind) ParseEndpoint(text string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(text)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrBadEndpoint, text)
	}
	ap = canonical(ap)
	if RelayPrefix.Contains(ap.Addr()) {
		e := b.s.eps.lookup(ap)
		if e == nil || e.relay == nil {
			return nil, fmt.Errorf("%w: %s", ErrUnknownRelay, ap)
		}
		return e, nil
	}
	return b.s.eps.get(ap), nil
}

// Send writes bufs to ep: on the socket for a direct endpoint, through the
// ICE connection for a relay endpoint.
func (b *bind) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return ErrWrongEndpoint
	}
	if e.relay != nil {
		return e.relay.send(b.s, bufs)
	}
	s := b.s
	if s.faulty(e.addr) {
		return nil // a test's fault drops the path (fault.go)
	}
	if len(bufs) == 1 {
		if err := s.writeTo(bufs[0], e.addr); err != nil {
			return fmt.Errorf("sharedsock: send to %s: %w", e.addr, err)
		}
		s.stats.wgOut.Add(1)
		return nil
	}
	gso := gsoAvailable && !s.noGSO.Load()
	n, refused, err := s.writeBatch(bufs, e.udpAddr(), gso)
	s.stats.wgOut.Add(uint64(n))
	if refused {
		// Only an error that means "unsupported" turns GSO off for good.
		s.noGSO.Store(true)
		s.log.Debug("UDP segmentation offload unavailable; sending with sendmmsg", zap.Error(err))
		var m int
		m, _, err = s.writeBatch(bufs[n:], e.udpAddr(), false)
		s.stats.wgOut.Add(uint64(m))
	}
	if err != nil {
		return fmt.Errorf("sharedsock: send to %s: %w", e.addr, err)
	}
	return nil
}

// receiveSocket returns the receive function reading the UDP socket for
// wireguard-go generation gen. Datagrams that are not WireGuard are handled
// on the spot (STUN to the responder or mux) and their slot gets size 0.
//
// With receive coalescing (UDP GRO) one read slot takes a run of up to
// maxGROSegments datagrams of one source, so only the last groReadSlots of
// the slots are read into and splitGRO spreads their datagrams over all of
// them; each datagram is classified on its own (a STUN message of the same
// flow may be the shorter last one of a run).
func (b *bind) receiveSocket(gen uint64) conn.ReceiveFunc {
	s := b.s
	msgs := make([]ipv4.Message, conn.IdealBatchSize)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
		if s.gro {
			msgs[i].OOB = make([]byte, groOOBSize)
		}
	}
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		s.rd.Lock()
		if s.rd.closed || !s.rd.bindOpen || b.gen != gen {
			s.rd.Unlock()
			return 0, net.ErrClosed
		}
		s.rd.bindReaders++
		s.rd.Unlock()
		n := min(len(packets), len(msgs))
		readAt := 0
		if s.gro {
			readAt = n - groReadSlots(n)
		}
		failed := 0 // transient read errors since the last datagram
		for {
			for i := range n {
				msgs[i].Buffers[0] = packets[i]
				msgs[i].N = 0
				msgs[i].OOB = msgs[i].OOB[:cap(msgs[i].OOB)]
			}
			got, err := s.batch.ReadBatch(msgs[readAt:n], 0)
			if err != nil && isTimeout(err) && !b.leaving(gen) {
				continue // a stale kick; the kicker resets the deadline
			}
			if err != nil && !isTimeout(err) && !errors.Is(err, net.ErrClosed) {
				if s.readFailed(err, &failed) {
					continue // a transient error: read again
				}
				b.leaveRead()
				return 0, &readError{err: err}
			}
			b.leaveRead()
			if err != nil {
				return 0, net.ErrClosed
			}
			if s.gro {
				read := got
				var dropped int
				got, dropped = splitGRO(msgs[:n], readAt, got)
				if dropped > 0 {
					s.stats.dropped.Add(uint64(dropped))
				}
				if got > read {
					s.stats.coalesced.Add(1)
				}
			}
			s.deliverBatch(msgs[:got], packets, sizes, eps)
			return got, nil
		}
	}
}

// deliverBatch fills sizes and eps for the datagrams read into msgs (their
// data in packets): WireGuard gets its size and endpoint, the rest is
// dispatched here and gets size 0. Consecutive datagrams from one source
// (a split coalesced run shares its address value) cost one endpoint
// lookup.
func (s *Socket) deliverBatch(msgs []ipv4.Message, packets [][]byte, sizes []int, eps []conn.Endpoint) {
	now := time.Now().UnixNano()
	var (
		lastAddr net.Addr
		from     netip.AddrPort
		e        *Endpoint
		wg       uint64
		dropSrc  bool
	)
	fault := s.faultFor()
	for i := range msgs {
		m := &msgs[i]
		sizes[i] = 0
		if m.Addr != lastAddr || m.Addr == nil {
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				s.stats.dropped.Add(1)
				continue
			}
			lastAddr, from, e = m.Addr, canonical(ua.AddrPort()), nil
			dropSrc = fault != nil && fault(from)
		}
		if dropSrc {
			continue
		}
		data := packets[i][:m.N]
		if Classify(data) != ClassWireGuard {
			s.dispatchNonWireGuard(data, from)
			continue
		}
		if e == nil {
			e = s.eps.get(from)
			e.lastRecv.Store(now)
		}
		wg++
		sizes[i] = m.N
		eps[i] = e
	}
	s.stats.wgIn.Add(wg)
}

// leaving reports whether the socket reader of generation gen must stop.
func (b *bind) leaving(gen uint64) bool {
	s := b.s
	s.rd.Lock()
	defer s.rd.Unlock()
	return s.rd.closed || !s.rd.bindOpen || b.gen != gen
}

// leaveRead marks the end of a socket read by wireguard-go.
func (b *bind) leaveRead() {
	s := b.s
	s.rd.Lock()
	s.rd.bindReaders--
	if s.rd.bindReaders == 0 {
		s.rd.cond.Broadcast()
	}
	s.rd.Unlock()
}

// receiveRelay returns the receive function for datagrams injected by relay
// endpoints. It returns net.ErrClosed once done is closed.
func (b *bind) receiveRelay(done <-chan struct{}) conn.ReceiveFunc {
	s := b.s
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		var p relayPacket
		for {
			select {
			case p = <-s.relays.in:
			case <-done:
				return 0, net.ErrClosed
			case <-s.closing:
				return 0, net.ErrClosed
			}
			if !p.stale() {
				break
			}
			p.release()
		}
		n := 0
		for {
			sizes[n] = copy(packets[n], p.data())
			eps[n] = p.ep
			p.release()
			n++
			if n == len(packets) {
				return n, nil
			}
			select {
			case p = <-s.relays.in:
				for p.stale() {
					p.release()
					select {
					case p = <-s.relays.in:
						continue
					default:
						return n, nil
					}
				}
			default:
				return n, nil
			}
		}
	}
}
