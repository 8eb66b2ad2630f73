package signalfsm

import (
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/link"
)

// States of the signal link: the link shape's (fsm/link) and Connected.
const (
	Idle                 = link.Idle
	Running              = link.Running
	Session              = link.Session
	Connecting           = link.Connecting
	Connected  fsm.State = "running.session.connected"
	Backoff              = link.Backoff
	Stopped              = link.Stopped
)

// Events of the signal link. Workers post Up, ConnectFailed and
// StreamClosed; the engine posts Start, Stop, Server and the network events;
// Retry is the backoff timer.
const (
	EvStart                   = link.EvStart       // Data: Server
	EvStop                    = link.EvStop        //
	EvServer        fsm.Event = "server"           // Data: Server (from a management config update)
	EvUp            fsm.Event = "up"               // the registered header arrived
	EvConnectFailed fsm.Event = "connect-failed"   // Data: error
	EvStreamClosed  fsm.Event = "stream-closed"    // Data: error
	EvRetry                   = link.EvRetry       // backoff timer
	EvNetworkUp               = link.EvNetworkUp   // from the OS network monitor
	EvNetworkDown             = link.EvNetworkDown // from the OS network monitor
)

var events = []fsm.Event{EvStart, EvStop, EvServer, EvUp, EvConnectFailed, EvStreamClosed, EvRetry, EvNetworkUp, EvNetworkDown}

// workerEvents arrive from a session's stream worker; outside a session they
// are late (the generation check drops most of them first) and ignored.
var workerEvents = []fsm.Event{EvUp, EvConnectFailed, EvStreamClosed}

// Spec is the signal link machine. Its diagram is docs/diagrams/signal.md.
var Spec = fsm.MustCompile(link.Spec(link.Own[*Link]{
	Kind: Kind,
	Name: "signal",
	Doc: "The signal link: one ConnectStream to the signal server. `connected` is entered only when the server's " +
		"registered header has arrived. Backoff is one timer (exponential, full jitter, 30 s cap); a network-up " +
		"cuts it short. Peers hear of it through the engine's routing table.",
	Events: events,
	Quiet:  workerEvents,
	Up:     Connected,
	Start:  []fsm.Transition[*Link]{{Event: EvStart, To: Running, Action: setServer}},
	Open:   connect,
	Docs: map[fsm.State]string{
		Running:    "started: dialing, connected or waiting to retry",
		Session:    "one stream attempt: a new generation and one worker",
		Connecting: "stream opening, waiting for the registered header",
		Stopped:    "stopped by the engine",
	},
	States: []fsm.StateDef[*Link]{
		{Name: Connected, Parent: Session, Doc: "stream up: messages flow to peer machines", Entry: connected},
	},
	Transitions: []fsm.Transition[*Link]{
		{From: fsm.Root, Event: EvServer, Action: setServer, Doc: "remember the server"},
		{From: Running, Event: EvServer, Guard: serverChanged, To: Session, Action: setServer, Doc: "re-dial the new server now"},
		{From: Connecting, Event: EvUp, To: Connected},
		{From: Connecting, Event: EvConnectFailed, To: Backoff, Action: link.RecordErr[*Link]},
		{From: Session, Event: EvStreamClosed, To: Backoff, Action: link.RecordErr[*Link]},
	},
}))
