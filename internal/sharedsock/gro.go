package sharedsock

import "golang.org/x/net/ipv4"

// maxGROSegments is the most datagrams the kernel coalesces into one
// receive (UDP_GRO_CNT_MAX).
const maxGROSegments = 64

// groReadSlots is how many of n receive slots one read fills when the
// socket coalesces: each read slot may split into maxGROSegments datagrams,
// which must fit into the n slots.
func groReadSlots(n int) int { return max(1, n/maxGROSegments) }

// segments calls fn for each datagram of a buffer the kernel coalesced with
// segment size seg (every datagram seg bytes, the last one possibly
// shorter); seg ≤ 0 or seg ≥ len(b) means b is one datagram.
func segments(b []byte, seg int, fn func([]byte)) {
	if seg <= 0 || seg >= len(b) {
		fn(b)
		return
	}
	for len(b) > 0 {
		l := min(seg, len(b))
		fn(b[:l])
		b = b[l:]
	}
}

// splitGRO splits, in place, the got messages read into msgs[readAt:]
// into single datagrams in msgs[0:], each slot getting its own Buffers[0]
// prefix, N and Addr (a coalesced buffer holds datagrams of one source
// only). It returns how many datagrams are in msgs[0:n] and how many it
// dropped: all of a message whose control data does not parse, and the
// tail of a message whose datagrams would overwrite a message not split
// yet (more segments than the kernel's limit: never seen, but it must
// not corrupt the batch). Slots are moved forward only, so a copy never
// overwrites unread data: datagram n is written while reading message
// i ≥ n, and copy handles the overlap of n == i.
func splitGRO(msgs []ipv4.Message, readAt, got int) (n, dropped int) {
	for i := readAt; i < readAt+got; i++ {
		m := &msgs[i]
		data := m.Buffers[0][:m.N]
		seg, err := groSegmentSize(m.OOB[:m.NN])
		if err != nil {
			dropped++
			continue
		}
		addr := m.Addr
		room := true
		segments(data, seg, func(d []byte) {
			if !room || n > i {
				room = false
				dropped++
				return
			}
			dst := &msgs[n]
			dst.N = copy(dst.Buffers[0], d)
			dst.Addr = addr
			n++
		})
	}
	return n, dropped
}
