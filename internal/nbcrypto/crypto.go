// Package nbcrypto seals and opens the encrypted bodies of NetBird's
// management and signal messages (shared/PROTOCOL.md §2), and parses and
// prints WireGuard keys.
//
// A body is a NaCl box: X25519 + XSalsa20-Poly1305 with the sender's
// WireGuard private key and the receiver's WireGuard public key, both used as
// raw 32 bytes. On the wire: 24-byte random nonce ‖ sealed box. The plaintext
// is the protobuf encoding of the inner message.
package nbcrypto

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/nacl/box"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/protobuf/proto"
)

// NonceSize is the length of the nonce that prefixes every sealed body.
const NonceSize = 24

// MaxBodySize bounds the size of a body this package will open. A network map
// of 10 000 peers is well under 4 MiB; anything larger is refused unread.
const MaxBodySize = 16 << 20

var (
	// ErrShortBody: the body is too short to hold a nonce and a box tag.
	ErrShortBody = errors.New("nbcrypto: body too short")
	// ErrOversize: the body is larger than MaxBodySize.
	ErrOversize = errors.New("nbcrypto: body too large")
	// ErrDecrypt: the box did not open: wrong keys or tampered bytes.
	ErrDecrypt = errors.New("nbcrypto: cannot decrypt body")
	// ErrDecode: the box opened but its plaintext is not the expected message.
	ErrDecode = errors.New("nbcrypto: cannot decode body")
	// ErrBadKey: a key is not 44 characters of standard base64 for 32 bytes.
	ErrBadKey = errors.New("nbcrypto: malformed key")
)

// Seal encodes msg and seals it from priv to peer with a random nonce.
func Seal(priv wgtypes.Key, peer wgtypes.Key, msg proto.Message) ([]byte, error) {
	var nonce [NonceSize]byte
	if _, err := io.ReadFull(rand.Reader, nonce[:]); err != nil {
		return nil, fmt.Errorf("nbcrypto: nonce: %w", err)
	}
	return SealWithNonce(priv, peer, msg, nonce)
}

// SealWithNonce is Seal with a given nonce. Only golden tests should call it:
// a nonce must never be reused with the same key pair.
func SealWithNonce(priv wgtypes.Key, peer wgtypes.Key, msg proto.Message, nonce [NonceSize]byte) ([]byte, error) {
	plain, err := proto.MarshalOptions{Deterministic: true}.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("nbcrypto: encode: %w", err)
	}
	pk, sk := [32]byte(peer), [32]byte(priv)
	out := make([]byte, NonceSize, NonceSize+len(plain)+box.Overhead)
	copy(out, nonce[:])
	return box.Seal(out, plain, &nonce, &pk, &sk), nil
}

// Open opens a body sealed by peer to priv and decodes it into msg.
func Open(priv wgtypes.Key, peer wgtypes.Key, body []byte, msg proto.Message) error {
	if len(body) > MaxBodySize {
		return ErrOversize
	}
	if len(body) < NonceSize+box.Overhead {
		return ErrShortBody
	}
	var nonce [NonceSize]byte
	copy(nonce[:], body[:NonceSize])
	pk, sk := [32]byte(peer), [32]byte(priv)
	plain, ok := box.Open(nil, body[NonceSize:], &nonce, &pk, &sk)
	if !ok {
		return ErrDecrypt
	}
	if err := proto.Unmarshal(plain, msg); err != nil {
		return fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return nil
}

// ParseKey parses a WireGuard key written as standard base64 with padding.
func ParseKey(s string) (wgtypes.Key, error) {
	if len(s) != 44 {
		return wgtypes.Key{}, fmt.Errorf("%w: want 44 base64 characters, got %d", ErrBadKey, len(s))
	}
	k, err := wgtypes.ParseKey(s)
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("%w: %v", ErrBadKey, err)
	}
	return k, nil
}

// GenerateKey returns a new WireGuard private key.
func GenerateKey() (wgtypes.Key, error) {
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("nbcrypto: generate key: %w", err)
	}
	return k, nil
}

// Fingerprint is a short, non-secret label for a public key, for logs and
// status: the first 8 characters of its base64 text. Never pass it a private
// key: log the public key's fingerprint instead.
func Fingerprint(pub wgtypes.Key) string {
	return pub.String()[:8]
}
