package sharedsock

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// Endpoint is the conn.Endpoint this package's Bind hands to wireguard-go:
// a remote ip:port on the shared socket (direct), or a virtual address that
// stands for a relayed ICE connection. One Endpoint value exists per remote
// address, so wireguard-go's receive path stamps the same atomic
// last-receive time that LastReceive reads.
type Endpoint struct {
	addr     netip.AddrPort
	relay    *relay // nil for a direct endpoint
	lastRecv atomic.Int64
	udp      atomic.Pointer[net.UDPAddr] // addr for sendmmsg, made on the first send
}

var _ conn.Endpoint = (*Endpoint)(nil)

// AddrPort is the endpoint's address: the remote candidate for a direct
// endpoint, the virtual relay address (see RelayPrefix) for a relayed one.
// Its String form is what to put in a WireGuard "endpoint=" setting.
func (e *Endpoint) AddrPort() netip.AddrPort { return e.addr }

// Relayed tells whether sends to this endpoint go through an ICE connection.
func (e *Endpoint) Relayed() bool { return e.relay != nil }

// LastReceive is the time the last WireGuard datagram from this endpoint was
// received, zero if none.
func (e *Endpoint) LastReceive() time.Time {
	if ns := e.lastRecv.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// udpAddr is addr as the *net.UDPAddr the batched send takes, made once
// per endpoint instead of once per batch. Senders only read it.
func (e *Endpoint) udpAddr() *net.UDPAddr {
	if a := e.udp.Load(); a != nil {
		return a
	}
	a := net.UDPAddrFromAddrPort(e.addr)
	e.udp.Store(a)
	return a
}

// ClearSrc is a no-op: the shared socket does not pin source addresses.
func (e *Endpoint) ClearSrc() {}

// SrcToString returns "": no sticky source address.
func (e *Endpoint) SrcToString() string { return "" }

// DstToString returns ip:port.
func (e *Endpoint) DstToString() string { return e.addr.String() }

// DstToBytes returns the address in binary form, used by wireguard-go for
// the mac2 cookie.
func (e *Endpoint) DstToBytes() []byte {
	b, _ := e.addr.MarshalBinary()
	return b
}

// DstIP returns the destination IP.
func (e *Endpoint) DstIP() netip.Addr { return e.addr.Addr() }

// SrcIP returns the zero address: no sticky source address.
func (e *Endpoint) SrcIP() netip.Addr { return netip.Addr{} }

// maxTrackedEndpoints bounds the table of direct endpoints, which grows with
// every address that sends a well-formed WireGuard header (spoofable).
const maxTrackedEndpoints = 4096

// staleEndpointAge is how old a last receive must be for its entry to be
// evicted when the table is full.
const staleEndpointAge = 2 * time.Minute

// evictTries bounds the work of one insertion into a full table: that many
// of the oldest entries are looked at (a recent one goes to the back, a
// stale one is evicted). Sources are spoofable, so a new source address
// never costs a scan of the table under the write lock.
const evictTries = 4

// endpointTable maps a remote address to its one Endpoint. Direct endpoints
// are also kept in insertion order (a FIFO with second chances) so that a
// full table evicts in amortized O(1).
type endpointTable struct {
	mu     sync.RWMutex
	m      map[netip.AddrPort]*Endpoint
	fifo   []*Endpoint // direct endpoints, oldest first from head; may hold removed ones
	head   int
	direct int // direct endpoints in m
}

func newEndpointTable() *endpointTable {
	return &endpointTable{m: make(map[netip.AddrPort]*Endpoint)}
}

// lookup returns the tracked endpoint for addr or nil.
func (t *endpointTable) lookup(addr netip.AddrPort) *Endpoint {
	t.mu.RLock()
	e := t.m[addr]
	t.mu.RUnlock()
	return e
}

// get returns the endpoint for addr, creating it. When the table is full of
// recent entries, it returns an untracked endpoint rather than grow.
func (t *endpointTable) get(addr netip.AddrPort) *Endpoint {
	if e := t.lookup(addr); e != nil {
		return e
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.m[addr]; e != nil {
		return e
	}
	e := &Endpoint{addr: addr}
	if t.direct >= maxTrackedEndpoints && !t.evictLocked(time.Now()) {
		return e
	}
	t.m[addr] = e
	t.direct++
	t.pushLocked(e)
	return e
}

func (t *endpointTable) pushLocked(e *Endpoint) {
	if t.head > 0 && t.head >= len(t.fifo)/2 {
		// Compact: amortized O(1) per push.
		n := copy(t.fifo, t.fifo[t.head:])
		clear(t.fifo[n:])
		t.fifo, t.head = t.fifo[:n], 0
	}
	t.fifo = append(t.fifo, e)
}

// evictLocked looks at no more than evictTries of the oldest direct
// endpoints and evicts the first stale one. It reports whether there is
// room now.
func (t *endpointTable) evictLocked(now time.Time) bool {
	cutoff := now.Add(-staleEndpointAge).UnixNano()
	for range evictTries {
		if t.head >= len(t.fifo) {
			break
		}
		e := t.fifo[t.head]
		t.fifo[t.head] = nil
		t.head++
		if t.m[e.addr] != e {
			continue // removed meanwhile
		}
		if e.lastRecv.Load() < cutoff {
			delete(t.m, e.addr)
			t.direct--
			return true
		}
		t.pushLocked(e) // recent: a second chance at the back
	}
	return t.direct < maxTrackedEndpoints
}

// put registers a relay endpoint under its virtual address.
func (t *endpointTable) put(e *Endpoint) {
	t.mu.Lock()
	if old := t.m[e.addr]; old != nil && old.relay == nil {
		t.direct--
	}
	t.m[e.addr] = e
	t.mu.Unlock()
}

// remove deletes e if it is still the entry for its address.
func (t *endpointTable) remove(e *Endpoint) {
	t.mu.Lock()
	if t.m[e.addr] == e {
		delete(t.m, e.addr)
		if e.relay == nil {
			t.direct--
		}
	}
	t.mu.Unlock()
}

// canonical unmaps IPv4-in-IPv6 so that one remote has one key.
func canonical(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}
