package filter

import (
	"sync"
	"time"
)

// Official timeouts (shared/protocol/FIREWALL.md §3).
const (
	TCPEstablishedTimeout = 3 * time.Hour
	TCPOpeningTimeout     = 60 * time.Second // SYN_SENT, SYN_RECV
	TCPClosingTimeout     = 60 * time.Second // FIN_WAIT, CLOSING, CLOSE_WAIT
	TCPLastAckTimeout     = 30 * time.Second
	TCPTimeWaitTimeout    = 4 * time.Minute
	UDPTimeout            = 30 * time.Second // idle
	ICMPTimeout           = 30 * time.Second
	FragmentTimeout       = 30 * time.Second
)

// Table bounds (the official desktop defaults; fragments are ours).
const (
	MaxTCPFlows  = 65536
	MaxUDPFlows  = 16384
	MaxICMPFlows = 2048
	MaxFragments = 1024
)

// evictSample bounds the work of an insert into a full table.
const evictSample = 8

// refreshSlack: a packet of a flow whose deadline was pushed out less than
// this long ago, and whose state it does not change, writes nothing; it is
// judged under the table's read lock, so the two directions of a busy flow
// do not serialise on it. A flow may so expire up to this much early.
const refreshSlack = int64(time.Second)

// flowKey names a flow from this peer's side: the same key for both
// directions. For ICMP echo, lport is the identifier; for fragments the
// ports carry the identification.
type flowKey struct {
	remote, local addr16
	rport, lport  uint16
	proto         uint8
}

// Who started a flow.
const (
	originOut = iota // this peer (outbound): replies pass
	originIn         // a remote peer, accepted by the rules
)

// TCP states, from this peer's side.
const (
	tcpSynSent     = iota // this peer sent SYN
	tcpSynRecv            // the remote sent SYN
	tcpEstablished        // handshake done (or picked up mid-flow)
	tcpFinLocal           // this peer sent FIN (FIN_WAIT)
	tcpFinRemote          // the remote sent FIN (CLOSE_WAIT)
	tcpLastAck            // both sent FIN, the last ACK not yet seen
	tcpTimeWait           // closed; waits for strays
	tcpClosed             // RST: delete
)

// flow is one tracked flow; values live in the table's map.
type flow struct {
	expires int64 // monotonic ns (Filter.now)
	origin  uint8
	state   uint8 // TCP only
}

// table is one bounded flow table.
type table struct {
	mu      sync.RWMutex
	m       map[flowKey]flow
	max     int
	evicted uint64 // guarded by mu
}

func newTable(max int) *table {
	return &table{m: make(map[flowKey]flow, min(max, 64)), max: max}
}

// peek looks k up under the read lock: present is whether the table has
// an entry (live or not), fresh whether it is live and was refreshed less
// than refreshSlack ago (its deadline at least timeout-refreshSlack away).
func (t *table) peek(k flowKey, now int64, timeout func(flow) time.Duration) (f flow, present, fresh bool) {
	t.mu.RLock()
	f, present = t.m[k]
	t.mu.RUnlock()
	return f, present, present && f.expires-now >= int64(timeout(f))-refreshSlack
}

// get returns the live flow of k; an expired one is deleted (lazy expiry).
// The caller holds mu.
func (t *table) get(k flowKey, now int64) (flow, bool) {
	f, ok := t.m[k]
	if ok && f.expires <= now {
		delete(t.m, k)
		return flow{}, false
	}
	return f, ok
}

// put stores f under k, making room in a full table first: an expired flow
// of a bounded sample, or else the sampled flow closest to expiry, goes.
// The caller holds mu.
func (t *table) put(k flowKey, f flow, now int64) {
	if _, ok := t.m[k]; !ok && len(t.m) >= t.max {
		var victim flowKey
		var soonest int64
		n := 0
		for vk, vf := range t.m { // map iteration starts at a random entry
			if n == 0 || vf.expires < soonest {
				victim, soonest = vk, vf.expires
			}
			n++
			if vf.expires <= now || n == evictSample {
				break
			}
		}
		delete(t.m, victim)
		t.evicted++
	}
	t.m[k] = f
}

func (t *table) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

func tcpFlowTimeout(f flow) time.Duration { return tcpTimeout(f.state) }
func udpFlowTimeout(flow) time.Duration   { return UDPTimeout }

// tcpTimeout is how long a flow in state st lives without traffic.
func tcpTimeout(st uint8) time.Duration {
	switch st {
	case tcpEstablished:
		return TCPEstablishedTimeout
	case tcpSynSent, tcpSynRecv:
		return TCPOpeningTimeout
	case tcpFinLocal, tcpFinRemote:
		return TCPClosingTimeout
	case tcpLastAck:
		return TCPLastAckTimeout
	case tcpTimeWait:
		return TCPTimeWaitTimeout
	}
	return 0
}

// tcpStep advances a tracked TCP flow by one packet with valid flags. It
// reports the new state and whether the packet belongs to the flow: an
// inbound packet that does not (say, a bare ACK while this peer's SYN is
// unanswered, or a new SYN on a closed flow) is not a reply and goes to the
// rules.
func tcpStep(st uint8, flags uint8, inbound bool) (uint8, bool) {
	if flags&tcpRST != 0 {
		return tcpClosed, true
	}
	syn, ack, fin := flags&tcpSYN != 0, flags&tcpACK != 0, flags&tcpFIN != 0
	switch st {
	case tcpSynSent:
		switch {
		case inbound && syn: // SYN-ACK, or a simultaneous open
			if ack {
				return tcpEstablished, true
			}
			return tcpSynSent, true
		case inbound:
			return st, false
		case syn: // our retransmission
			return st, true
		default: // our ACK after their SYN-ACK
			return tcpEstablished, true
		}
	case tcpSynRecv:
		switch {
		case !inbound && syn: // our SYN-ACK
			return st, true
		case inbound && syn && !ack: // their retransmission
			return st, true
		case ack:
			st = tcpEstablished
		default:
			return st, !inbound
		}
	case tcpTimeWait, tcpClosed:
		if syn && !ack {
			return st, false // a new connection on the same ports: not this flow
		}
		return st, true
	}
	if syn && inbound && !ack {
		return st, false // a SYN inside a live flow is not a reply
	}
	if fin {
		switch {
		case st == tcpEstablished || st == tcpSynRecv:
			if inbound {
				return tcpFinRemote, true
			}
			return tcpFinLocal, true
		case st == tcpFinLocal && inbound, st == tcpFinRemote && !inbound:
			return tcpLastAck, true
		}
		return st, true // a retransmitted FIN
	}
	if st == tcpLastAck && ack {
		return tcpTimeWait, true
	}
	return st, true
}
