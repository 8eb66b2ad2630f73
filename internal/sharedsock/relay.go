package sharedsock

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
)

// RelayPrefix holds the virtual addresses of relay endpoints. 240.0.0.0/8
// is in the reserved class E range: never routed, so never a real ICE
// candidate. WireGuard configuration carries a relay endpoint as ordinary
// "endpoint=240.x.y.z:1" text, which both wireguard-go's IPC and wgctrl
// accept, and the Bind's ParseEndpoint maps back to the relay.
var RelayPrefix = netip.MustParsePrefix("240.0.0.0/8")

// relayPort is the port of every virtual relay address.
const relayPort = 1

// relayQueueLen bounds the datagrams read from relays and not yet taken by
// wireguard-go. A full queue blocks the relay readers (backpressure onto
// the ICE connection), it never drops.
const relayQueueLen = 256

// relayBufSize fits any WireGuard message (wireguard-go's MaxMessageSize).
const relayBufSize = 65535

var relayBufPool = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// relayPacket is one WireGuard datagram read from a relay.
type relayPacket struct {
	buf *[]byte
	n   int
	ep  *Endpoint
}

func (p relayPacket) data() []byte { return (*p.buf)[:p.n] }
func (p relayPacket) release()     { relayBufPool.Put(p.buf) }

// stale: the packet's relay was stopped while it was queued. WireGuard must
// not see it: it would roam the peer's endpoint back to the dead relay
// endpoint, after a new one replaced it.
func (p relayPacket) stale() bool {
	select {
	case <-p.ep.relay.stop:
		return true
	default:
		return false
	}
}

// relay bridges one peer's WireGuard traffic through a relayed ICE
// connection.
type relay struct {
	peer     wgtypes.Key
	c        net.Conn
	ep       *Endpoint
	stop     chan struct{}
	stopOnce sync.Once
}

func (r *relay) send(s *Socket, bufs [][]byte) error {
	select {
	case <-r.stop:
		return ErrRelayClosed
	default:
	}
	for _, b := range bufs {
		if _, err := r.c.Write(b); err != nil {
			return fmt.Errorf("sharedsock: relay send to %s: %w", r.ep.addr, err)
		}
		s.stats.relayOut.Add(1)
	}
	return nil
}

// relayTable owns the live relays and their reader goroutines.
type relayTable struct {
	in     chan relayPacket
	wg     sync.WaitGroup
	mu     sync.Mutex
	next   uint32
	byPeer map[wgtypes.Key]*relay
	closed bool
}

func newRelayTable() *relayTable {
	return &relayTable{in: make(chan relayPacket, relayQueueLen), byPeer: make(map[wgtypes.Key]*relay)}
}

// RelayEndpoint bridges peer's WireGuard traffic through c, the net.Conn of
// a relayed ICE pair (an *ice.Conn): the returned endpoint's sends are
// written to c and what c reads is injected into the Bind's receive path.
// Configure the peer with endpoint ep.AddrPort() (inside RelayPrefix).
//
// The relay owns c: stop (idempotent) closes c, which for an *ice.Conn
// closes its agent, and ends the reader goroutine. One relay per peer is
// live at a time; a new RelayEndpoint for the same peer stops the old one.
func (s *Socket) RelayEndpoint(peer wgtypes.Key, c net.Conn) (ep *Endpoint, stop func(), err error) {
	t := s.relays
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, nil, ErrClosed
	}
	old := t.byPeer[peer]
	addr := s.nextRelayAddrLocked()
	r := &relay{peer: peer, c: c, stop: make(chan struct{})}
	r.ep = &Endpoint{addr: addr, relay: r}
	t.byPeer[peer] = r
	t.wg.Add(1)
	t.mu.Unlock()
	if old != nil {
		s.stopRelay(old)
	}
	s.eps.put(r.ep)
	go s.relayReadLoop(r)
	s.log.Debug("relay endpoint", zap.String("peer", nbcrypto.Fingerprint(peer)),
		zap.Stringer("endpoint", addr))
	return r.ep, func() { s.stopRelay(r) }, nil
}

// nextRelayAddrLocked picks a virtual address not in use. Caller holds
// s.relays.mu.
func (s *Socket) nextRelayAddrLocked() netip.AddrPort {
	t := s.relays
	for {
		t.next = (t.next + 1) & 0xffffff
		if t.next == 0 {
			continue
		}
		a := netip.AddrFrom4([4]byte{240, byte(t.next >> 16), byte(t.next >> 8), byte(t.next)})
		ap := netip.AddrPortFrom(a, relayPort)
		if s.eps.lookup(ap) == nil {
			return ap
		}
	}
}

func (s *Socket) stopRelay(r *relay) {
	r.stopOnce.Do(func() {
		close(r.stop)
		_ = r.c.Close()
		s.eps.remove(r.ep)
		t := s.relays
		t.mu.Lock()
		if t.byPeer[r.peer] == r {
			delete(t.byPeer, r.peer)
		}
		t.mu.Unlock()
	})
}

// relayReadLoop reads WireGuard datagrams from the relay's connection and
// queues them for the Bind's relay receive function.
func (s *Socket) relayReadLoop(r *relay) {
	defer s.relays.wg.Done()
	for {
		bp := relayBufPool.Get().(*[]byte)
		n, err := r.c.Read(*bp)
		if err != nil {
			relayBufPool.Put(bp)
			select {
			case <-r.stop:
			default:
				if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
					s.log.Debug("relay read ended", zap.String("peer", nbcrypto.Fingerprint(r.peer)),
						zap.Error(err))
				}
				s.stopRelay(r)
			}
			return
		}
		if Classify((*bp)[:n]) != ClassWireGuard {
			relayBufPool.Put(bp)
			s.stats.dropped.Add(1)
			continue
		}
		r.ep.lastRecv.Store(time.Now().UnixNano())
		s.stats.relayIn.Add(1)
		select {
		case s.relays.in <- relayPacket{buf: bp, n: n, ep: r.ep}:
		case <-r.stop:
			relayBufPool.Put(bp)
			return
		case <-s.closing:
			relayBufPool.Put(bp)
			return
		}
	}
}

// stopAll stops every relay; later RelayEndpoint calls fail.
func (t *relayTable) stopAll() {
	t.mu.Lock()
	t.closed = true
	live := make([]*relay, 0, len(t.byPeer))
	for _, r := range t.byPeer {
		live = append(live, r)
	}
	t.mu.Unlock()
	for _, r := range live {
		r.stopOnce.Do(func() {
			close(r.stop)
			_ = r.c.Close()
		})
	}
}

// wait waits for the relay reader goroutines.
func (t *relayTable) wait() { t.wg.Wait() }
