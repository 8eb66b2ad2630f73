package sharedsock

import (
	"bytes"
	"net"
	"os"
	"slices"
	"testing"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// fill lays a batch out as sendmmsg messages: with GSO a run of equal sizes
// (the last may be shorter) is one message of at most maxGSOSegments
// datagrams and maxGSOBytes; its iovecs are the caller's buffers (no copy)
// and its control message carries the run's segment size.
func TestSendBatchFill(t *testing.T) {
	rep := func(n, size int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = size
		}
		return out
	}
	tests := []struct {
		name  string
		sizes []int
		gso   bool
		want  []int // datagrams per message
	}{
		{"one", []int{148}, true, []int{1}},
		{"equal run", rep(10, 1312), true, []int{10}},
		{"run ending short", append(rep(7, 1312), 300), true, []int{8}},
		{"shorter ends the run", []int{1312, 1312, 300, 1312, 1312}, true, []int{3, 2}},
		{"longer starts a run", []int{300, 1312, 1312}, true, []int{1, 2}},
		{"byte limit", rep(60, 1200), true, []int{54, 6}},     // 54 × 1200 = 64 800 ≤ 65 000
		{"segment limit", rep(100, 100), true, []int{64, 36}}, // maxGSOSegments
		{"ACKs and data", []int{92, 92, 92}, true, []int{3}},
		{"no gso", rep(4, 1312), false, []int{1, 1, 1, 1}},
	}
	to := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var bufs [][]byte
			for i, n := range tt.sizes {
				bufs = append(bufs, bytes.Repeat([]byte{byte(i)}, n))
			}
			b := sendPool.New().(*sendBatch)
			k := b.fill(bufs, to, tt.gso)
			if got := b.segs[:k]; !slices.Equal(got, tt.want) {
				t.Fatalf("datagrams per message %v, want %v", got, tt.want)
			}
			next := 0
			for i, m := range b.msgs[:k] {
				if m.Addr != to {
					t.Errorf("message %d: addr %v", i, m.Addr)
				}
				for j, buf := range m.Buffers {
					if &buf[0] != &bufs[next][0] || len(buf) != len(bufs[next]) {
						t.Fatalf("message %d iovec %d is not datagram %d", i, j, next)
					}
					next++
				}
				seg, err := groSegmentSize(m.OOB) // same layout as UDP_SEGMENT, other type
				if err != nil {
					t.Fatalf("message %d: control %v", i, err)
				}
				if seg != 0 {
					t.Fatalf("message %d: control parsed as UDP_GRO", i)
				}
				switch {
				case len(m.Buffers) == 1 && m.OOB != nil:
					t.Errorf("message %d: one datagram with a segment size", i)
				case len(m.Buffers) > 1 && !bytes.Equal(m.OOB, gsoControl(uint16(len(m.Buffers[0])))):
					t.Errorf("message %d: control %x, want segment size %d", i, m.OOB, len(m.Buffers[0]))
				}
			}
			if next != len(bufs) {
				t.Fatalf("%d datagrams laid out, want %d", next, len(bufs))
			}
			b.reset(k)
			for i, m := range b.msgs[:k] {
				if m.Buffers != nil || m.Addr != nil || m.OOB != nil {
					t.Fatalf("message %d still holds the batch after reset", i)
				}
			}
		})
	}
}

// refusingConn is a batchConn whose kernel refuses segmentation with errno
// (as a device without checksum offload does with EIO) and sends
// everything else; it records what went out.
type refusingConn struct {
	errno unix.Errno
	sent  [][]byte
	calls int
}

func (c *refusingConn) ReadBatch([]ipv4.Message, int) (int, error) { return 0, net.ErrClosed }

func (c *refusingConn) WriteBatch(ms []ipv4.Message, _ int) (int, error) {
	c.calls++
	for i, m := range ms {
		if m.OOB != nil {
			if i == 0 {
				return 0, &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmmsg", c.errno)}
			}
			return i, nil
		}
		c.sent = append(c.sent, slices.Clone(m.Buffers[0]))
	}
	return len(ms), nil
}

// A kernel that refuses segmentation: the datagrams sent before the refusal
// stay sent, the rest go out one per message, and segmentation stays off
// for the next batches. Any other error of a segmented message (an ICMP's
// ECONNREFUSED) fails the send and leaves segmentation on.
func TestSendGSORefused(t *testing.T) {
	for _, tt := range []struct {
		errno   unix.Errno
		refused bool
	}{
		{unix.EIO, true},
		{unix.EINVAL, true},
		{unix.ECONNREFUSED, false},
	} {
		t.Run(tt.errno.Error(), func(t *testing.T) {
			s := listen(t)
			fake := &refusingConn{errno: tt.errno}
			s.batch = fake
			ep, err := s.Bind().ParseEndpoint("127.0.0.1:9")
			if err != nil {
				t.Fatal(err)
			}
			// One small datagram, then a run: the first message goes out,
			// the run is refused.
			bufs := [][]byte{bytes.Repeat([]byte{0}, 300)}
			for i := 1; i <= 5; i++ {
				bufs = append(bufs, bytes.Repeat([]byte{byte(i)}, 1312))
			}
			err = s.Bind().Send(bufs, ep)
			if !tt.refused {
				if err == nil {
					t.Fatal("send succeeded, want the segmented message's error")
				}
				if s.noGSO.Load() {
					t.Fatal("segmentation turned off by a send error")
				}
				if len(fake.sent) != 1 || s.Stats().WireGuardOut != 1 {
					t.Fatalf("%d sent, WireGuardOut %d, want 1 and 1", len(fake.sent), s.Stats().WireGuardOut)
				}
				return
			}
			if err != nil {
				t.Fatalf("send: %v", err)
			}
			if !s.noGSO.Load() {
				t.Fatal("segmentation still on after the kernel refused it")
			}
			if len(fake.sent) != len(bufs) {
				t.Fatalf("%d datagrams sent, want %d", len(fake.sent), len(bufs))
			}
			for i := range bufs {
				if !bytes.Equal(fake.sent[i], bufs[i]) {
					t.Fatalf("datagram %d out of order or changed", i)
				}
			}
			if got := s.Stats().WireGuardOut; got != uint64(len(bufs)) {
				t.Fatalf("WireGuardOut %d, want %d", got, len(bufs))
			}
			calls := fake.calls
			if err := s.Bind().Send(bufs[1:], ep); err != nil {
				t.Fatal(err)
			}
			if fake.calls != calls+1 || len(fake.sent) != 2*len(bufs)-1 {
				t.Fatalf("next batch: %d calls, %d sent; want one call sending all %d unsegmented",
					fake.calls-calls, len(fake.sent)-len(bufs), len(bufs)-1)
			}
		})
	}
}
