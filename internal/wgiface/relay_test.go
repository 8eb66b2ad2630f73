package wgiface_test

import (
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/internal/testnet/turnsrv"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"

	"github.com/nbfsm/nbfsm/internal/sharedsock"
)

// startTURN runs the test network's STUN/TURN server on 127.0.0.1 for this
// test only.
func startTURN(t *testing.T) *stun.URI {
	t.Helper()
	srv, err := turnsrv.Start(turnsrv.Config{})
	if err != nil {
		t.Fatalf("turn server: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	uri, err := stun.ParseURI(srv.TURNURI())
	if err != nil {
		t.Fatal(err)
	}
	uri.Username, uri.Password = srv.Credentials()
	return uri
}

// TestRelayedPath restricts both agents to TURN relay candidates and carries
// WireGuard through the relay endpoint bridge: the controlling side sets the
// relay endpoint with keepalive, the controlled side only registers its
// relay and learns the endpoint from the handshake, as on a direct pair.
func TestRelayedPath(t *testing.T) {
	uri := startTURN(t)
	a, b := newNode(t, "100.64.1.1/10"), newNode(t, "100.64.1.2/10")
	a.addPeer(t, b)
	b.addPeer(t, a)

	relay := []ice.CandidateType{ice.CandidateTypeRelay}
	ia := newICESide(t, agentConfig(a.sock, relay, []*stun.URI{uri}))
	ib := newICESide(t, agentConfig(b.sock, relay, []*stun.URI{uri}))
	connectICE(t, ia, ib)
	if _, typ := selectedRemote(t, ia); typ != ice.CandidateTypeRelay {
		t.Fatalf("selected remote type %v, want relay", typ)
	}

	epA, stopA, err := a.sock.RelayEndpoint(b.pub(), ia.conn)
	if err != nil {
		t.Fatalf("RelayEndpoint a: %v", err)
	}
	defer stopA()
	epB, stopB, err := b.sock.RelayEndpoint(a.pub(), ib.conn)
	if err != nil {
		t.Fatalf("RelayEndpoint b: %v", err)
	}
	defer stopB()
	if !epA.Relayed() || !sharedsock.RelayPrefix.Contains(epA.AddrPort().Addr()) {
		t.Fatalf("bad relay endpoint %v", epA.AddrPort())
	}
	a.connectTo(t, b, epA.AddrPort())
	pingBoth(t, a, b)

	for name, n := range map[string]*node{"a": a, "b": b} {
		st := n.sock.Stats()
		if st.RelayIn == 0 || st.RelayOut == 0 || st.WireGuardIn != 0 || st.WireGuardOut != 0 {
			t.Errorf("%s: stats %+v: want WireGuard through the relay only", name, st)
		}
	}
	if a.sock.LastReceive(epA.AddrPort()).IsZero() {
		t.Error("LastReceive of the relay endpoint is zero")
	}
	checkStats(t, a, b, epA.AddrPort(), true)
	checkStats(t, b, a, epB.AddrPort(), true)

	// Stopping the relay closes the ICE connection (and its agent).
	stopA()
	select {
	case <-waitState(ia, ice.ConnectionStateClosed):
	case <-time.After(deadline):
		t.Error("agent a not closed by stopping its relay")
	}
}

// waitState returns a channel closed when s reports state want.
func waitState(s *iceSide, want ice.ConnectionState) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		timeout := time.After(deadline)
		for {
			select {
			case st := <-s.states:
				if st == want {
					return
				}
			case <-timeout:
				return
			}
		}
	}()
	return done
}
