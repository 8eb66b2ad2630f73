package sharedsock

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
)

// pionRequest builds a Binding request the way a pion agent pings a
// candidate pair.
func pionRequest(t *testing.T, username, pwd string) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.BindingRequest, stun.TransactionID,
		stun.NewUsername(username),
		ice.AttrControlling(1234),
		ice.PriorityAttr(2130706431),
		stun.NewShortTermIntegrity(pwd),
		stun.Fingerprint)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return m
}

func TestResponder(t *testing.T) {
	const ufrag, pwd = "localufragABCDEF", "localpasswordlocalpasswordABCDEF"
	tests := []struct {
		name      string
		username  string
		pwd       string
		wantReply bool
		wantMux   bool
	}{
		{"registered", ufrag + ":remote", pwd, true, false},
		{"wrong password dropped", ufrag + ":remote", "wrong", false, false},
		{"unregistered ufrag to mux", "otherufrag:remote", pwd, false, true},
	}
	s := listen(t)
	c := client(t)
	// A live agent's muxed conn for the unregistered ufrag.
	muxed, err := s.UDPMux().GetConn("otherufrag", net.UDPAddrFromAddrPort(s.LocalAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer muxed.Close()
	cancel, err := s.Respond(ufrag, pwd, addrOf(c))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats()
			req := pionRequest(t, tt.username, tt.pwd)
			send(t, c, s.LocalAddr(), req.Raw)
			switch {
			case tt.wantReply:
				checkReply(t, c, req, pwd, addrOf(c))
			case tt.wantMux:
				if got, _ := readMux(t, muxed); string(got) != string(req.Raw) {
					t.Errorf("mux got another datagram")
				}
			default:
				// Dropped: a registered request after it must be answered,
				// and nothing else may arrive before that answer.
				probe := pionRequest(t, ufrag+":remote", pwd)
				send(t, c, s.LocalAddr(), probe.Raw)
				checkReply(t, c, probe, pwd, addrOf(c))
				if d := s.Stats().Dropped - before.Dropped; d != 1 {
					t.Errorf("dropped %d, want 1", d)
				}
			}
		})
	}
	// After cancel the ufrag goes to the mux (nobody there: no reply).
	cancel()
	cancel()
	req := pionRequest(t, ufrag+":remote", pwd)
	before := s.Stats().Responded
	send(t, c, s.LocalAddr(), req.Raw)
	probe := pionRequest(t, "otherufrag:remote", pwd)
	send(t, c, s.LocalAddr(), probe.Raw)
	readMux(t, muxed) // the probe arrived, so the canceled request was handled
	if got := s.Stats().Responded; got != before {
		t.Errorf("responded after cancel: %d → %d", before, got)
	}
}

// checkReply reads the responder's answer and checks it with pion's own
// checks: type, transaction ID, MESSAGE-INTEGRITY with the local password,
// FINGERPRINT and XOR-MAPPED-ADDRESS.
func checkReply(t *testing.T, c *net.UDPConn, req *stun.Message, pwd string, mapped netip.AddrPort) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(deadline))
	buf := make([]byte, 1500)
	n, _, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("read reply: %v", err)
	}
	m := &stun.Message{Raw: buf[:n]}
	if err := m.Decode(); err != nil {
		t.Fatalf("decode reply: %v", err)
	}
	if m.Type != stun.BindingSuccess {
		t.Errorf("type = %v, want binding success", m.Type)
	}
	if m.TransactionID != req.TransactionID {
		t.Error("transaction ID differs from the request's")
	}
	if err := stun.MessageIntegrity([]byte(pwd)).Check(m); err != nil {
		t.Errorf("integrity: %v", err)
	}
	if err := stun.Fingerprint.Check(m); err != nil {
		t.Errorf("fingerprint: %v", err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err != nil {
		t.Fatalf("xor-mapped-address: %v", err)
	}
	if got, _ := netip.AddrFromSlice(xa.IP); got.Unmap() != mapped.Addr() || xa.Port != int(mapped.Port()) {
		t.Errorf("xor-mapped-address = %v, want %v", xa, mapped)
	}
}

// TestResponderOfficialRequest: a Binding request with 0x8100 after
// FINGERPRINT, as official peers send every 2 s on a selected pair, is
// answered; the same request with a wrong password is not.
func TestResponderOfficialRequest(t *testing.T) {
	const ufrag, pwd = "localufragABCDEF", "localpasswordlocalpasswordABCDEF"
	s := listen(t)
	c := client(t)
	cancel, err := s.Respond(ufrag, pwd, addrOf(c))
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	bad := officialStyle(t, ufrag+":remote", "wrongpasswordwrongpasswordwrongp")
	send(t, c, s.LocalAddr(), bad)
	raw := officialStyle(t, ufrag+":remote", pwd)
	send(t, c, s.LocalAddr(), raw)
	req := &stun.Message{Raw: raw}
	if err := req.Decode(); err != nil {
		t.Fatal(err)
	}
	checkReply(t, c, req, pwd, addrOf(c)) // the first datagram back: bad got none
	// The bad one was handled (dropped) before the good one was read; the
	// Responded count of the good one may still be on its way.
	if st := s.Stats(); st.Dropped != 1 {
		t.Errorf("dropped %d, want 1", st.Dropped)
	}
}

// TestAgentOfficialRequest: pion's own agent (checking, or on a relayed
// pair) on the shared socket's mux answers the official request too: it
// checks MESSAGE-INTEGRITY with pion's check, which already skips what
// follows it, and never checks FINGERPRINT on inbound requests. So the
// demux hands STUN to the mux unchanged.
func TestAgentOfficialRequest(t *testing.T) {
	const ufrag, pwd = "localufragABCDEF", "localpasswordlocalpasswordABCDEF"
	const rufrag, rpwd = "remoteufragABCDE", "remotepasswordremotepasswordABCD"
	s := listen(t)
	c := client(t)
	agent, err := ice.NewAgent(&ice.AgentConfig{
		LocalUfrag: ufrag, LocalPwd: pwd,
		NetworkTypes:     []ice.NetworkType{ice.NetworkTypeUDP4},
		CandidateTypes:   []ice.CandidateType{ice.CandidateTypeHost},
		MulticastDNSMode: ice.MulticastDNSModeDisabled,
		UDPMux:           s.UDPMux(),
	})
	if err != nil {
		t.Fatal(err)
	}
	gathered := make(chan struct{})
	_ = agent.OnCandidate(func(cand ice.Candidate) {
		if cand == nil {
			close(gathered)
		}
	})
	if err := agent.GatherCandidates(); err != nil {
		t.Fatal(err)
	}
	<-gathered
	ctx, stop := context.WithCancel(context.Background())
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		_, _ = agent.Accept(ctx, rufrag, rpwd)
	}()
	defer func() {
		stop()
		<-accepted
		_ = agent.Close()
	}()
	// The agent answers once its remote credentials are set by Accept:
	// resend until an answer arrives, bounded by the failure deadline.
	_ = c.SetReadDeadline(time.Now().Add(deadline))
	buf := make([]byte, 1500)
	for start := time.Now(); time.Since(start) < deadline; {
		raw := officialStyle(t, ufrag+":"+rufrag, pwd)
		send(t, c, s.LocalAddr(), raw)
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, _, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				break
			}
			m := &stun.Message{Raw: buf[:n]}
			if m.Decode() != nil || m.Type != stun.BindingSuccess {
				continue // the agent's own checks towards us
			}
			if m.TransactionID != [stun.TransactionIDSize]byte(raw[8:20]) {
				continue
			}
			if err := stun.MessageIntegrity([]byte(pwd)).Check(m); err != nil {
				t.Fatalf("answer integrity: %v", err)
			}
			return
		}
	}
	t.Fatal("pion's agent never answered the official request")
}
