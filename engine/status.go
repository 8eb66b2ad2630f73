package engine

import (
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// Status is a snapshot of every machine, built inside the loop and handed
// out by value. It holds no secret: public keys, states, endpoints.
type Status struct {
	State      fsm.State
	Since      time.Time
	PublicKey  wgtypes.Key
	Address    netip.Prefix
	FQDN       string
	Serial     uint64
	Skipped    int // entries of the last network map left out as invalid
	Management LinkStatus
	Signal     LinkStatus
	Peers      []PeerStatus
	Loop       fsm.Stats
}

// LinkStatus is one service link.
type LinkStatus struct {
	State    fsm.State
	Since    time.Time
	Sessions int    // dials since start
	Reason   string // why it is not up, if it is not
}

// PeerStatus is one peer.
type PeerStatus struct {
	Key        wgtypes.Key
	AllowedIPs []netip.Prefix
	State      fsm.State
	Since      time.Time
	// Connection is "direct", "relayed" or "" when not connected.
	Connection            string
	LocalType, RemoteType string
	Endpoint              netip.AddrPort
	Latency               time.Duration
	LastErr               string
	Timers                int // armed by the peer's machine
	// From WireGuard, filled in by Client.Status (zero without a data plane).
	LastHandshake time.Time
	RxBytes       uint64
	TxBytes       uint64
}

// Status builds a snapshot inside the loop.
func (e *Engine) Status() (Status, error) {
	var s Status
	err := e.loop.Do(func() { s = e.snapshot() })
	return s, err
}

func (e *Engine) snapshot() Status {
	s := Status{State: e.m.State(), Since: e.m.Since(), PublicKey: e.own, Loop: e.loop.Stats(), Skipped: e.skipped}
	if e.login != nil {
		s.Address, s.FQDN = e.login.Peer.Address, e.login.Peer.FQDN
	}
	if e.lastMap != nil {
		s.Serial = e.lastMap.Serial
	}
	s.Management = LinkStatus{State: e.mgmt.State(), Since: e.mgmt.Since(), Sessions: e.mgmt.Data.Dials, Reason: e.mgmt.Data.Reason}
	s.Signal = LinkStatus{State: e.sig.State(), Since: e.sig.Since(), Sessions: e.sig.Data.Dials, Reason: e.sig.Data.LastErr}
	e.m.Children(peerfsm.Kind, func(n fsm.Node) bool {
		pm, ok := n.(*fsm.Machine[*peerfsm.Peer])
		if !ok {
			return true
		}
		p := pm.Data
		ps := PeerStatus{Key: p.Remote, AllowedIPs: slices.Clone(p.AllowedIPs), State: pm.State(), Since: pm.Since(), LastErr: p.LastErr,
			Timers: pm.Timers()}
		if pm.In(peerfsm.Connected) {
			ps.Connection = "direct"
			if p.Pair.Relayed {
				ps.Connection = "relayed"
			}
			ps.LocalType, ps.RemoteType, ps.Endpoint, ps.Latency = p.Pair.LocalType, p.Pair.RemoteType, p.Pair.Remote, p.Pair.Latency
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
