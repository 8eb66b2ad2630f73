package client_test

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/filter"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/testnet/mgmtsrv"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// fwDropWait is how long a connection attempt that the filter drops is
// given before it counts as dropped; the drop itself is asserted on the
// filter's counter.
const fwDropWait = 2 * time.Second

// fwPolicy is the test's access policy, as NetBird management would ship
// it: "alpha → beta: TCP/22" (beta gets an IN rule from alpha; alpha gets the
// matching OUT rule, which changes nothing) and "beta → alpha: ALL" (alpha
// gets an IN rule from beta). With icmp, also "alpha → beta: ICMP".
func fwPolicy(icmp bool) mgmtsrv.FirewallFunc { return fwPolicyFor("alpha", "beta", icmp) }

// fwPolicyFor is fwPolicy for peers with other hostnames.
func fwPolicyFor(alphaName, betaName string, icmp bool) mgmtsrv.FirewallFunc {
	return func(p mgmtsrv.PeerInfo, all []mgmtsrv.PeerInfo) []*mgmtpb.FirewallRule {
		addr := map[string]string{}
		for _, q := range all {
			switch q.Hostname {
			case alphaName:
				addr["alpha"] = q.Address.String()
			case betaName:
				addr["beta"] = q.Address.String()
			}
		}
		switch p.Hostname {
		case betaName:
			rules := []*mgmtpb.FirewallRule{{PeerIP: addr["alpha"], Protocol: mgmtpb.RuleProtocol_TCP, Port: "22", PolicyID: []byte("ssh")}}
			if icmp {
				rules = append(rules, &mgmtpb.FirewallRule{PeerIP: addr["alpha"], Protocol: mgmtpb.RuleProtocol_ICMP, PolicyID: []byte("ping")})
			}
			return append(rules, &mgmtpb.FirewallRule{PeerIP: addr["alpha"], Direction: mgmtpb.RuleDirection_OUT, Protocol: mgmtpb.RuleProtocol_ALL})
		case alphaName:
			rules := []*mgmtpb.FirewallRule{
				{PeerIP: addr["beta"], Protocol: mgmtpb.RuleProtocol_ALL, PolicyID: []byte("beta-to-alpha")},
				{PeerIP: addr["beta"], Direction: mgmtpb.RuleDirection_OUT, Protocol: mgmtpb.RuleProtocol_TCP, Port: "22"},
			}
			if icmp {
				rules = append(rules, &mgmtpb.FirewallRule{PeerIP: addr["beta"], Direction: mgmtpb.RuleDirection_OUT, Protocol: mgmtpb.RuleProtocol_ICMP})
			}
			return rules
		}
		return nil
	}
}

// fwNode is a client whose logins arrive on a channel (an observer on its
// loop), so that the test waits on events, not on status polls.
type fwNode struct {
	name   string
	c      *client.Client
	logins chan struct{}
}

func startFWNode(t *testing.T, n *testnet.Network, name string, set func(*client.Options)) *fwNode {
	t.Helper()
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	nd := &fwNode{name: name, logins: make(chan struct{}, 8)}
	o := client.Options{
		ManagementURL: n.ManagementURL(), PrivateKey: key, SetupKey: n.SetupKey(),
		Meta: mgmt.Meta{Hostname: name, GoOS: "linux"}, Mode: wgiface.Netstack,
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: zap.NewNop(),
		Observers: []fsm.Observer{fsm.ObserverFunc(func(r fsm.Record) {
			// Logged in with its interface: the engine leaves configuring.
			if r.Machine == engine.ID && r.Event == engine.EvIfaceUp {
				select {
				case nd.logins <- struct{}{}:
				default:
				}
			}
		})},
	}
	if set != nil {
		set(&o)
	}
	if nd.c, err = client.New(o); err != nil {
		t.Fatal(err)
	}
	if err := nd.c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nd.c.Close() })
	return nd
}

func (nd *fwNode) waitLogin(t *testing.T) {
	t.Helper()
	select {
	case <-nd.logins:
	case <-time.After(wait):
		t.Fatalf("%s did not log in within %v", nd.name, wait)
	}
}

func (nd *fwNode) addr(t *testing.T) netip.Addr {
	t.Helper()
	s, err := nd.c.Status()
	if err != nil || !s.Address.IsValid() {
		t.Fatalf("%s has no address: %v", nd.name, err)
	}
	return s.Address.Addr()
}

func (nd *fwNode) drops(t *testing.T) uint64 {
	t.Helper()
	s, ok := nd.c.FirewallStats()
	if !ok {
		t.Fatalf("%s has no firewall", nd.name)
	}
	return s.Dropped[filter.DropRules]
}

// serve answers every TCP connection to port with "ok" until the test ends.
func (nd *fwNode) serve(t *testing.T, port uint16) {
	t.Helper()
	l, err := nd.c.Net().ListenTCPAddrPort(netip.AddrPortFrom(nd.addr(t), port))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = l.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok"))
			_ = c.Close()
		}
	}()
}

// dial connects to to:port, reads the greeting and reports the error.
func (nd *fwNode) dial(to netip.Addr, port uint16, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := nd.c.Net().DialContextTCPAddrPort(ctx, netip.AddrPortFrom(to, port))
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if string(b) != "ok" {
		return errors.New("no greeting")
	}
	return nil
}

func (nd *fwNode) ping(t *testing.T, to netip.Addr, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_, err := netping.Ping(ctx, nd.c.Net(), nd.addr(t), to, 200*time.Millisecond)
	return err
}

// The network's policy allows only TCP/22 from alpha to beta (and all from
// beta to alpha). Alpha reaches beta:22; alpha's ping and alpha's TCP to
// beta:80 are dropped by beta's filter; beta's connections and pings to
// alpha and their replies pass (beta is not restricted outbound, and the
// replies are tracked flows). Then management ships a policy that also
// allows ICMP, and alpha's ping passes without restarting anything.
func TestFirewallPolicyEndToEnd(t *testing.T) {
	n := startNet(t)
	n.Mgmt.SetFirewall(fwPolicy(false))
	alpha, beta := startFWNode(t, n, "alpha", nil), startFWNode(t, n, "beta", nil)
	alpha.waitLogin(t)
	beta.waitLogin(t)
	a, b := alpha.addr(t), beta.addr(t)
	beta.serve(t, 22)
	beta.serve(t, 80)
	alpha.serve(t, 8080)

	// The dial's own SYN retransmissions wait for the tunnel.
	if err := alpha.dial(b, 22, wait); err != nil {
		t.Fatalf("alpha → beta:22: %v", err)
	}
	before := beta.drops(t)
	if err := alpha.dial(b, 80, fwDropWait); err == nil {
		t.Fatal("alpha → beta:80 connected")
	}
	if err := alpha.ping(t, b, fwDropWait); err == nil {
		t.Fatal("alpha's ping to beta answered")
	}
	if got := beta.drops(t) - before; got < 2 {
		t.Fatalf("beta's filter dropped %d packets, want alpha's SYN and echo at least", got)
	}
	if err := beta.dial(a, 8080, wait); err != nil {
		t.Fatalf("beta → alpha:8080: %v", err)
	}
	if err := beta.ping(t, a, wait); err != nil {
		t.Fatalf("beta → alpha ping: %v", err)
	}
	if s, _ := beta.c.FirewallStats(); s.Mode != filter.Enforce || s.Rules != 1 {
		t.Fatalf("beta's filter: %+v", s)
	}

	n.Mgmt.SetFirewall(fwPolicy(true))
	if err := alpha.ping(t, b, wait); err != nil {
		t.Fatalf("alpha's ping to beta after ICMP was allowed: %v", err)
	}
	if err := alpha.dial(b, 22, wait); err != nil {
		t.Fatalf("alpha → beta:22 after the new map: %v", err)
	}
	if s, _ := beta.c.FirewallStats(); s.Rules != 2 || s.Swaps < 2 {
		t.Fatalf("beta's filter after the new map: %+v", s)
	}
}

// The user's switches: with BlockInbound nothing new gets in whatever the
// policy allows, replies do; with DisableFirewall everything gets in
// whatever the policy denies; a legacy server (no rules, no empty flag)
// allows everything.
func TestFirewallSwitches(t *testing.T) {
	n := startNet(t)
	alpha := startFWNode(t, n, "alpha", nil) // legacy server at first
	beta := startFWNode(t, n, "beta", func(o *client.Options) { o.BlockInbound = true })
	gamma := startFWNode(t, n, "gamma", func(o *client.Options) { o.DisableFirewall = true })
	for _, nd := range []*fwNode{alpha, beta, gamma} {
		nd.waitLogin(t)
	}
	if err := beta.ping(t, alpha.addr(t), wait); err != nil {
		t.Fatalf("legacy server: beta → alpha ping: %v", err)
	}
	before := beta.drops(t)
	if err := alpha.ping(t, beta.addr(t), fwDropWait); err == nil {
		t.Fatal("block-inbound: alpha's ping to beta answered")
	}
	if beta.drops(t) == before {
		t.Fatal("block-inbound: beta's filter dropped nothing")
	}
	// Every peer may reach every other on everything.
	n.Mgmt.SetFirewall(func(p mgmtsrv.PeerInfo, _ []mgmtsrv.PeerInfo) []*mgmtpb.FirewallRule {
		return []*mgmtpb.FirewallRule{{PeerIP: "0.0.0.0", Protocol: mgmtpb.RuleProtocol_ALL}}
	})
	if err := gamma.ping(t, alpha.addr(t), wait); err != nil {
		t.Fatalf("wildcard rule: gamma → alpha ping: %v", err)
	}
	if err := alpha.ping(t, beta.addr(t), fwDropWait); err == nil {
		t.Fatal("block-inbound with an allow-all policy: alpha's ping to beta answered")
	}
	// Nothing allowed: gamma, without a firewall, still answers.
	n.Mgmt.SetFirewall(func(mgmtsrv.PeerInfo, []mgmtsrv.PeerInfo) []*mgmtpb.FirewallRule { return nil })
	if err := alpha.ping(t, gamma.addr(t), wait); err != nil {
		t.Fatalf("disable-firewall: alpha → gamma ping: %v", err)
	}
	if _, ok := gamma.c.FirewallStats(); ok {
		t.Fatal("gamma has a firewall")
	}
	if s, _ := beta.c.FirewallStats(); s.Mode != filter.Enforce || s.Rules != 0 {
		t.Fatalf("beta's filter: %+v", s)
	}
}
