package wgiface

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/filter"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
)

// Mode selects the packet device under wireguard-go.
type Mode int

const (
	// Netstack runs wireguard-go on gVisor's userspace TCP/IP stack: no root,
	// no kernel interface; reach the overlay through Net().
	Netstack Mode = iota
	// TUN runs wireguard-go on a kernel TUN device (root, Linux). The device
	// serves its UAPI socket and is configured through wgctrl.
	TUN
)

// String names the mode for logs.
func (m Mode) String() string {
	switch m {
	case Netstack:
		return "netstack"
	case TUN:
		return "tun"
	default:
		return fmt.Sprintf("mode(%d)", int(m))
	}
}

// DefaultMTU is NetBird's overlay MTU.
const DefaultMTU = 1280

// Config describes one WireGuard interface.
type Config struct {
	Mode Mode
	// Name is the TUN device name (e.g. "wt0"); in Netstack mode only a
	// label for logs.
	Name       string
	PrivateKey wgtypes.Key
	// Address is the interface's overlay address with the network's prefix
	// (e.g. 100.64.0.1/10).
	Address netip.Prefix
	// AddressV6 is the IPv6 overlay address with its prefix
	// (PeerConfig.address_v6); zero for none.
	AddressV6 netip.Prefix
	// MTU defaults to DefaultMTU.
	MTU int
	// Socket is the shared UDP socket; its Bind carries WireGuard. The
	// Interface does not close it.
	Socket *sharedsock.Socket
	Logger *zap.Logger
	// Filter, if set, filters what the peers send toward the host and
	// tracks what the host sends (filter.go); nil passes everything.
	Filter *filter.Filter
	// MaxQueued bounds the changes waiting for the configuration worker
	// (Enqueue); 0: DefaultMaxQueued.
	MaxQueued int
	// PresharedKey is NetBird's --preshared-key: WireGuard's symmetric key,
	// set on every peer, so that only peers holding the same key complete a
	// handshake. Zero: none. A secret: never logged.
	PresharedKey wgtypes.Key
}

// Peer is the desired WireGuard configuration of one remote peer.
type Peer struct {
	Key        wgtypes.Key
	AllowedIPs []netip.Prefix
	// Endpoint is the remote's address: the selected remote candidate of a
	// direct pair, or a relay endpoint's AddrPort (sharedsock.RelayPrefix).
	// Zero leaves the endpoint as it is (unset, or learned from the peer's
	// handshake).
	Endpoint netip.AddrPort
	// Keepalive is the persistent keepalive (NetBird: 25 s); zero turns it
	// off. Setting it on a peer with an endpoint starts a handshake at once.
	Keepalive time.Duration
	// PresharedKey is WireGuard's symmetric key for the peer; zero: none.
	// The Interface sets its Config.PresharedKey on every peer.
	PresharedKey wgtypes.Key
}

// PeerStats is the state of one configured peer.
type PeerStats struct {
	LastHandshake time.Time // zero if never
	RxBytes       uint64
	TxBytes       uint64
	Endpoint      netip.AddrPort // zero if unknown
	Relayed       bool           // Endpoint is a relay endpoint
}

// configurer is how peers reach the device: wgctrl through the UAPI socket
// (TUN mode) or the device's own IPC (Netstack mode).
type configurer interface {
	setPeer(p Peer) error
	removePeer(k wgtypes.Key) error
	peerStats() (map[wgtypes.Key]PeerStats, error)
	close() error
}

// Interface is a running WireGuard interface.
type Interface struct {
	cfg  Config
	log  *zap.Logger
	dev  *device.Device
	tdev tun.Device
	tnet *netstack.Net
	conf configurer
	// q feeds the configuration worker (queue.go): every peer change goes
	// through it, in order.
	q configQueue

	mu     sync.Mutex
	closed bool
}

// New creates the packet device, starts wireguard-go on cfg.Socket's Bind,
// sets the private key and brings the device up. The listen port is the
// socket's.
func New(cfg Config) (*Interface, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	switch {
	case cfg.Socket == nil:
		return nil, fmt.Errorf("%w: no socket", ErrBadConfig)
	case !cfg.Address.IsValid():
		return nil, fmt.Errorf("%w: no address", ErrBadConfig)
	case cfg.AddressV6.IsValid() && (!cfg.AddressV6.Addr().Is6() || cfg.AddressV6.Addr().Is4In6()):
		return nil, fmt.Errorf("%w: ipv6 address %v", ErrBadConfig, cfg.AddressV6)
	case cfg.MTU < 576 || cfg.MTU > 65535:
		return nil, fmt.Errorf("%w: mtu %d", ErrBadConfig, cfg.MTU)
	case cfg.PrivateKey == (wgtypes.Key{}):
		return nil, fmt.Errorf("%w: no private key", ErrBadConfig)
	}
	i := &Interface{cfg: cfg}
	i.log = cfg.Logger.Named("wgiface").With(zap.String("iface", cfg.Name),
		zap.String("peer", nbcrypto.Fingerprint(cfg.PrivateKey.PublicKey())))
	var err error
	switch cfg.Mode {
	case Netstack:
		addrs := []netip.Addr{cfg.Address.Addr()}
		if cfg.AddressV6.IsValid() {
			addrs = append(addrs, cfg.AddressV6.Addr())
		}
		i.tdev, i.tnet, err = netstack.CreateNetTUN(addrs, nil, cfg.MTU)
		if err != nil {
			return nil, fmt.Errorf("%w: netstack: %w", ErrDevice, err)
		}
	case TUN:
		if cfg.Name == "" {
			return nil, fmt.Errorf("%w: tun mode needs a name", ErrBadConfig)
		}
		i.tdev, err = createTUN(cfg.Name, cfg.MTU, cfg.Address, cfg.AddressV6)
		if err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: mode %v", ErrBadConfig, cfg.Mode)
	}
	if cfg.Filter != nil {
		i.tdev = newFilteredDevice(i.tdev, cfg.Filter)
	}
	i.dev = device.NewDevice(i.tdev, cfg.Socket.Bind(), deviceLogger(i.log))
	if err := i.dev.IpcSet(fmt.Sprintf("private_key=%x\n", cfg.PrivateKey[:])); err != nil {
		i.dev.Close()
		return nil, fmt.Errorf("%w: set private key: %w", ErrDevice, err)
	}
	if err := i.dev.Up(); err != nil {
		i.dev.Close()
		return nil, fmt.Errorf("%w: up: %w", ErrDevice, err)
	}
	if cfg.Mode == TUN {
		i.conf, err = newUAPIConfigurer(cfg.Name, i.dev, cfg.Socket, i.log)
		if err != nil {
			i.dev.Close()
			return nil, err
		}
	} else {
		i.conf = &ipcConfigurer{dev: i.dev}
	}
	i.q.init(cfg.MaxQueued)
	go i.configure()
	i.log.Debug("interface up", zap.Stringer("mode", cfg.Mode),
		zap.Stringer("endpoint", cfg.Socket.LocalAddr()))
	return i, nil
}

// SetPeer adds the peer or updates it: allowed IPs are replaced, the
// endpoint is set when non-zero, keepalive is set. It goes through the
// configuration worker, behind every change queued before, and waits for
// it: for tests and tools, not the loop goroutine (which uses Enqueue).
func (i *Interface) SetPeer(p Peer) error { return i.wait(Change{Peer: p}) }

// RemovePeer removes the peer; removing an unknown peer is not an error.
// Like SetPeer it waits for the configuration worker.
func (i *Interface) RemovePeer(k wgtypes.Key) error {
	return i.wait(Change{Peer: Peer{Key: k}, Remove: true})
}

// wait enqueues c and waits for its result.
func (i *Interface) wait(c Change) error {
	res := make(chan error, 1)
	if err := i.Enqueue(c, func(err error) { res <- err }); err != nil {
		return err
	}
	return <-res
}

// Initiate makes WireGuard send a handshake initiation to the peer now (at
// most one per RekeyTimeout, as wireguard-go paces them). The remote
// answers with a handshake response: a direct path that carried nothing
// for a while proves itself alive with it, since wireguard-go's persistent
// keepalives can be one-sided (a received keepalive postpones the
// receiver's own). Unknown peer: ErrBadPeer.
func (i *Interface) Initiate(k wgtypes.Key) error {
	if err := i.check(); err != nil {
		return err
	}
	p := i.dev.LookupPeer(device.NoisePublicKey(k))
	if p == nil {
		return fmt.Errorf("%w: initiate: no peer %s", ErrBadPeer, nbcrypto.Fingerprint(k))
	}
	if err := p.SendHandshakeInitiation(false); err != nil {
		return fmt.Errorf("%w: initiate: %w", ErrDevice, err)
	}
	return nil
}

// PeerStats returns the state of every configured peer.
func (i *Interface) PeerStats() (map[wgtypes.Key]PeerStats, error) {
	if err := i.check(); err != nil {
		return nil, err
	}
	return i.conf.peerStats()
}

// Endpoint returns WireGuard's endpoint for k now (zero if it has none or
// k is not configured) and whether it is a relay endpoint. It asks the
// device in-process (its IPC text), in both modes: no UAPI socket round
// trip, so the loop may call it.
func (i *Interface) Endpoint(k wgtypes.Key) (netip.AddrPort, bool, error) {
	if err := i.check(); err != nil {
		return netip.AddrPort{}, false, err
	}
	text, err := i.dev.IpcGet()
	if err != nil {
		return netip.AddrPort{}, false, fmt.Errorf("%w: get: %w", ErrDevice, err)
	}
	st, err := parsePeerStats(text)
	if err != nil {
		return netip.AddrPort{}, false, err
	}
	ps := st[k]
	return ps.Endpoint, ps.Relayed, nil
}

// Net is the userspace network stack in Netstack mode, nil in TUN mode.
func (i *Interface) Net() *netstack.Net { return i.tnet }

// Device is the wireguard-go device (for Up/Down and IPC in tests and
// tools).
func (i *Interface) Device() *device.Device { return i.dev }

// Close removes the device. The shared socket stays open.
func (i *Interface) Close() error {
	i.mu.Lock()
	if i.closed {
		i.mu.Unlock()
		return nil
	}
	i.closed = true
	i.mu.Unlock()
	i.stopQueue() // nothing is configured from now on
	err := i.conf.close()
	// Down first: wireguard-go's Close closes the TUN device before it stops
	// its peers, so a packet still being received could write to a closed
	// netstack channel.
	_ = i.dev.Down()
	i.dev.Close() // closes the TUN device and the Bind
	i.log.Debug("interface closed")
	return err
}

func (i *Interface) check() error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.closed {
		return ErrClosed
	}
	return nil
}

// deviceLogger sends wireguard-go's log to zap at debug: it reports routine
// network conditions ("no known endpoint for peer") as errors, and the
// machines already report what the user should know. The level is checked
// at each call (before formatting), so `netbird debug log level debug`
// turns it on in a running device.
func deviceLogger(l *zap.Logger) *device.Logger {
	s := l.Named("wireguard").Sugar()
	return &device.Logger{Verbosef: s.Debugf, Errorf: s.Debugf}
}
