package wgiface_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/internal/netping"

	"github.com/pion/ice/v2"
	"github.com/pion/logging"
	"github.com/pion/stun"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// deadline bounds every wait; a failure deadline, never an expectation.
const deadline = 30 * time.Second

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// node is one client: a shared socket and a netstack WireGuard interface.
type node struct {
	key   wgtypes.Key
	addr  netip.Prefix
	sock  *sharedsock.Socket
	iface *wgiface.Interface
}

func newNode(t testing.TB, overlay string) *node {
	t.Helper()
	return newNodePSK(t, overlay, wgtypes.Key{})
}

// newNodePSK is newNode with a preshared key on every peer (zero: none).
func newNodePSK(t testing.TB, overlay string, psk wgtypes.Key) *node {
	t.Helper()
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	sock, err := sharedsock.Listen(loopback, nil)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	n := &node{key: key, addr: netip.MustParsePrefix(overlay), sock: sock}
	n.iface, err = wgiface.New(wgiface.Config{
		Mode: wgiface.Netstack, Name: "ns-" + overlay, PrivateKey: key,
		Address: n.addr, Socket: sock, PresharedKey: psk,
	})
	if err != nil {
		_ = sock.Close()
		t.Fatalf("wgiface.New: %v", err)
	}
	t.Cleanup(func() {
		if err := n.iface.Close(); err != nil {
			t.Errorf("iface close: %v", err)
		}
		if err := n.sock.Close(); err != nil {
			t.Errorf("sock close: %v", err)
		}
	})
	return n
}

func (n *node) pub() wgtypes.Key { return n.key.PublicKey() }

// host is the node's overlay address as a /32 allowed IP.
func (n *node) host() netip.Prefix { return netip.PrefixFrom(n.addr.Addr(), 32) }

// addPeer configures other with key and allowed IPs only (the controlled
// side's configuration, and the controlling side's before ICE connects).
func (n *node) addPeer(t testing.TB, other *node) {
	t.Helper()
	if err := n.iface.SetPeer(wgiface.Peer{Key: other.pub(), AllowedIPs: []netip.Prefix{other.host()}}); err != nil {
		t.Fatalf("SetPeer: %v", err)
	}
}

// connectTo is what the controlling side does after ICE connects: endpoint
// plus keepalive 25 s, which starts the handshake.
func (n *node) connectTo(t testing.TB, other *node, ep netip.AddrPort) {
	t.Helper()
	err := n.iface.SetPeer(wgiface.Peer{
		Key: other.pub(), AllowedIPs: []netip.Prefix{other.host()},
		Endpoint: ep, Keepalive: 25 * time.Second,
	})
	if err != nil {
		t.Fatalf("SetPeer: %v", err)
	}
}

func dur(d time.Duration) *time.Duration { return &d }

// agentConfig is NetBird's ICE configuration on the node's shared socket.
func agentConfig(s *sharedsock.Socket, types []ice.CandidateType, urls []*stun.URI) *ice.AgentConfig {
	return &ice.AgentConfig{
		NetworkTypes:           []ice.NetworkType{ice.NetworkTypeUDP4},
		CandidateTypes:         types,
		Urls:                   urls,
		MulticastDNSMode:       ice.MulticastDNSModeDisabled,
		UDPMux:                 s.UDPMux(),
		UDPMuxSrflx:            s.UDPMux(),
		KeepaliveInterval:      dur(4 * time.Second),
		DisconnectedTimeout:    dur(6 * time.Second),
		FailedTimeout:          dur(6 * time.Second),
		PrflxAcceptanceMinWait: dur(0),
		RelayAcceptanceMinWait: dur(0),
		IncludeLoopback:        true,
		LoggerFactory:          quietPion(),
	}
}

func quietPion() logging.LoggerFactory {
	f := logging.NewDefaultLoggerFactory()
	f.DefaultLogLevel = logging.LogLevelDisabled
	return f
}

// iceSide is one agent with its credentials and, once connected, its conn.
type iceSide struct {
	agent      *ice.Agent
	ufrag, pwd string
	conn       *ice.Conn
	states     chan ice.ConnectionState
}

func newICESide(t testing.TB, cfg *ice.AgentConfig) *iceSide {
	t.Helper()
	a, err := ice.NewAgent(cfg)
	if err != nil {
		t.Fatalf("NewAgent: %v", err)
	}
	side := &iceSide{agent: a, states: make(chan ice.ConnectionState, 64)}
	side.ufrag, side.pwd, err = a.GetLocalUserCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.OnConnectionStateChange(func(s ice.ConnectionState) {
		select {
		case side.states <- s:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return side
}

// connectICE runs both agents to Connected, exchanging credentials and
// candidates directly (the test plays signal). a is controlling.
func connectICE(t testing.TB, a, b *iceSide) {
	t.Helper()
	for _, p := range [][2]*iceSide{{a, b}, {b, a}} {
		from, to := p[0], p[1]
		if err := from.agent.OnCandidate(func(c ice.Candidate) {
			if c == nil {
				return
			}
			// Through text, as signal carries it: never share pion objects
			// between agents.
			rc, err := ice.UnmarshalCandidate(c.Marshal())
			if err == nil {
				_ = to.agent.AddRemoteCandidate(rc)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []*iceSide{a, b} {
		if err := s.agent.GatherCandidates(); err != nil {
			t.Fatalf("GatherCandidates: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	errs := make(chan error, 2)
	go func() {
		var err error
		a.conn, err = a.agent.Dial(ctx, b.ufrag, b.pwd)
		errs <- err
	}()
	go func() {
		var err error
		b.conn, err = b.agent.Accept(ctx, a.ufrag, a.pwd)
		errs <- err
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("ICE connect: %v", err)
		}
	}
}

// selectedRemote is the remote address of the agent's selected pair.
func selectedRemote(t testing.TB, s *iceSide) (netip.AddrPort, ice.CandidateType) {
	t.Helper()
	p, err := s.agent.GetSelectedCandidatePair()
	if err != nil || p == nil {
		t.Fatalf("selected pair: %v", err)
	}
	addr, err := netip.ParseAddr(p.Remote.Address())
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(addr, uint16(p.Remote.Port())), p.Remote.Type()
}

// ping sends ICMP echo requests over the tunnel until one is answered or the
// deadline passes. The first may wait for a WireGuard handshake.
func ping(t testing.TB, n *netstack.Net, from, to netip.Addr) {
	t.Helper()
	if err := tryPing(n, from, to, deadline); err != nil {
		t.Fatalf("ping %v → %v: %v", from, to, err)
	}
}

func tryPing(n *netstack.Net, from, to netip.Addr, within time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	_, err := netping.Ping(ctx, n, from, to, time.Second)
	return err
}

// pingBoth pings a → b, then b → a (b learned a's endpoint from the
// handshake a started).
func pingBoth(t testing.TB, a, b *node) {
	t.Helper()
	ping(t, a.iface.Net(), a.addr.Addr(), b.addr.Addr())
	ping(t, b.iface.Net(), b.addr.Addr(), a.addr.Addr())
}
