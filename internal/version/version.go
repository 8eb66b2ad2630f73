package version

// Reported is the NetBird version nbfsm claims on the wire.
//
// It is deliberately below 0.45.0. An official NetBird peer connects eagerly
// to a remote whose agentVersion is below 0.45.0; for 0.45.0 and later, when
// the account enables lazy connections (the default), it waits for traffic or
// an offer and, after 15 minutes without traffic, closes the tunnel and sends
// GO_IDLE (shared/PROTOCOL.md §5). Reporting 0.44.0 makes official peers treat
// nbfsm as a pre-lazy client: they keep their tunnel to us up and never idle
// it out from their side. nbfsm still handles GO_IDLE if one arrives.
//
// Raising it past 0.45.0 is a protocol decision, not a release chore: it
// needs the lazy-connection behaviour of §5 on nbfsm's side first.
const Reported = "0.44.0"

// NBFSM is nbfsm's own version, shown in status output and logs.
const NBFSM = "0.1.0"
