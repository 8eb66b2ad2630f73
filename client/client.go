package client

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/filter"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Options configure a complete client: the engine with its real
// workers, one shared UDP socket and a WireGuard interface.
type Options struct {
	ManagementURL string
	PrivateKey    wgtypes.Key
	SetupKey      string // secret: never logged
	// PresharedKey is the official --preshared-key: WireGuard's symmetric
	// key on every peer, so only peers with the same key connect. Zero:
	// none. Secret: never logged.
	PresharedKey wgtypes.Key
	Meta         mgmt.Meta
	// Mode is Netstack (no root) or TUN; Interface names the TUN device.
	Mode      wgiface.Mode
	Interface string
	// Listen is the shared WireGuard/ICE socket (NetBird: 0.0.0.0:51820).
	Listen netip.AddrPort
	MTU    int
	Logger *zap.Logger
	Ring   *fsm.Ring
	// Observers are told of every transition, in the loop goroutine.
	Observers []fsm.Observer
	Rand      *rand.Rand
	// CandidateTypes restricts ICE candidates (tests force relay with it).
	CandidateTypes []ice.CandidateType
	// MgmtOptions are extra management client options (tests).
	MgmtOptions []mgmt.Option
	// DisableFirewall: no packet filter on the interface; every peer
	// reaches every port, whatever the network's policies (the official
	// --disable-firewall; it wins over BlockInbound, as upstream).
	DisableFirewall bool
	// BlockInbound: no new inbound flow from any peer, whatever the
	// policies; only replies to what this peer started get in (the
	// official --block-inbound).
	BlockInbound bool
	// MeasureDispatch records the loop's longest dispatch (scenario).
	MeasureDispatch bool
	// ForceRelay disables ICE: peers pair over the NetBird relay only
	// (NB_FORCE_RELAY).
	ForceRelay bool
	// RelayURLs, if set, replace management's relay URLs (the official
	// client's NB_HOME_RELAY_SERVERS); the token still comes from management.
	RelayURLs []string
}

// Client is a running nbfsm client.
type Client struct {
	*engine.Engine
	sock    *sharedsock.Socket
	workers *peerfsm.Workers
	plane   *dataplane
	signal  *signalfsm.Dialer
	mgmt    *mgmtfsm.Dialer
}

// New assembles a client; Start runs it.
func New(o Options) (*Client, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if !o.Listen.IsValid() {
		o.Listen = netip.AddrPortFrom(netip.IPv4Unspecified(), 51820)
	}
	if o.Meta.Hostname == "" {
		o.Meta = mgmt.DefaultMeta()
	}
	o.Meta.DisableFirewall, o.Meta.BlockInbound = o.DisableFirewall, o.BlockInbound
	sock, err := sharedsock.Listen(o.Listen, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	w := &peerfsm.Workers{Socket: sock, Log: o.Logger.Named("peer"), CandidateTypes: o.CandidateTypes}
	sd := &signalfsm.Dialer{Key: o.PrivateKey, Log: o.Logger.Named("signal")}
	w.SendFunc = sd.Send
	md := &mgmtfsm.Dialer{URL: o.ManagementURL, Key: o.PrivateKey, Meta: o.Meta,
		Options: append([]mgmt.Option{mgmt.WithLogger(o.Logger.Named("mgmt"))}, o.MgmtOptions...)}
	rd := &relayfsm.Dialer{Key: o.PrivateKey.PublicKey(), Log: o.Logger.Named("relay")}
	plane := &dataplane{o: o, sock: sock, workers: w, log: o.Logger.Named("firewall")}
	if !o.DisableFirewall {
		plane.filter = filter.New() // denies new inbound flows until the first map
	} else if o.BlockInbound {
		plane.log.Warn("block-inbound has no effect: the firewall is disabled")
	}
	e, err := engine.New(engine.Config{PrivateKey: o.PrivateKey, SetupKey: o.SetupKey, Logger: o.Logger, Rand: o.Rand, Ring: o.Ring, Observers: o.Observers,
		Mgmt: md, Signal: sd, Peers: w, Relay: rd, ForceRelay: o.ForceRelay, RelayURLs: o.RelayURLs, Dataplane: plane, MeasureDispatch: o.MeasureDispatch})
	if err != nil {
		_ = sock.Close()
		return nil, err
	}
	sd.Accept, sd.Deliver = e.Known, e.Deliver
	return &Client{Engine: e, sock: sock, workers: w, plane: plane, signal: sd, mgmt: md}, nil
}

// LocalAddr is the shared socket's address.
func (c *Client) LocalAddr() netip.AddrPort { return c.sock.LocalAddr() }

// Net returns the netstack of a Netstack-mode client once it is logged in
// (nil before, and in TUN mode).
func (c *Client) Net() *netstack.Net {
	var n *netstack.Net
	_ = c.Loop().Do(func() {
		if c.plane.iface != nil {
			n = c.plane.iface.Net()
		}
	})
	return n
}

// Status is Engine.Status with WireGuard's handshake and byte counters.
func (c *Client) Status() (engine.Status, error) {
	s, err := c.Engine.Status()
	if err != nil {
		return s, err
	}
	var iface *wgiface.Interface
	_ = c.Loop().Do(func() { iface = c.plane.iface })
	if iface == nil {
		return s, nil
	}
	stats, err := iface.PeerStats()
	if err != nil {
		return s, nil // status without counters rather than none
	}
	for i := range s.Peers {
		if ps, ok := stats[s.Peers[i].Key]; ok {
			s.Peers[i].LastHandshake, s.Peers[i].RxBytes, s.Peers[i].TxBytes = ps.LastHandshake, ps.RxBytes, ps.TxBytes
			s.Peers[i].WGEndpoint = ps.Endpoint
		}
	}
	return s, nil
}

// FlushWireGuard waits until every WireGuard change queued so far (the
// peers' configurations and removals) has been applied. For tools and
// tests that measure what a peer holds; never from the loop goroutine.
func (c *Client) FlushWireGuard() {
	var iface *wgiface.Interface
	_ = c.Loop().Do(func() { iface = c.plane.iface })
	if iface != nil {
		iface.Flush()
	}
}

// Close stops the engine and releases the interface and the socket.
func (c *Client) Close() error {
	c.Stop()
	c.workers.Close()
	// The links' workers (dialers, streams, connection closes) end with
	// their sessions; joined here, boundedly.
	errs := []error{c.mgmt.Close(), c.signal.Close()}
	if c.plane.iface != nil {
		errs = append(errs, c.plane.iface.Close())
	}
	errs = append(errs, c.sock.Close())
	return errors.Join(errs...)
}

// dataplane brings the interface up on login and hands ICE servers to the
// workers. Its methods run in the loop goroutine.
type dataplane struct {
	o       Options
	sock    *sharedsock.Socket
	workers *peerfsm.Workers
	iface   *wgiface.Interface
	filter  *filter.Filter // nil: DisableFirewall
	log     *zap.Logger
	fwMode  filter.Mode // as last applied, for the log
	fwSet   bool
}

// Up runs in the engine's worker: it reads only what is fixed at
// construction; installing the interface happens in the loop.
func (d *dataplane) Up(addr, addrV6 netip.Prefix, mtu int) (engine.Interface, error) {
	if d.o.MTU != 0 {
		mtu = d.o.MTU
	}
	name := d.o.Interface
	if name == "" {
		name = "wt0"
	}
	iface, err := wgiface.New(wgiface.Config{Mode: d.o.Mode, Name: name, PrivateKey: d.o.PrivateKey,
		Address: addr, AddressV6: addrV6, MTU: mtu, Socket: d.sock, Logger: d.o.Logger, Filter: d.filter,
		PresharedKey: d.o.PresharedKey})
	if err != nil {
		return nil, err
	}
	return &created{d: d, iface: iface, addr: addr}, nil
}

// created is an interface made by Up, waiting for the loop to install it.
type created struct {
	d     *dataplane
	iface *wgiface.Interface
	addr  netip.Prefix
}

func (c *created) Install() {
	c.d.iface = c.iface
	c.d.workers.Iface = c.iface
	c.d.workers.Overlay = c.addr.Masked()
}

func (c *created) Close() error { return c.iface.Close() }

func (d *dataplane) SetConfig(c mgmt.Config) {
	var stuns, turns []*stun.URI
	for _, h := range c.STUNs {
		if u, err := stun.ParseURI(h.URI); err == nil {
			stuns = append(stuns, u)
		}
	}
	for _, t := range c.TURNs {
		if u, err := stun.ParseURI(t.URI); err == nil {
			u.Username, u.Password = t.User, t.Password
			turns = append(turns, u)
		}
	}
	d.workers.SetICEServers(stuns, turns)
}

// SetFirewall turns the map's access policy into the filter's policy: a
// legacy server (no rules, no empty flag) allows everything, a managed one
// allows what its In rules allow; BlockInbound allows nothing new whatever
// the map says. The filter swaps rule sets atomically; tracked flows stay.
func (d *dataplane) SetFirewall(fw mgmt.Firewall) {
	if d.filter == nil {
		return
	}
	p := filter.Policy{Mode: filter.Enforce, Rules: fw.Rules}
	switch {
	case d.o.BlockInbound:
		p.Rules = nil
	case !fw.Managed:
		p.Mode = filter.AllowAll
	}
	d.filter.SetPolicy(p)
	if !d.fwSet || d.fwMode != p.Mode {
		d.log.Info("firewall policy", zap.Stringer("mode", p.Mode), zap.Int("rules", len(p.Rules)),
			zap.Int("skipped", len(fw.Skipped)), zap.Bool("block-inbound", d.o.BlockInbound))
	}
	for _, s := range fw.Skipped {
		d.log.Debug("firewall rule skipped", zap.String("rule", s.Entry), zap.Error(s.Reason))
	}
	d.fwSet, d.fwMode = true, p.Mode
}

// FirewallStats returns the packet filter's counters; ok is false when
// the firewall is disabled.
func (c *Client) FirewallStats() (s filter.Stats, ok bool) {
	if c.plane.filter == nil {
		return filter.Stats{}, false
	}
	return c.plane.filter.Stats(), true
}

// SetLocalAddresses tells the shared socket's ICE mux the host's current
// addresses (from the network monitor): the next agents gather host
// candidates on them.
func (c *Client) SetLocalAddresses(addrs []netip.Addr) { c.sock.SetLocalAddresses(addrs) }

// SignalStats sums the signal sessions' message counters (dropped messages
// by reason, send errors).
func (c *Client) SignalStats() sigwire.StatsSnapshot { return c.signal.Stats() }

// SocketStats returns the shared socket's datagram counters.
func (c *Client) SocketStats() sharedsock.Stats { return c.sock.Stats() }
