// Package sigwire is nbfsm's client of the NetBird signal service
// (shared/PROTOCOL.md §4) and the codec of its messages. (It is not called
// signal: that is os/signal's name, which programs use beside it.)
//
// Peers exchange ICE credentials and candidates through the signal server.
// Every message travels as an EncryptedMessage whose sender and recipient
// keys are in clear and whose Body is a NaCl box sealed from the sender's
// WireGuard key to the recipient's (internal/nbcrypto): the server routes by
// recipient and cannot read or forge bodies; only the box proves the sender.
//
// [Encode] and [Decode] are pure and turn a typed [Message] (offer, answer,
// candidate, go-idle) into an EncryptedMessage and back. Decode rejects bad
// input with typed errors, cheapest checks first: a stranger's message
// (the accept function says no) costs no cryptography.
//
// The [Client] is built for the signal link machine (signalfsm):
//
//   - [Client.Connect] opens the receive stream (ConnectStream with the
//     x-wiretrustee-peer-id header) and waits for the server's
//     x-wiretrustee-peer-registered header; [Client.Send] sends every
//     outbound message as one unary call, because the server never reads the
//     stream. Each is ONE attempt: no retry, no backoff, prompt return on
//     context cancel, a classified error ([grpcdial.Retryable]).
//   - The client starts no goroutine of its own. A worker owned by the
//     machine calls [Stream.Recv] in a blocking loop and posts each message
//     as an event addressed to the sender's peer machine.
//   - Recv returns only valid messages. Bad ones (undecryptable, unknown
//     sender, unknown type, malformed payload, oversize) are counted per
//     reason ([Client.Stats]), logged at most once per 10 s per reason, and
//     skipped: none of them ends the stream. HEARTBEAT and MODE messages are
//     counted as ignored.
//   - A dead connection is noticed by gRPC keepalive ([KeepaliveTime]), not
//     by a ticker of ours.
//   - A Client is one gRPC channel and Dial does no I/O. Calls fail fast:
//     a server that refuses the connection gives ErrUnavailable at once; one
//     that does not answer at all holds a call until gRPC's connect timeout
//     (20 s) or the ctx, whichever comes first. A kept channel reconnects in
//     the background on gRPC's own backoff (growing to 120 s) and fails
//     calls until it is up; to make the link machine's backoff the only one,
//     Close the Client after a transport failure and Dial a new one for the
//     next attempt.
package sigwire
