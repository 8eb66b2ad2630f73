package peerfsm

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
)

func TestUselessCandidate(t *testing.T) {
	host := func(addr string) ice.Candidate {
		c, err := ice.NewCandidateHost(&ice.CandidateHostConfig{Network: "udp", Address: addr, Port: 51820, Component: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srflx := func(addr, raddr string) ice.Candidate {
		c, err := ice.NewCandidateServerReflexive(&ice.CandidateServerReflexiveConfig{
			Network: "udp", Address: addr, Port: 40000, Component: 1, RelAddr: raddr, RelPort: 51820})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	overlay := netip.MustParsePrefix("100.64.0.0/10")
	base := map[netip.Addr]bool{netip.MustParseAddr("198.18.0.12"): true}
	tests := []struct {
		name       string
		c          ice.Candidate
		loopbackOK bool
		bases      map[netip.Addr]bool
		want       bool
	}{
		{"host on the LAN", host("198.18.0.12"), false, base, false},
		{"host on loopback", host("127.0.0.1"), false, base, true},
		{"host on loopback, socket on loopback", host("127.0.0.1"), true, nil, false},
		{"host in the overlay", host("100.64.0.7"), false, base, true},
		{"srflx from the real base", srflx("203.0.113.9", "198.18.0.12"), false, base, false},
		{"srflx with loopback raddr", srflx("203.0.113.9", "127.0.0.1"), false, base, true},
		{"srflx with loopback raddr, bases unknown", srflx("203.0.113.9", "127.0.0.1"), false, nil, true},
		{"srflx from another local address", srflx("203.0.113.9", "10.1.2.3"), false, base, true},
		{"srflx, bases unknown", srflx("203.0.113.9", "10.1.2.3"), false, nil, false},
		{"srflx on loopback test network", srflx("127.0.0.1", "127.0.0.1"), true, map[netip.Addr]bool{netip.MustParseAddr("127.0.0.1"): true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := uselessCandidate(tt.c, tt.loopbackOK, overlay, tt.bases); got != tt.want {
				t.Errorf("useless = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRouteBases(t *testing.T) {
	u, err := stun.ParseURI("stun:127.0.0.1:3478")
	if err != nil {
		t.Fatal(err)
	}
	// Unspecified socket: the route towards the server decides (loopback
	// here; no datagram is sent).
	got := routeBases(netip.IPv4Unspecified(), []*stun.URI{u})
	if !got[netip.MustParseAddr("127.0.0.1")] || len(got) != 1 {
		t.Errorf("bases for 0.0.0.0: %v", got)
	}
	// Bound socket: its own address.
	got = routeBases(netip.MustParseAddr("198.18.0.12"), []*stun.URI{u})
	if !got[netip.MustParseAddr("198.18.0.12")] || len(got) != 1 {
		t.Errorf("bases for a bound socket: %v", got)
	}
}

func TestHandshakeGrace(t *testing.T) {
	for _, tt := range []struct{ rtt, want time.Duration }{
		{0, 150 * time.Millisecond},
		{time.Millisecond, 150 * time.Millisecond},
		{50 * time.Millisecond, 200 * time.Millisecond},
		{time.Second, time.Second},
	} {
		if got := HandshakeGrace(tt.rtt); got != tt.want {
			t.Errorf("HandshakeGrace(%v) = %v, want %v", tt.rtt, got, tt.want)
		}
	}
}
