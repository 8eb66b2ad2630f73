package testnet

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/testnet/mgmtsrv"
	"github.com/nbfsm/nbfsm/internal/testnet/relaysrv"
	"github.com/nbfsm/nbfsm/internal/testnet/signalsrv"
	"github.com/nbfsm/nbfsm/internal/testnet/turnsrv"
)

// Host is the address the test network listens on unless Options.Host
// says otherwise.
const Host = "127.0.0.1"

// Options configure Start. The zero value is a working network.
type Options struct {
	Logger *zap.Logger // nil → zap.NewNop()
	// SetupKeys are the valid, reusable setup keys. nil → one random key.
	SetupKeys []string
	// Topology: a sees b iff Topology(a, b). nil → all-to-all.
	Topology func(a, b wgtypes.Key) bool

	// Host is the IPv4 address (not 0.0.0.0) all three servers listen on
	// and that the handed-out signal, STUN and TURN URIs name ("" → Host,
	// 127.0.0.1). Tests in network namespaces set it to the hub's underlay
	// address.
	Host string

	// Fixed ports for manual runs (0 → any free port).
	MgmtPort, SignalPort, TURNPort, RelayPort int

	// RelayHealthInterval and RelayHealthTimeout configure the relay's
	// health checks (0 → the relay's defaults, 25 s and 20 s).
	RelayHealthInterval, RelayHealthTimeout time.Duration
}

// RelaySecret is the secret the test network's management signs relay
// tokens with and its relay checks them with.
const RelaySecret = "testnet-relay-secret"

// Network is a running test network. Mgmt, Signal and Relay expose the
// servers' fault hooks; Turn is the STUN/TURN server; Relay is the NetBird
// relay, handed out by management with tokens signed with RelaySecret.
type Network struct {
	Mgmt   *mgmtsrv.Server
	Signal *signalsrv.Server
	Turn   *turnsrv.Server
	Relay  *relaysrv.Server

	setupKey string
}

// Start starts the three servers on Options.Host (127.0.0.1 by default). On
// error nothing is left running.
func Start(opts Options) (*Network, error) {
	host := opts.Host
	if host == "" {
		host = Host
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.Is4() || ip.IsUnspecified() {
		return nil, fmt.Errorf("%w: %q", ErrHost, host)
	}
	for _, p := range []int{opts.MgmtPort, opts.SignalPort, opts.TURNPort, opts.RelayPort} {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("%w: %d", ErrPort, p)
		}
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	keys := opts.SetupKeys
	if keys == nil {
		keys = []string{mgmtsrv.NewSetupKey()}
	}
	n := &Network{}
	if len(keys) > 0 {
		n.setupKey = keys[0]
	}

	relay, err := turnsrv.Start(turnsrv.Config{Logger: log, Addr: hostPort(host, opts.TURNPort)})
	if err != nil {
		return nil, fmt.Errorf("testnet: %w", err)
	}
	n.Turn = relay

	n.Signal = signalsrv.New(signalsrv.Config{Logger: log, Addr: hostPort(host, opts.SignalPort)})
	if err := n.Signal.Start(); err != nil {
		_ = relay.Close()
		return nil, fmt.Errorf("testnet: signal: %w", err)
	}

	n.Relay = relaysrv.New(relaysrv.Config{Logger: log, Addr: hostPort(host, opts.RelayPort), Secret: RelaySecret,
		HealthInterval: opts.RelayHealthInterval, HealthTimeout: opts.RelayHealthTimeout})
	if err := n.Relay.Start(); err != nil {
		n.Signal.Stop()
		_ = relay.Close()
		return nil, fmt.Errorf("testnet: relay: %w", err)
	}

	user, pass := relay.Credentials()
	n.Mgmt = mgmtsrv.New(mgmtsrv.Config{
		Logger:    log,
		Addr:      hostPort(host, opts.MgmtPort),
		SetupKeys: keys,
		Topology:  opts.Topology,
		Relay:     mgmtsrv.Relay{URLs: []string{n.Relay.URL()}, Secret: RelaySecret},
		NetbirdConfig: &mgmtpb.NetbirdConfig{
			Signal: &mgmtpb.HostConfig{Uri: n.Signal.Addr(), Protocol: mgmtpb.HostConfig_HTTP},
			Stuns:  []*mgmtpb.HostConfig{{Uri: relay.STUNURI()}},
			Turns: []*mgmtpb.ProtectedHostConfig{{
				HostConfig: &mgmtpb.HostConfig{Uri: relay.TURNURI()},
				User:       user,
				Password:   pass,
			}},
		},
	})
	if err := n.Mgmt.Start(); err != nil {
		n.Relay.Stop()
		n.Signal.Stop()
		_ = relay.Close()
		return nil, fmt.Errorf("testnet: management: %w", err)
	}
	return n, nil
}

// ManagementURL is "http://HOST:PORT" (HOST: Options.Host, 127.0.0.1 by
// default; likewise below).
func (n *Network) ManagementURL() string { return "http://" + n.Mgmt.Addr() }

// SignalAddr is "HOST:PORT".
func (n *Network) SignalAddr() string { return n.Signal.Addr() }

// SetupKey is the first valid setup key ("" if Options.SetupKeys was empty
// but not nil).
func (n *Network) SetupKey() string { return n.setupKey }

// STUNURI is "stun:HOST:PORT".
func (n *Network) STUNURI() string { return n.Turn.STUNURI() }

// TURN is the TURN URI ("turn:HOST:PORT?transport=udp") and its static
// credentials.
func (n *Network) TURN() (uri, user, pass string) {
	user, pass = n.Turn.Credentials()
	return n.Turn.TURNURI(), user, pass
}

// Close stops every server; it returns when their goroutines have ended.
func (n *Network) Close() {
	n.Mgmt.Stop()
	n.Signal.Stop()
	n.Relay.Stop()
	_ = n.Turn.Close()
}

func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
