package mgmtfsm

import "github.com/nbfsm/nbfsm/fsm"

// States of the management link.
const (
	Idle        fsm.State = "idle"
	Running     fsm.State = "running"
	Session     fsm.State = "running.session"
	Connecting  fsm.State = "running.session.connecting"
	FetchingKey fsm.State = "running.session.connecting.fetching-key"
	LoggingIn   fsm.State = "running.session.connecting.logging-in"
	Registering fsm.State = "running.session.connecting.registering"
	Online      fsm.State = "running.session.online"
	Syncing     fsm.State = "running.session.online.syncing"
	Synced      fsm.State = "running.session.online.synced"
	Backoff     fsm.State = "running.backoff"
	NeedsLogin  fsm.State = "running.needs-login"
	Stopped     fsm.State = "stopped"
)

// Events of the management link. Workers post EvKey … EvStreamClosed; the
// engine posts EvStart, EvStop, EvSetupKey and the network events; EvRetry is
// the backoff timer.
const (
	EvStart         fsm.Event = "start"
	EvStop          fsm.Event = "stop"
	EvSetupKey      fsm.Event = "setup-key" // Data: string (never logged)
	EvKey           fsm.Event = "server-key"
	EvLoginOK       fsm.Event = "login-ok"       // Data: *mgmt.LoginResult
	EvNotRegistered fsm.Event = "not-registered" // PermissionDenied
	EvKeyRejected   fsm.Event = "key-rejected"   // NotFound: setup key wrong, expired or revoked
	EvFailed        fsm.Event = "failed"         // Data: error (transport, server)
	EvUpdate        fsm.Event = "update"         // Data: mgmt.Update
	EvStreamClosed  fsm.Event = "stream-closed"  // Data: error
	EvRetry         fsm.Event = "retry"
	EvNetworkUp     fsm.Event = "network-up"
	EvNetworkDown   fsm.Event = "network-down"
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
var Spec = fsm.MustCompile(fsm.Spec[*Link]{
	Kind: Kind,
	Doc: "The management link: server key, login (registering with the setup key when the server does not know " +
		"this peer), then the Sync stream. Every session fetches the server key again. A rejected setup key waits in " +
		"`needs-login` for a new key: no retry storm. Backoff is one timer (exponential, full jitter, 30 s cap).",
	Initial: Idle,
	Events:  events,
	States: []fsm.StateDef[*Link]{
		{Name: Idle, Doc: "not started",
			Ignore: fsm.Join(workerEvents, []fsm.Event{EvStop, EvRetry, EvNetworkUp, EvNetworkDown})},
		{Name: Running, Initial: Session, Doc: "started", Ignore: []fsm.Event{EvStart}},
		{Name: Session, Parent: Running, Initial: Connecting, Doc: "one connection to the server: a new generation",
			Entry: startSession, Exit: endSession, Ignore: fsm.Join(workerEvents, []fsm.Event{EvRetry})},
		{Name: Connecting, Parent: Session, Initial: FetchingKey, Doc: "key and login", Ignore: []fsm.Event{EvNetworkUp}},
		{Name: FetchingKey, Parent: Connecting, Doc: "GetServerKey", Entry: fetchKey, Exit: cancelWorker},
		{Name: LoggingIn, Parent: Connecting, Doc: "Login without setup key", Entry: login, Exit: cancelWorker},
		{Name: Registering, Parent: Connecting, Doc: "Login with the setup key", Entry: register, Exit: cancelWorker},
		{Name: Online, Parent: Session, Initial: Syncing, Doc: "Sync stream open", Entry: openSync, Exit: cancelWorker,
			Ignore: []fsm.Event{EvNetworkDown}},
		{Name: Syncing, Parent: Online, Doc: "waiting for the first network map"},
		{Name: Synced, Parent: Online, Doc: "network map applied", Entry: synced},
		{Name: Backoff, Parent: Running, Doc: "one timer armed", Entry: armRetry,
			Ignore: fsm.Join(workerEvents, []fsm.Event{EvNetworkDown})},
		{Name: NeedsLogin, Parent: Running, Doc: "setup key missing or rejected: waits for the user, no retry", Entry: needsLogin,
			Ignore: fsm.Join(workerEvents, []fsm.Event{EvRetry, EvNetworkUp, EvNetworkDown})},
		{Name: Stopped, Doc: "stopped by the engine",
			Ignore: fsm.Join(workerEvents, []fsm.Event{EvStop, EvRetry, EvNetworkUp, EvNetworkDown})},
	},
	Transitions: []fsm.Transition[*Link]{
		{From: Idle, Event: EvStart, To: Running},
		{From: Idle, Event: EvSetupKey, Action: setSetupKey},
		{From: Running, Event: EvStop, To: Stopped},
		{From: Running, Event: EvSetupKey, Action: setSetupKey, Doc: "kept for the next registration"},
		{From: Connecting, Event: EvNetworkDown, To: Backoff, Doc: "no burst of failing dials while the network is down"},
		{From: FetchingKey, Event: EvKey, To: LoggingIn, Action: setServerKey},
		{From: FetchingKey, Event: EvFailed, To: Backoff, Action: recordErr},
		{From: LoggingIn, Event: EvLoginOK, To: Online, Action: loggedIn},
		{From: LoggingIn, Event: EvNotRegistered, Guard: hasSetupKey, To: Registering},
		{From: LoggingIn, Event: EvNotRegistered, To: NeedsLogin, Action: recordErr, Doc: "unknown peer and no setup key"},
		{From: LoggingIn, Event: EvKeyRejected, To: NeedsLogin, Action: recordErr},
		{From: LoggingIn, Event: EvFailed, To: Backoff, Action: recordErr},
		{From: Registering, Event: EvLoginOK, To: Online, Action: loggedIn},
		{From: Registering, Event: EvKeyRejected, To: NeedsLogin, Action: recordErr, Doc: "setup key wrong, expired or revoked"},
		{From: Registering, Event: EvNotRegistered, To: NeedsLogin, Action: recordErr},
		{From: Registering, Event: EvFailed, To: Backoff, Action: recordErr},
		{From: Online, Event: EvStreamClosed, To: Backoff, Action: recordErr},
		{From: Online, Event: EvNetworkUp, To: Session, Doc: "the stream may be bound to an address that is gone: re-dial"},
		{From: Online, Event: EvUpdate, Guard: staleMap, Action: dropStale, Doc: "serial lower than the applied one"},
		{From: Syncing, Event: EvUpdate, Guard: freshMap, To: Synced, Action: applyUpdate},
		{From: Online, Event: EvUpdate, Action: applyUpdate, Doc: "config-only update, or a newer map"},
		{From: Backoff, Event: EvRetry, To: Session},
		{From: Backoff, Event: EvNetworkUp, To: Session, Doc: "cut the backoff short"},
		{From: NeedsLogin, Event: EvSetupKey, To: Session, Action: setSetupKey, Doc: "the user gave a new key"},
		{From: Stopped, Event: EvStart, To: Running},
		{From: Stopped, Event: EvSetupKey, Action: setSetupKey},
	},
})
