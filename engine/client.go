package engine

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

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// ClientOptions configure a complete client: the engine with its real
// workers, one shared UDP socket and a WireGuard interface.
type ClientOptions struct {
	ManagementURL string
	PrivateKey    wgtypes.Key
	SetupKey      string // secret: never logged
	Meta          mgmt.Meta
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
}

// Client is a running nbfsm client.
type Client struct {
	*Engine
	sock    *sharedsock.Socket
	workers *peerfsm.Workers
	plane   *dataplane
}

// NewClient assembles a client; Start runs it.
func NewClient(o ClientOptions) (*Client, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if !o.Listen.IsValid() {
		o.Listen = netip.AddrPortFrom(netip.IPv4Unspecified(), 51820)
	}
	if o.Meta.Hostname == "" {
		o.Meta = mgmt.DefaultMeta()
	}
	sock, err := sharedsock.Listen(o.Listen, o.Logger)
	if err != nil {
		return nil, fmt.Errorf("engine: %w", err)
	}
	w := &peerfsm.Workers{Socket: sock, Log: o.Logger.Named("peer"), CandidateTypes: o.CandidateTypes}
	sd := &signalfsm.Dialer{Key: o.PrivateKey, Log: o.Logger.Named("signal")}
	w.SendFunc = sd.Send
	md := &mgmtfsm.Dialer{URL: o.ManagementURL, Key: o.PrivateKey, Meta: o.Meta,
		Options: append([]mgmt.Option{mgmt.WithLogger(o.Logger.Named("mgmt"))}, o.MgmtOptions...)}
	plane := &dataplane{o: o, sock: sock, workers: w}
	e, err := New(Config{PrivateKey: o.PrivateKey, SetupKey: o.SetupKey, Logger: o.Logger, Rand: o.Rand, Ring: o.Ring, Observers: o.Observers,
		Mgmt: md, Signal: sd, Peers: w, Dataplane: plane})
	if err != nil {
		_ = sock.Close()
		return nil, err
	}
	sd.Accept, sd.Deliver = e.Known, e.Deliver
	return &Client{Engine: e, sock: sock, workers: w, plane: plane}, nil
}

// LocalAddr is the shared socket's address.
func (c *Client) LocalAddr() netip.AddrPort { return c.sock.LocalAddr() }

// Net returns the netstack of a Netstack-mode client once it is logged in
// (nil before, and in TUN mode).
func (c *Client) Net() *netstack.Net {
	var n *netstack.Net
	_ = c.loop.Do(func() {
		if c.plane.iface != nil {
			n = c.plane.iface.Net()
		}
	})
	return n
}

// Status is Engine.Status with WireGuard's handshake and byte counters.
func (c *Client) Status() (Status, error) {
	s, err := c.Engine.Status()
	if err != nil {
		return s, err
	}
	var iface *wgiface.Interface
	_ = c.loop.Do(func() { iface = c.plane.iface })
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
		}
	}
	return s, nil
}

// Close stops the engine and releases the interface and the socket.
func (c *Client) Close() error {
	c.Stop()
	c.workers.Close()
	var errs []error
	if c.plane.iface != nil {
		errs = append(errs, c.plane.iface.Close())
	}
	errs = append(errs, c.sock.Close())
	return errors.Join(errs...)
}

// dataplane brings the interface up on login and hands ICE servers to the
// workers. Its methods run in the loop goroutine.
type dataplane struct {
	o       ClientOptions
	sock    *sharedsock.Socket
	workers *peerfsm.Workers
	iface   *wgiface.Interface
}

func (d *dataplane) Up(addr netip.Prefix, mtu int) error {
	if d.iface != nil {
		return nil // the overlay address of a registered peer does not change
	}
	if d.o.MTU != 0 {
		mtu = d.o.MTU
	}
	name := d.o.Interface
	if name == "" {
		name = "wt0"
	}
	iface, err := wgiface.New(wgiface.Config{Mode: d.o.Mode, Name: name, PrivateKey: d.o.PrivateKey,
		Address: addr, MTU: mtu, Socket: d.sock, Logger: d.o.Logger})
	if err != nil {
		return err
	}
	d.iface = iface
	d.workers.Iface = iface
	d.workers.Overlay = addr.Masked()
	return nil
}

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

// SocketStats returns the shared socket's datagram counters.
func (c *Client) SocketStats() sharedsock.Stats { return c.sock.Stats() }
