package mgmtfsm

import (
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/link"
)

// States of the management link: the link shape's (fsm/link), the steps of
// connecting, Online and NeedsLogin.
const (
	Idle                  = link.Idle
	Running               = link.Running
	Session               = link.Session
	Connecting            = link.Connecting
	FetchingKey fsm.State = "running.session.connecting.fetching-key"
	LoggingIn   fsm.State = "running.session.connecting.logging-in"
	Registering fsm.State = "running.session.connecting.registering"
	Online      fsm.State = "running.session.online"
	Syncing     fsm.State = "running.session.online.syncing"
	Synced      fsm.State = "running.session.online.synced"
	Backoff               = link.Backoff
	NeedsLogin  fsm.State = "running.needs-login"
	Stopped               = link.Stopped
)

// Events of the management link. Workers post EvKey … EvStreamClosed; the
// engine posts EvStart, EvStop, EvSetupKey and the network events; EvRetry is
// the backoff timer.
const (
	EvStart                   = link.EvStart
	EvStop                    = link.EvStop
	EvSetupKey      fsm.Event = "setup-key" // Data: string (never logged)
	EvKey           fsm.Event = "server-key"
	EvLoginOK       fsm.Event = "login-ok"       // Data: *mgmt.LoginResult
	EvNotRegistered fsm.Event = "not-registered" // PermissionDenied
	EvKeyRejected   fsm.Event = "key-rejected"   // NotFound, or FailedPrecondition on registration: setup key wrong, expired, revoked or used up
	EvFailed        fsm.Event = "failed"         // Data: error (transport, server)
	EvUpdate        fsm.Event = "update"         // Data: mgmt.Update
	EvStreamClosed  fsm.Event = "stream-closed"  // Data: error
	EvRetry                   = link.EvRetry
	EvNetworkUp               = link.EvNetworkUp
	EvNetworkDown             = link.EvNetworkDown
)

// Events the link hands to its supervisor with Notify.
const (
	NotifyLogin  fsm.Event = "mgmt-login"  // Data: *mgmt.LoginResult
	NotifyMap    fsm.Event = "network-map" // Data: *mgmt.NetworkMap
	NotifyConfig fsm.Event = "mgmt-config" // Data: *mgmt.Config
)

var events = []fsm.Event{EvStart, EvStop, EvSetupKey, EvKey, EvLoginOK, EvNotRegistered, EvKeyRejected,
	EvFailed, EvUpdate, EvStreamClosed, EvRetry, EvNetworkUp, EvNetworkDown}

var workerEvents = []fsm.Event{EvKey, EvLoginOK, EvNotRegistered, EvKeyRejected, EvFailed, EvUpdate, EvStreamClosed}

// Spec is the management link machine. Its diagram is docs/diagrams/mgmt.md.
var Spec = fsm.MustCompile(link.Spec(link.Own[*Link]{
	Kind: Kind,
	Name: "management",
	Doc: "The management link: server key, login (registering with the setup key when the server does not know " +
		"this peer), then the Sync stream. Every session fetches the server key again. A rejected setup key waits in " +
		"`needs-login` for a new key: no retry storm. Backoff is one timer (exponential, full jitter, 30 s cap).",
	Events: events,
	Quiet:  workerEvents,
	Up:     Online,
	Close:  endSession,
	Docs: map[fsm.State]string{
		Session:    "one connection to the server: a new generation",
		Connecting: "key and login",
		Backoff:    "one timer armed",
		Stopped:    "stopped by the engine",
	},
	States: []fsm.StateDef[*Link]{
		{Name: FetchingKey, Parent: Connecting, Doc: "GetServerKey", Entry: fetchKey, Exit: link.CancelWorker[*Link]},
		{Name: LoggingIn, Parent: Connecting, Doc: "Login without setup key", Entry: login, Exit: link.CancelWorker[*Link]},
		{Name: Registering, Parent: Connecting, Doc: "Login with the setup key", Entry: register, Exit: link.CancelWorker[*Link]},
		{Name: Connecting, Initial: FetchingKey},
		{Name: Online, Parent: Session, Initial: Syncing, Doc: "Sync stream open", Entry: openSync, Exit: link.CancelWorker[*Link]},
		{Name: Syncing, Parent: Online, Doc: "waiting for the first network map"},
		{Name: Synced, Parent: Online, Doc: "network map applied", Entry: synced},
		{Name: NeedsLogin, Parent: Running, Doc: "setup key missing or rejected: waits for the user, no retry", Entry: needsLogin},
	},
	Transitions: []fsm.Transition[*Link]{
		{From: fsm.Root, Event: EvSetupKey, Action: setSetupKey, Doc: "kept for the next registration"},
		{From: FetchingKey, Event: EvKey, To: LoggingIn, Action: setServerKey},
		{From: FetchingKey, Event: EvFailed, To: Backoff, Action: link.RecordErr[*Link]},
		{From: LoggingIn, Event: EvLoginOK, To: Online, Action: loggedIn},
		{From: LoggingIn, Event: EvNotRegistered, Guard: hasSetupKey, To: Registering},
		{From: LoggingIn, Event: EvNotRegistered, To: NeedsLogin, Action: link.RecordErr[*Link], Doc: "unknown peer and no setup key"},
		{From: LoggingIn, Event: EvKeyRejected, To: NeedsLogin, Action: link.RecordErr[*Link]},
		{From: LoggingIn, Event: EvFailed, To: Backoff, Action: link.RecordErr[*Link]},
		{From: Registering, Event: EvLoginOK, To: Online, Action: loggedIn},
		{From: Registering, Event: EvKeyRejected, To: NeedsLogin, Action: link.RecordErr[*Link], Doc: "setup key wrong, expired or revoked"},
		{From: Registering, Event: EvNotRegistered, To: NeedsLogin, Action: link.RecordErr[*Link]},
		{From: Registering, Event: EvFailed, To: Backoff, Action: link.RecordErr[*Link]},
		{From: Online, Event: EvStreamClosed, To: Backoff, Action: link.RecordErr[*Link]},
		{From: Online, Event: EvUpdate, Guard: staleMap, Action: dropStale, Doc: "serial lower than the applied one"},
		{From: Syncing, Event: EvUpdate, Guard: freshMap, To: Synced, Action: applyUpdate},
		{From: Online, Event: EvUpdate, Action: applyUpdate, Doc: "config-only update, or a newer map"},
		{From: NeedsLogin, Event: EvSetupKey, To: Session, Action: setSetupKey, Doc: "the user gave a new key"},
	},
}))
