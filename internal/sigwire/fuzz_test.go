package sigwire

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

// FuzzDecodeSignal feeds Decode two kinds of input: raw bytes of an
// EncryptedMessage (what the server could send), and raw bytes of a Body
// sealed by a known sender (what a hostile peer could seal, which random
// envelopes almost never reach). Decode must never panic, every error must
// have a counted reason, and every message it accepts must be valid and
// survive Encode and Decode unchanged.
//
// The seed corpus is in testdata/fuzz/FuzzDecodeSignal; regenerate it with
// NBFSM_WRITE_CORPUS=1 go test -run TestWriteSignalCorpus.
func FuzzDecodeSignal(f *testing.F) {
	accept := func(k wgtypes.Key) bool { return k == alice }
	var nonce [nbcrypto.NonceSize]byte
	f.Fuzz(func(t *testing.T, envelope, plain []byte) {
		var em signalpb.EncryptedMessage
		if proto.Unmarshal(envelope, &em) == nil {
			checkDecoded(t, &em, accept)
		}
		checkDecoded(t, sealRaw(alicePriv, bob, plain, nonce), accept)
	})
}

func checkDecoded(t *testing.T, em *signalpb.EncryptedMessage, accept func(wgtypes.Key) bool) {
	m, err := Decode(bobPriv, em, accept)
	if err != nil {
		if reasonOf(err) == reasonOther {
			t.Fatalf("untyped error %v", err)
		}
		return
	}
	if err := m.validate(); err != nil {
		t.Fatalf("accepted an invalid message %v: %v", m, err)
	}
	if m.From != alice || m.To != bob {
		t.Fatalf("accepted a message from %v to %v", m.From, m.To)
	}
	again, err := Encode(alicePriv, m)
	if err != nil {
		t.Fatalf("accepted message does not encode: %v", err)
	}
	m2, err := Decode(bobPriv, again, accept)
	if err != nil {
		t.Fatalf("re-encoded message does not decode: %v", err)
	}
	if (m.Kind == Offer || m.Kind == Answer) && m.Version == "" {
		m.Version = version.Reported
	}
	if !equalMessages(m, m2) {
		t.Fatalf("round trip changed the message:\n%#v\n%#v", m, m2)
	}
}

// signalSeeds are the committed seed inputs: every kind, relay-only, and
// one of each bad-input reason.
func signalSeeds(t testing.TB) map[string][2][]byte {
	var nonce [nbcrypto.NonceSize]byte
	copy(nonce[:], "nbfsm-fuzz-seed-nonce-24")
	env := func(from wgtypes.Key, to wgtypes.Key, b *signalpb.Body) []byte {
		plain, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		out, err := proto.Marshal(sealRaw(from, to, plain, nonce))
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	plain := func(b *signalpb.Body) []byte {
		out, err := proto.MarshalOptions{Deterministic: true}.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	sid := []byte{1, 2, 3, 4, 5}
	relay := "rels://relay.example:443"
	offer := &signalpb.Body{Type: signalpb.Body_OFFER, Payload: testUfrag + ":" + testPwd, WgListenPort: 51820, NetBirdVersion: "0.44.0", SessionId: sid}
	answer := &signalpb.Body{Type: signalpb.Body_ANSWER, Payload: testUfrag + ":" + testPwd, SessionId: sid, RelayServerAddress: &relay}
	relayOnly := &signalpb.Body{Type: signalpb.Body_OFFER, Payload: ":", SessionId: sid}
	cand := &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: srflxCand}
	idle := &signalpb.Body{Type: signalpb.Body_GO_IDLE}
	hb := &signalpb.Body{Type: signalpb.Body_HEARTBEAT}
	badCreds := &signalpb.Body{Type: signalpb.Body_OFFER, Payload: "ab:cd"}
	badCand := &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: "1 1 udp 1 198.18.0.1 99999 typ host"}
	unknown := &signalpb.Body{Type: 42}
	strangerEnv, _ := proto.Marshal(&signalpb.EncryptedMessage{Key: eve.String(), RemoteKey: bob.String(), Body: []byte{1}})
	badSenderEnv, _ := proto.Marshal(&signalpb.EncryptedMessage{Key: "not a key", RemoteKey: bob.String()})
	return map[string][2][]byte{
		"offer":          {env(alicePriv, bob, offer), plain(offer)},
		"answer":         {env(alicePriv, bob, answer), plain(answer)},
		"relay-only":     {env(alicePriv, bob, relayOnly), plain(relayOnly)},
		"candidate":      {env(alicePriv, bob, cand), plain(cand)},
		"go-idle":        {env(alicePriv, bob, idle), plain(idle)},
		"heartbeat":      {env(bobPriv, bob, hb), plain(hb)},
		"bad-creds":      {env(alicePriv, bob, badCreds), plain(badCreds)},
		"bad-candidate":  {env(alicePriv, bob, badCand), plain(badCand)},
		"unknown-type":   {env(alicePriv, bob, unknown), plain(unknown)},
		"sealed-to-eve":  {env(alicePriv, eve, offer), []byte{0x17}},
		"unknown-sender": {strangerEnv, nil},
		"bad-sender":     {badSenderEnv, []byte{0xff, 0xff, 0xff}},
	}
}

// TestSignalSeedsDecodeAsExpected keeps the seeds meaningful.
func TestSignalSeedsDecodeAsExpected(t *testing.T) {
	want := map[string]error{
		"offer": nil, "answer": nil, "relay-only": nil, "candidate": nil, "go-idle": nil,
		"heartbeat": ErrIgnored, "bad-creds": ErrBadPayload, "bad-candidate": ErrBadPayload,
		"unknown-type": ErrUnknownType, "sealed-to-eve": ErrNotForUs,
		"unknown-sender": ErrUnknownSender, "bad-sender": ErrBadSender,
	}
	for name, in := range signalSeeds(t) {
		var em signalpb.EncryptedMessage
		if err := proto.Unmarshal(in[0], &em); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err := Decode(bobPriv, &em, func(k wgtypes.Key) bool { return k == alice })
		if !errors.Is(err, want[name]) {
			t.Errorf("%s: Decode = %v, want %v", name, err, want[name])
		}
	}
}

// TestWriteSignalCorpus writes the seed corpus; it only runs on request.
func TestWriteSignalCorpus(t *testing.T) {
	if os.Getenv("NBFSM_WRITE_CORPUS") == "" {
		t.Skip("set NBFSM_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzDecodeSignal")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDecodeSignal")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, in := range signalSeeds(t) {
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n[]byte(%q)\n", in[0], in[1])
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
