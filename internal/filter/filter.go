package filter

import (
	"sync/atomic"
	"time"
)

// Filter is the packet filter of one interface. Its methods are safe for
// concurrent use: wireguard-go writes inbound packets from one goroutine per
// peer and reads outbound packets from another.
type Filter struct {
	rules atomic.Pointer[ruleSet]
	base  time.Time
	// clock, if set, replaces the monotonic clock (tests).
	clock func() int64

	tcp, udp, icmp, frags *table

	dropped [numReasons]atomic.Uint64
	swaps   atomic.Uint64
}

// Reasons an inbound packet is dropped (Stats.Dropped).
const (
	// DropRules: no tracked flow, and no rule accepts it (or a DROP rule
	// matched).
	DropRules = iota
	// DropMalformed: the headers do not parse, or an IPv6 extension header
	// the filter does not walk.
	DropMalformed
	// DropBadTCP: an impossible TCP flag combination.
	DropBadTCP
	// DropFragment: a later fragment whose first fragment did not pass.
	DropFragment
	numReasons
)

// New returns a filter in Enforce mode without rules: nothing new gets in
// until SetPolicy says otherwise (the first network map does).
func New() *Filter {
	f := &Filter{
		base:  time.Now(),
		tcp:   newTable(MaxTCPFlows),
		udp:   newTable(MaxUDPFlows),
		icmp:  newTable(MaxICMPFlows),
		frags: newTable(MaxFragments),
	}
	f.rules.Store(compile(Policy{Mode: Enforce}))
	return f
}

// SetPolicy compiles p and swaps it in atomically; tracked flows are kept.
func (f *Filter) SetPolicy(p Policy) {
	f.rules.Store(compile(p))
	f.swaps.Add(1)
}

// Mode is the current mode.
func (f *Filter) Mode() Mode { return f.rules.Load().mode }

// Now is the filter's clock, in ns: one reading serves a whole batch.
func (f *Filter) Now() int64 {
	if f.clock != nil {
		return f.clock()
	}
	return int64(time.Since(f.base))
}

// FilterInbound judges a batch of inbound packets, bufs[i][offset:] each,
// and moves the slice headers of the packets that pass to the front of bufs
// in their order; it returns how many pass. The contents of the buffers are
// not touched.
func (f *Filter) FilterInbound(bufs [][]byte, offset int) int {
	rs := f.rules.Load()
	if rs.mode != Enforce {
		return len(bufs)
	}
	now := f.Now()
	kept := 0
	for i, b := range bufs {
		if len(b) < offset || !f.inbound(rs, b[offset:], now) {
			continue
		}
		if kept != i {
			bufs[kept] = b
		}
		kept++
	}
	return kept
}

// TrackOutbound records a batch of outbound packets, bufs[i][offset:
// offset+sizes[i]] for i < len(bufs). Nothing is dropped.
func (f *Filter) TrackOutbound(bufs [][]byte, sizes []int, offset int) {
	if f.rules.Load().mode == Off {
		return
	}
	now := f.Now()
	for i, b := range bufs {
		if end := offset + sizes[i]; end <= len(b) && offset <= end {
			f.outbound(b[offset:end], now)
		}
	}
}

// Inbound judges one inbound packet at time now (Filter.Now).
func (f *Filter) Inbound(pkt []byte, now int64) bool {
	rs := f.rules.Load()
	return rs.mode != Enforce || f.inbound(rs, pkt, now)
}

// Outbound records one outbound packet at time now.
func (f *Filter) Outbound(pkt []byte, now int64) {
	if f.rules.Load().mode != Off {
		f.outbound(pkt, now)
	}
}

func (f *Filter) drop(reason int) bool {
	f.dropped[reason].Add(1)
	return false
}

func (f *Filter) inbound(rs *ruleSet, b []byte, now int64) bool {
	var p packet
	if !parse(b, &p) {
		return f.drop(DropMalformed)
	}
	if p.frag == fragLater {
		if f.fragmentPassed(&p, now) {
			return true
		}
		return f.drop(DropFragment)
	}
	ok := f.inboundDecoded(rs, &p, now)
	if ok && p.frag == fragFirst {
		f.fragmentPass(&p, now)
	}
	return ok
}

func (f *Filter) inboundDecoded(rs *ruleSet, p *packet, now int64) bool {
	k := flowKey{remote: p.src, local: p.dst, rport: p.sport, lport: p.dport, proto: p.proto}
	switch p.proto {
	case protoTCP:
		if !validTCPFlags(p.flags) {
			return f.drop(DropBadTCP)
		}
		t := f.tcp
		fl, present, fresh := t.peek(k, now, tcpFlowTimeout)
		if fresh {
			if st, mine := tcpStep(fl.state, p.flags, true); mine && st == fl.state {
				return true // nothing to write
			}
		}
		if present {
			t.mu.Lock()
			if fl, ok := t.get(k, now); ok {
				if st, mine := tcpStep(fl.state, p.flags, true); mine {
					f.setTCP(k, fl, st, now)
					t.mu.Unlock()
					return true
				}
			}
			t.mu.Unlock()
		}
		if !rs.allows(p) {
			return f.drop(DropRules)
		}
		if p.flags&(tcpSYN|tcpACK) == tcpSYN {
			t.mu.Lock()
			t.put(k, flow{origin: originIn, state: tcpSynRecv, expires: now + int64(TCPOpeningTimeout)}, now)
			t.mu.Unlock()
		}
		return true
	case protoUDP:
		t := f.udp
		_, present, fresh := t.peek(k, now, udpFlowTimeout)
		if fresh {
			return true
		}
		if present {
			t.mu.Lock()
			if fl, ok := t.get(k, now); ok {
				fl.expires = now + int64(UDPTimeout)
				t.m[k] = fl
				t.mu.Unlock()
				return true
			}
			t.mu.Unlock()
		}
		if !rs.allows(p) {
			return f.drop(DropRules)
		}
		t.mu.Lock()
		t.put(k, flow{origin: originIn, expires: now + int64(UDPTimeout)}, now)
		t.mu.Unlock()
		return true
	case protoICMP, protoICMPv6:
		if p.icmpError() {
			return true
		}
		if p.echoReply() {
			k.rport, k.lport = 0, p.icmpID
			t := f.icmp
			t.mu.Lock()
			_, ok := t.get(k, now)
			t.mu.Unlock()
			if ok {
				return true
			}
		}
	}
	if !rs.allows(p) {
		return f.drop(DropRules)
	}
	return true
}

// setTCP stores the flow's new state (or deletes a reset one). The caller
// holds f.tcp.mu.
func (f *Filter) setTCP(k flowKey, fl flow, st uint8, now int64) {
	if st == tcpClosed {
		delete(f.tcp.m, k)
		return
	}
	fl.state = st
	fl.expires = now + int64(tcpTimeout(st))
	f.tcp.m[k] = fl
}

func (f *Filter) outbound(b []byte, now int64) {
	var p packet
	if !parse(b, &p) || p.frag == fragLater {
		return
	}
	// From this peer's side: the destination is the remote.
	k := flowKey{remote: p.dst, local: p.src, rport: p.dport, lport: p.sport, proto: p.proto}
	switch p.proto {
	case protoTCP:
		if !validTCPFlags(p.flags) {
			return
		}
		t := f.tcp
		if fl, _, fresh := t.peek(k, now, tcpFlowTimeout); fresh {
			if st, mine := tcpStep(fl.state, p.flags, false); mine && st == fl.state {
				return
			}
		}
		t.mu.Lock()
		if fl, ok := t.get(k, now); ok {
			st, mine := tcpStep(fl.state, p.flags, false)
			if mine {
				f.setTCP(k, fl, st, now)
				t.mu.Unlock()
				return
			}
			// A new SYN on a closed flow: a new flow of this peer's.
		}
		switch {
		case p.flags&tcpRST != 0:
		case p.flags&(tcpSYN|tcpACK) == tcpSYN:
			t.put(k, flow{origin: originOut, state: tcpSynSent, expires: now + int64(TCPOpeningTimeout)}, now)
		default: // picked up mid-flow (started before tracking, or evicted)
			t.put(k, flow{origin: originOut, state: tcpEstablished, expires: now + int64(TCPEstablishedTimeout)}, now)
		}
		t.mu.Unlock()
	case protoUDP:
		t := f.udp
		if _, _, fresh := t.peek(k, now, udpFlowTimeout); fresh {
			return
		}
		t.mu.Lock()
		fl, ok := t.get(k, now)
		if !ok {
			fl.origin = originOut
		}
		fl.expires = now + int64(UDPTimeout)
		t.put(k, fl, now)
		t.mu.Unlock()
	case protoICMP, protoICMPv6:
		if !p.echoRequest() {
			return
		}
		k.rport, k.lport = 0, p.icmpID
		t := f.icmp
		t.mu.Lock()
		t.put(k, flow{origin: originOut, expires: now + int64(ICMPTimeout)}, now)
		t.mu.Unlock()
	}
}

func fragKey(p *packet) flowKey {
	return flowKey{remote: p.src, local: p.dst, rport: uint16(p.fragID >> 16), lport: uint16(p.fragID), proto: p.proto}
}

// fragmentPass remembers that the first fragment of p's datagram passed.
func (f *Filter) fragmentPass(p *packet, now int64) {
	t := f.frags
	t.mu.Lock()
	t.put(fragKey(p), flow{expires: now + int64(FragmentTimeout)}, now)
	t.mu.Unlock()
}

func (f *Filter) fragmentPassed(p *packet, now int64) bool {
	t := f.frags
	t.mu.Lock()
	_, ok := t.get(fragKey(p), now)
	t.mu.Unlock()
	return ok
}

// Stats is a snapshot of the filter's counters.
type Stats struct {
	Mode    Mode
	Rules   int                // In rules compiled
	Dropped [numReasons]uint64 // by reason (DropRules, ...)
	Swaps   uint64             // SetPolicy calls
	// Flows tracked now, and flows evicted from full tables since New.
	TCPFlows, UDPFlows, ICMPFlows int
	Evicted                       uint64
}

// DroppedTotal is the sum of Dropped.
func (s Stats) DroppedTotal() uint64 {
	var n uint64
	for _, d := range s.Dropped {
		n += d
	}
	return n
}

// Stats returns the counters.
func (f *Filter) Stats() Stats {
	rs := f.rules.Load()
	s := Stats{Mode: rs.mode, Rules: rs.n, Swaps: f.swaps.Load(),
		TCPFlows: f.tcp.len(), UDPFlows: f.udp.len(), ICMPFlows: f.icmp.len()}
	for i := range s.Dropped {
		s.Dropped[i] = f.dropped[i].Load()
	}
	for _, t := range []*table{f.tcp, f.udp, f.icmp, f.frags} {
		t.mu.Lock()
		s.Evicted += t.evicted
		t.mu.Unlock()
	}
	return s
}
