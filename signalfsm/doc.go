// Package signalfsm is the signal link as a state machine: one ConnectStream
// to the NetBird signal server, reopened with backoff when it fails.
//
// The machine owns every decision; the stream worker (Dialer) only dials,
// reads and posts. Incoming messages are decrypted in the worker and posted
// to the peer machine of their sender; a sender outside the network map is
// refused before decryption (sigwire.WithAccept) and creates no state.
// Sending is an effect of the peer machines (Dialer.Send), and a failed send
// is an event for them, never a hidden retry.
//
// The machine is the link shape of fsm/link (session, backoff, network
// events, stopped) plus connected and the server row.
//
// Diagram: docs/diagrams/signal.md.
//
//	idle --start--> running.session.connecting --up--> running.session.connected
//	connecting --connect-failed / network-down--> running.backoff
//	session --stream-closed--> running.backoff --retry / network-up--> running.session
//	running --stop--> stopped
package signalfsm
