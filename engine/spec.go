package engine

import (
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Kind and ID of the engine machine.
const (
	Kind = "engine"
	ID   = "engine"
)

// States of the engine.
const (
	Idle       fsm.State = "idle"
	Starting   fsm.State = "starting"
	Running    fsm.State = "running"
	SignalDown fsm.State = "running.signal-down"
	SignalUp   fsm.State = "running.signal-up"
	Unparking  fsm.State = "running.signal-up.unparking"
	Steady     fsm.State = "running.signal-up.steady"
	NeedsLogin fsm.State = "needs-login"
	Stopping   fsm.State = "stopping"
	Stopped    fsm.State = "stopped"
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
	EvQueued         fsm.Event = "peers-queued" // new peers wait for their unpark turn
)

var events = []fsm.Event{EvStart, EvStop, EvSetupKey, mgmtfsm.NotifyLogin, mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig,
	EvSignalUp, EvSignalDown, EvNeedsLogin, EvUnparkTick, EvUnparked, EvStopped, EvReap, EvNetworkChanged, EvQueued}

// Spec is the engine: the root supervisor. Its routing table turns link
// transitions into engine events; its states decide what peers hear.
var Spec = fsm.MustCompile(fsm.Spec[*Engine]{
	Kind: Kind,
	Doc: "The root supervisor. Entering `running.signal-up` unparks every parked peer, paced by a token bucket " +
		"(`unparking`: a burst, then one batch per tick); entering `running.signal-down` parks every peer that is not " +
		"connected (connected peers keep their tunnels). Network maps are reconciled into peer machines.",
	Initial: Idle,
	Events:  events,
	States: []fsm.StateDef[*Engine]{
		{Name: Idle, Doc: "not started",
			Ignore: []fsm.Event{EvStop, mgmtfsm.NotifyLogin, mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig, EvSignalUp, EvSignalDown,
				EvNeedsLogin, EvUnparkTick, EvUnparked, EvStopped, EvReap, EvNetworkChanged, EvQueued}},
		{Name: Starting, Doc: "management link logging in", Entry: startManagement,
			Ignore: []fsm.Event{EvStart, EvSignalUp, EvSignalDown, EvUnparkTick, EvUnparked, EvStopped, EvQueued}},
		{Name: Running, Initial: SignalDown, Doc: "logged in: peers follow the network map",
			Entry: syncSignalState, Ignore: []fsm.Event{EvStart, EvStopped}},
		{Name: SignalDown, Parent: Running, Doc: "every peer that is not connected is parked", Entry: parkPeers,
			Ignore: []fsm.Event{EvSignalDown, EvUnparkTick, EvUnparked, EvQueued}},
		{Name: SignalUp, Parent: Running, Initial: Unparking, Doc: "signal connected", Entry: signalIsUp,
			Ignore: []fsm.Event{EvSignalUp}},
		{Name: Unparking, Parent: SignalUp, Doc: "releasing parked peers, a batch per tick", Entry: startUnparking,
			Ignore: []fsm.Event{EvQueued}},
		{Name: Steady, Parent: SignalUp, Doc: "every peer has had its turn", Ignore: []fsm.Event{EvUnparkTick, EvUnparked}},
		{Name: NeedsLogin, Doc: "management rejected the setup key: waiting for a new one",
			Ignore: []fsm.Event{EvStart, EvSignalUp, EvSignalDown, EvUnparkTick, EvUnparked, EvStopped, EvNeedsLogin,
				mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig, EvQueued}},
		{Name: Stopping, Doc: "links and peers told to stop", Entry: stopAll,
			Ignore: []fsm.Event{EvStart, EvStop, EvSetupKey, mgmtfsm.NotifyLogin, mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig,
				EvSignalUp, EvSignalDown, EvNeedsLogin, EvUnparkTick, EvUnparked, EvNetworkChanged, EvQueued}},
		{Name: Stopped, Doc: "stopped", Ignore: events},
	},
	Transitions: []fsm.Transition[*Engine]{
		{From: Idle, Event: EvStart, To: Starting},
		{From: Idle, Event: EvSetupKey, Action: forwardSetupKey},
		{From: Starting, Event: mgmtfsm.NotifyLogin, To: Running, Action: applyLogin},
		{From: Starting, Event: EvNeedsLogin, To: NeedsLogin},
		{From: Starting, Event: EvStop, To: Stopping},
		{From: Starting, Event: EvSetupKey, Action: forwardSetupKey},
		{From: Starting, Event: mgmtfsm.NotifyMap, Action: applyMap},
		{From: Starting, Event: mgmtfsm.NotifyConfig, Action: applyConfig},
		{From: Starting, Event: EvReap, Action: reap},
		{From: Starting, Event: EvNetworkChanged, Action: forwardNetwork},
		{From: Running, Event: mgmtfsm.NotifyLogin, Action: applyLogin, Doc: "re-login after a management reconnect"},
		{From: Running, Event: mgmtfsm.NotifyMap, Action: applyMap, Doc: "reconcile peers"},
		{From: Running, Event: mgmtfsm.NotifyConfig, Action: applyConfig},
		{From: Running, Event: EvNeedsLogin, To: NeedsLogin},
		{From: Running, Event: EvSetupKey, Action: forwardSetupKey},
		{From: Running, Event: EvStop, To: Stopping},
		{From: Running, Event: EvReap, Action: reap},
		{From: Running, Event: EvNetworkChanged, Action: forwardNetwork},
		{From: SignalDown, Event: EvSignalUp, To: SignalUp},
		{From: SignalUp, Event: EvSignalDown, To: SignalDown},
		{From: Unparking, Event: EvUnparkTick, Action: unparkBatch},
		{From: Unparking, Event: EvUnparked, Guard: queueEmpty, To: Steady},
		{From: Unparking, Event: EvUnparked, Action: nextTick, Doc: "peers queued meanwhile: keep pacing"},
		{From: Steady, Event: EvQueued, To: Unparking},
		{From: NeedsLogin, Event: EvSetupKey, To: Starting, Action: forwardSetupKey},
		{From: NeedsLogin, Event: mgmtfsm.NotifyLogin, To: Running, Action: applyLogin},
		{From: NeedsLogin, Event: EvStop, To: Stopping},
		{From: NeedsLogin, Event: EvReap, Action: reap},
		{From: NeedsLogin, Event: EvNetworkChanged, Action: forwardNetwork},
		{From: Stopping, Event: EvStopped, To: Stopped},
		{From: Stopping, Event: EvReap, Action: reap},
	},
	Routes: []fsm.Route{
		{Kind: signalfsm.Kind, Enter: signalfsm.Connected, Raise: EvSignalUp},
		{Kind: signalfsm.Kind, Leave: signalfsm.Connected, Raise: EvSignalDown},
		{Kind: mgmtfsm.Kind, Enter: mgmtfsm.NeedsLogin, Raise: EvNeedsLogin},
	},
})
