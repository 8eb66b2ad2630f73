package sigwire

import (
	"encoding/hex"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
)

// The golden values below were produced by this package's own Encode with
// the fixed keys and nonce of goldenInputs, then frozen. If this test fails,
// the bytes nbfsm puts on the wire changed: make sure the change is meant
// and that official peers still accept it before updating them.
const (
	goldenBodyHex = "12316b577a4e7152735475567859614263443a705172537455765778597a4162" +
		"436445664768496a4b6c4d6e4f70517253745518ec94032206302e34342e3042" +
		"1872656c733a2f2f72656c61792e6578616d706c653a34343352050102030405"
	goldenEnvelopeHex = "122c7777623744764b2f69332b5475746d4256666f33327578303277784d7674" +
		"7073627832366e545a56676c493d1a2c3230676c666849336c32703072597a2b" +
		"334b414345304350364a72474a5238626b774a46386b4b3177786f3d2288016e" +
		"6266736d2d676f6c64656e2d6e6f6e63652d32342d62799b9cfbb3c88935a33e" +
		"5e166c254017307904054b6bf180d56626ea2bf3e0ad490c55c191f886b89655" +
		"c9adbcbd7f949259d85d8586fc5d903c70bc1fd0abbd3f1ad1d55ff6c1a08e43" +
		"83a886651f4ff2c20e589c40eece19ddd0409320b006598c684ca39d2a4b9c5d" +
		"879bb1995e18cd"
)

func goldenInputs() (from wgtypes.Key, m Message, nonce [nbcrypto.NonceSize]byte) {
	copy(nonce[:], "nbfsm-golden-nonce-24-by")
	m = Message{
		To:                 key(0xb2).PublicKey(),
		Kind:               Offer,
		Ufrag:              testUfrag,
		Pwd:                testPwd,
		SessionID:          []byte{0x01, 0x02, 0x03, 0x04, 0x05},
		WGListenPort:       51820,
		RelayServerAddress: "rels://relay.example:443",
	}
	return key(0xa1), m, nonce
}

func TestGoldenSignalBody(t *testing.T) {
	from, m, nonce := goldenInputs()
	plain, err := proto.MarshalOptions{Deterministic: true}.Marshal(body(m))
	if err != nil {
		t.Fatal(err)
	}
	em, err := encode(from, from.PublicKey(), m, &nonce)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(em)
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(plain); got != goldenBodyHex {
		t.Errorf("plaintext Body changed:\n got %s\nwant %s", got, goldenBodyHex)
	}
	if got := hex.EncodeToString(wire); got != goldenEnvelopeHex {
		t.Errorf("sealed EncryptedMessage changed:\n got %s\nwant %s", got, goldenEnvelopeHex)
	}

	// The frozen bytes open for the recipient, and only for it.
	frozen, err := hex.DecodeString(goldenEnvelopeHex)
	if err != nil {
		t.Fatal(err)
	}
	var fem signalpb.EncryptedMessage
	if err := proto.Unmarshal(frozen, &fem); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(key(0xb2), &fem, nil)
	if err != nil {
		t.Fatalf("golden message does not decode: %v", err)
	}
	if got.From != from.PublicKey() || got.Ufrag != testUfrag || got.Pwd != testPwd {
		t.Fatalf("golden message decoded to %v", got)
	}
	fem.RemoteKey = key(0xe3).PublicKey().String()
	var b signalpb.Body
	if err := nbcrypto.Open(key(0xe3), from.PublicKey(), fem.GetBody(), &b); err == nil {
		t.Fatal("a third key opened the golden body")
	}
}
