package relay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Protocol version 1, the only one (RELAY.md §7).
const Version byte = 1

// Type is a relay message type (byte 1 of every message).
type Type byte

// Message types (RELAY.md §3). 1 and 2 are the removed Hello messages.
const (
	TypeTransport        Type = 3
	TypeClose            Type = 4
	TypeHealthCheck      Type = 5
	TypeAuth             Type = 6
	TypeAuthResponse     Type = 7
	TypeSubscribe        Type = 8
	TypeUnsubscribe      Type = 9
	TypePeersOnline      Type = 10
	TypePeersWentOffline Type = 11
)

func (t Type) String() string {
	switch t {
	case TypeTransport:
		return "transport"
	case TypeClose:
		return "close"
	case TypeHealthCheck:
		return "health-check"
	case TypeAuth:
		return "auth"
	case TypeAuthResponse:
		return "auth-response"
	case TypeSubscribe:
		return "subscribe"
	case TypeUnsubscribe:
		return "unsubscribe"
	case TypePeersOnline:
		return "peers-online"
	case TypePeersWentOffline:
		return "peers-went-offline"
	}
	return "type(" + strconv.Itoa(int(t)) + ")"
}

// Sizes (RELAY.md §3).
const (
	HeaderSize          = 2
	IDSize              = 36
	MaxAuthMessage      = 212
	MaxToken            = MaxAuthMessage - HeaderSize - len(magic) - IDSize // 170
	MaxAuthResponse     = 8192
	MaxMessage          = 8820
	MaxTransportPayload = MaxMessage - HeaderSize - IDSize
	// MaxIDsPerMessage is how many peer ids one state message carries.
	MaxIDsPerMessage = (MaxMessage - HeaderSize) / IDSize // 244
)

// magic opens the body of an Auth message.
var magic = [4]byte{0x21, 0x12, 0xA4, 0x42}

// Errors of the decoder and the token check.
var (
	ErrShort      = errors.New("relay: message too short")
	ErrVersion    = errors.New("relay: unsupported protocol version")
	ErrType       = errors.New("relay: unknown message type")
	ErrTooLong    = errors.New("relay: message too long")
	ErrMagic      = errors.New("relay: bad auth magic")
	ErrIDList     = errors.New("relay: peer id list not a multiple of 36 bytes")
	ErrBadID      = errors.New("relay: peer id without sha- prefix")
	ErrToken      = errors.New("relay: bad token")
	ErrExpired    = errors.New("relay: token expired")
	ErrSignature  = errors.New("relay: token signature mismatch")
	ErrEmptyAddr  = errors.New("relay: empty instance address")
	ErrDirection  = errors.New("relay: message type not valid in this direction")
	ErrNoRelayCfg = errors.New("relay: no token")
)

// PeerID identifies a peer on a relay: "sha-" + SHA-256 of the peer's
// WireGuard public key as its standard base64 text (RELAY.md §3.1).
type PeerID [IDSize]byte

// HashID returns the relay id of the peer whose public key, in standard
// base64 (44 characters), is keyB64.
func HashID(keyB64 string) PeerID {
	var id PeerID
	copy(id[:4], "sha-")
	h := sha256.Sum256([]byte(keyB64))
	copy(id[4:], h[:])
	return id
}

// String is the human-readable form: "sha-" + base64 of the hash.
func (id PeerID) String() string {
	return string(id[:4]) + base64.StdEncoding.EncodeToString(id[4:])
}

func (id PeerID) valid() bool { return string(id[:4]) == "sha-" }

// Token algorithms (v2 binary token).
const algoHMACSHA256 byte = 1

// minPayload is the shortest token payload servers accept.
const minPayload = 10

// Token builds the binary v2 token from management's RelayConfig:
// algo 01 | signature (base64-decoded tokenSignature, 32 bytes) | payload.
func Token(payload, signatureB64 string) ([]byte, error) {
	if payload == "" || signatureB64 == "" {
		return nil, ErrNoRelayCfg
	}
	sig, err := base64.StdEncoding.DecodeString(signatureB64)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrToken, err)
	}
	if len(sig) != sha256.Size {
		return nil, fmt.Errorf("%w: signature of %d bytes", ErrToken, len(sig))
	}
	t := make([]byte, 0, 1+len(sig)+len(payload))
	t = append(t, algoHMACSHA256)
	t = append(t, sig...)
	t = append(t, payload...)
	if len(t) > MaxToken {
		return nil, fmt.Errorf("%w: %d bytes", ErrToken, len(t))
	}
	return t, nil
}

// Sign is what management does: it returns tokenPayload (decimal Unix expiry)
// and tokenSignature (base64 HMAC-SHA256 keyed with SHA-256(secret)).
func Sign(secret string, expiry time.Time) (payload, signatureB64 string) {
	payload = strconv.FormatInt(expiry.Unix(), 10)
	return payload, base64.StdEncoding.EncodeToString(mac(secret, payload))
}

func mac(secret, payload string) []byte {
	key := sha256.Sum256([]byte(secret))
	h := hmac.New(sha256.New, key[:])
	h.Write([]byte(payload))
	return h.Sum(nil)
}

// Validate checks a binary token as a relay server does.
func Validate(secret string, token []byte, now time.Time) error {
	if len(token) < 1+sha256.Size+minPayload {
		return fmt.Errorf("%w: %d bytes", ErrToken, len(token))
	}
	if token[0] != algoHMACSHA256 {
		return fmt.Errorf("%w: algorithm %d", ErrToken, token[0])
	}
	sig, payload := token[1:1+sha256.Size], string(token[1+sha256.Size:])
	if !hmac.Equal(sig, mac(secret, payload)) {
		return ErrSignature
	}
	exp, err := strconv.ParseInt(payload, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: payload: %w", ErrToken, err)
	}
	if now.Unix() > exp {
		return ErrExpired
	}
	return nil
}

// Message is one decoded relay message. Only the fields of its Type are set;
// Payload and Token alias the decoded buffer.
type Message struct {
	Type    Type
	Peer    PeerID   // Transport (destination or source), Auth (sender)
	Payload []byte   // Transport
	Token   []byte   // Auth
	Addr    string   // AuthResponse
	Peers   []PeerID // Subscribe, Unsubscribe, PeersOnline, PeersWentOffline
}

// Decode parses one relay message (one WebSocket binary message).
func Decode(b []byte) (Message, error) {
	if len(b) < HeaderSize {
		return Message{}, ErrShort
	}
	if b[0] != Version {
		return Message{}, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	m := Message{Type: Type(b[1])}
	body := b[HeaderSize:]
	switch m.Type {
	case TypeTransport:
		if len(b) > MaxMessage {
			return Message{}, ErrTooLong
		}
		if len(body) < IDSize {
			return Message{}, ErrShort
		}
		copy(m.Peer[:], body)
		if !m.Peer.valid() {
			return Message{}, ErrBadID
		}
		m.Payload = body[IDSize:]
	case TypeClose, TypeHealthCheck:
		// empty body; trailing bytes are tolerated as upstream does
	case TypeAuth:
		if len(b) > MaxAuthMessage {
			return Message{}, ErrTooLong
		}
		if len(body) < len(magic)+IDSize {
			return Message{}, ErrShort
		}
		if [4]byte(body[:4]) != magic {
			return Message{}, ErrMagic
		}
		copy(m.Peer[:], body[4:])
		if !m.Peer.valid() {
			return Message{}, ErrBadID
		}
		m.Token = body[4+IDSize:]
	case TypeAuthResponse:
		if len(b) > MaxAuthResponse {
			return Message{}, ErrTooLong
		}
		if len(body) == 0 {
			return Message{}, ErrEmptyAddr
		}
		m.Addr = string(body)
	case TypeSubscribe, TypeUnsubscribe, TypePeersOnline, TypePeersWentOffline:
		if len(b) > MaxMessage {
			return Message{}, ErrTooLong
		}
		if len(body) == 0 || len(body)%IDSize != 0 {
			return Message{}, ErrIDList
		}
		m.Peers = make([]PeerID, len(body)/IDSize)
		for i := range m.Peers {
			copy(m.Peers[i][:], body[i*IDSize:])
			if !m.Peers[i].valid() {
				return Message{}, ErrBadID
			}
		}
	default:
		return Message{}, fmt.Errorf("%w: %d", ErrType, b[1])
	}
	return m, nil
}

// FromClient reports whether a client may send type t (3,4,5,6,8,9).
func FromClient(t Type) bool {
	switch t {
	case TypeTransport, TypeClose, TypeHealthCheck, TypeAuth, TypeSubscribe, TypeUnsubscribe:
		return true
	}
	return false
}

// FromServer reports whether a server may send type t (3,4,5,7,10,11).
func FromServer(t Type) bool {
	switch t {
	case TypeTransport, TypeClose, TypeHealthCheck, TypeAuthResponse, TypePeersOnline, TypePeersWentOffline:
		return true
	}
	return false
}

// Encoders. Each returns a fresh message.

// Auth encodes 01 06 | magic | id | token.
func Auth(id PeerID, token []byte) ([]byte, error) {
	if len(token) > MaxToken {
		return nil, fmt.Errorf("%w: %d bytes", ErrToken, len(token))
	}
	b := make([]byte, 0, HeaderSize+len(magic)+IDSize+len(token))
	b = append(b, Version, byte(TypeAuth))
	b = append(b, magic[:]...)
	b = append(b, id[:]...)
	return append(b, token...), nil
}

// AuthResponse encodes 01 07 | instance address.
func AuthResponse(addr string) []byte {
	return append([]byte{Version, byte(TypeAuthResponse)}, addr...)
}

// AppendTransport appends 01 03 | peer | payload to dst.
func AppendTransport(dst []byte, peer PeerID, payload []byte) []byte {
	dst = append(dst, Version, byte(TypeTransport))
	dst = append(dst, peer[:]...)
	return append(dst, payload...)
}

// HealthCheck is 01 05.
func HealthCheck() []byte { return []byte{Version, byte(TypeHealthCheck)} }

// Close is 01 04.
func Close() []byte { return []byte{Version, byte(TypeClose)} }

// PeerState encodes one or more messages of type t (8–11) carrying ids, at
// most MaxIDsPerMessage each. No ids: no message.
func PeerState(t Type, ids []PeerID) [][]byte {
	var out [][]byte
	for len(ids) > 0 {
		n := min(len(ids), MaxIDsPerMessage)
		b := make([]byte, 0, HeaderSize+n*IDSize)
		b = append(b, Version, byte(t))
		for _, id := range ids[:n] {
			b = append(b, id[:]...)
		}
		out = append(out, b)
		ids = ids[n:]
	}
	return out
}
