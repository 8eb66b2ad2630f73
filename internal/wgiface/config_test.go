package wgiface_test

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

func TestNewRejectsBadConfig(t *testing.T) {
	sock, err := sharedsock.Listen(loopback, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParsePrefix("100.64.0.1/10")
	tests := []struct {
		name string
		cfg  wgiface.Config
	}{
		{"no address", wgiface.Config{PrivateKey: key, Socket: sock}},
		{"no key", wgiface.Config{Address: addr, Socket: sock}},
		{"tiny mtu", wgiface.Config{PrivateKey: key, Address: addr, Socket: sock, MTU: 100}},
		{"tun without name", wgiface.Config{Mode: wgiface.TUN, PrivateKey: key, Address: addr, Socket: sock}},
		{"unknown mode", wgiface.Config{Mode: 9, PrivateKey: key, Address: addr, Socket: sock}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := wgiface.New(tt.cfg); !errors.Is(err, wgiface.ErrBadConfig) {
				t.Errorf("New: %v, want ErrBadConfig", err)
			}
		})
	}
}

// TestPeerLifecycle adds, updates and removes a peer on a netstack
// interface and checks PeerStats along the way, then the closed errors.
func TestPeerLifecycle(t *testing.T) {
	n := newNode(t, "100.64.5.1/10")
	peer := testPub(t)
	ep := netip.MustParseAddrPort("127.0.0.1:9")
	steps := []struct {
		name    string
		do      func() error
		wantErr error
		present bool
		wantEP  netip.AddrPort
	}{
		{"add", func() error {
			return n.iface.SetPeer(wgiface.Peer{Key: peer, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.5.2/32")}})
		}, nil, true, netip.AddrPort{}},
		{"update endpoint", func() error {
			return n.iface.SetPeer(wgiface.Peer{Key: peer, Endpoint: ep})
		}, nil, true, ep},
		{"update allowed ips keeps endpoint", func() error {
			return n.iface.SetPeer(wgiface.Peer{Key: peer, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.5.3/32")}})
		}, nil, true, ep},
		{"initiate: one handshake initiation sent now", func() error {
			before := n.sock.Stats().WireGuardOut
			if err := n.iface.Initiate(peer); err != nil {
				return err
			}
			if sent := n.sock.Stats().WireGuardOut - before; sent != 1 {
				return fmt.Errorf("%d datagrams sent, want 1", sent)
			}
			return nil
		}, nil, true, ep},
		{"a queued change with Initiate: set, then one initiation to its endpoint", func() error {
			// Another peer: wireguard-go sends no initiation within 5 s
			// of the last one to the same peer (the step above).
			before := n.sock.Stats().WireGuardOut
			done := make(chan error, 1)
			if err := n.iface.Enqueue(wgiface.Change{Peer: wgiface.Peer{Key: testPub(t), Endpoint: ep}, Initiate: true},
				func(err error) { done <- err }); err != nil {
				return err
			}
			if err := <-done; err != nil {
				return err
			}
			if sent := n.sock.Stats().WireGuardOut - before; sent != 1 {
				return fmt.Errorf("%d datagrams sent, want 1", sent)
			}
			return nil
		}, nil, true, ep},
		{"unknown relay endpoint", func() error {
			return n.iface.SetPeer(wgiface.Peer{Key: peer, Endpoint: netip.MustParseAddrPort("240.1.2.3:1")})
		}, wgiface.ErrDevice, true, ep},
		{"zero key", func() error { return n.iface.SetPeer(wgiface.Peer{}) }, wgiface.ErrBadPeer, true, ep},
		{"negative keepalive", func() error {
			return n.iface.SetPeer(wgiface.Peer{Key: peer, Keepalive: -time.Second})
		}, wgiface.ErrBadPeer, true, ep},
		{"remove", func() error { return n.iface.RemovePeer(peer) }, nil, false, netip.AddrPort{}},
		{"remove again", func() error { return n.iface.RemovePeer(peer) }, nil, false, netip.AddrPort{}},
		{"initiate an unknown peer", func() error { return n.iface.Initiate(peer) }, wgiface.ErrBadPeer, false, netip.AddrPort{}},
	}
	for _, s := range steps {
		if err := s.do(); !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: err %v, want %v", s.name, err, s.wantErr)
		}
		stats, err := n.iface.PeerStats()
		if err != nil {
			t.Fatalf("%s: PeerStats: %v", s.name, err)
		}
		st, ok := stats[peer]
		if ok != s.present || st.Endpoint != s.wantEP {
			t.Fatalf("%s: present=%v endpoint=%v, want %v %v", s.name, ok, st.Endpoint, s.present, s.wantEP)
		}
		// Endpoint (in-process, what the peer machine's roaming check
		// reads) agrees with PeerStats.
		if got, relayed, err := n.iface.Endpoint(peer); err != nil || got != s.wantEP || relayed {
			t.Fatalf("%s: Endpoint %v relayed %v err %v, want %v", s.name, got, relayed, err, s.wantEP)
		}
	}
	if err := n.iface.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.iface.SetPeer(wgiface.Peer{Key: peer}); !errors.Is(err, wgiface.ErrClosed) {
		t.Errorf("SetPeer after Close: %v, want ErrClosed", err)
	}
	if err := n.iface.Initiate(peer); !errors.Is(err, wgiface.ErrClosed) {
		t.Errorf("Initiate after Close: %v, want ErrClosed", err)
	}
	if _, err := n.iface.PeerStats(); !errors.Is(err, wgiface.ErrClosed) {
		t.Errorf("PeerStats after Close: %v, want ErrClosed", err)
	}
	if _, _, err := n.iface.Endpoint(peer); !errors.Is(err, wgiface.ErrClosed) {
		t.Errorf("Endpoint after Close: %v, want ErrClosed", err)
	}
}

func testPub(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}
