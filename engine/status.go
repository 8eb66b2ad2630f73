package engine

import (
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
)

// Status is a snapshot of every machine, built inside the loop and handed
// out by value. It holds no secret: public keys, states, endpoints.
type Status struct {
	State     fsm.State
	Since     time.Time
	PublicKey wgtypes.Key
	Address   netip.Prefix
	AddressV6 netip.Prefix // zero if management gave none
	FQDN      string
	Serial    uint64
	Skipped   int // entries of the last network map left out as invalid
	// Interface is why the WireGuard interface could not be created ("" when
	// it is up or not tried yet); the engine is in interface-failed then.
	Interface  string
	Management LinkStatus
	Signal     LinkStatus
	SignalURI  string // as management handed it out
	// Relay is the home relay link; Relays lists the home relay, then the
	// foreign ones, as `status` shows them.
	Relay  LinkStatus
	Relays []RelayStatus
	Peers  []PeerStatus
	Loop   fsm.Stats
}

// LinkStatus is one service link.
type LinkStatus struct {
	State    fsm.State
	Since    time.Time
	Sessions int    // dials since start
	Reason   string // why it is not up, if it is not
}

// RelayStatus is one relay connection: its URI (the URL dialed for the home
// relay, the instance address for a foreign one), whether it is connected,
// and why not. It never holds the token.
type RelayStatus struct {
	URI       string
	Address   string // instance address from the AuthResponse ("" before the first)
	Available bool
	Error     string
	Users     int // peers using it
}

// PeerStatus is one peer.
type PeerStatus struct {
	Key        wgtypes.Key
	AllowedIPs []netip.Prefix
	FQDN       string // from the network map
	State      fsm.State
	Since      time.Time
	// Connection is "direct", "relayed" (TURN or the NetBird relay) or ""
	// when not connected; RelayAddress is the NetBird relay the peer's
	// session uses (controller rule), "" if none.
	Connection            string
	RelayAddress          string
	LocalType, RemoteType string
	// Endpoint and LocalEndpoint are the selected pair's remote and local
	// candidates (the official status's ICE candidate endpoints).
	Endpoint, LocalEndpoint netip.AddrPort
	Latency                 time.Duration
	LastErr                 string
	Timers                  int // armed by the peer's machine
	// From WireGuard, filled in by Client.Status (zero without a data plane).
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
	// WGEndpoint is WireGuard's own endpoint for the peer (it follows
	// the last authenticated datagram; zero without a WireGuard peer).
	WGEndpoint netip.AddrPort
}

// Status builds a snapshot inside the loop.
func (e *Engine) Status() (Status, error) {
	var s Status
	err := e.loop.Do(func() { s = e.snapshot() })
	return s, err
}

func (e *Engine) snapshot() Status {
	s := Status{State: e.m.State(), Since: e.m.Since(), PublicKey: e.own, Loop: e.loop.Stats(), Skipped: e.skipped,
		Interface: e.ifaceErr}
	if e.login != nil {
		s.Address, s.AddressV6, s.FQDN = e.login.Peer.Address, e.login.Peer.AddressV6, e.login.Peer.FQDN
	}
	if e.lastMap != nil {
		s.Serial = e.lastMap.Serial
	}
	if e.config != nil {
		s.SignalURI = e.config.Signal.URI
	}
	s.Management = LinkStatus{State: e.mgmt.State(), Since: e.mgmt.Since(), Sessions: e.mgmt.Data.Dials, Reason: e.mgmt.Data.LastErr}
	fqdn := map[wgtypes.Key]string{}
	if e.lastMap != nil {
		for _, p := range e.lastMap.Peers {
			fqdn[p.Key] = p.FQDN
		}
	}
	s.Signal = LinkStatus{State: e.sig.State(), Since: e.sig.Since(), Sessions: e.sig.Data.Dials, Reason: e.sig.Data.LastErr}
	if r := e.relay; r != nil {
		l := r.Data
		s.Relay = LinkStatus{State: r.State(), Since: r.Since(), Sessions: l.Dials, Reason: l.LastErr}
		uri := l.URL
		if uri == "" && len(l.Config.URLs) > 0 {
			uri = l.Config.URLs[0]
		}
		if uri != "" {
			s.Relays = append(s.Relays, RelayStatus{URI: uri, Address: l.Addr, Available: r.In(relayfsm.Connected),
				Error: l.LastErr, Users: l.Users()})
		}
		for _, f := range l.Foreign() {
			s.Relays = append(s.Relays, RelayStatus{URI: f.Data.Addr, Address: f.Data.Addr, Available: f.In(relayfsm.ForeignUp),
				Error: f.Data.LastErr, Users: f.Data.Users()})
		}
	}
	e.m.Children(peerfsm.Kind, func(n fsm.Node) bool {
		pm, ok := n.(*fsm.Machine[*peerfsm.Peer])
		if !ok {
			return true
		}
		p := pm.Data
		ps := PeerStatus{Key: p.Remote, AllowedIPs: slices.Clone(p.AllowedIPs), FQDN: fqdn[p.Remote], State: pm.State(), Since: pm.Since(), LastErr: p.LastErr,
			Timers: pm.Timers()}
		ps.RelayAddress = p.RelayTarget
		if pm.In(peerfsm.OverRelay) || pm.In(peerfsm.RelayOnlyRelayed) {
			ps.Connection, ps.LocalType, ps.RemoteType = "relayed", "relay", "relay"
		}
		if pm.In(peerfsm.Connected) {
			ps.Connection = "direct"
			if p.Pair.Relayed {
				ps.Connection = "relayed"
			}
			ps.LocalType, ps.RemoteType, ps.Endpoint, ps.LocalEndpoint, ps.Latency = p.Pair.LocalType, p.Pair.RemoteType, p.Pair.Remote, p.Pair.Local, p.Pair.Latency
		}
		s.Peers = append(s.Peers, ps)
		return true
	})
	slices.SortFunc(s.Peers, func(a, b PeerStatus) int { return compareKeys(a.Key, b.Key) })
	return s
}

// Subscribe streams every transition of every machine until the
// subscription is closed; it needs Config.Ring.
func (e *Engine) Subscribe(buffer int) *fsm.Subscription {
	if e.cfg.Ring == nil {
		return nil
	}
	return e.cfg.Ring.Subscribe(buffer)
}
