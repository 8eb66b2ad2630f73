package sharedsock

import (
	"io"
	"net"
	"sync"

	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"
)

// sendBatch is the scratch of one batched send: the messages handed to
// sendmmsg, how many datagrams each carries, and one control buffer per
// message (the segment size of a GSO run).
type sendBatch struct {
	msgs []ipv4.Message
	segs []int
	oob  []byte // len(msgs) control buffers of gsoControlSize bytes
}

// sendPool holds send scratch (wireguard-go sends from several goroutines
// at once). A batch has at most conn.IdealBatchSize datagrams, so as many
// messages always hold it.
var sendPool = sync.Pool{New: func() any {
	return &sendBatch{
		msgs: make([]ipv4.Message, conn.IdealBatchSize),
		segs: make([]int, conn.IdealBatchSize),
		oob:  make([]byte, conn.IdealBatchSize*gsoControlSize),
	}
}}

// fill lays bufs out as messages to to and returns how many messages it
// used. Without gso every datagram is a message. With gso a run of
// datagrams of one size (the last of a run may be shorter) is one message
// whose iovecs are the datagrams themselves, not a copy: the kernel
// concatenates them and cuts the result every segment size bytes, which is
// exactly at the datagrams' boundaries.
func (b *sendBatch) fill(bufs [][]byte, to *net.UDPAddr, gso bool) int {
	k := 0
	for i := 0; i < len(bufs) && k < len(b.msgs); k++ {
		seg := len(bufs[i])
		n := 1
		if gso {
			total := seg
			for i+n < len(bufs) && n < maxGSOSegments {
				l := len(bufs[i+n])
				if l > seg || total+l > maxGSOBytes {
					break
				}
				total += l
				n++
				if l < seg {
					break // a shorter datagram ends the run
				}
			}
		}
		m := &b.msgs[k]
		m.Buffers, m.Addr, m.OOB = bufs[i:i+n], to, nil
		if n > 1 {
			m.OOB = putGSOControl(b.oob[k*gsoControlSize:], uint16(seg))
		}
		b.segs[k] = n
		i += n
	}
	return k
}

// reset drops the references to the caller's buffers before the scratch
// goes back to the pool.
func (b *sendBatch) reset(k int) {
	for i := range b.msgs[:k] {
		b.msgs[i].Buffers, b.msgs[i].Addr, b.msgs[i].OOB = nil, nil, nil
	}
}

// writeBatch sends bufs to to with sendmmsg, as few system calls as the
// kernel takes (one, unless the socket buffer fills). With gso, runs of
// equal-sized datagrams go as segmented messages (see fill). It returns
// how many datagrams went out and, on an error, whether the message that
// failed was a segmented one refused as unsupported (the caller turns
// segmentation off for good and sends the rest again without).
func (s *Socket) writeBatch(bufs [][]byte, to *net.UDPAddr, gso bool) (sent int, refused bool, err error) {
	b := sendPool.Get().(*sendBatch)
	defer sendPool.Put(b)
	for sent < len(bufs) {
		k := b.fill(bufs[sent:], to, gso)
		w, err := s.batch.WriteBatch(b.msgs[:k], 0)
		w = max(0, min(w, k))
		for _, n := range b.segs[:w] {
			sent += n
		}
		if err == nil && w == 0 {
			err = io.ErrShortWrite
		}
		if err != nil {
			refused = w < k && b.segs[w] > 1 && gsoUnsupported(err)
			b.reset(k)
			return sent, refused, err
		}
		b.reset(k)
	}
	return sent, false, nil
}
