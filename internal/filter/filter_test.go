package filter

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// Matching: protocol × port × range × direction × action, one rule at a
// time, for an inbound packet from A to this peer (B).
func TestRuleMatching(t *testing.T) {
	r := func(dir Direction, act Action, proto Protocol, ports PortRange) Rule {
		return Rule{Peer: ipA, Direction: dir, Action: act, Protocol: proto, Ports: ports}
	}
	any, p22, p80, rng := PortRange{}, PortRange{22, 22}, PortRange{80, 80}, PortRange{8000, 8100}
	tcp22 := tcp(ipA, ipB, 40000, 22, tcpSYN)
	tcp8050 := tcp(ipA, ipB, 40000, 8050, tcpSYN)
	tcp8101 := tcp(ipA, ipB, 40000, 8101, tcpSYN)
	udp22 := udp(ipA, ipB, 40000, 22)
	udp8000 := udp(ipA, ipB, 40000, 8000)
	ping := icmp(ipA, ipB, icmp4Echo, 7)
	tests := []struct {
		rule Rule
		pkt  []byte
		want bool
	}{
		// protocol × port
		{r(In, Accept, ProtoTCP, p22), tcp22, true},
		{r(In, Accept, ProtoTCP, p80), tcp22, false},
		{r(In, Accept, ProtoTCP, any), tcp22, true},
		{r(In, Accept, ProtoTCP, p22), udp22, false},
		{r(In, Accept, ProtoUDP, p22), udp22, true},
		{r(In, Accept, ProtoUDP, p22), tcp22, false},
		{r(In, Accept, ProtoUDP, any), udp8000, true},
		{r(In, Accept, ProtoTCP, p22), ping, false},
		{r(In, Accept, ProtoICMP, any), ping, true},
		{r(In, Accept, ProtoICMP, any), tcp22, false},
		{r(In, Accept, ProtoICMP, p22), ping, true}, // ports ignored for ICMP
		{r(In, Accept, ProtoAll, any), tcp22, true},
		{r(In, Accept, ProtoAll, any), udp8000, true},
		{r(In, Accept, ProtoAll, any), ping, true},
		{r(In, Accept, ProtoAll, p80), tcp22, true}, // ports ignored for ALL
		// ranges (inclusive)
		{r(In, Accept, ProtoTCP, rng), tcp8050, true},
		{r(In, Accept, ProtoTCP, rng), tcp(ipA, ipB, 1, 8000, tcpSYN), true},
		{r(In, Accept, ProtoTCP, rng), tcp(ipA, ipB, 1, 8100, tcpSYN), true},
		{r(In, Accept, ProtoTCP, rng), tcp8101, false},
		{r(In, Accept, ProtoUDP, rng), udp8000, true},
		{r(In, Accept, ProtoUDP, rng), tcp8050, false},
		{r(In, Accept, ProtoTCP, PortRange{8100, 8000}), tcp8050, false}, // inverted: left out
		// the port is the local destination port, not the source port
		{r(In, Accept, ProtoTCP, PortRange{40000, 40000}), tcp22, false},
		// direction: Out rules never let anything in
		{r(Out, Accept, ProtoTCP, p22), tcp22, false},
		{r(Out, Accept, ProtoAll, any), ping, false},
		// action: a lone DROP rule drops, as does no rule
		{r(In, Drop, ProtoTCP, p22), tcp22, false},
		{r(In, Drop, ProtoTCP, p80), tcp22, false},
		// source: another peer's rule does not apply
		{Rule{Peer: ipC, Protocol: ProtoAll}, tcp22, false},
		// IPv6 source
		{Rule{Peer: ip6A, Protocol: ProtoTCP, Ports: p22}, tcp(ip6A, ip6B, 1, 22, tcpSYN), true},
		{Rule{Peer: ip6A, Protocol: ProtoICMP}, icmp(ip6A, ip6B, icmp4Echo, 1), true},
		{Rule{Peer: ipA, Protocol: ProtoAll}, tcp(ip6A, ip6B, 1, 22, tcpSYN), false},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprintf("%d %v", i, tt.rule), func(t *testing.T) {
			f, c := newTestFilter(Policy{Mode: Enforce, Rules: []Rule{tt.rule}})
			if got := f.Inbound(tt.pkt, c.now()); got != tt.want {
				t.Fatalf("rule %v: passed=%v, want %v", tt.rule, got, tt.want)
			}
		})
	}
}

func TestDropBeforeAccept(t *testing.T) {
	anyPeer4, anyPeer6 := netip.IPv4Unspecified(), netip.IPv6Unspecified()
	tests := []struct {
		name  string
		rules []Rule
		pkt   []byte
		want  bool
	}{
		{"exact drop beats exact accept listed first", []Rule{
			in(Rule{Peer: ipA, Action: Accept, Protocol: ProtoAll}),
			in(Rule{Peer: ipA, Action: Drop, Protocol: ProtoTCP, Ports: PortRange{22, 22}}),
		}, tcp(ipA, ipB, 1, 22, tcpSYN), false},
		{"exact drop on another port leaves the accept", []Rule{
			in(Rule{Peer: ipA, Action: Accept, Protocol: ProtoAll}),
			in(Rule{Peer: ipA, Action: Drop, Protocol: ProtoTCP, Ports: PortRange{22, 22}}),
		}, tcp(ipA, ipB, 1, 80, tcpSYN), true},
		{"exact drop beats wildcard accept", []Rule{
			in(Rule{Peer: anyPeer4, Action: Accept, Protocol: ProtoAll}),
			in(Rule{Peer: ipA, Action: Drop, Protocol: ProtoICMP}),
		}, icmp(ipA, ipB, icmp4Echo, 1), false},
		{"wildcard drop beats exact accept", []Rule{
			in(Rule{Peer: ipA, Action: Accept, Protocol: ProtoUDP}),
			in(Rule{Peer: anyPeer4, Action: Drop, Protocol: ProtoUDP, Ports: PortRange{53, 53}}),
		}, udp(ipA, ipB, 1, 53), false},
		{"drop range", []Rule{
			in(Rule{Peer: ipA, Action: Accept, Protocol: ProtoTCP}),
			in(Rule{Peer: ipA, Action: Drop, Protocol: ProtoTCP, Ports: PortRange{1000, 2000}}),
		}, tcp(ipA, ipB, 1, 1500, tcpSYN), false},
		{"drop ALL beats accept", []Rule{
			in(Rule{Peer: ipA, Action: Accept, Protocol: ProtoTCP, Ports: PortRange{22, 22}}),
			in(Rule{Peer: ipA, Action: Drop, Protocol: ProtoAll}),
		}, tcp(ipA, ipB, 1, 22, tcpSYN), false},
		{"wildcard v4 source accepts any peer", []Rule{
			in(Rule{Peer: anyPeer4, Action: Accept, Protocol: ProtoTCP, Ports: PortRange{22, 22}}),
		}, tcp(ipC, ipB, 1, 22, tcpSYN), true},
		{"wildcard v6 source accepts any peer (both families, as upstream)", []Rule{
			in(Rule{Peer: anyPeer6, Action: Accept, Protocol: ProtoTCP}),
		}, tcp(ipC, ipB, 1, 22, tcpSYN), true},
		{"wildcard accepts v6 peers", []Rule{
			in(Rule{Peer: anyPeer4, Action: Accept, Protocol: ProtoUDP}),
		}, udp(ip6A, ip6B, 1, 9), true},
		{"wildcard accept, wrong port", []Rule{
			in(Rule{Peer: anyPeer4, Action: Accept, Protocol: ProtoTCP, Ports: PortRange{22, 22}}),
		}, tcp(ipC, ipB, 1, 23, tcpSYN), false},
		{"v4-mapped rule address is the v4 peer", []Rule{
			in(Rule{Peer: netip.AddrFrom16(ipA.As16()), Action: Accept, Protocol: ProtoAll}),
		}, udp(ipA, ipB, 1, 9), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, c := newTestFilter(Policy{Mode: Enforce, Rules: tt.rules})
			if got := f.Inbound(tt.pkt, c.now()); got != tt.want {
				t.Fatalf("passed=%v, want %v", got, tt.want)
			}
		})
	}
}

// The three modes: the empty flag (Enforce, no rules) denies every new
// inbound flow but lets replies in; a legacy server (AllowAll) lets
// everything in; Off is DisableFirewall.
func TestModes(t *testing.T) {
	newIn := [][]byte{tcp(ipA, ipB, 1, 22, tcpSYN), udp(ipA, ipB, 1, 53), icmp(ipA, ipB, icmp4Echo, 1),
		ip(47, ipA, ipB, make([]byte, 8))} // GRE
	for _, tt := range []struct {
		mode Mode
		want bool
	}{{Enforce, false}, {AllowAll, true}, {Off, true}} {
		f, c := newTestFilter(Policy{Mode: tt.mode})
		for i, p := range newIn {
			if got := f.Inbound(p, c.now()); got != tt.want {
				t.Errorf("%v: packet %d passed=%v, want %v", tt.mode, i, got, tt.want)
			}
		}
		// Replies to what this peer started pass in every mode.
		f.Outbound(tcp(ipB, ipA, 50000, 443, tcpSYN), c.now())
		if !f.Inbound(tcp(ipA, ipB, 443, 50000, tcpSYN|tcpACK), c.now()) {
			t.Errorf("%v: SYN-ACK of our connection dropped", tt.mode)
		}
		wantFlows := 1
		if tt.mode == Off {
			wantFlows = 0
		}
		if s := f.Stats(); s.TCPFlows != wantFlows || s.Mode != tt.mode {
			t.Errorf("%v: stats %+v, want %d flows", tt.mode, s, wantFlows)
		}
	}
}

// The filter starts in Enforce without rules, before any map.
func TestNewDeniesUntilAPolicy(t *testing.T) {
	f := New()
	if f.Mode() != Enforce || f.Inbound(udp(ipA, ipB, 1, 53), f.Now()) {
		t.Fatal("a new filter lets new inbound traffic in")
	}
}

// ICMP: echo replies pass only for an echo this peer sent (same peer, same
// identifier); errors always pass; requests need a rule.
func TestICMP(t *testing.T) {
	for _, fam := range []struct{ a, b netip.Addr }{{ipA, ipB}, {ip6A, ip6B}} {
		f, c := newTestFilter(Policy{Mode: Enforce})
		f.Outbound(icmp(fam.b, fam.a, icmp4Echo, 42), c.now())
		steps := []struct {
			name string
			pkt  []byte
			want bool
		}{
			{"reply to our echo", icmp(fam.a, fam.b, icmp4EchoReply, 42), true},
			{"reply with another id", icmp(fam.a, fam.b, icmp4EchoReply, 43), false},
			{"echo request", icmp(fam.a, fam.b, icmp4Echo, 42), false},
			{"unreachable", icmp(fam.a, fam.b, icmp4Unreachable, 0), true},
			{"time exceeded", icmp(fam.a, fam.b, icmp4TimeExceed, 0), true},
		}
		for _, s := range steps {
			if got := f.Inbound(s.pkt, c.now()); got != s.want {
				t.Errorf("%v %s: passed=%v, want %v", fam.a, s.name, got, s.want)
			}
		}
		if f.Inbound(icmp(ipC, ipB, icmp4EchoReply, 42), c.now()) {
			t.Error("reply from a peer we did not ping passed")
		}
		c.t += int64(ICMPTimeout)
		if f.Inbound(icmp(fam.a, fam.b, icmp4EchoReply, 42), c.now()) {
			t.Errorf("%v: reply after the echo expired passed", fam.a)
		}
	}
}

// TCP tracking of a flow this peer started: handshake, data, close; flag
// checks; expiry by state, on lookup.
func TestTCPTracking(t *testing.T) {
	f, c := newTestFilter(Policy{Mode: Enforce})
	out := func(flags uint8) { f.Outbound(tcp(ipB, ipA, 50000, 22, flags), c.now()) }
	inb := func(flags uint8) bool { return f.Inbound(tcp(ipA, ipB, 22, 50000, flags), c.now()) }

	if inb(tcpSYN | tcpACK) {
		t.Fatal("SYN-ACK without our SYN passed")
	}
	out(tcpSYN)
	if inb(tcpACK) {
		t.Fatal("bare ACK while our SYN is unanswered passed")
	}
	if !inb(tcpSYN | tcpACK) {
		t.Fatal("SYN-ACK dropped")
	}
	out(tcpACK)
	if !inb(tcpACK|tcpPSH) || !inb(tcpACK) {
		t.Fatal("data dropped")
	}
	if inb(tcpSYN | tcpFIN) {
		t.Fatal("SYN+FIN passed")
	}
	if inb(0) {
		t.Fatal("null flags passed")
	}
	if inb(tcpSYN) {
		t.Fatal("a new SYN from the remote on our flow passed")
	}
	if f.Inbound(tcp(ipA, ipB, 23, 50000, tcpACK), c.now()) || f.Inbound(tcp(ipC, ipB, 22, 50000, tcpACK), c.now()) {
		t.Fatal("other port / other peer passed")
	}
	// Established flows live 3 h without traffic, not longer.
	c.t += int64(TCPEstablishedTimeout - time.Second)
	if !inb(tcpACK) {
		t.Fatal("established flow expired early")
	}
	c.t += int64(TCPEstablishedTimeout)
	if inb(tcpACK) {
		t.Fatal("established flow did not expire")
	}
	if f.Stats().TCPFlows != 0 {
		t.Fatal("expired flow not deleted on lookup")
	}

	// Close: FIN each way, then the last ACK → TIME_WAIT (4 min).
	out(tcpSYN)
	inb(tcpSYN | tcpACK)
	out(tcpFIN | tcpACK)
	if !inb(tcpFIN | tcpACK) {
		t.Fatal("remote FIN dropped")
	}
	out(tcpACK)
	c.t += int64(TCPTimeWaitTimeout - time.Second)
	if !inb(tcpACK) {
		t.Fatal("stray ACK in TIME_WAIT dropped")
	}
	c.t += int64(TCPTimeWaitTimeout)
	if inb(tcpACK) {
		t.Fatal("TIME_WAIT did not expire")
	}

	// RST ends the flow at once.
	out(tcpSYN)
	if !inb(tcpRST | tcpACK) {
		t.Fatal("RST answer to our SYN dropped")
	}
	if inb(tcpACK) || f.Stats().TCPFlows != 0 {
		t.Fatal("flow kept after RST")
	}

	// An unanswered SYN lives 60 s.
	out(tcpSYN)
	c.t += int64(TCPOpeningTimeout)
	if inb(tcpSYN | tcpACK) {
		t.Fatal("SYN_SENT did not expire")
	}
}

func TestUDPTracking(t *testing.T) {
	f, c := newTestFilter(Policy{Mode: Enforce})
	f.Outbound(udp(ipB, ipA, 5353, 53), c.now())
	if !f.Inbound(udp(ipA, ipB, 53, 5353), c.now()) {
		t.Fatal("reply dropped")
	}
	if f.Inbound(udp(ipA, ipB, 54, 5353), c.now()) || f.Inbound(udp(ipA, ipB, 53, 5354), c.now()) {
		t.Fatal("another port passed")
	}
	c.t += int64(UDPTimeout - time.Second)
	if !f.Inbound(udp(ipA, ipB, 53, 5353), c.now()) { // and refreshes
		t.Fatal("reply within the idle timeout dropped")
	}
	c.t += int64(UDPTimeout - time.Second)
	if !f.Inbound(udp(ipA, ipB, 53, 5353), c.now()) {
		t.Fatal("inbound traffic did not refresh the flow")
	}
	c.t += int64(UDPTimeout)
	if f.Inbound(udp(ipA, ipB, 53, 5353), c.now()) {
		t.Fatal("idle flow did not expire")
	}
}

// A new policy is one swap: flows this peer started and flows the old rules
// accepted keep working; new flows follow the new rules.
func TestPolicySwapKeepsFlows(t *testing.T) {
	ssh := in(Rule{Peer: ipA, Protocol: ProtoTCP, Ports: PortRange{22, 22}})
	f, c := newTestFilter(Policy{Mode: Enforce, Rules: []Rule{ssh}})
	if !f.Inbound(tcp(ipA, ipB, 40000, 22, tcpSYN), c.now()) {
		t.Fatal("SYN to 22 dropped")
	}
	f.Outbound(tcp(ipB, ipA, 22, 40000, tcpSYN|tcpACK), c.now())
	f.Outbound(tcp(ipB, ipA, 50000, 80, tcpSYN), c.now()) // ours
	if f.Inbound(icmp(ipA, ipB, icmp4Echo, 1), c.now()) {
		t.Fatal("ping passed before ICMP was allowed")
	}

	f.SetPolicy(Policy{Mode: Enforce, Rules: []Rule{in(Rule{Peer: ipA, Protocol: ProtoICMP})}})
	if !f.Inbound(icmp(ipA, ipB, icmp4Echo, 1), c.now()) {
		t.Fatal("ping dropped after ICMP was allowed")
	}
	if !f.Inbound(tcp(ipA, ipB, 40000, 22, tcpACK), c.now()) {
		t.Fatal("the accepted SSH flow broke on the swap")
	}
	if !f.Inbound(tcp(ipA, ipB, 80, 50000, tcpSYN|tcpACK), c.now()) {
		t.Fatal("our own flow broke on the swap")
	}
	if f.Inbound(tcp(ipA, ipB, 40001, 22, tcpSYN), c.now()) {
		t.Fatal("a new SSH flow passed after the rule went")
	}
	if s := f.Stats(); s.Swaps != 2 || s.Rules != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// Legacy → rules: flows picked up while everything was allowed survive.
func TestLegacyToEnforceKeepsRepliedFlows(t *testing.T) {
	f, c := newTestFilter(Policy{Mode: AllowAll})
	if !f.Inbound(tcp(ipA, ipB, 40000, 5432, tcpSYN), c.now()) {
		t.Fatal("legacy mode dropped")
	}
	f.Outbound(tcp(ipB, ipA, 5432, 40000, tcpSYN|tcpACK), c.now()) // picked up
	f.SetPolicy(Policy{Mode: Enforce})
	if !f.Inbound(tcp(ipA, ipB, 40000, 5432, tcpACK), c.now()) {
		t.Fatal("flow answered under the legacy map broke")
	}
}

func TestFragments(t *testing.T) {
	f, c := newTestFilter(Policy{Mode: Enforce, Rules: []Rule{in(Rule{Peer: ipA, Protocol: ProtoUDP, Ports: PortRange{53, 53}})}})
	big := udp(ipA, ipB, 1, 53)
	if !f.Inbound(fragment4(big, 7, true), c.now()) || !f.Inbound(fragment4(big, 7, false), c.now()) {
		t.Fatal("fragments of an allowed datagram dropped")
	}
	if f.Inbound(fragment4(big, 8, false), c.now()) {
		t.Fatal("later fragment without its first passed")
	}
	other := udp(ipA, ipB, 1, 54)
	if f.Inbound(fragment4(other, 9, true), c.now()) || f.Inbound(fragment4(other, 9, false), c.now()) {
		t.Fatal("fragments of a denied datagram passed")
	}
	c.t += int64(FragmentTimeout)
	if f.Inbound(fragment4(big, 7, false), c.now()) {
		t.Fatal("fragment verdict did not expire")
	}
	tiny := fragment4(big, 10, true)[:24] // first fragment without a whole UDP header
	tiny[3] = 24
	if f.Inbound(tiny, c.now()) {
		t.Fatal("tiny first fragment passed")
	}
	if got := f.Stats().Dropped; got[DropFragment] != 3 || got[DropMalformed] != 1 || got[DropRules] != 1 {
		t.Fatalf("drop counters %v", got)
	}
}

func TestMalformedAndExtensionHeaders(t *testing.T) {
	f, c := newTestFilter(Policy{Mode: Enforce, Rules: []Rule{in(Rule{Peer: netip.IPv4Unspecified(), Protocol: ProtoAll})}})
	hop := tcp(ip6A, ip6B, 1, 22, tcpSYN)
	hop[6] = 0 // hop-by-hop options
	for i, p := range [][]byte{nil, {0x45}, make([]byte, 20), tcp(ipA, ipB, 1, 2, tcpSYN)[:30], hop, {0x60, 0, 0, 0}} {
		if f.Inbound(p, c.now()) {
			t.Errorf("malformed packet %d passed", i)
		}
	}
	if !f.Inbound(tcp(ip6A, ip6B, 1, 22, tcpSYN), c.now()) {
		t.Fatal("plain IPv6 dropped")
	}
}

// Tables are bounded: a full table evicts instead of growing.
func TestTablesAreBounded(t *testing.T) {
	f, c := newTestFilter(Policy{Mode: Enforce})
	f.udp = newTable(16)
	for i := range 100 {
		f.Outbound(udp(ipB, ipA, uint16(1000+i), 53), c.now())
		c.t++
	}
	s := f.Stats()
	if s.UDPFlows != 16 || s.Evicted != 84 {
		t.Fatalf("%d flows, %d evicted; want 16, 84", s.UDPFlows, s.Evicted)
	}
	// The newest flow is tracked.
	if !f.Inbound(udp(ipA, ipB, 53, 1099), c.now()) {
		t.Fatal("newest flow evicted")
	}
	// Expired flows go first.
	c.t += int64(UDPTimeout)
	f.Outbound(udp(ipB, ipA, 7, 53), c.now())
	if !f.Inbound(udp(ipA, ipB, 53, 7), c.now()) {
		t.Fatal("insert into a table of expired flows failed")
	}
}

// Batches: dropped packets leave the batch, the rest keep their order.
func TestFilterInboundBatch(t *testing.T) {
	f, _ := newTestFilter(Policy{Mode: Enforce, Rules: []Rule{in(Rule{Peer: ipA, Protocol: ProtoUDP, Ports: PortRange{53, 53}})}})
	const off = 16
	mk := func(p []byte) []byte { return append(make([]byte, off), p...) }
	ok1, bad, ok2 := mk(udp(ipA, ipB, 1, 53)), mk(udp(ipA, ipB, 1, 54)), mk(udp(ipA, ipB, 2, 53))
	bufs := [][]byte{ok1, bad, ok2, {1}}
	if n := f.FilterInbound(bufs, off); n != 2 || &bufs[0][0] != &ok1[0] || &bufs[1][0] != &ok2[0] {
		t.Fatalf("kept %d", n)
	}
	f.SetPolicy(Policy{Mode: AllowAll})
	bufs = [][]byte{ok1, bad}
	if n := f.FilterInbound(bufs, off); n != 2 {
		t.Fatalf("allow-all kept %d", n)
	}
	// Outbound batches track each packet of the batch.
	f, _ = newTestFilter(Policy{Mode: Enforce})
	out := [][]byte{mk(udp(ipB, ipA, 9, 99)), mk(udp(ipB, ipA, 10, 99)), make([]byte, 4)}
	f.TrackOutbound(out, []int{len(out[0]) - off, len(out[1]) - off, 100}, off)
	if f.Stats().UDPFlows != 2 {
		t.Fatalf("outbound batch tracked %d flows", f.Stats().UDPFlows)
	}
}

// The per-packet paths allocate nothing.
func TestHotPathAllocs(t *testing.T) {
	f, c := newTestFilter(Policy{Mode: Enforce, Rules: []Rule{in(Rule{Peer: ipA, Protocol: ProtoTCP, Ports: PortRange{22, 22}})}})
	syn := tcp(ipA, ipB, 40000, 22, tcpSYN)
	ack := tcp(ipA, ipB, 40000, 22, tcpACK)
	reply := tcp(ipB, ipA, 22, 40000, tcpACK)
	denied := udp(ipA, ipB, 1, 9)
	f.Inbound(syn, c.now())
	bufs := [][]byte{ack, denied, ack}
	sizes := []int{len(reply)}
	for name, fn := range map[string]func(){
		"inbound tracked": func() { f.Inbound(ack, c.now()) },
		"inbound rules":   func() { f.Inbound(syn, c.now()) },
		"inbound denied":  func() { f.Inbound(denied, c.now()) },
		"outbound":        func() { f.Outbound(reply, c.now()) },
		"batch in":        func() { bufs[0], bufs[1], bufs[2] = ack, denied, ack; f.FilterInbound(bufs, 0) },
		"batch out":       func() { f.TrackOutbound([][]byte{reply}, sizes, 0) },
	} {
		if n := testing.AllocsPerRun(1000, fn); n != 0 {
			t.Errorf("%s: %v allocs per packet", name, n)
		}
	}
}
