package sigwire

import (
	"bytes"
	"fmt"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

// MaxBodySize bounds a received body. Real ones are a few hundred bytes;
// anything larger is refused before any cryptography.
const MaxBodySize = 64 << 10

// Encode seals m from the private key own to m.To. m.From is ignored: the
// sender is own's public key. Offers and answers without a Version carry
// version.Reported.
func Encode(own wgtypes.Key, m Message) (*signalpb.EncryptedMessage, error) {
	return encode(own, own.PublicKey(), m, nil)
}

// encode is Encode with the public key already derived and, for golden
// tests only, a fixed nonce.
func encode(own, ownPub wgtypes.Key, m Message, nonce *[nbcrypto.NonceSize]byte) (*signalpb.EncryptedMessage, error) {
	if m.To == (wgtypes.Key{}) {
		return nil, fmt.Errorf("signal: encode: %w: no recipient", ErrBadMessage)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("signal: encode %v: %w: %w", m.Kind, ErrBadMessage, err)
	}
	b := body(m)
	var sealed []byte
	var err error
	if nonce != nil {
		sealed, err = nbcrypto.SealWithNonce(own, m.To, b, *nonce)
	} else {
		sealed, err = nbcrypto.Seal(own, m.To, b)
	}
	if err != nil {
		return nil, fmt.Errorf("signal: encode %v: %w", m.Kind, err)
	}
	return &signalpb.EncryptedMessage{Key: ownPub.String(), RemoteKey: m.To.String(), Body: sealed}, nil
}

// body is the wire Body of a valid message.
func body(m Message) *signalpb.Body {
	b := &signalpb.Body{WgListenPort: m.WGListenPort, NetBirdVersion: m.Version}
	switch m.Kind {
	case Offer, Answer:
		b.Type = signalpb.Body_OFFER
		if m.Kind == Answer {
			b.Type = signalpb.Body_ANSWER
		}
		b.Payload = m.Ufrag + ":" + m.Pwd
		if b.NetBirdVersion == "" {
			b.NetBirdVersion = version.Reported
		}
	case Candidate:
		b.Type = signalpb.Body_CANDIDATE
		b.Payload = m.Candidate
	case GoIdle:
		b.Type = signalpb.Body_GO_IDLE
	}
	if m.RelayServerAddress != "" {
		addr := m.RelayServerAddress
		b.RelayServerAddress = &addr
	}
	if m.RelayServerIP.IsValid() && (m.Kind == Offer || m.Kind == Answer) {
		b.RelayServerIP = m.RelayServerIP.Unmap().AsSlice()
	}
	if m.SessionID != nil {
		b.SessionId = bytes.Clone(m.SessionID)
	}
	return b
}

// Decode opens and checks one received message for the private key own.
// accept (nil: accept all) says whether a sender is known; it is asked
// before any cryptography and never for own's public key (a HEARTBEAT is a
// message to oneself). Errors wrap one of ErrBadSender, ErrNotForUs,
// ErrUnknownSender, nbcrypto.ErrOversize, nbcrypto.ErrShortBody,
// nbcrypto.ErrDecrypt, nbcrypto.ErrDecode, ErrIgnored, ErrUnknownType or
// ErrBadPayload, checked in that order.
func Decode(own wgtypes.Key, em *signalpb.EncryptedMessage, accept func(wgtypes.Key) bool) (Message, error) {
	return newDecoder(own).decode(em, accept)
}

// decoder holds what Decode derives from the private key, so that a stream
// pays the derivation once.
type decoder struct {
	priv, pub wgtypes.Key
	pubText   string
}

func newDecoder(priv wgtypes.Key) decoder {
	pub := priv.PublicKey()
	return decoder{priv: priv, pub: pub, pubText: pub.String()}
}

func (d decoder) decode(em *signalpb.EncryptedMessage, accept func(wgtypes.Key) bool) (Message, error) {
	from, err := nbcrypto.ParseKey(em.GetKey())
	if err != nil {
		return Message{}, fmt.Errorf("signal: decode: %w: %w", ErrBadSender, err)
	}
	if rk := em.GetRemoteKey(); rk != d.pubText {
		// A non-canonical spelling of our key still is our key.
		if to, err := nbcrypto.ParseKey(rk); err != nil || to != d.pub {
			return Message{}, fmt.Errorf("signal: decode from %s: %w", nbcrypto.Fingerprint(from), ErrNotForUs)
		}
	}
	if from != d.pub && accept != nil && !accept(from) {
		return Message{}, fmt.Errorf("signal: decode from %s: %w", nbcrypto.Fingerprint(from), ErrUnknownSender)
	}
	if n := len(em.GetBody()); n > MaxBodySize {
		return Message{}, fmt.Errorf("signal: decode from %s: %w: %d bytes", nbcrypto.Fingerprint(from), nbcrypto.ErrOversize, n)
	}
	var b signalpb.Body
	if err := nbcrypto.Open(d.priv, from, em.GetBody(), &b); err != nil {
		return Message{}, fmt.Errorf("signal: decode from %s: %w", nbcrypto.Fingerprint(from), err)
	}
	m := Message{
		From:               from,
		To:                 d.pub,
		WGListenPort:       b.GetWgListenPort(),
		Version:            b.GetNetBirdVersion(),
		RelayServerAddress: b.GetRelayServerAddress(),
	}
	if sid := b.GetSessionId(); len(sid) > 0 {
		m.SessionID = sid
	}
	if ip, ok := netip.AddrFromSlice(b.GetRelayServerIP()); ok {
		m.RelayServerIP = ip.Unmap()
	}
	switch b.GetType() {
	case signalpb.Body_OFFER, signalpb.Body_ANSWER:
		m.Kind = Offer
		if b.GetType() == signalpb.Body_ANSWER {
			m.Kind = Answer
		}
		m.Ufrag, m.Pwd, err = parseCreds(b.GetPayload())
	case signalpb.Body_CANDIDATE:
		m.Kind, m.Candidate = Candidate, b.GetPayload()
	case signalpb.Body_GO_IDLE:
		m.Kind = GoIdle
	case signalpb.Body_HEARTBEAT, signalpb.Body_MODE:
		err = fmt.Errorf("%w: %v", ErrIgnored, b.GetType())
	default:
		err = fmt.Errorf("%w: %d", ErrUnknownType, int32(b.GetType()))
	}
	if err == nil {
		err = m.validate()
	}
	if err != nil {
		return Message{}, fmt.Errorf("signal: decode from %s: %w", nbcrypto.Fingerprint(from), err)
	}
	return m, nil
}
