package relay

import (
	"bytes"
	"testing"
)

// FuzzDecode: no input crashes the decoder; what decodes re-encodes to the
// same bytes. The seed corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	id := HashID(keyB64)
	tok, _ := Token(payload, sigB64)
	auth, _ := Auth(id, tok)
	f.Add(auth)
	f.Add(AppendTransport(nil, id, []byte{4, 0, 0, 0}))
	f.Add(HealthCheck())
	f.Add(AuthResponse("rel://127.0.0.1:1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		var re []byte
		switch m.Type {
		case TypeTransport:
			re = AppendTransport(nil, m.Peer, m.Payload)
		case TypeAuth:
			re, err = Auth(m.Peer, m.Token)
			if err != nil {
				t.Fatalf("decoded auth does not encode: %v", err)
			}
		case TypeAuthResponse:
			re = AuthResponse(m.Addr)
		case TypeSubscribe, TypeUnsubscribe, TypePeersOnline, TypePeersWentOffline:
			msgs := PeerState(m.Type, m.Peers)
			if len(msgs) != 1 {
				t.Fatalf("%d ids decoded from one message", len(m.Peers))
			}
			re = msgs[0]
		default:
			return // close and health check tolerate trailing bytes
		}
		if !bytes.Equal(re, b) {
			t.Fatalf("re-encoded %x, decoded from %x", re, b)
		}
	})
}
