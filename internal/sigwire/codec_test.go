package sigwire

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

const (
	testUfrag = "kWzNqRsTuVxYaBcD"
	testPwd   = "pQrStUvWxYzAbCdEfGhIjKlMnOpQrStU"
	hostCand  = "3307297372 1 udp 2130706431 198.18.0.11 51820 typ host"
	srflxCand = "1876583232 1 udp 1694498815 198.18.0.1 40123 typ srflx raddr 198.18.0.11 rport 51820"
)

// key is a private key made of one repeated byte, for reproducible tests.
func key(b byte) wgtypes.Key {
	var k wgtypes.Key
	for i := range k {
		k[i] = b
	}
	return k
}

var (
	alicePriv = key(0xa1)
	bobPriv   = key(0xb2)
	evePriv   = key(0xe3)
	alice     = alicePriv.PublicKey()
	bob       = bobPriv.PublicKey()
	eve       = evePriv.PublicKey()
)

func TestEncodeDecodeRoundTrip(t *testing.T) {
	sid := []byte{1, 2, 3, 4, 5}
	tests := []struct {
		name string
		in   Message
	}{
		{"offer", Message{Kind: Offer, Ufrag: testUfrag, Pwd: testPwd, SessionID: sid, WGListenPort: 51820, Version: "0.44.0"}},
		{"offer relay-only", Message{Kind: Offer, SessionID: sid, RelayServerAddress: "rels://relay.example:443"}},
		{"offer relay ipv4", Message{Kind: Offer, RelayServerAddress: "rel://r:80", RelayServerIP: netip.MustParseAddr("198.18.0.1")}},
		{"answer relay ipv6", Message{Kind: Answer, Ufrag: testUfrag, Pwd: testPwd, RelayServerAddress: "rel://r:80",
			RelayServerIP: netip.MustParseAddr("fd00::1")}},
		{"answer", Message{Kind: Answer, Ufrag: testUfrag, Pwd: testPwd, SessionID: sid, WGListenPort: 51820, Version: "0.44.0"}},
		{"answer without session id", Message{Kind: Answer, Ufrag: testUfrag, Pwd: testPwd, Version: "0.50.1"}},
		{"host candidate", Message{Kind: Candidate, Candidate: hostCand}},
		{"srflx candidate", Message{Kind: Candidate, Candidate: srflxCand, SessionID: sid}},
		{"go idle", Message{Kind: GoIdle}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.To = bob
			em, err := Encode(alicePriv, in)
			if err != nil {
				t.Fatal(err)
			}
			if em.GetKey() != alice.String() || em.GetRemoteKey() != bob.String() {
				t.Fatalf("keys in clear: %q -> %q", em.GetKey(), em.GetRemoteKey())
			}
			got, err := Decode(bobPriv, em, func(k wgtypes.Key) bool { return k == alice })
			if err != nil {
				t.Fatal(err)
			}
			want := in
			want.From = alice
			if (want.Kind == Offer || want.Kind == Answer) && want.Version == "" {
				want.Version = version.Reported
			}
			if !equalMessages(got, want) {
				t.Fatalf("got  %#v\nwant %#v", got, want)
			}
		})
	}
}

func equalMessages(a, b Message) bool {
	return a.From == b.From && a.To == b.To && a.Kind == b.Kind && a.Ufrag == b.Ufrag &&
		a.Pwd == b.Pwd && a.Candidate == b.Candidate && bytes.Equal(a.SessionID, b.SessionID) &&
		(a.SessionID == nil) == (b.SessionID == nil) && a.WGListenPort == b.WGListenPort &&
		a.Version == b.Version && a.RelayServerAddress == b.RelayServerAddress && a.RelayServerIP == b.RelayServerIP
}

// TestWireBody checks the Body fields Encode writes, as an official peer
// reads them.
func TestWireBody(t *testing.T) {
	em, err := Encode(alicePriv, Message{To: bob, Kind: Answer, Ufrag: testUfrag, Pwd: testPwd, SessionID: []byte("abcde"), WGListenPort: 51820})
	if err != nil {
		t.Fatal(err)
	}
	var b signalpb.Body
	if err := nbcrypto.Open(bobPriv, alice, em.GetBody(), &b); err != nil {
		t.Fatal(err)
	}
	want := &signalpb.Body{
		Type: signalpb.Body_ANSWER, Payload: testUfrag + ":" + testPwd, WgListenPort: 51820,
		NetBirdVersion: version.Reported, SessionId: []byte("abcde"),
	}
	if !proto.Equal(&b, want) {
		t.Fatalf("body %v, want %v", &b, want)
	}

	em, _ = Encode(alicePriv, Message{To: bob, Kind: Offer})
	_ = nbcrypto.Open(bobPriv, alice, em.GetBody(), &b)
	if b.GetPayload() != ":" || b.RelayServerAddress != nil || b.SessionId != nil {
		t.Fatalf("relay-only offer body %v, want payload \":\" and no optional fields", &b)
	}
}

func TestEncodeRejects(t *testing.T) {
	tests := []struct {
		name string
		m    Message
		want error
	}{
		{"no recipient", Message{Kind: GoIdle}, ErrBadMessage},
		{"zero kind", Message{To: bob}, ErrUnknownType},
		{"unknown kind", Message{To: bob, Kind: 42}, ErrUnknownType},
		{"ufrag without pwd", Message{To: bob, Kind: Offer, Ufrag: testUfrag}, ErrBadPayload},
		{"pwd too short", Message{To: bob, Kind: Offer, Ufrag: testUfrag, Pwd: "short"}, ErrBadPayload},
		{"colon in ufrag", Message{To: bob, Kind: Offer, Ufrag: "ab:cd", Pwd: testPwd}, ErrBadPayload},
		{"empty candidate", Message{To: bob, Kind: Candidate}, ErrBadPayload},
		{"unparsable candidate", Message{To: bob, Kind: Candidate, Candidate: "not a candidate"}, ErrBadPayload},
		{"port out of range", Message{To: bob, Kind: GoIdle, WGListenPort: 70000}, ErrBadPayload},
		{"session id too long", Message{To: bob, Kind: GoIdle, SessionID: make([]byte, MaxSessionIDSize+1)}, ErrBadPayload},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(alicePriv, tt.m)
			if !errors.Is(err, tt.want) || !errors.Is(err, ErrBadMessage) {
				t.Fatalf("Encode = %v, want %v and ErrBadMessage", err, tt.want)
			}
		})
	}
}

// sealBody builds a message from priv to `to` with an arbitrary body.
func sealBody(t testing.TB, priv wgtypes.Key, to wgtypes.Key, b *signalpb.Body) *signalpb.EncryptedMessage {
	t.Helper()
	sealed, err := nbcrypto.Seal(priv, to, b)
	if err != nil {
		t.Fatal(err)
	}
	return &signalpb.EncryptedMessage{Key: priv.PublicKey().String(), RemoteKey: to.String(), Body: sealed}
}

func TestDecodeBadInput(t *testing.T) {
	offer := func(payload string) *signalpb.Body {
		return &signalpb.Body{Type: signalpb.Body_OFFER, Payload: payload}
	}
	good := sealBody(t, alicePriv, bob, offer(testUfrag+":"+testPwd))
	withKeys := func(from, to string) *signalpb.EncryptedMessage {
		em := proto.Clone(good).(*signalpb.EncryptedMessage)
		em.Key, em.RemoteKey = from, to
		return em
	}
	withBody := func(body []byte) *signalpb.EncryptedMessage {
		em := proto.Clone(good).(*signalpb.EncryptedMessage)
		em.Body = body
		return em
	}
	tampered := bytes.Clone(good.GetBody())
	tampered[30] ^= 0x40
	// A body that opens but is not a Body: field 2 with wire type 7.
	var nonce [nbcrypto.NonceSize]byte
	notProto := sealRaw(alicePriv, bob, []byte{0x17}, nonce)
	mode := sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_MODE})
	heartbeatToSelf := sealBody(t, bobPriv, bob, &signalpb.Body{Type: signalpb.Body_HEARTBEAT})
	longSID := offer(testUfrag + ":" + testPwd)
	longSID.SessionId = make([]byte, MaxSessionIDSize+1)

	tests := []struct {
		name string
		em   *signalpb.EncryptedMessage
		want error
	}{
		{"nil message", nil, ErrBadSender},
		{"empty sender", withKeys("", bob.String()), ErrBadSender},
		{"garbage sender", withKeys("not-a-key", bob.String()), ErrBadSender},
		{"recipient is someone else", withKeys(alice.String(), eve.String()), ErrNotForUs},
		{"recipient garbage", withKeys(alice.String(), "x"), ErrNotForUs},
		{"unknown sender", sealBody(t, evePriv, bob, offer(testUfrag+":"+testPwd)), ErrUnknownSender},
		{"oversize body", withBody(make([]byte, MaxBodySize+1)), nbcrypto.ErrOversize},
		{"short body", withBody(make([]byte, 10)), nbcrypto.ErrShortBody},
		{"tampered body", withBody(tampered), nbcrypto.ErrDecrypt},
		{"sealed to another key", sealBody(t, alicePriv, eve, offer(testUfrag+":"+testPwd)), ErrNotForUs},
		{"sealed to another key, addressed to us", func() *signalpb.EncryptedMessage {
			em := sealBody(t, alicePriv, eve, offer(testUfrag+":"+testPwd))
			em.RemoteKey = bob.String()
			return em
		}(), nbcrypto.ErrDecrypt},
		{"sender key lies", func() *signalpb.EncryptedMessage {
			em := sealBody(t, evePriv, bob, offer(testUfrag+":"+testPwd))
			em.Key = alice.String()
			return em
		}(), nbcrypto.ErrDecrypt},
		{"not a protobuf Body", notProto, nbcrypto.ErrDecode},
		{"type 3 unknown", sealBody(t, alicePriv, bob, &signalpb.Body{Type: 3}), ErrUnknownType},
		{"type 99 unknown", sealBody(t, alicePriv, bob, &signalpb.Body{Type: 99}), ErrUnknownType},
		{"mode ignored", mode, ErrIgnored},
		{"heartbeat to self ignored", heartbeatToSelf, ErrIgnored},
		{"offer without colon", sealBody(t, alicePriv, bob, offer(testUfrag+testPwd)), ErrBadPayload},
		{"offer empty payload", sealBody(t, alicePriv, bob, offer("")), ErrBadPayload},
		{"offer ufrag only", sealBody(t, alicePriv, bob, offer(testUfrag+":")), ErrBadPayload},
		{"offer pwd only", sealBody(t, alicePriv, bob, offer(":"+testPwd)), ErrBadPayload},
		{"offer two colons", sealBody(t, alicePriv, bob, offer(testUfrag+":"+testPwd+":x")), ErrBadPayload},
		{"offer ufrag too short", sealBody(t, alicePriv, bob, offer("abc:"+testPwd)), ErrBadPayload},
		{"offer pwd too long", sealBody(t, alicePriv, bob, offer(testUfrag+":"+strings.Repeat("a", 257))), ErrBadPayload},
		{"offer space in ufrag", sealBody(t, alicePriv, bob, offer("abcd efgh:"+testPwd)), ErrBadPayload},
		{"answer non-ascii pwd", sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_ANSWER, Payload: testUfrag + ":" + strings.Repeat("é", 16)}), ErrBadPayload},
		{"candidate empty", sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_CANDIDATE}), ErrBadPayload},
		{"candidate garbage", sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: "candidate:garbage"}), ErrBadPayload},
		{"candidate bad address", sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: "1 1 udp 2130706431 not-an-ip 51820 typ host"}), ErrBadPayload},
		{"candidate bad port", sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: "1 1 udp 2130706431 198.18.0.11 99999 typ host"}), ErrBadPayload},
		{"candidate bad type", sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: "1 1 udp 2130706431 198.18.0.11 51820 typ magic"}), ErrBadPayload},
		{"candidate too long", sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: hostCand + strings.Repeat(" x", MaxCandidateLen)}), ErrBadPayload},
		{"wg port out of range", sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_GO_IDLE, WgListenPort: 65536}), ErrBadPayload},
		{"session id too long", sealBody(t, alicePriv, bob, longSID), ErrBadPayload},
	}
	accept := func(k wgtypes.Key) bool { return k == alice }
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Decode(bobPriv, tt.em, accept)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %v, want %v", err, tt.want)
			}
			if m.Kind != 0 || m.From != (wgtypes.Key{}) {
				t.Fatalf("a rejected message came back non-zero: %v", m)
			}
			if reasonOf(err) == reasonOther {
				t.Fatalf("error %v has no counted reason", err)
			}
		})
	}
}

// TestDecodeAcceptBeforeCrypto: the accept function sees the sender before
// any box is opened, and is not consulted for messages to ourselves.
func TestDecodeAcceptBeforeCrypto(t *testing.T) {
	var asked []wgtypes.Key
	accept := func(k wgtypes.Key) bool { asked = append(asked, k); return false }
	// A body that would fail to open: if accept ran after the crypto, the
	// error would be ErrShortBody.
	em := &signalpb.EncryptedMessage{Key: eve.String(), RemoteKey: bob.String(), Body: []byte{1}}
	if _, err := Decode(bobPriv, em, accept); !errors.Is(err, ErrUnknownSender) {
		t.Fatalf("Decode = %v, want ErrUnknownSender", err)
	}
	if len(asked) != 1 || asked[0] != eve {
		t.Fatalf("accept asked about %v, want [eve]", asked)
	}
	asked = nil
	if _, err := Decode(bobPriv, sealBody(t, bobPriv, bob, &signalpb.Body{Type: signalpb.Body_HEARTBEAT}), accept); !errors.Is(err, ErrIgnored) {
		t.Fatalf("heartbeat: %v", err)
	}
	if len(asked) != 0 {
		t.Fatal("accept was asked about our own key")
	}
	// nil accept accepts everyone.
	if _, err := Decode(bobPriv, sealBody(t, evePriv, bob, &signalpb.Body{Type: signalpb.Body_GO_IDLE}), nil); err != nil {
		t.Fatalf("nil accept: %v", err)
	}
}

func TestDecodeEmptySessionIDIsAbsent(t *testing.T) {
	b := &signalpb.Body{Type: signalpb.Body_GO_IDLE, SessionId: []byte{}}
	m, err := Decode(bobPriv, sealBody(t, alicePriv, bob, b), nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.SessionID != nil {
		t.Fatalf("SessionID = %v, want nil", m.SessionID)
	}
}

func TestMessageStringHidesPassword(t *testing.T) {
	m := Message{From: alice, To: bob, Kind: Offer, Ufrag: testUfrag, Pwd: testPwd, SessionID: []byte{1, 2, 3, 4, 5}}
	for _, s := range []string{m.String(), m.GoString(), sprint("%v", m), sprint("%+v", m), sprint("%#v", m), sprint("%s", m), sprint("%v", &m)} {
		if strings.Contains(s, testPwd) {
			t.Fatalf("password printed: %s", s)
		}
		if !strings.Contains(s, testUfrag) {
			t.Fatalf("ufrag missing: %s", s)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Offer: "offer", Answer: "answer", Candidate: "candidate", GoIdle: "go-idle", 0: "Kind(0)", 9: "Kind(9)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}
