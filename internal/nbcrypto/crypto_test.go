package nbcrypto

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/nacl/box"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// fixedKey is a private key made of one repeated byte, for reproducible tests.
func fixedKey(b byte) wgtypes.Key {
	var k wgtypes.Key
	for i := range k {
		k[i] = b
	}
	return k
}

func mustGenerate(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpenRoundTrip(t *testing.T) {
	alice, bob := mustGenerate(t), mustGenerate(t)
	tests := []struct {
		name string
		msg  proto.Message
	}{
		{"empty message", wrapperspb.String("")},
		{"short text", wrapperspb.String("3307297372 1 udp 2130706431 198.18.0.11 51820 typ host")},
		{"binary", wrapperspb.Bytes(bytes.Repeat([]byte{0, 1, 2, 255}, 1000))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := Seal(alice, bob.PublicKey(), tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			plainLen := proto.Size(tt.msg)
			if got, want := len(body), NonceSize+plainLen+box.Overhead; got != want {
				t.Fatalf("body is %d bytes, want nonce+plain+tag = %d", got, want)
			}
			got := tt.msg.ProtoReflect().New().Interface()
			if err := Open(bob, alice.PublicKey(), body, got); err != nil {
				t.Fatalf("Open: %v", err)
			}
			if !proto.Equal(got, tt.msg) {
				t.Fatalf("opened %v, want %v", got, tt.msg)
			}
		})
	}
}

// TestBoxRules checks who can and who cannot open a body (PROTOCOL.md §2).
func TestBoxRules(t *testing.T) {
	alice, bob, eve := mustGenerate(t), mustGenerate(t), mustGenerate(t)
	msg := wrapperspb.String("offer")
	body, err := Seal(alice, bob.PublicKey(), msg)
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(body)
	tampered[len(tampered)-1] ^= 1
	badNonce := bytes.Clone(body)
	badNonce[0] ^= 1

	tests := []struct {
		name   string
		priv   wgtypes.Key
		sender wgtypes.Key
		body   []byte
		want   error
	}{
		{"receiver with sender's key", bob, alice.PublicKey(), body, nil},
		// NaCl box is symmetric in the shared key: the sender can open its own box.
		{"sender itself", alice, bob.PublicKey(), body, nil},
		{"third party", eve, alice.PublicKey(), body, ErrDecrypt},
		{"receiver, wrong sender claimed", bob, eve.PublicKey(), body, ErrDecrypt},
		{"sealed to another key", eve, bob.PublicKey(), body, ErrDecrypt},
		{"tampered box", bob, alice.PublicKey(), tampered, ErrDecrypt},
		{"tampered nonce", bob, alice.PublicKey(), badNonce, ErrDecrypt},
		{"empty body", bob, alice.PublicKey(), nil, ErrShortBody},
		{"nonce only", bob, alice.PublicKey(), body[:NonceSize], ErrShortBody},
		{"one byte short of a tag", bob, alice.PublicKey(), body[:NonceSize+box.Overhead-1], ErrShortBody},
		{"oversize", bob, alice.PublicKey(), make([]byte, MaxBodySize+1), ErrOversize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got wrapperspb.StringValue
			err := Open(tt.priv, tt.sender, tt.body, &got)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open = %v, want %v", err, tt.want)
			}
			if tt.want == nil && got.GetValue() != "offer" {
				t.Fatalf("opened %q", got.GetValue())
			}
		})
	}
}

func TestOpenDecodeError(t *testing.T) {
	alice, bob := mustGenerate(t), mustGenerate(t)
	// A box whose plaintext is not protobuf: field 1 with wire type 7 (invalid).
	var nonce [NonceSize]byte
	pk, sk := [32]byte(bob.PublicKey()), [32]byte(alice)
	body := box.Seal(nonce[:], []byte{0x0f, 0xff}, &nonce, &pk, &sk)
	var got wrapperspb.StringValue
	if err := Open(bob, alice.PublicKey(), body, &got); !errors.Is(err, ErrDecode) {
		t.Fatalf("Open = %v, want ErrDecode", err)
	}
}

func TestSealWithNonceIsDeterministic(t *testing.T) {
	alice, bob := fixedKey(1), fixedKey(2)
	var nonce [NonceSize]byte
	copy(nonce[:], "nbfsm golden nonce 24 by")
	a, err := SealWithNonce(alice, bob.PublicKey(), wrapperspb.String("x"), nonce)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := SealWithNonce(alice, bob.PublicKey(), wrapperspb.String("x"), nonce)
	if !bytes.Equal(a, b) {
		t.Fatal("same inputs gave different bodies")
	}
	if !bytes.Equal(a[:NonceSize], nonce[:]) {
		t.Fatal("body does not start with the nonce")
	}
	// Seal draws a fresh nonce each time.
	c, _ := Seal(alice, bob.PublicKey(), wrapperspb.String("x"))
	d, _ := Seal(alice, bob.PublicKey(), wrapperspb.String("x"))
	if bytes.Equal(c[:NonceSize], d[:NonceSize]) {
		t.Fatal("two Seal calls used the same nonce")
	}
}

// TestBoxMatchesRawNaCl pins the construction: the body is exactly
// nonce ‖ box.Seal(plain, nonce, receiverPub, senderPriv) with the raw
// WireGuard key bytes and no KDF, so any NaCl implementation opens it.
func TestBoxMatchesRawNaCl(t *testing.T) {
	alice, bob := mustGenerate(t), mustGenerate(t)
	body, err := Seal(alice, bob.PublicKey(), wrapperspb.String("raw"))
	if err != nil {
		t.Fatal(err)
	}
	var nonce [24]byte
	copy(nonce[:], body)
	pk, sk := [32]byte(alice.PublicKey()), [32]byte(bob)
	plain, ok := box.Open(nil, body[NonceSize:], &nonce, &pk, &sk)
	if !ok {
		t.Fatal("raw box.Open failed")
	}
	want, _ := proto.MarshalOptions{Deterministic: true}.Marshal(wrapperspb.String("raw"))
	if !bytes.Equal(plain, want) {
		t.Fatalf("plaintext %x, want %x", plain, want)
	}
}

func TestParseKey(t *testing.T) {
	good := mustGenerate(t).PublicKey()
	raw := good[:]
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"canonical", good.String(), true},
		{"all zero", strings.Repeat("A", 43) + "=", true},
		{"empty", "", false},
		{"too short", good.String()[:43], false},
		{"too long", good.String() + "=", false},
		{"no padding (43 chars)", base64.RawStdEncoding.EncodeToString(raw), false},
		{"URL-safe alphabet", strings.Repeat("_", 43) + "=", false},
		{"bad character", "!" + good.String()[1:], false},
		{"surrounding space", " " + good.String()[1:], false},
		{"31 bytes (44 chars)", base64.StdEncoding.EncodeToString(raw[:31]), false},
		{"hex instead of base64", strings.Repeat("ab", 22), false},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(raw, 0)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParseKey(tt.in)
			if tt.ok {
				if err != nil {
					t.Fatalf("ParseKey(%q) = %v", tt.in, err)
				}
				if k.String() != tt.in {
					t.Fatalf("round trip: %q -> %q", tt.in, k.String())
				}
				return
			}
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("ParseKey(%q) = %v, want ErrBadKey", tt.in, err)
			}
			if k != (wgtypes.Key{}) {
				t.Fatal("a failed parse returned a non-zero key")
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	seen := map[wgtypes.Key]bool{}
	for range 16 {
		k := mustGenerate(t)
		if seen[k] {
			t.Fatal("GenerateKey repeated a key")
		}
		seen[k] = true
		// A WireGuard private key is clamped (RFC 7748).
		if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
			t.Fatalf("key %x is not clamped", k[:])
		}
		pub := k.PublicKey()
		if p, err := ParseKey(pub.String()); err != nil || p != pub {
			t.Fatalf("public key does not survive print and parse: %v", err)
		}
	}
}

func TestFingerprint(t *testing.T) {
	pub := mustGenerate(t).PublicKey()
	fp := Fingerprint(pub)
	if len(fp) != 8 || !strings.HasPrefix(pub.String(), fp) {
		t.Fatalf("Fingerprint = %q, want the first 8 characters of %q", fp, pub.String())
	}
}
