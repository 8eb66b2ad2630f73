package engine

import (
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/relayfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Kind and ID of the engine machine.
const (
	Kind = "engine"
	ID   = "engine"
)

// States of the engine. Active holds what every state between start and
// stop shares; its children keep their names (the hierarchy comes from
// StateDef.Parent, not from the name), which status and events show.
const (
	Active      fsm.State = "active"
	Idle        fsm.State = "idle"
	Starting    fsm.State = "starting"
	Configuring fsm.State = "configuring"
	IfaceFailed fsm.State = "interface-failed"
	Running     fsm.State = "running"
	SignalDown  fsm.State = "running.signal-down"
	SignalUp    fsm.State = "running.signal-up"
	Unparking   fsm.State = "running.signal-up.unparking"
	Steady      fsm.State = "running.signal-up.steady"
	NeedsLogin  fsm.State = "needs-login"
	Stopping    fsm.State = "stopping"
	Stopped     fsm.State = "stopped"
)

// Events of the engine. The API posts EvStart, EvStop and EvSetupKey; the
// links notify mgmtfsm.NotifyLogin, NotifyMap and NotifyConfig; the routing
// table raises the rest from the links' transitions.
const (
	EvStart          fsm.Event = "start"
	EvStop           fsm.Event = "stop"
	EvSetupKey       fsm.Event = "setup-key"
	EvSignalUp       fsm.Event = "signal-connected"
	EvSignalDown     fsm.Event = "signal-disconnected"
	EvNeedsLogin     fsm.Event = "mgmt-needs-login"
	EvUnparkTick     fsm.Event = "unpark-tick"
	EvUnparked       fsm.Event = "all-unparked"
	EvStopped        fsm.Event = "links-stopped"
	EvReap           fsm.Event = "reap" // Data: machine id of a closed peer
	EvNetworkChanged fsm.Event = "network-changed"
	EvPeerParked     fsm.Event = "peer-parked"      // routed: a peer entered parked (Data: fsm.Record)
	EvIfaceUp        fsm.Event = "interface-up"     // the WireGuard interface has the login's address
	EvIfaceFailed    fsm.Event = "interface-failed" // Data: error
	EvIfaceRetry     fsm.Event = "interface-retry"  // timer: try creating the interface again
	EvRelayUp        fsm.Event = "relay-connected"  // the home relay link connected
)

var events = []fsm.Event{EvStart, EvStop, EvSetupKey, mgmtfsm.NotifyLogin, mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig,
	EvSignalUp, EvSignalDown, EvNeedsLogin, EvUnparkTick, EvUnparked, EvStopped, EvReap, EvNetworkChanged, EvPeerParked,
	EvIfaceUp, EvIfaceFailed, EvIfaceRetry, EvRelayUp}

// Spec is the engine: the root supervisor. Its routing table turns link
// transitions into engine events; its states decide what peers hear.
var Spec = fsm.MustCompile(fsm.Spec[*Engine]{
	Kind: Kind,
	Doc: "The root supervisor. Entering `running.signal-up` unparks every parked peer, paced by a token bucket " +
		"(`unparking`: a burst, then one batch per tick); entering `running.signal-down` parks every peer that is not " +
		"connected (connected peers keep their tunnels). Network maps are reconciled into peer machines.",
	Initial: Idle,
	Events:  events,
	// What a state does not handle itself: a lifecycle event or a message of
	// the links is for another state (Active handles most), a timer or a
	// report is late. Every state inherits this.
	Ignore: []fsm.Event{EvStart, EvStop, mgmtfsm.NotifyLogin, mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig, EvSignalUp, EvSignalDown,
		EvNeedsLogin, EvUnparkTick, EvUnparked, EvStopped, EvReap, EvNetworkChanged, EvPeerParked, EvIfaceRetry},
	States: []fsm.StateDef[*Engine]{
		{Name: Idle, Doc: "not started"},
		{Name: Active, Initial: Starting, Doc: "between start and stop: what every state below shares, each listing only what is its own"},
		{Name: Starting, Parent: Active, Doc: "management link logging in", Entry: startManagement},
		{Name: Configuring, Parent: Active, Doc: "logged in: creating the WireGuard interface with the login's address", Entry: bringUp},
		{Name: IfaceFailed, Parent: Active, Doc: "the interface could not be created: retried by one backoff timer, a new login or a network change",
			Entry: armIfaceRetry},
		{Name: Running, Parent: Active, Initial: SignalDown, Doc: "logged in: peers follow the network map"},
		{Name: SignalDown, Parent: Running, Doc: "every peer that is not connected is parked", Entry: parkPeers,
			Ignore: []fsm.Event{EvSignalDown}},
		{Name: SignalUp, Parent: Running, Initial: Unparking, Doc: "signal connected", Entry: signalIsUp},
		{Name: Unparking, Parent: SignalUp, Doc: "releasing parked peers, a batch per tick", Entry: startUnparking},
		{Name: Steady, Parent: SignalUp, Doc: "every peer has had its turn"},
		{Name: NeedsLogin, Parent: Active, Doc: "management rejected the setup key: waiting for a new one",
			Ignore: []fsm.Event{EvNeedsLogin, mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig}},
		{Name: Stopping, Doc: "links and peers told to stop", Entry: stopAll, Ignore: []fsm.Event{EvSetupKey}},
		{Name: Stopped, Doc: "stopped: links stopped, no peer machines; start begins again"},
	},
	Transitions: []fsm.Transition[*Engine]{
		// Every state, unless it says otherwise.
		{From: fsm.Root, Event: EvSetupKey, Action: forwardSetupKey},
		{From: fsm.Root, Event: EvIfaceUp, Action: installIface,
			Doc: "a worker's result that arrives outside configuring (the engine moved on meanwhile) is installed all the same, so that it is released with the data path"},
		{From: fsm.Root, Event: EvIfaceFailed, Action: ifaceFailed, Doc: "late: its failure noted"},
		{From: fsm.Root, Event: EvRelayUp, Action: nothingToDo},

		{From: Idle, Event: EvStart, To: Starting},
		{From: Stopped, Event: EvStart, To: Starting},

		// Every state between start and stop.
		{From: Active, Event: mgmtfsm.NotifyMap, Action: applyMap, Doc: "reconcile peers"},
		{From: Active, Event: mgmtfsm.NotifyConfig, Action: applyConfig},
		{From: Active, Event: EvNeedsLogin, To: NeedsLogin},
		{From: Active, Event: EvStop, To: Stopping},
		{From: Active, Event: EvReap, Action: reap},
		{From: Active, Event: EvNetworkChanged, Action: forwardNetwork},
		{From: Active, Event: EvSignalDown, Action: parkPeers,
			Doc: "peers not connected stop offering (those of an earlier login while starting; the map's peers stay in needs-login)"},

		{From: Starting, Event: mgmtfsm.NotifyLogin, To: Configuring, Action: storeLogin},
		{From: Configuring, Event: EvIfaceUp, Guard: signalConnected, To: SignalUp, Action: ifaceReady,
			Doc: "signal stayed connected (a re-login): straight to signal-up"},
		{From: Configuring, Event: EvIfaceUp, To: SignalDown, Action: ifaceReady},
		{From: Configuring, Event: EvIfaceFailed, To: IfaceFailed, Action: ifaceFailed},
		{From: Configuring, Event: mgmtfsm.NotifyLogin, Action: storeLogin, Doc: "the newest login wins; its result follows"},
		{From: IfaceFailed, Event: EvIfaceRetry, To: Configuring},
		{From: IfaceFailed, Event: mgmtfsm.NotifyLogin, To: Configuring, Action: storeLogin, Doc: "a new login: try at once"},
		{From: IfaceFailed, Event: EvNetworkChanged, To: Configuring, Action: forwardNetwork, Doc: "the network changed: try at once"},
		{From: Running, Event: mgmtfsm.NotifyLogin, Action: applyLogin, Doc: "re-login after a management reconnect"},
		// The relay link (relayfsm): peers in a session hear that the home
		// relay is up (they may have started before it).
		{From: Running, Event: EvRelayUp, Action: relayUp},
		{From: SignalDown, Event: EvSignalUp, To: SignalUp},
		{From: SignalUp, Event: EvSignalDown, To: SignalDown},
		{From: Unparking, Event: EvUnparkTick, Action: unparkBatch},
		{From: Unparking, Event: EvUnparked, Guard: queueEmpty, To: Steady},
		{From: Unparking, Event: EvUnparked, Action: nextTick, Doc: "peers queued meanwhile: keep pacing"},
		{From: Unparking, Event: EvPeerParked, Action: queueParked, Doc: "its turn comes with the next ticks"},
		{From: Steady, Event: EvPeerParked, To: Unparking, Action: queueParked,
			Doc: "a new peer, or one parked by a stale signal-down (it accepted an offer before its turn)"},
		{From: NeedsLogin, Event: EvSetupKey, To: Starting, Action: forwardSetupKey},
		{From: NeedsLogin, Event: mgmtfsm.NotifyLogin, To: Configuring, Action: storeLogin},

		{From: Stopping, Event: EvStopped, To: Stopped},
		{From: Stopping, Event: EvReap, Action: reap},
	},
	Routes: []fsm.Route{
		{Kind: signalfsm.Kind, Enter: signalfsm.Connected, Raise: EvSignalUp},
		{Kind: relayfsm.Kind, Enter: relayfsm.Connected, Raise: EvRelayUp},
		{Kind: signalfsm.Kind, Leave: signalfsm.Connected, Raise: EvSignalDown},
		{Kind: mgmtfsm.Kind, Enter: mgmtfsm.NeedsLogin, Raise: EvNeedsLogin},
		// Signal up and a peer parked is a peer whose unpark turn must come:
		// whatever parked it (a map add, a park broadcast that landed after
		// signal came back, a path lost with a stale signal-down), it is
		// queued again (issue 10, bug 2).
		{Kind: peerfsm.Kind, Enter: peerfsm.Parked, Raise: EvPeerParked},
	},
})
