package relay

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

// The frames below are written from RELAY.md byte by byte; the hashes and the
// HMAC were computed outside Go (sha256sum, openssl dgst -hmac), so the test
// does not check the code against itself.
const (
	keyB64 = "RgFvx1TCnIdnGjcqI8Rh7FzPK5X5ho1mZ9E8uB0Ba0g="
	// printf '%s' "$keyB64" | sha256sum
	keyHash = "426a98f867e97f87af4268b95e2c5455b809d86a5d31c069cf62d65f9fac6505"
	secret  = "testsecret"
	payload = "1767225600" // 2026-01-01T00:00:00Z
	// printf 1767225600 | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(printf testsecret | sha256sum)
	sigHex = "5e6a9a7c6caf379dda861b8eca7769cf3a9d860ec32ee47a6c2a19f7275172bb"
	sigB64 = "XmqafGyvN53ahhuOyndpzzqdhg7DLuR6bCoZ9ydRcrs="
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// "sha-" = 73 68 61 2d.
func peerIDHex() string { return "7368612d" + keyHash }

func TestPeerIDIsHashOfBase64Text(t *testing.T) {
	id := HashID(keyB64)
	if got, want := hex.EncodeToString(id[:]), peerIDHex(); got != want {
		t.Fatalf("id %s, want %s", got, want)
	}
	if !strings.HasPrefix(id.String(), "sha-") {
		t.Fatalf("string %q", id.String())
	}
}

func TestTokenLayout(t *testing.T) {
	p, s := Sign(secret, time.Unix(1767225600, 0))
	if p != payload || s != sigB64 {
		t.Fatalf("Sign = %q %q, want %q %q", p, s, payload, sigB64)
	}
	tok, err := Token(payload, sigB64)
	if err != nil {
		t.Fatal(err)
	}
	// algo 01 | signature (32) | payload ASCII.
	want := unhex(t, "01"+sigHex+hex.EncodeToString([]byte(payload)))
	if !bytes.Equal(tok, want) {
		t.Fatalf("token\n %x\nwant\n %x", tok, want)
	}
	if len(tok) != 43 {
		t.Fatalf("token of %d bytes, RELAY.md says ≈43", len(tok))
	}
	before := time.Unix(1767225600, 0)
	if err := Validate(secret, tok, before); err != nil {
		t.Fatalf("valid token refused: %v", err)
	}
	if err := Validate(secret, tok, before.Add(time.Second)); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	if err := Validate("other", tok, before); !errors.Is(err, ErrSignature) {
		t.Fatalf("wrong secret: %v", err)
	}
	bad := bytes.Clone(tok)
	bad[0] = 2
	if err := Validate(secret, bad, before); !errors.Is(err, ErrToken) {
		t.Fatalf("unknown algorithm: %v", err)
	}
	if err := Validate(secret, tok[:42], before); !errors.Is(err, ErrToken) {
		t.Fatalf("short payload: %v", err)
	}
	if _, err := Token(payload, "AAAA"); !errors.Is(err, ErrToken) {
		t.Fatalf("short signature: %v", err)
	}
	if _, err := Token("", ""); !errors.Is(err, ErrNoRelayCfg) {
		t.Fatalf("no token: %v", err)
	}
}

func TestAuthFrame(t *testing.T) {
	tok, err := Token(payload, sigB64)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Auth(HashID(keyB64), tok)
	if err != nil {
		t.Fatal(err)
	}
	// 01 06 | 21 12 A4 42 | peer id | token.
	want := unhex(t, "01 06 2112a442"+peerIDHex()+"01"+sigHex+hex.EncodeToString([]byte(payload)))
	if !bytes.Equal(b, want) {
		t.Fatalf("auth\n %x\nwant\n %x", b, want)
	}
	m, err := Decode(want)
	if err != nil || m.Type != TypeAuth || m.Peer != HashID(keyB64) || !bytes.Equal(m.Token, tok) {
		t.Fatalf("decode: %+v %v", m, err)
	}
	if _, err := Auth(HashID(keyB64), make([]byte, MaxToken+1)); err == nil {
		t.Fatal("auth over 212 bytes accepted")
	}
	full, _ := Auth(HashID(keyB64), make([]byte, MaxToken))
	if len(full) != 212 {
		t.Fatalf("max auth %d bytes", len(full))
	}
	badMagic := bytes.Clone(want)
	badMagic[2] = 0x22
	if _, err := Decode(badMagic); !errors.Is(err, ErrMagic) {
		t.Fatalf("bad magic: %v", err)
	}
}

func TestFixedFrames(t *testing.T) {
	if !bytes.Equal(HealthCheck(), []byte{0x01, 0x05}) {
		t.Fatalf("health check %x", HealthCheck())
	}
	if !bytes.Equal(Close(), []byte{0x01, 0x04}) {
		t.Fatalf("close %x", Close())
	}
	ar := AuthResponse("rels://relay.example:443")
	if !bytes.Equal(ar, append([]byte{0x01, 0x07}, "rels://relay.example:443"...)) {
		t.Fatalf("auth response %x", ar)
	}
	m, err := Decode(ar)
	if err != nil || m.Type != TypeAuthResponse || m.Addr != "rels://relay.example:443" {
		t.Fatalf("decode %+v %v", m, err)
	}
	if _, err := Decode([]byte{0x01, 0x07}); !errors.Is(err, ErrEmptyAddr) {
		t.Fatalf("empty address: %v", err)
	}
}

func TestTransportFrame(t *testing.T) {
	// A WireGuard handshake initiation starts 01 00 00 00.
	dgram := unhex(t, "01000000 deadbeef")
	b := AppendTransport(nil, HashID(keyB64), dgram)
	want := unhex(t, "01 03"+peerIDHex()+"01000000deadbeef")
	if !bytes.Equal(b, want) {
		t.Fatalf("transport\n %x\nwant\n %x", b, want)
	}
	m, err := Decode(want)
	if err != nil || m.Type != TypeTransport || m.Peer != HashID(keyB64) || !bytes.Equal(m.Payload, dgram) {
		t.Fatalf("decode %+v %v", m, err)
	}
	if _, err := Decode(want[:2+35]); !errors.Is(err, ErrShort) {
		t.Fatalf("short id: %v", err)
	}
	big := AppendTransport(nil, HashID(keyB64), make([]byte, MaxTransportPayload+1))
	if _, err := Decode(big); !errors.Is(err, ErrTooLong) {
		t.Fatalf("over 8820 bytes: %v", err)
	}
}

func TestPeerStateFrames(t *testing.T) {
	id := HashID(keyB64)
	msgs := PeerState(TypeSubscribe, []PeerID{id, id})
	want := unhex(t, "01 08"+peerIDHex()+peerIDHex())
	if len(msgs) != 1 || !bytes.Equal(msgs[0], want) {
		t.Fatalf("subscribe %x", msgs)
	}
	many := make([]PeerID, 245)
	for i := range many {
		many[i] = id
	}
	msgs = PeerState(TypeUnsubscribe, many)
	if len(msgs) != 2 || len(msgs[0]) != 2+244*36 || len(msgs[1]) != 2+36 || msgs[1][1] != 9 {
		t.Fatalf("split: %d messages", len(msgs))
	}
	for _, typ := range []byte{10, 11} {
		m, err := Decode(append([]byte{1, typ}, id[:]...))
		if err != nil || len(m.Peers) != 1 || m.Peers[0] != id {
			t.Fatalf("type %d: %+v %v", typ, m, err)
		}
	}
	if _, err := Decode(append([]byte{1, 10}, id[:35]...)); !errors.Is(err, ErrIDList) {
		t.Fatalf("ragged list: %v", err)
	}
	if len(PeerState(TypeSubscribe, nil)) != 0 {
		t.Fatal("message for no ids")
	}
}

func TestBadHeaders(t *testing.T) {
	for _, tc := range []struct {
		b   []byte
		err error
	}{
		{nil, ErrShort},
		{[]byte{1}, ErrShort},
		{[]byte{2, 5}, ErrVersion},
		{[]byte{1, 1}, ErrType}, // removed Hello
		{[]byte{1, 2}, ErrType}, // removed HelloResponse
		{[]byte{1, 12}, ErrType},
	} {
		if _, err := Decode(tc.b); !errors.Is(err, tc.err) {
			t.Errorf("%x: %v, want %v", tc.b, err, tc.err)
		}
	}
	for typ, want := range map[Type][2]bool{3: {true, true}, 4: {true, true}, 5: {true, true}, 6: {true, false},
		7: {false, true}, 8: {true, false}, 9: {true, false}, 10: {false, true}, 11: {false, true}} {
		if FromClient(typ) != want[0] || FromServer(typ) != want[1] {
			t.Errorf("%v: from client %v, from server %v", typ, FromClient(typ), FromServer(typ))
		}
	}
}

func TestWebSocketURL(t *testing.T) {
	for in, want := range map[string]string{
		"rel://relay.example:8080":  "ws://relay.example:8080/relay",
		"rels://relay.example":      "wss://relay.example/relay",
		"rels://relay.example:443/": "wss://relay.example:443/relay",
		"rel://10.0.0.1:33080/x?y":  "ws://10.0.0.1:33080/relay",
	} {
		got, err := WebSocketURL(in)
		if err != nil || got != want {
			t.Errorf("%s → %q %v, want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"http://relay.example", "rel://", "turn:x:1"} {
		if _, err := WebSocketURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
