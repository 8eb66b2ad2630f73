package turnsrv

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/turn/v2"
	"go.uber.org/zap"
)

// deadline bounds every read: a failure deadline, never an expectation.
const deadline = 20 * time.Second

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// newClient returns a listening pion TURN client on its own loopback socket.
func newClient(t *testing.T, s *Server, user, pass string) *turn.Client {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: s.Addr(),
		TURNServerAddr: s.Addr(),
		Conn:           conn,
		Username:       user,
		Password:       pass,
		LoggerFactory:  zapFactory{log: zap.NewNop()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		_ = conn.Close()
	})
	return c
}

func TestURIsAndCredentials(t *testing.T) {
	s := startServer(t, Config{})
	host, port, err := net.SplitHostPort(s.Addr())
	if err != nil || host != "127.0.0.1" || port == "0" {
		t.Fatalf("Addr = %q (%v)", s.Addr(), err)
	}
	if got, want := s.STUNURI(), "stun:127.0.0.1:"+port; got != want {
		t.Fatalf("STUNURI = %q, want %q", got, want)
	}
	if got, want := s.TURNURI(), "turn:127.0.0.1:"+port+"?transport=udp"; got != want {
		t.Fatalf("TURNURI = %q, want %q", got, want)
	}
	user, pass := s.Credentials()
	if user != DefaultUser || len(pass) < 16 || s.Realm() != DefaultRealm {
		t.Fatalf("credentials %q/%q realm %q", user, pass, s.Realm())
	}
	other := startServer(t, Config{User: "u", Password: "p", Realm: "r"})
	if u, p := other.Credentials(); u != "u" || p != "p" || other.Realm() != "r" {
		t.Fatalf("configured credentials %q/%q realm %q", u, p, other.Realm())
	}
	if _, p := startServer(t, Config{}).Credentials(); p == pass {
		t.Fatal("two servers got the same random password")
	}
}

func TestSTUNBinding(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t, s, "", "")
	mapped, err := c.SendBindingRequest()
	if err != nil {
		t.Fatalf("binding: %v", err)
	}
	if !strings.HasPrefix(mapped.String(), "127.0.0.1:") {
		t.Fatalf("mapped address = %s", mapped)
	}
}

func TestTURNAllocationRelaysBothWays(t *testing.T) {
	s := startServer(t, Config{})
	user, pass := s.Credentials()
	c := newClient(t, s, user, pass)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	raddr, ok := relay.LocalAddr().(*net.UDPAddr)
	if !ok || !raddr.IP.Equal(net.IPv4(127, 0, 0, 1)) || raddr.Port == 0 {
		t.Fatalf("relay address = %v", relay.LocalAddr())
	}
	if got := s.Allocations(); got != 1 {
		t.Fatalf("Allocations = %d, want 1", got)
	}

	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	buf := make([]byte, 64)

	// Client → relay → peer (the write installs the permission).
	if _, err := relay.WriteTo([]byte("out"), peer.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	_ = peer.SetReadDeadline(time.Now().Add(deadline))
	n, from, err := peer.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "out" || from.String() != raddr.String() {
		t.Fatalf("peer read %q from %v: %v (want from %v)", buf[:n], from, err, raddr)
	}

	// Peer → relay → client.
	if _, err := peer.WriteTo([]byte("back"), raddr); err != nil {
		t.Fatal(err)
	}
	_ = relay.SetReadDeadline(time.Now().Add(deadline))
	n, from, err = relay.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "back" || from.String() != peer.LocalAddr().String() {
		t.Fatalf("client read %q from %v: %v", buf[:n], from, err)
	}
}

func TestTURNRefusesBadCredentials(t *testing.T) {
	s := startServer(t, Config{})
	user, pass := s.Credentials()
	tests := []struct{ name, user, pass string }{
		{"wrong password", user, pass + "x"},
		{"unknown user", "mallory", pass},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, s, tt.user, tt.pass)
			if relay, err := c.Allocate(); err == nil {
				relay.Close()
				t.Fatal("Allocate succeeded")
			}
		})
	}
	if got := s.Allocations(); got != 0 {
		t.Fatalf("Allocations = %d", got)
	}
}

func TestRelayIPFor(t *testing.T) {
	for _, tc := range []struct {
		addr net.Addr
		want string
	}{
		{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 3478}, "127.0.0.1"},
		{&net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 3478}, "198.18.0.1"},
		{&net.UDPAddr{IP: net.IPv4zero, Port: 3478}, "127.0.0.1"},
		{&net.UDPAddr{Port: 3478}, "127.0.0.1"},
		{&net.TCPAddr{IP: net.IPv4(198, 18, 0, 1)}, "127.0.0.1"},
	} {
		if got := relayIPFor(tc.addr); got.String() != tc.want {
			t.Errorf("relayIPFor(%v) = %v, want %s", tc.addr, got, tc.want)
		}
	}
}
