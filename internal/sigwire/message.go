package sigwire

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pion/ice/v2"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
)

// Kind is the kind of a signal message nbfsm sends and receives. The zero
// Kind is invalid.
type Kind int

// Kinds. HEARTBEAT and MODE exist on the wire but are never delivered:
// Decode reports them as ErrIgnored.
const (
	Offer     Kind = iota + 1 // start or refresh the receiver's ICE agent; always answered
	Answer                    // the answerer's own credentials
	Candidate                 // one ICE candidate
	GoIdle                    // the sender closed its side for idleness
)

func (k Kind) String() string {
	switch k {
	case Offer:
		return "offer"
	case Answer:
		return "answer"
	case Candidate:
		return "candidate"
	case GoIdle:
		return "go-idle"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Limits of what nbfsm accepts in a body.
const (
	// SessionIDSize is the size of the session ids nbfsm generates.
	SessionIDSize = 5
	// MaxSessionIDSize bounds a received session id.
	MaxSessionIDSize = 32
	// MaxCandidateLen bounds a candidate line; pion's are under 200 bytes.
	MaxCandidateLen = 1024
	// ufrag and pwd lengths from RFC 8839 §5.4 (official peers use 16 and 32).
	minUfrag, maxUfrag = 4, 256
	minPwd, maxPwd     = 22, 256
)

// Message is one decoded signal message.
type Message struct {
	From, To wgtypes.Key // public keys of sender and recipient
	Kind     Kind
	// Ufrag and Pwd are the ICE credentials of an Offer or Answer (payload
	// "<ufrag>:<pwd>"); both empty for a relay-only peer (payload ":").
	Ufrag, Pwd string
	// Candidate is the text of an ICE candidate (pion Candidate.Marshal).
	Candidate string
	// SessionID identifies the sender's ICE agent; nil if absent.
	SessionID []byte
	// WGListenPort is the sender's WireGuard port, 0 if not given.
	WGListenPort uint32
	// Version is the sender's NetBird version; Encode fills in
	// version.Reported on offers and answers when it is empty.
	Version string
	// RelayServerAddress is the sender's NetBird relay, empty if none.
	RelayServerAddress string
	// RelayServerIP is the IP of the sender's home relay connection (4 or 16
	// raw bytes on the wire); zero if none.
	RelayServerIP netip.Addr
}

// String describes m for logs. It never prints the ICE password.
func (m Message) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%v from %s to %s", m.Kind, nbcrypto.Fingerprint(m.From), nbcrypto.Fingerprint(m.To))
	switch m.Kind {
	case Offer, Answer:
		if m.Ufrag == "" {
			b.WriteString(" relay-only")
		} else {
			fmt.Fprintf(&b, " ufrag %s pwd %s", m.Ufrag, "<redacted>")
		}
	case Candidate:
		fmt.Fprintf(&b, " %q", m.Candidate)
	}
	if m.SessionID != nil {
		fmt.Fprintf(&b, " session %s", hex.EncodeToString(m.SessionID))
	}
	return b.String()
}

// GoString is String, so %#v does not print the password either.
func (m Message) GoString() string { return "sigwire.Message{" + m.String() + "}" }

// Format makes every verb go through String or GoString.
func (m Message) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, m.GoString())
		return
	}
	fmt.Fprint(f, m.String())
}

// validate checks the kind-specific fields of m, for Encode and Decode alike.
func (m *Message) validate() error {
	switch m.Kind {
	case Offer, Answer:
		if err := checkCreds(m.Ufrag, m.Pwd); err != nil {
			return err
		}
	case Candidate:
		if err := checkCandidate(m.Candidate); err != nil {
			return err
		}
	case GoIdle:
	default:
		return fmt.Errorf("%w: %v", ErrUnknownType, m.Kind)
	}
	if len(m.SessionID) > MaxSessionIDSize {
		return fmt.Errorf("%w: session id of %d bytes", ErrBadPayload, len(m.SessionID))
	}
	if m.WGListenPort > 65535 {
		return fmt.Errorf("%w: wireguard port %d", ErrBadPayload, m.WGListenPort)
	}
	return nil
}

// parseCreds splits an offer or answer payload "<ufrag>:<pwd>".
func parseCreds(payload string) (ufrag, pwd string, err error) {
	ufrag, pwd, ok := strings.Cut(payload, ":")
	if !ok {
		return "", "", fmt.Errorf("%w: credentials without ':'", ErrBadPayload)
	}
	if err := checkCreds(ufrag, pwd); err != nil {
		return "", "", err
	}
	return ufrag, pwd, nil
}

// checkCreds accepts both empty (relay-only) or an RFC 8839 ufrag and pwd.
func checkCreds(ufrag, pwd string) error {
	if ufrag == "" && pwd == "" {
		return nil
	}
	if err := checkICEChars("ufrag", ufrag, minUfrag, maxUfrag); err != nil {
		return err
	}
	return checkICEChars("pwd", pwd, minPwd, maxPwd)
}

// checkICEChars checks length and ice-char = ALPHA / DIGIT / "+" / "/".
// The text never goes into the error: pwd is a secret.
func checkICEChars(what, s string, lo, hi int) error {
	if len(s) < lo || len(s) > hi {
		return fmt.Errorf("%w: %s of %d characters, want %d to %d", ErrBadPayload, what, len(s), lo, hi)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return fmt.Errorf("%w: %s has a character outside ice-char at %d", ErrBadPayload, what, i)
		}
	}
	return nil
}

// checkCandidate parses a candidate line the way the ICE agent will.
func checkCandidate(s string) error {
	if s == "" || len(s) > MaxCandidateLen {
		return fmt.Errorf("%w: candidate of %d bytes", ErrBadPayload, len(s))
	}
	if _, err := ice.UnmarshalCandidate(s); err != nil {
		return fmt.Errorf("%w: candidate: %w", ErrBadPayload, err)
	}
	return nil
}
