// Package mgmtfsm is the management link as a state machine: server key,
// login (and registration with the setup key), then the Sync stream whose
// network maps it hands to its supervisor.
//
// Each session uses a fresh connection and fetches the server key again (it
// changes at every server start). A setup key the server rejects leads to
// needs-login, which waits for a new key without retrying. Maps with a lower
// serial than the applied one are dropped; config-only updates are their own
// notification. The backoff is one timer. The machine is the link shape of
// fsm/link (session, backoff, network events, stopped) plus the steps of
// connecting, online and needs-login.
//
// Diagram: docs/diagrams/mgmt.md.
package mgmtfsm
