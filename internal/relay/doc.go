// Package relay is the wire layer of the NetBird relay (RELAY.md): message
// framing, the Auth message with its magic, the binary v2 token built from
// management's RelayConfig, peer ids ("sha-" + SHA-256 of the base64 key
// text), and a WebSocket client (Dial, Conn.Run) at path /relay that answers
// health checks and multiplexes Transport messages into one virtual
// net.Conn per remote peer (Conn.OpenPeer).
//
// Transport: WebSocket only (github.com/coder/websocket). QUIC is not
// implemented: every relay server also serves WebSocket, the combined
// self-hosted server serves only WebSocket, and QUIC datagrams need the
// datagram-too-large fallback (RELAY.md §2).
//
// The client never decides anything: the relay link machine (relayfsm)
// decides when to dial, when a silent server is down and when to close.
package relay
