package peerfsm

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/relayuse"
	"github.com/nbfsm/nbfsm/internal/sigwire"
)

// fakeOpener opens fake relay paths and records for whom.
type fakeOpener struct{ fx *fakeEffects }

func (o fakeOpener) Open(id relay.PeerID) (net.Conn, error) {
	o.fx.Record("OpenRelayPath")
	return fakeNetConn{}, nil
}

const (
	homeRelay = "rel://home:1"
	farRelay  = "rel://far:2"
)

// failingOpener opens no relay path.
type failingOpener struct{ fx *fakeEffects }

func (o failingOpener) Open(relay.PeerID) (net.Conn, error) {
	o.fx.Record("OpenRelayPath")
	return nil, errors.New("relay closed")
}

var errBridge = fmt.Errorf("%w: socket closed", ErrRelayBridge)

func relayAnswer(ufrag, addr string) fsm.Envelope {
	sm := sigwire.Message{Kind: sigwire.Answer, Ufrag: ufrag, Pwd: "remotepwd", SessionID: []byte{9}, RelayServerAddress: addr}
	if ufrag == "" {
		sm.Pwd, sm.SessionID = "", nil
	}
	return fsm.Envelope{Event: EvAnswer, Data: sm}
}

func relayOffer(ufrag, addr string) fsm.Envelope {
	env := relayAnswer(ufrag, addr)
	sm := env.Data.(sigwire.Message)
	sm.Kind = sigwire.Offer
	return fsm.Envelope{Event: EvOffer, Data: sm}
}

func TestRelayPath(t *testing.T) {
	ready := func(fx *fakeEffects, addr string) fsm.Envelope {
		return fsm.Envelope{Event: relayuse.EvReady, Data: relayuse.Ready{Addr: addr, Conn: fakeOpener{fx}}}
	}
	type step struct {
		ev      func(fx *fakeEffects) fsm.Envelope
		want    fsm.State
		effects []string
	}
	on := func(env fsm.Envelope) func(*fakeEffects) fsm.Envelope {
		return func(*fakeEffects) fsm.Envelope { return env }
	}
	tests := []struct {
		name   string
		own    bool // this side controls
		force  bool
		steps  []step
		target string
	}{
		{name: "controller: own relay first, ICE upgrades, a silent direct path falls back", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, Checking, nil}, // not our target
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvICEConnected, direct)), Direct, []string{"SetPeer 198.18.0.2:51820", "StopICE", "HoldPath"}},
				{on(e(EvPathCheck)), Direct, []string{"Probe"}},                                 // silent: probed first
				{on(e(EvPathCheck)), OverRelay, []string{"ReleasePath", "SetPeer relay probe"}}, // the relay path stayed open; probed at once
				{on(e(EvPathCheck)), Backoff, []string{"RemovePeer"}},                           // nothing over the relay since its probe
			}},
		{name: "controlled side, direct first: a fallback sets the relay endpoint, listens for the controller's probe, then probes", target: farRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=false pending=0"}},
				{on(e(EvICEConnected, direct)), Direct, []string{"SetPeer keepalive", "StopICE", "HoldPath"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, Direct, nil}, // kept for a fallback
				{on(e(EvPathCheck)), Direct, []string{"Probe"}},
				{on(e(EvPathCheck)), OverRelay, []string{"ReleasePath", "OpenRelayPath", "SetPeer relay"}},
				{on(e(EvPathCheck)), OverRelay, []string{"Probe"}}, // the controller's did not come
				{on(e(EvPathCheck)), Backoff, []string{"RemovePeer"}},
			}},
		{name: "controlled side: the remote's relay report while direct is heard out, then probed", target: farRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=false pending=0"}},
				{on(e(EvICEConnected, direct)), Direct, []string{"SetPeer keepalive", "StopICE", "HoldPath"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, Direct, nil},
				{func(fx *fakeEffects) fsm.Envelope {
					fx.lastRecv = fx.now.Add(-time.Second)
					return e(relayuse.EvRemoteOnline, farRelay)
				}, Direct, nil},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOffline, Data: farRelay}), Direct, nil}, // listening already
				{on(e(EvPathCheck)), Direct, []string{"Probe"}},                                  // nothing since the report
				{func(fx *fakeEffects) fsm.Envelope { fx.lastRecv = fx.now.Add(time.Hour); return e(EvPathCheck) }, Direct, nil},
				{func(fx *fakeEffects) fsm.Envelope { return e(relayuse.EvRemoteOnline, farRelay) }, Direct, nil},                // listening anew
				{func(fx *fakeEffects) fsm.Envelope { fx.lastRecv = fx.now.Add(time.Hour); return e(EvPathCheck) }, Direct, nil}, // the controller's probe came
			}},
		{name: "non-controller uses the controller's relay; ICE failing keeps the relay", target: farRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=false pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvICEFailed, errors.New("ice failed"))), OverRelay, []string{"StopICE"}},
				{on(fsm.Envelope{Event: relayuse.EvLost, Data: farRelay}), Backoff, []string{"RemovePeer"}},
			}},
		{name: "non-controller over the controller's relay: the controller moves to another relay, WireGuard follows", target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=false pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(relayAnswer("R1", homeRelay)), Checking, nil},                                  // the path on the old relay is closed
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, Checking, nil}, // the old relay: not the target
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
			}},
		{name: "relay-only remote (\":\"): answered, served, waits for a lost relay", own: true, target: homeRelay,
			steps: []step{
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(relayOffer("", farRelay)), RelayOnlyRelayed, []string{"Send answer L1"}},
				{on(e(EvPark)), RelayOnlyRelayed, nil},
				{on(fsm.Envelope{Event: relayuse.EvLost, Data: homeRelay}), RelayWaiting, nil},
				{on(e(EvCheckTimeout)), Parked, []string{"RemovePeer"}},
			}},
		{name: "relay only: a relay path silent through its probe ends the session (the remote restarted with the same key)", own: true, target: homeRelay,
			steps: []step{
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvPathCheck)), RelayOnlyRelayed, []string{"Probe"}},
				{on(e(EvPathCheck)), Backoff, []string{"RemovePeer"}},
			}},
		{name: "over the relay: a relay path silent through its probe ends the session", target: farRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=false pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvICEFailed, errors.New("ice failed"))), OverRelay, []string{"StopICE"}},
				{on(e(EvPathCheck)), OverRelay, []string{"Probe"}},
				{on(e(EvPathCheck)), Backoff, []string{"RemovePeer"}},
			}},
		{name: "relay only: the relay reports the remote gone, the peer leaves connected; its return re-offers", own: true, target: homeRelay,
			steps: []step{
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOffline, Data: farRelay}), RelayOnlyRelayed, nil}, // another relay's
				{on(fsm.Envelope{Event: relayuse.EvRemoteOffline, Data: homeRelay}), RemoteOffline, []string{"RemovePeer"}},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOffline, Data: homeRelay}), RemoteOffline, nil},
				{on(e(EvCheckTimeout)), RemoteOffline, nil},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOnline, Data: homeRelay}), Offering, []string{"Send offer L2"}},
			}},
		{name: "over the relay after ICE failed: the remote gone, then its relay-only offer pairs again", target: farRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=false pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvICEFailed, errors.New("ice failed"))), OverRelay, []string{"StopICE"}},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOffline, Data: farRelay}), RemoteOffline, []string{"RemovePeer"}},
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
			}},
		{name: "the remote's relay report while direct: the direct path is probed now, its answer keeps it", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{on(e(EvICEConnected, direct)), Direct, []string{"SetPeer 198.18.0.2:51820", "StopICE", "HoldPath"}},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOffline, Data: farRelay}), Direct, nil}, // another relay's
				{on(fsm.Envelope{Event: relayuse.EvRemoteOffline, Data: homeRelay}), Direct, []string{"Probe"}},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOnline, Data: homeRelay}), Direct, nil}, // probing already
				{func(fx *fakeEffects) fsm.Envelope { fx.lastRecv = fx.now.Add(time.Hour); return e(EvPathCheck) }, Direct, nil},
			}},
		{name: "the remote came back on the relay while direct, the probe unanswered: the session ends", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{on(e(EvICEConnected, direct)), Direct, []string{"SetPeer 198.18.0.2:51820", "StopICE", "HoldPath"}},
				{func(fx *fakeEffects) fsm.Envelope {
					fx.lastRecv = fx.now.Add(-time.Second)
					return e(relayuse.EvRemoteOnline, homeRelay)
				}, Direct, []string{"Probe"}},
				{on(e(EvPathCheck)), Backoff, []string{"ReleasePath", "RemovePeer"}}, // heard before the probe, not since
			}},
		{name: "the relay cannot be bridged while ICE checks: not used, ICE goes on", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { fx.setErrs = []error{errBridge}; return ready(fx, homeRelay) }, Checking,
					[]string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvICEConnected, direct)), Direct, []string{"SetPeer 198.18.0.2:51820", "StopICE", "HoldPath"}},
			}},
		{name: "a relay path that does not open: not used, ICE goes on", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope {
					return fsm.Envelope{Event: relayuse.EvReady, Data: relayuse.Ready{Addr: homeRelay, Conn: failingOpener{fx}}}
				}, Checking, []string{"OpenRelayPath"}},
			}},
		{name: "ICE failed, then the relay cannot be bridged: backoff", target: farRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=false pending=0"}},
				{on(e(EvICEFailed, errors.New("ice failed"))), Checking, []string{"StopICE"}},
				{func(fx *fakeEffects) fsm.Envelope { fx.setErrs = []error{errBridge}; return ready(fx, farRelay) }, Backoff,
					[]string{"OpenRelayPath", "SetPeer relay", "RemovePeer"}},
			}},
		{name: "relay only: the bridge fails: backoff", own: true, target: homeRelay,
			steps: []step{
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { fx.setErrs = []error{errBridge}; return ready(fx, homeRelay) }, Backoff,
					[]string{"OpenRelayPath", "SetPeer relay", "RemovePeer"}},
			}},
		{name: "relay only: WireGuard fails the relay's configuration: backoff", own: true, target: homeRelay,
			steps: []step{
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(fsm.Envelope{Event: EvWGFailed, Data: wgFailure{err: errBoom}}), Backoff, []string{"RemovePeer"}},
			}},
		{name: "relay only: the worker fails the bridge: backoff; a late failure of an older peer is ignored", own: true, target: homeRelay,
			steps: []step{
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(fsm.Envelope{Event: EvRelayFailed, Data: wgFailure{life: 7, err: errBridge}}), RelayOnlyRelayed, nil},
				{on(fsm.Envelope{Event: EvRelayFailed, Data: wgFailure{err: errBridge}}), Backoff, []string{"RemovePeer"}},
			}},
		{name: "relay only: allowed IPs change reconfigures WireGuard", own: true, target: homeRelay,
			steps: []step{
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvUpdate, []netip.Prefix{netip.MustParsePrefix("100.64.0.9/32")})), RelayOnlyRelayed, []string{"SetPeer relay"}},
			}},
		{name: "issue 13: the relay lost while direct, its path kept open: WireGuard's endpoint is the direct pair's again", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvICEConnected, direct)), Direct, []string{"SetPeer 198.18.0.2:51820", "StopICE", "HoldPath"}},
				// WireGuard may have roamed onto the relay bridge, which
				// closes with the relay: the direct endpoint is set again.
				{on(fsm.Envelope{Event: relayuse.EvLost, Data: homeRelay}), Direct, []string{"SetPeer 198.18.0.2:51820"}},
				{on(fsm.Envelope{Event: relayuse.EvLost, Data: homeRelay}), Direct, nil}, // no bridge left: nothing to undo
			}},
		{name: "issue 13: relay only, signal down: the remote gone and back parks the peer (no offer without signal)", own: true, target: homeRelay,
			steps: []step{
				{on(relayOffer("", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer L1"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvPark)), RelayOnlyRelayed, nil},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOffline, Data: homeRelay}), RemoteOffline, []string{"RemovePeer"}},
				{on(fsm.Envelope{Event: relayuse.EvRemoteOnline, Data: homeRelay}), Parked, nil},
				{on(e(EvUnpark)), Offering, []string{"Send offer L2"}},
			}},
		{name: "soak: over the relay while ICE checks, signal down, the relay lost: parked, never checking", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvPark)), OverRelay, nil},
				{on(fsm.Envelope{Event: relayuse.EvLost, Data: homeRelay}), Parked, []string{"StopICE", "RemovePeer"}},
				{on(e(EvUnpark)), Offering, []string{"Send offer L2"}},
			}},
		{name: "soak: over the relay while ICE checks, signal down, the bridge fails: parked, never checking", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(e(EvPark)), OverRelay, nil},
				{on(fsm.Envelope{Event: EvRelayFailed, Data: wgFailure{err: errBridge}}), Parked, []string{"StopICE", "RemovePeer"}},
			}},
		{name: "over the relay while ICE checks, signal up, the relay lost: ICE goes on", own: true, target: homeRelay,
			steps: []step{
				{on(e(EvUnpark)), Offering, []string{"Send offer L1"}},
				{on(relayAnswer("R1", farRelay)), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=true pending=0"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(fsm.Envelope{Event: relayuse.EvLost, Data: homeRelay}), Checking, nil},
			}},
		{name: "ForceRelay: a credentialed offer is paired over the relay, answered with \":\"", force: true, target: farRelay,
			steps: []step{
				{on(relayOffer("R1", farRelay)), RelayWaiting, []string{"SetPeer", "Send answer "}},
			}},
		// Issue 11: the controller's first offer went out before its
		// home relay was up; its repeat (same session) names the relay this
		// side already uses. Moving would close the path and wait for a
		// Ready that never comes (the relay is held): the path stays.
		{name: "ForceRelay non-controller: the controller's late address names the relay held: the path stays", force: true,
			target: homeRelay,
			steps: []step{
				{on(relayOffer("R1", "")), RelayWaiting, []string{"SetPeer", "Send answer "}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(relayOffer("R1", homeRelay)), RelayOnlyRelayed, []string{"Send answer "}},
				{on(relayAnswer("R1", homeRelay)), RelayOnlyRelayed, nil},
			}},
		{name: "ForceRelay non-controller: the controller's late answer names the relay held: the path stays", force: true,
			target: homeRelay,
			steps: []step{
				{on(relayOffer("R1", "")), RelayWaiting, []string{"SetPeer", "Send answer "}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(relayAnswer("R1", homeRelay)), RelayOnlyRelayed, nil},
			}},
		{name: "ForceRelay non-controller: the controller's late address names another relay: it moves there", force: true,
			target: farRelay,
			steps: []step{
				{on(relayOffer("R1", "")), RelayWaiting, []string{"SetPeer", "Send answer "}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
				{on(relayOffer("R1", farRelay)), RelayWaiting, []string{"RemovePeer", "Send answer ", "SetPeer"}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayWaiting, nil}, // the old one's
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, farRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
			}},
		{name: "ForceRelay non-controller, before its relay is ready: the controller's address of the same relay keeps the wait", force: true,
			target: homeRelay,
			steps: []step{
				{on(relayOffer("R1", "")), RelayWaiting, []string{"SetPeer", "Send answer "}},
				{on(relayOffer("R1", homeRelay)), RelayWaiting, []string{"Send answer "}},
				{func(fx *fakeEffects) fsm.Envelope { return ready(fx, homeRelay) }, RelayOnlyRelayed, []string{"OpenRelayPath", "SetPeer relay"}},
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := &fakeEffects{now: time.Unix(1000, 0)}
			own := keyLow
			if tt.own {
				own = keyHigh
			}
			l := fsm.NewLoop(fsm.Options{})
			p := &Peer{Own: own, Remote: keyMid, Effects: fx, SignalUp: true, ForceRelay: tt.force,
				HomeRelay: func() (string, netip.Addr) { return homeRelay, netip.MustParseAddr("198.18.0.9") }}
			m, err := Add(l, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Remove(m.ID())
			var target string
			for i, s := range tt.steps {
				env := s.ev(fx)
				env.To = m.ID()
				if env.Event == EvPathCheck {
					fx.now = fx.now.Add(time.Hour) // silent for far longer than the path timeout
				}
				l.Deliver(env)
				if m.State() != s.want {
					t.Fatalf("step %d (%s): state %s, want %s", i, env.Event, m.State(), s.want)
				}
				if got := fx.Take(); !slices.Equal(got, s.effects) {
					t.Fatalf("step %d (%s): effects %q, want %q", i, env.Event, got, s.effects)
				}
				if m.Data.RelayTarget != "" {
					target = m.Data.RelayTarget
				}
			}
			if target != tt.target {
				t.Fatalf("relay target %q, want %q", target, tt.target)
			}
			if s := l.Stats(); s.Unhandled != 0 {
				t.Fatalf("unhandled %d", s.Unhandled)
			}
		})
	}
}

// A relayed path that carries the remote's datagrams stays: its check
// re-arms for a path timeout after the last one, probes nothing.
func TestRelayPathTrafficKeepsIt(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	fx := &fakeEffects{now: t0}
	l, _, m := controllingRelayPeer(t, fx)
	deliver := func(env fsm.Envelope) {
		env.To = m.ID()
		l.Deliver(env)
	}
	deliver(relayOffer("", farRelay))
	deliver(fsm.Envelope{Event: relayuse.EvReady, Data: relayuse.Ready{Addr: homeRelay, Conn: fakeOpener{fx}}})
	if _, ok := m.Data.relayPath.(*relayPath); m.State() != RelayOnlyRelayed || !ok {
		t.Fatalf("state %s, path %T: want relayed over a relay path", m.State(), m.Data.relayPath)
	}
	last := t0.Add(time.Second)
	fx.relayRecv = last // a datagram over the relay bridge
	fx.Take()
	for _, d := range []time.Duration{PathTimeout / 2, PathTimeout - time.Second} {
		fx.now = last.Add(d)
		deliver(e(EvPathCheck))
		if m.State() != RelayOnlyRelayed {
			t.Fatalf("%v after the last datagram: state %s", d, m.State())
		}
		if got := fx.Take(); len(got) != 0 {
			t.Fatalf("%v after the last datagram: effects %q", d, got)
		}
	}
	fx.now = last.Add(PathTimeout)
	deliver(e(EvPathCheck))
	if got := fx.Take(); !slices.Equal(got, []string{"Probe"}) || m.State() != RelayOnlyRelayed {
		t.Fatalf("a path timeout after the last datagram: state %s, effects %q, want a probe", m.State(), got)
	}
}

// A fallback probes the relay at once; a datagram over the relay since
// the probe keeps the path (its next check a path timeout away), one from
// before the probe does not.
func TestFallbackProbeAnswered(t *testing.T) {
	for _, tt := range []struct {
		name    string
		answer  time.Duration // relay stamp relative to the probe
		want    fsm.State
		effects []string
	}{
		{"answered", time.Second, OverRelay, nil},
		{"stamp before the probe", -time.Second, Backoff, []string{"RemovePeer"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t0 := time.Unix(1_800_000_000, 0)
			fx := &fakeEffects{now: t0}
			l, p, m := controllingRelayPeer(t, fx)
			deliver := func(env fsm.Envelope, want fsm.State, effects ...string) {
				t.Helper()
				env.To = m.ID()
				l.Deliver(env)
				if got := fx.Take(); m.State() != want || !slices.Equal(got, effects) {
					t.Fatalf("%s: state %s, effects %q; want %s, %q", env.Event, m.State(), got, want, effects)
				}
			}
			deliver(e(EvUnpark), Offering, "Send offer L1")
			deliver(relayAnswer("R1", farRelay), Checking, "SetPeer", "StartICE L1/R1 controlling=true pending=0")
			deliver(fsm.Envelope{Event: relayuse.EvReady, Data: relayuse.Ready{Addr: homeRelay, Conn: fakeOpener{fx}}}, OverRelay,
				"OpenRelayPath", "SetPeer relay")
			deliver(e(EvICEConnected, direct), Direct, "SetPeer 198.18.0.2:51820", "StopICE", "HoldPath")
			fx.now = t0.Add(2 * time.Hour)
			deliver(e(EvPathCheck), Direct, "Probe")
			deliver(e(EvPathCheck), OverRelay, "ReleasePath", "SetPeer relay probe")
			probe := fx.now
			fx.relayRecv = probe.Add(tt.answer)
			fx.now = probe.Add(ProbeTimeout)
			deliver(e(EvPathCheck), tt.want, tt.effects...)
			if tt.want == OverRelay && p.probed {
				t.Fatal("still probing after the relay answered")
			}
		})
	}
}

// Offers and answers carry the home relay's address and IP; ForceRelay
// sends ":" and no session id.
func TestMessagesCarryTheRelay(t *testing.T) {
	p := &Peer{Remote: keyMid, Local: Credentials{Ufrag: "u", Pwd: "p", SessionID: []byte{1}},
		HomeRelay: func() (string, netip.Addr) { return homeRelay, netip.MustParseAddr("198.18.0.9") }}
	m := p.message(sigwire.Offer)
	if m.RelayServerAddress != homeRelay || m.RelayServerIP != netip.MustParseAddr("198.18.0.9") || m.Ufrag != "u" {
		t.Fatalf("offer %+v", m)
	}
	p.ForceRelay = true
	m = p.message(sigwire.Answer)
	if m.Ufrag != "" || m.Pwd != "" || m.SessionID != nil || m.RelayServerAddress != homeRelay {
		t.Fatalf("forced answer %+v", m)
	}
}

// Leaving the session gives the relay back: a parked peer holds nothing.
func TestParkedPeerHoldsNoRelay(t *testing.T) {
	fx := &fakeEffects{}
	l := fsm.NewLoop(fsm.Options{})
	p := &Peer{Own: keyHigh, Remote: keyMid, Effects: fx, SignalUp: true,
		HomeRelay: func() (string, netip.Addr) { return homeRelay, netip.Addr{} }}
	m, _ := Add(l, p, nil)
	defer l.Remove(m.ID())
	for _, env := range []fsm.Envelope{e(EvUnpark), relayAnswer("R1", farRelay)} {
		env.To = m.ID()
		l.Deliver(env)
	}
	if !p.relayAcquired || p.RelayTarget != homeRelay {
		t.Fatalf("acquired %v target %q", p.relayAcquired, p.RelayTarget)
	}
	l.Deliver(fsm.Envelope{To: m.ID(), Event: relayuse.EvReady, Data: relayuse.Ready{Addr: homeRelay, Conn: fakeOpener{fx}}})
	l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPark})
	if m.State() != OverRelay {
		t.Fatalf("state %s", m.State())
	}
	// The relay drops while the agent still checks and signal is down:
	// parked at once, never back to checking (seen in a soak, seed
	// 2386096975246121013), and the agent is stopped.
	l.Deliver(fsm.Envelope{To: m.ID(), Event: relayuse.EvLost, Data: homeRelay})
	if m.State() != Parked || p.ice != nil || p.relayAcquired || p.relayPath != nil || p.RelayTarget != "" || m.Timers() != 0 {
		t.Fatalf("state %s acquired %v path %v timers %d", m.State(), p.relayAcquired, p.relayPath, m.Timers())
	}
}

// A relay-only pairing whose target was the home relay before its address
// was known: the home relay's relay-up (the engine tells every peer after a
// reconnect) must not re-acquire the relay and close the path that the
// Ready of the same reconnect has just opened (seen as a relay restart
// leaving the ForceRelay side's WireGuard on a stopped relay endpoint).
func TestRelayUpKeepsThePathInUse(t *testing.T) {
	fx := &fakeEffects{now: time.Unix(1000, 0)}
	l := fsm.NewLoop(fsm.Options{})
	p := &Peer{Own: keyLow, Remote: keyMid, Effects: fx, SignalUp: true, ForceRelay: true,
		HomeRelay: func() (string, netip.Addr) { return homeRelay, netip.MustParseAddr("198.18.0.9") }}
	m, err := Add(l, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Remove(m.ID())
	deliver := func(env fsm.Envelope) {
		env.To = m.ID()
		l.Deliver(env)
	}
	deliver(relayOffer("", "")) // relay-only, no relay address: the home relay
	deliver(fsm.Envelope{Event: relayuse.EvReady, Data: relayuse.Ready{Addr: homeRelay, Conn: fakeOpener{fx}}})
	if m.State() != RelayOnlyRelayed || m.Data.relayPath == nil {
		t.Fatalf("state %s, path %v: want relayed with a path", m.State(), m.Data.relayPath)
	}
	path := m.Data.relayPath
	fx.Take()
	deliver(fsm.Envelope{Event: EvRelayUp})
	if m.State() != RelayOnlyRelayed || m.Data.relayPath != path || !m.Data.relayAcquired || m.Data.RelayTarget != homeRelay {
		t.Fatalf("after relay-up: state %s, path kept %v, acquired %v, target %q", m.State(), m.Data.relayPath == path,
			m.Data.relayAcquired, m.Data.RelayTarget)
	}
	if got := fx.Take(); len(got) != 0 {
		t.Fatalf("relay-up changed the path: effects %q", got)
	}
}

// The controller's offer went out before its home relay was up (no relay
// address); the remote's relay-only answer pairs them: the controller
// offers again with its relay's address, or the remote would wait on its
// own home relay for good.
func TestControllerSendsItsRelayLate(t *testing.T) {
	home := ""
	m, fx, deliver := lateRelayController(t, &home)
	deliver(e(EvUnpark)) // the offer goes out without a relay address
	if m.Data.sentRelay != "" {
		t.Fatalf("offer carried relay %q before the home relay was up", m.Data.sentRelay)
	}
	fx.Take()
	home = homeRelay
	deliver(relayAnswer("", farRelay)) // relay-only answer
	if m.State() != RelayWaiting {
		t.Fatalf("state %s, want %s", m.State(), RelayWaiting)
	}
	if got := fx.Take(); !slices.Contains(got, "Send offer L1") || m.Data.sentRelay != homeRelay {
		t.Fatalf("effects %q, sent relay %q: want the offer again with %s", got, m.Data.sentRelay, homeRelay)
	}
	deliver(fsm.Envelope{Event: EvRelayUp}) // already sent: not again
	if got := fx.Take(); slices.Contains(got, "Send offer L1") {
		t.Fatalf("offered again on relay-up although the address went out: %q", got)
	}
}

// While the relay reports the remote offline the peer keeps the relay (it
// watches the remote there) and nothing else: no timer, no path; leaving
// gives it back, and the new session acquires afresh.
func TestRemoteOfflineHoldsOnlyTheWatch(t *testing.T) {
	fx := &fakeEffects{now: time.Unix(1000, 0)}
	l, p, m := controllingRelayPeer(t, fx)
	for _, env := range []fsm.Envelope{relayOffer("", farRelay),
		{Event: relayuse.EvReady, Data: relayuse.Ready{Addr: homeRelay, Conn: fakeOpener{fx}}},
		{Event: relayuse.EvRemoteOffline, Data: homeRelay}} {
		env.To = m.ID()
		l.Deliver(env)
	}
	if m.State() != RemoteOffline || !p.relayAcquired || p.RelayTarget != homeRelay || p.relayPath != nil || m.Timers() != 0 ||
		p.LastErr != ErrRemoteOffline {
		t.Fatalf("state %s acquired %v target %q path %v timers %d err %q", m.State(), p.relayAcquired, p.RelayTarget,
			p.relayPath, m.Timers(), p.LastErr)
	}
	l.Deliver(fsm.Envelope{To: m.ID(), Event: EvPark})
	if m.State() != Parked || p.relayAcquired || m.Timers() != 0 {
		t.Fatalf("parked: state %s acquired %v timers %d", m.State(), p.relayAcquired, m.Timers())
	}
}

// Issue 11, beside ICE: an offer that went out before the home relay was
// up carries no relay address; once the relay is up the offer goes again
// (same session), whichever side controls, so that the remote learns it:
// the other side's address is how a controller knows the remote can use
// the relay (it acquires nothing without it), the controller's is the
// pair's relay. Seen as TestICEImpossibleFallsToRelay waiting ~13 s for
// ICE to fail: the non-controller's relay came up while it offered, the
// answer came right after, and no later message carried the address.
func TestLateRelayAddressIsOfferedAgain(t *testing.T) {
	for _, tt := range []struct {
		name string
		own  bool // this side controls
		// upFirst: the relay-up comes while offering, before the answer;
		// otherwise after the agent started.
		upFirst bool
	}{
		{name: "non-controller, relay up before the answer", upFirst: true},
		{name: "non-controller, relay up after the agent started"},
		{name: "controller, relay up before the answer", own: true, upFirst: true},
		{name: "controller, relay up after the agent started", own: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fx := &fakeEffects{now: time.Unix(1000, 0)}
			l := fsm.NewLoop(fsm.Options{})
			home := ""
			own := keyLow
			if tt.own {
				own = keyHigh
			}
			p := &Peer{Own: own, Remote: keyMid, Effects: fx, SignalUp: true,
				HomeRelay: func() (string, netip.Addr) {
					if home == "" {
						return "", netip.Addr{}
					}
					return home, netip.MustParseAddr("198.18.0.9")
				}}
			m, err := Add(l, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Remove(m.ID())
			deliver := func(env fsm.Envelope) {
				env.To = m.ID()
				l.Deliver(env)
			}
			deliver(e(EvUnpark)) // the offer goes out without a relay address
			if got := fx.Take(); !slices.Equal(got, []string{"Send offer L1"}) || p.sentRelay != "" {
				t.Fatalf("effects %q, sent relay %q", got, p.sentRelay)
			}
			if tt.upFirst {
				home = homeRelay
				deliver(e(EvRelayUp)) // offering: the answer may come first
				deliver(relayAnswer("R1", farRelay))
			} else {
				deliver(relayAnswer("R1", farRelay))
				home = homeRelay
				deliver(e(EvRelayUp))
			}
			if m.State() != Checking {
				t.Fatalf("state %s, want %s", m.State(), Checking)
			}
			if got := fx.Take(); !slices.Contains(got, "Send offer L1") || p.sentRelay != homeRelay {
				t.Fatalf("effects %q, sent relay %q: want the offer again with %s", got, p.sentRelay, homeRelay)
			}
			// The relay the controller rule picks is acquired.
			want := farRelay
			if tt.own {
				want = homeRelay
			}
			if !p.relayAcquired || p.RelayTarget != want {
				t.Fatalf("acquired %v target %q, want %q", p.relayAcquired, p.RelayTarget, want)
			}
			deliver(e(EvRelayUp)) // sent already: not again
			if got := fx.Take(); slices.Contains(got, "Send offer L1") {
				t.Fatalf("offered again although the address went out: %q", got)
			}
		})
	}
}

// A session that waits after MaxOffers unanswered offers, all sent before
// the home relay was up, offers again when the relay comes up (a relay-only
// remote could not answer usefully without our relay), and only once: with
// the address sent, a later relay-up leaves it waiting.
func TestWaitingOffersAgainWhenItsRelayComesUp(t *testing.T) {
	home := ""
	m, fx, deliver := lateRelayController(t, &home)
	p := m.Data
	deliver(e(EvUnpark))
	for i := 0; i < 2*MaxOffers && m.State() != Waiting; i++ {
		deliver(e(EvResend))
	}
	if m.State() != Waiting || p.sentRelay != "" {
		t.Fatalf("state %s, sent relay %q: want %s with no relay sent", m.State(), p.sentRelay, Waiting)
	}
	deliver(e(EvRelayUp)) // no home relay address yet: nothing to send
	if m.State() != Waiting {
		t.Fatalf("relay-up without an address: state %s", m.State())
	}
	fx.Take()
	home = homeRelay
	deliver(e(EvRelayUp))
	if got := fx.Take(); m.State() != Offering || !slices.Contains(got, "Send offer L1") || p.sentRelay != homeRelay {
		t.Fatalf("state %s, effects %q, sent relay %q: want an offer with %s", m.State(), got, p.sentRelay, homeRelay)
	}
	for i := 0; i < 2*MaxOffers && m.State() != Waiting; i++ {
		deliver(e(EvResend))
	}
	fx.Take()
	deliver(e(EvRelayUp)) // sent already: stays waiting
	if got := fx.Take(); m.State() != Waiting || len(got) != 0 {
		t.Fatalf("state %s, effects %q: want waiting, nothing sent", m.State(), got)
	}
}

// lateRelayController is a controlling peer, signal up, whose home relay
// has the address *home ("" while it is not up yet), and a deliver that
// addresses its machine.
func lateRelayController(t *testing.T, home *string) (*fsm.Machine[*Peer], *fakeEffects, func(fsm.Envelope)) {
	t.Helper()
	fx := &fakeEffects{now: time.Unix(1000, 0)}
	l := fsm.NewLoop(fsm.Options{})
	p := &Peer{Own: keyHigh, Remote: keyMid, Effects: fx, SignalUp: true,
		HomeRelay: func() (string, netip.Addr) {
			if *home == "" {
				return "", netip.Addr{}
			}
			return *home, netip.MustParseAddr("198.18.0.9")
		}}
	m, err := Add(l, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Remove(m.ID()) })
	return m, fx, func(env fsm.Envelope) {
		env.To = m.ID()
		l.Deliver(env)
	}
}

// RELAY.md §5.3: with the NetBird relay configured here and a remote that
// sent a relayServerAddress, the agent gathers no TURN candidates; without
// either, TURN stays (ICE over TURN is the only fallback then).
func TestNoTURNBesideTheNetBirdRelay(t *testing.T) {
	for _, tc := range []struct {
		name        string
		hasRelay    bool
		remoteRelay string
		noTURN      bool
	}{
		{"relay here and there", true, farRelay, true},
		{"remote sent no relay address", true, "", false},
		{"no relay configured here", false, farRelay, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := &fakeEffects{}
			l := fsm.NewLoop(fsm.Options{})
			p := &Peer{Own: keyLow, Remote: keyMid, Effects: fx, SignalUp: true,
				HomeRelay: func() (string, netip.Addr) { return homeRelay, netip.Addr{} },
				HasRelay:  func() bool { return tc.hasRelay }}
			m, _ := Add(l, p, nil)
			defer l.Remove(m.ID())
			env := relayOffer("R1", tc.remoteRelay)
			env.To = m.ID()
			l.Deliver(env)
			var start string
			for _, c := range fx.Take() {
				if strings.HasPrefix(c, "StartICE") {
					start = c
				}
			}
			if start == "" || strings.HasSuffix(start, "no-turn") != tc.noTURN {
				t.Fatalf("StartICE call %q, want no-turn %v", start, tc.noTURN)
			}
		})
	}
}

// controllingRelayPeer is a controlling peer with a home relay on a loop
// of its own, removed when the test ends.
func controllingRelayPeer(t *testing.T, fx *fakeEffects) (*fsm.Loop, *Peer, *fsm.Machine[*Peer]) {
	t.Helper()
	l := fsm.NewLoop(fsm.Options{})
	p := &Peer{Own: keyHigh, Remote: keyMid, Effects: fx, SignalUp: true,
		HomeRelay: func() (string, netip.Addr) { return homeRelay, netip.MustParseAddr("198.18.0.9") }}
	m, err := Add(l, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Remove(m.ID()) })
	return l, p, m
}

// The pair's relay moves while WireGuard is on it: the path on the old relay
// is closed, so the peer checks again until the new relay is ready (found
// by the model check with relay events). Here the controller names a new
// relay while this side's home relay is down (no foreign relay can be
// told from the home one then: the move waits), and the home relay's
// return makes the move.
func TestRelayMovesAfterHomeRelayUp(t *testing.T) {
	const third = "rel://third:3"
	fx := &fakeEffects{now: time.Unix(1000, 0)}
	home := homeRelay
	l := fsm.NewLoop(fsm.Options{})
	p := &Peer{Own: keyLow, Remote: keyMid, Effects: fx, SignalUp: true,
		HomeRelay: func() (string, netip.Addr) { return home, netip.Addr{} }}
	m, err := Add(l, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Remove(m.ID())
	ready := func(addr string) fsm.Envelope {
		return fsm.Envelope{Event: relayuse.EvReady, Data: relayuse.Ready{Addr: addr, Conn: fakeOpener{fx}}}
	}
	for i, s := range []struct {
		before  func()
		env     fsm.Envelope
		want    fsm.State
		effects []string
	}{
		{nil, e(EvUnpark), Offering, []string{"Send offer L1"}},
		{nil, relayAnswer("R1", farRelay), Checking, []string{"SetPeer", "StartICE L1/R1 controlling=false pending=0"}},
		{nil, ready(farRelay), OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
		{func() { home = "" }, relayAnswer("R1", third), OverRelay, nil}, // noted; the move waits for the home relay
		{func() { home = homeRelay }, e(EvRelayUp), Checking, nil},       // the path on far is closed
		{nil, ready(farRelay), Checking, nil},
		{nil, ready(third), OverRelay, []string{"OpenRelayPath", "SetPeer relay"}},
		// The controller names far again while the home relay is down
		// (noted: the move waits), then signal goes down (WireGuard stays
		// on the relay): the move now parks, holding no relay (never
		// checking with signal down).
		{func() { home = "" }, relayAnswer("R1", farRelay), OverRelay, nil},
		{nil, e(EvPark), OverRelay, nil},
		{func() { home = homeRelay }, e(EvRelayUp), Parked, []string{"StopICE", "RemovePeer"}},
	} {
		if s.before != nil {
			s.before()
		}
		s.env.To = m.ID()
		l.Deliver(s.env)
		if got := fx.Take(); m.State() != s.want || !slices.Equal(got, s.effects) {
			t.Fatalf("step %d (%s): state %s, effects %q; want %s, %q", i, s.env.Event, m.State(), got, s.want, s.effects)
		}
	}
	if p.relayAcquired || p.relayPath != nil {
		t.Fatalf("parked holding a relay (%v) or a path (%v)", p.relayAcquired, p.relayPath != nil)
	}
}
