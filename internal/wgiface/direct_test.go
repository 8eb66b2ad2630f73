package wgiface_test

import (
	"testing"
	"time"

	"github.com/pion/ice/v2"
)

// keepAliveWatch is how long a remote pion agent must stay Connected on the
// responder alone: two of its 6 s disconnected timeouts.
const keepAliveWatch = 13 * time.Second

// TestDirectPath is the whole direct data path in one process: two shared
// sockets, two netstack WireGuard interfaces, two pion agents on the
// sockets' mux. After ICE connects only the controlling side sets endpoint
// and keepalive; traffic passes both ways, survives device Down/Up, then
// survives closing the agents because the sockets answer STUN themselves.
func TestDirectPath(t *testing.T) {
	a, b := newNode(t, "100.64.0.1/10"), newNode(t, "100.64.0.2/10")
	a.addPeer(t, b)
	b.addPeer(t, a)

	host := []ice.CandidateType{ice.CandidateTypeHost}
	ia := newICESide(t, agentConfig(a.sock, host, nil)) // controlling
	ib := newICESide(t, agentConfig(b.sock, host, nil)) // controlled
	connectICE(t, ia, ib)

	remote, typ := selectedRemote(t, ia)
	if remote != b.sock.LocalAddr() || typ != ice.CandidateTypeHost {
		t.Fatalf("selected remote %v (%v), want b's socket %v (host)", remote, typ, b.sock.LocalAddr())
	}
	backRemote, _ := selectedRemote(t, ib)
	if backRemote != a.sock.LocalAddr() {
		t.Fatalf("b selected %v, want a's socket %v", backRemote, a.sock.LocalAddr())
	}
	a.connectTo(t, b, remote)
	pingBoth(t, a, b)

	t.Run("device down/up cycles", func(t *testing.T) {
		// One cycle per side: each costs wireguard-go a handshake (and up to
		// its 5 s rekey timeout when the new initiation is rate-limited);
		// sharedsock's TestBindCycles does many cycles without a device.
		for _, n := range []*node{a, b} {
			if err := n.iface.Device().Down(); err != nil {
				t.Fatalf("Down: %v", err)
			}
			if err := n.iface.Device().Up(); err != nil {
				t.Fatalf("Up: %v", err)
			}
		}
		pingBoth(t, a, b)
		// The agents kept their pair through the cycles: the mux kept
		// carrying their STUN.
		for {
			select {
			case s := <-ib.states:
				if s == ice.ConnectionStateDisconnected || s == ice.ConnectionStateFailed || s == ice.ConnectionStateClosed {
					t.Fatalf("agent b went %v during the cycles", s)
				}
				continue
			default:
			}
			break
		}
	})

	// Close a's agent; a's socket answers b's keepalive requests itself.
	if err := ia.agent.Close(); err != nil {
		t.Fatalf("close agent a: %v", err)
	}
	cancelA, err := a.sock.Respond(ia.ufrag, ia.pwd, remote)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelA()
	pingBoth(t, a, b)

	t.Run("remote agent stays connected on the responder", func(t *testing.T) {
		if testing.Short() {
			t.Skip("13 s wait; BenchmarkIdleAgentWakeups measures the same agent")
		}
		drain(ib.states)
		sentBefore, respBefore := b.sock.Stats().STUNOut, a.sock.Stats().Responded
		timer := time.NewTimer(keepAliveWatch)
		defer timer.Stop()
		select {
		case s := <-ib.states:
			t.Fatalf("remote agent left Connected: %v; a %+v b %+v", s, a.sock.Stats(), b.sock.Stats())
		case <-timer.C:
		}
		sent := b.sock.Stats().STUNOut - sentBefore
		answered := a.sock.Stats().Responded - respBefore
		if answered == 0 {
			t.Fatal("responder answered nothing")
		}
		t.Logf("idle connected pion agent: %d STUN datagrams sent in %v (%.2f/s), %d answered by the responder",
			sent, keepAliveWatch, float64(sent)/keepAliveWatch.Seconds(), answered)
		pingBoth(t, a, b)
	})

	// Close b's agent too: both sockets answer, WireGuard keeps flowing.
	if err := ib.agent.Close(); err != nil {
		t.Fatalf("close agent b: %v", err)
	}
	cancelB, err := b.sock.Respond(ib.ufrag, ib.pwd, backRemote)
	if err != nil {
		t.Fatal(err)
	}
	defer cancelB()
	pingBoth(t, a, b)

	if lr := a.sock.LastReceive(remote); lr.IsZero() {
		t.Error("a: LastReceive of b's endpoint is zero")
	}
	checkStats(t, a, b, remote, false)
	checkStats(t, b, a, backRemote, false)
}

// checkStats checks n's view of peer: a handshake, bytes both ways, and the
// endpoint (learned from the handshake on the controlled side).
func checkStats(t *testing.T, n, peer *node, endpoint interface{ String() string }, relayed bool) {
	t.Helper()
	stats, err := n.iface.PeerStats()
	if err != nil {
		t.Fatalf("PeerStats: %v", err)
	}
	st, ok := stats[peer.pub()]
	if !ok {
		t.Fatalf("PeerStats has no entry for the peer: %v", stats)
	}
	if st.LastHandshake.IsZero() || st.RxBytes == 0 || st.TxBytes == 0 {
		t.Errorf("peer stats %+v: want a handshake and bytes both ways", st)
	}
	if st.Endpoint.String() != endpoint.String() || st.Relayed != relayed {
		t.Errorf("endpoint %v relayed=%v, want %v relayed=%v", st.Endpoint, st.Relayed, endpoint, relayed)
	}
}

func drain(c chan ice.ConnectionState) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
