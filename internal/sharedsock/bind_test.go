package sharedsock

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
)

// TestBindCycles closes and reopens the Bind as wireguard-go does on every
// Down/Up and checks that WireGuard, the mux and the socket keep working.
func TestBindCycles(t *testing.T) {
	s := listen(t)
	c := client(t)
	b := s.Bind()
	muxed, err := s.UDPMux().GetConn("cyc", net.UDPAddrFromAddrPort(s.LocalAddr()))
	if err != nil {
		t.Fatalf("GetConn: %v", err)
	}
	defer muxed.Close()
	for cycle := range 5 {
		fns, port, err := b.Open(0)
		if err != nil {
			t.Fatalf("cycle %d: Open: %v", cycle, err)
		}
		if port != s.LocalAddr().Port() {
			t.Fatalf("cycle %d: port %d, want %d", cycle, port, s.LocalAddr().Port())
		}
		if len(fns) != 2 {
			t.Fatalf("cycle %d: %d receive funcs, want 2", cycle, len(fns))
		}
		if _, _, err := b.Open(port); !errors.Is(err, conn.ErrBindAlreadyOpen) {
			t.Fatalf("cycle %d: second Open: %v, want ErrBindAlreadyOpen", cycle, err)
		}
		// Run the receive funcs like wireguard-go.
		dev := &fakeDevice{got: make(chan received, 8), errs: make(chan error, 2)}
		for _, fn := range fns {
			dev.wg.Add(1)
			go dev.run(fn, b.BatchSize())
		}
		pkt := wgPacket(4, 64, byte(cycle))
		send(t, c, s.LocalAddr(), pkt)
		if r := dev.next(t); !bytes.Equal(r.data, pkt) {
			t.Fatalf("cycle %d: wireguard got %x", cycle, r.data)
		}
		// Outbound through the Bind reaches the client.
		ep, err := b.ParseEndpoint(addrOf(c).String())
		if err != nil {
			t.Fatalf("ParseEndpoint: %v", err)
		}
		if err := b.Send([][]byte{pkt}, ep); err != nil {
			t.Fatalf("Send: %v", err)
		}
		buf := make([]byte, 128)
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || !bytes.Equal(buf[:n], pkt) {
			t.Fatalf("client read %x, %v", buf[:n], err)
		}
		dev.stop(t, b) // receive funcs must return net.ErrClosed
		// While closed, STUN still reaches the mux.
		req := stunRequest(t, "cyc:x", "p").Raw
		send(t, c, s.LocalAddr(), req)
		if got, _ := readMux(t, muxed); !bytes.Equal(got, req) {
			t.Fatalf("cycle %d: mux got %x while bind closed", cycle, got)
		}
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close of a closed bind: %v", err)
	}
}

func TestBindErrors(t *testing.T) {
	s := listen(t)
	b := s.Bind()
	tests := []struct {
		name string
		run  func() error
		want error
	}{
		{"open other port", func() error { _, _, err := b.Open(s.LocalAddr().Port() + 1); return err }, ErrPortFixed},
		{"parse junk", func() error { _, err := b.ParseEndpoint("nonsense"); return err }, ErrBadEndpoint},
		{"parse host name", func() error { _, err := b.ParseEndpoint("example.com:1"); return err }, ErrBadEndpoint},
		{"parse unknown relay", func() error { _, err := b.ParseEndpoint("240.0.0.9:1"); return err }, ErrUnknownRelay},
		{"send foreign endpoint", func() error {
			return b.Send([][]byte{{1}}, &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:9")})
		}, ErrWrongEndpoint},
		{"respond empty pwd", func() error { _, err := s.Respond("u", "", netip.AddrPort{}); return err }, ErrBadCredentials},
		{"respond colon ufrag", func() error { _, err := s.Respond("a:b", "p", netip.AddrPort{}); return err }, ErrBadCredentials},
		{"listen zero", func() error { _, err := Listen(netip.AddrPort{}, nil); return err }, ErrBadAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestSocketCloseWhileBindOpen checks that closing the socket under an open
// Bind ends its receive functions with net.ErrClosed and that a later Open
// fails.
func TestSocketCloseWhileBindOpen(t *testing.T) {
	s, err := Listen(loopback, nil)
	if err != nil {
		t.Fatal(err)
	}
	dev := openBind(t, s.Bind())
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	dev.stop(t, s.Bind())
	if _, _, err := s.Bind().Open(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Open after Close: %v, want ErrClosed", err)
	}
}
