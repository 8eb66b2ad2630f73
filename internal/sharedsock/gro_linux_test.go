package sharedsock

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// cmsg builds one control message with an int payload, as the kernel
// writes UDP_GRO.
func cmsg(level, typ int32, v uint32) []byte {
	b := make([]byte, unix.CmsgSpace(4))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = level, typ
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[unix.CmsgLen(0):], v)
	return b
}

func TestGROSegmentSize(t *testing.T) {
	gro := cmsg(unix.SOL_UDP, unix.UDP_GRO, 1200)
	other := cmsg(unix.SOL_IP, unix.IP_TOS, 7)
	truncated := gro[:unix.CmsgLen(0)-1]
	badLen := append([]byte(nil), gro...)
	(*unix.Cmsghdr)(unsafe.Pointer(&badLen[0])).SetLen(len(badLen) + 64)
	short := make([]byte, unix.CmsgSpace(1))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&short[0]))
	h.Level, h.Type = unix.SOL_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(1))
	for _, tt := range []struct {
		name    string
		oob     []byte
		want    int
		wantErr bool
	}{
		{"none", nil, 0, false},
		{"gro", gro, 1200, false},
		{"other then gro", append(append([]byte(nil), other...), gro...), 1200, false},
		{"other only", other, 0, false},
		{"truncated header", truncated, 0, true},
		{"length past the buffer", badLen, 0, true},
		{"payload too short", short, 0, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := groSegmentSize(tt.oob)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("groSegmentSize = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// datagrams returns datagrams of the given sizes, every byte the
// datagram's number plus base, and their concatenation.
func datagrams(base int, sizes ...int) ([][]byte, []byte) {
	var out [][]byte
	var all []byte
	for i, n := range sizes {
		d := bytes.Repeat([]byte{byte(base + i)}, n)
		out = append(out, d)
		all = append(all, d...)
	}
	return out, all
}

// A read buffer the kernel coalesced splits into its datagrams, in order,
// each with the source of its buffer, into the batch's slots from 0.
func TestSplitGRO(t *testing.T) {
	a := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 1}
	b := &net.UDPAddr{IP: net.IPv4(198, 18, 0, 3), Port: 2}
	type read struct {
		addr  *net.UDPAddr
		seg   int // 0: no control message
		sizes []int
		oob   []byte // overrides seg
	}
	run := func(n int, sz int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = sz
		}
		return out
	}
	tests := []struct {
		name        string
		slots       int
		reads       []read
		wantDropped int
		wantN       int
	}{
		{"one plain datagram", 8, []read{{a, 0, []int{148}, nil}}, 0, 1},
		{"equal run", 8, []read{{a, 100, run(4, 100), nil}}, 0, 4},
		{"run ending short", 8, []read{{a, 100, []int{100, 100, 37}, nil}}, 0, 3},
		{"segment size of one datagram", 8, []read{{a, 100, []int{60}, nil}}, 0, 1},
		{"two sources", 8, []read{{a, 100, run(3, 100), nil}, {b, 50, []int{50, 50, 10}, nil}}, 0, 6},
		{"plain after run", 8, []read{{a, 100, run(3, 100), nil}, {b, 0, []int{70}, nil}}, 0, 4},
		{"full batch", 128, []read{{a, 1000, run(64, 1000), nil}, {b, 1000, run(64, 1000), nil}}, 0, 128},
		{"bad control dropped", 8, []read{{a, 0, run(3, 100), []byte{1, 2, 3}}, {b, 100, run(2, 100), nil}}, 1, 2},
		// More segments than fit: the tail is dropped, what fits is intact.
		{"overflow", 4, []read{{a, 10, run(6, 10), nil}}, 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msgs := make([]ipv4.Message, tt.slots)
			for i := range msgs {
				msgs[i].Buffers = [][]byte{make([]byte, 65535)}
			}
			readAt := tt.slots - len(tt.reads)
			var want [][]byte
			var wantAddr []net.Addr
			for j, r := range tt.reads {
				ds, all := datagrams(10*j, r.sizes...)
				m := &msgs[readAt+j]
				m.N = copy(m.Buffers[0], all)
				m.Addr = r.addr
				switch {
				case r.oob != nil:
					m.OOB = r.oob
				case r.seg > 0:
					m.OOB = cmsg(unix.SOL_UDP, unix.UDP_GRO, uint32(r.seg))
				}
				m.NN = len(m.OOB)
				if r.oob == nil {
					for _, d := range ds {
						want = append(want, d)
						wantAddr = append(wantAddr, r.addr)
					}
				}
			}
			want, wantAddr = want[:min(len(want), tt.wantN)], wantAddr[:min(len(want), tt.wantN)]
			n, dropped := splitGRO(msgs, readAt, len(tt.reads))
			if n != tt.wantN || dropped != tt.wantDropped {
				t.Fatalf("split into %d, dropped %d; want %d, %d", n, dropped, tt.wantN, tt.wantDropped)
			}
			for i := range n {
				got := msgs[i].Buffers[0][:msgs[i].N]
				if !bytes.Equal(got, want[i]) {
					t.Fatalf("datagram %d: %d bytes of %v…, want %d bytes of %v", i, len(got), got[:min(len(got), 1)], len(want[i]), want[i][:1])
				}
				if msgs[i].Addr != wantAddr[i] {
					t.Fatalf("datagram %d from %v, want %v", i, msgs[i].Addr, wantAddr[i])
				}
			}
		})
	}
}

func TestSegments(t *testing.T) {
	for _, tt := range []struct {
		n, seg int
		want   []int
	}{
		{0, 0, []int{0}},
		{10, 0, []int{10}},
		{10, 10, []int{10}},
		{10, 20, []int{10}},
		{10, 3, []int{3, 3, 3, 1}},
		{9, 3, []int{3, 3, 3}},
		{10, -1, []int{10}},
	} {
		var got []int
		segments(make([]byte, tt.n), tt.seg, func(d []byte) { got = append(got, len(d)) })
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("segments(%d, %d) = %v, want %v", tt.n, tt.seg, got, tt.want)
		}
	}
}

// Over loopback the kernel delivers a segmentation-offload send to a
// socket with UDP_GRO as one buffer. A run of WireGuard datagrams whose
// shorter last datagram is a STUN request (same flow: ICE checks and
// WireGuard share the 5-tuple) reaches wireguard-go as the WireGuard
// datagrams and the mux as the STUN request, with the Bind open and,
// through the standby reader, with it closed.
func TestGROBatchWithSTUN(t *testing.T) {
	s := listen(t)
	if !s.gro {
		var u unix.Utsname
		_ = unix.Uname(&u)
		t.Skipf("UDP_GRO not available (kernel %s; needs ≥ 5.12)", bytes.TrimRight(u.Release[:], "\x00"))
	}
	c := client(t)
	muxed, err := s.UDPMux().GetConn("gro", net.UDPAddrFromAddrPort(s.LocalAddr()))
	if err != nil {
		t.Fatalf("GetConn: %v", err)
	}
	defer muxed.Close()
	const seg = 200
	for _, open := range []bool{true, false} {
		t.Run(fmt.Sprintf("bind open %v", open), func(t *testing.T) {
			var dev *fakeDevice
			if open {
				dev = openBind(t, s.Bind())
				defer dev.stop(t, s.Bind())
			}
			before := s.stats.coalesced.Load()
			req := stunRequest(t, "gro:x", "p").Raw
			if len(req) >= seg {
				t.Fatalf("STUN request of %d bytes: not shorter than the segment", len(req))
			}
			var wg [][]byte
			var buf []byte
			for i := range 3 {
				p := wgPacket(4, seg, byte(i+1))
				wg = append(wg, p)
				buf = append(buf, p...)
			}
			buf = append(buf, req...)
			if _, _, err := c.WriteMsgUDPAddrPort(buf, gsoControl(seg), s.LocalAddr()); err != nil {
				t.Fatalf("send with UDP_SEGMENT: %v", err)
			}
			if got, _ := readMux(t, muxed); !bytes.Equal(got, req) {
				t.Fatalf("mux got %d bytes %x, want the STUN request", len(got), got)
			}
			if open {
				for i, want := range wg {
					if r := dev.next(t); !bytes.Equal(r.data, want) {
						t.Fatalf("wireguard datagram %d: got %d bytes, want %d bytes ending %d", i, len(r.data), len(want), want[len(want)-1])
					}
				}
			}
			if s.stats.coalesced.Load() == before {
				t.Fatal("the kernel did not coalesce: the test did not exercise GRO")
			}
		})
	}
}
