package mgmt

import (
	"encoding/hex"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// The golden values below were produced by this package's own request
// builder and sealing with the fixed keys, meta and nonce of the test, then
// frozen. If this test fails, the bytes nbfsm sends to the management server
// changed: make sure the change is meant and that the NetBird server still
// accepts it before updating them.
// The flags message (field 17) is sent as official clients send it;
// capabilities (field 18) are [1, 2]: source prefixes, IPv6 overlay.
const (
	goldenLoginHex = "0a2441324338453632422d333846352d343535332d423331452d444436364336" +
		"393643454242125e0a0c6e6266736d2d676f6c64656e12056c696e75781a054c" +
		"696e7578220231332a067838365f3634321044656269616e20474e552f4c696e" +
		"75783a06302e34342e304a0e362e31322e302d312d616d643634520231338a01" +
		"009201020102222e122c7777623744764b2f69332b5475746d4256666f333275" +
		"78303277784d76747073627832366e545a56676c493d"
	goldenEnvelopeHex = "0a2c7777623744764b2f69332b5475746d4256666f33327578303277784d7674" +
		"7073627832366e545a56676c493d12de016e6266736d2d676f6c64656e2d6e6f" +
		"6e63652d32342d62790182853254cbfc9264b7af69573bdfc0787d5aa7258e10" +
		"05c60ef2ee9f5ba99d9cb94bf4e572b0caa1126bab12196f7cb72e5446703019" +
		"8ca089165cf76f01ed3663a54aab704c338091cbaa37ca10c244d5d5c1c141e8" +
		"524b7127a32f5d59e2e5c9e58ab3225819e9cca29853983044e87c67c89a2d5f" +
		"4f5e566e9b9c2e410fb186d82e042d46a297c793f1b5c06fb7d33ce0b12683e8" +
		"62897d8cb291de44e6583515515dff8087e52515a040706279d1e7bfb8a598c7" +
		"091edf7c73b8671a83f882e7ae1d09"
)

func TestGoldenLoginRequest(t *testing.T) {
	peerPriv, serverPriv := key(0xa1), key(0x5e)
	var nonce [nbcrypto.NonceSize]byte
	copy(nonce[:], "nbfsm-golden-nonce-24-by")
	meta := Meta{
		Hostname: "nbfsm-golden", GoOS: "linux", Kernel: "Linux", OS: "Debian GNU/Linux",
		OSVersion: "13", KernelVersion: "6.12.0-1-amd64", Platform: "x86_64",
	}
	pubText := peerPriv.PublicKey().String()
	req := loginRequest(pubText, testSetupKey, meta)

	plain, err := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := nbcrypto.SealWithNonce(peerPriv, serverPriv.PublicKey(), req, nonce)
	if err != nil {
		t.Fatal(err)
	}
	wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(envelope(pubText, body))
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(plain); got != goldenLoginHex {
		t.Errorf("plaintext LoginRequest changed:\n got %s\nwant %s", got, goldenLoginHex)
	}
	if got := hex.EncodeToString(wire); got != goldenEnvelopeHex {
		t.Errorf("sealed EncryptedMessage changed:\n got %s\nwant %s", got, goldenEnvelopeHex)
	}

	// The frozen bytes open for the server, and only for it.
	frozen, err := hex.DecodeString(goldenEnvelopeHex)
	if err != nil {
		t.Fatal(err)
	}
	var em mgmtpb.EncryptedMessage
	if err := proto.Unmarshal(frozen, &em); err != nil {
		t.Fatal(err)
	}
	sender, err := nbcrypto.ParseKey(em.GetWgPubKey())
	if err != nil {
		t.Fatal(err)
	}
	var got mgmtpb.LoginRequest
	if err := nbcrypto.Open(serverPriv, sender, em.GetBody(), &got); err != nil {
		t.Fatalf("server cannot open the golden request: %v", err)
	}
	if got.GetSetupKey() != testSetupKey || got.GetMeta().GetHostname() != "nbfsm-golden" {
		t.Fatalf("golden request opened to %v", &got)
	}
	if err := nbcrypto.Open(key(0x77), sender, em.GetBody(), &got); err == nil {
		t.Fatal("a key other than the server's opened the golden request")
	}
}
