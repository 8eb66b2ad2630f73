package sharedsock

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// A batch reaches the remote as the same datagrams, in order, whatever the
// path (one datagram, a GSO run, runs split by a shorter or longer datagram,
// more than one GSO buffer's worth, or sendmmsg when GSO is off).
func TestSendBatches(t *testing.T) {
	datagram := func(i, size int) []byte {
		b := bytes.Repeat([]byte{byte(i)}, size)
		copy(b, fmt.Sprintf("%04d", i))
		return b
	}
	sizes := func(n, size int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = size
		}
		return out
	}
	tests := []struct {
		name  string
		sizes []int
	}{
		{"one", []int{148}},
		{"equal run", sizes(10, 1200)},
		{"run ending short", append(sizes(7, 1200), 300)},
		{"longer after shorter", []int{1200, 1200, 300, 1200, 1200}},
		{"more than one buffer", sizes(60, 1200)}, // 72 000 bytes: two GSO buffers
		{"more than 64 small", sizes(100, 100)},
	}
	for _, gso := range []bool{true, false} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s gso=%v", tt.name, gso), func(t *testing.T) {
				s := listen(t)
				s.noGSO.Store(!gso)
				c := client(t)
				setBuffers(c) // a burst must not overflow the receiver
				ep, err := s.Bind().ParseEndpoint(c.LocalAddr().String())
				if err != nil {
					t.Fatal(err)
				}
				var bufs [][]byte
				for i, n := range tt.sizes {
					bufs = append(bufs, datagram(i, n))
				}
				if err := s.Bind().Send(bufs, ep); err != nil {
					t.Fatal(err)
				}
				_ = c.SetReadDeadline(time.Now().Add(deadline))
				buf := make([]byte, 2048)
				for i, want := range bufs {
					n, from, err := c.ReadFromUDPAddrPort(buf)
					if err != nil {
						t.Fatalf("datagram %d: %v", i, err)
					}
					if !bytes.Equal(buf[:n], want) {
						t.Fatalf("datagram %d: got %d bytes %q…, want %d bytes %q…", i, n, buf[:4], len(want), want[:4])
					}
					if from != netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.LocalAddr().Port()) {
						t.Fatalf("from %v", from)
					}
				}
				if got := s.Stats().WireGuardOut; got != uint64(len(bufs)) {
					t.Fatalf("WireGuardOut %d, want %d", got, len(bufs))
				}
			})
		}
	}
}
