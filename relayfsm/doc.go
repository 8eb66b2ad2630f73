// Package relayfsm is the NetBird relay link as state machines, beside
// signalfsm and mgmtfsm: the home relay link (Spec, id "relay") and one
// machine per foreign relay (ForeignSpec, id "relay/<instance address>"),
// children of the home link.
//
// The home link connects to the first relay URL of management's RelayConfig
// that authenticates with the token, keeps the instance address of the
// AuthResponse (what peers advertise in relayServerAddress), answers health
// checks in its worker and re-arms one deadline per health check: a server
// silent for relay.HealthWindow is down. Reconnecting is its backoff state
// with one timer; network-up cuts it short. A token refreshed by a
// config-only sync is kept for the next connect (an open connection is not
// re-authenticated, as upstream).
//
// Peers say which relay they need with EvAcquire (Data: Use) and let go of
// it with EvRelease, both sent to the home link: the home relay when the
// address is its own, otherwise a foreign machine, opened on demand with the
// same identity and token. A user gets EvReady (Data: Ready) when its relay
// is connected and EvLost when it goes. A foreign relay nobody uses lingers
// in `open.connected.unused` for one timer (Linger), then closes; a foreign
// relay that fails or drops closes too (next use re-dials, as upstream).
// Nothing polls: no cleanup ticker. The home link is the link shape of
// fsm/link (session, backoff, network events, stopped) plus unconfigured,
// connected and the users' rows.
//
// Diagrams: docs/diagrams/relay.md, docs/diagrams/relay-foreign.md.
//
//	idle --start--> running.session.connecting --up--> running.session.connected
//	connecting --connect-failed / network-down--> running.backoff
//	session --closed--> running.backoff --retry / network-up--> running.session
//	connected --silent (no health check within the window)--> running.backoff
//	running --stop--> stopped
package relayfsm
