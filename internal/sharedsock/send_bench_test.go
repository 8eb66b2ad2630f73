package sharedsock

import (
	"fmt"
	"net"
	"testing"
)

// BenchmarkSendBatch is one wireguard-go batch through Bind.Send to a
// loopback socket that never reads (the kernel drops what overflows its
// buffer after delivering it, so every op costs the same): 64 datagrams of
// 1312 bytes (a full TSO read at MTU 1280, as WireGuard transport
// messages) and, for the ACK direction, single datagrams of 96 bytes.
//
//	go test -run '^$' -bench SendBatch -benchmem ./internal/sharedsock/
func BenchmarkSendBatch(b *testing.B) {
	for _, tt := range []struct {
		n, size int
		gso     bool
	}{{64, 1312, true}, {64, 1312, false}, {1, 96, true}} {
		b.Run(fmt.Sprintf("%dx%d-gso=%v", tt.n, tt.size, tt.gso), func(b *testing.B) {
			s, err := Listen(loopback, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			s.noGSO.Store(!tt.gso)
			sink, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(loopback))
			if err != nil {
				b.Fatal(err)
			}
			defer sink.Close()
			ep, err := s.Bind().ParseEndpoint(sink.LocalAddr().String())
			if err != nil {
				b.Fatal(err)
			}
			bufs := make([][]byte, tt.n)
			for i := range bufs {
				bufs[i] = wgPacket(4, tt.size, byte(i))
			}
			b.SetBytes(int64(tt.n * tt.size))
			b.ResetTimer()
			for range b.N {
				if err := s.Bind().Send(bufs, ep); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
