package sharedsock

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// UDP generic segmentation offload: a run of equal-sized datagrams to one
// endpoint goes to the kernel as one buffer with a UDP_SEGMENT control
// message, and the kernel cuts it into datagrams (Linux ≥ 4.18). One
// sendmsg and one trip through the stack carry up to maxGSOSegments
// datagrams. wireguard-go's own Bind does the same.
const (
	maxGSOSegments = 64
	maxGSOBytes    = 65000
)

var gsoScratch = sync.Pool{New: func() any { b := make([]byte, maxGSOBytes); return &b }}

// gsoControl is the control message that sets the segment size.
func gsoControl(size uint16) []byte {
	oob := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], size)
	return oob
}

// writeGSO sends bufs to to, coalescing runs of equal-sized datagrams (the
// last of a run may be shorter). It returns how many datagrams went out.
// When the kernel refuses segmentation it reports ok=false and the caller
// falls back to sendmmsg, for good.
func (s *Socket) writeGSO(bufs [][]byte, to netip.AddrPort) (sent int, ok bool, err error) {
	bp := gsoScratch.Get().(*[]byte)
	defer gsoScratch.Put(bp)
	scratch := *bp
	for sent < len(bufs) {
		seg := len(bufs[sent])
		n, total := 0, 0
		for sent+n < len(bufs) && n < maxGSOSegments {
			l := len(bufs[sent+n])
			if l > seg || total+l > maxGSOBytes {
				break
			}
			copy(scratch[total:], bufs[sent+n])
			total += l
			n++
			if l < seg {
				break // a shorter datagram ends the run
			}
		}
		if n == 1 {
			if err := s.writeTo(bufs[sent], to); err != nil {
				return sent, true, err
			}
			sent++
			continue
		}
		if _, _, err := s.udp.WriteMsgUDPAddrPort(scratch[:total], gsoControl(uint16(seg)), to); err != nil {
			if sent == 0 {
				return 0, false, err // no GSO here: the caller falls back
			}
			return sent, true, err
		}
		sent += n
	}
	return sent, true, nil
}
