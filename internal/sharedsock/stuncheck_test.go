package sharedsock

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/pion/ice/v2"
	"github.com/pion/stun"
)

// officialRequest is the Binding request an official NetBird peer sent on
// a selected pair (PROTOCOL.md §5; testdata copied from
// shared/fixtures/official-stun-binding-request.hex): FINGERPRINT is
// followed by the comprehension-optional attribute 0x8100.
func officialRequest(t *testing.T) []byte {
	t.Helper()
	f, err := os.ReadFile("testdata/official-stun-binding-request.hex")
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(f))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			text.WriteString(l)
		}
	}
	b, err := hex.DecodeString(text.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// attrAfterFingerprint is what official peers' ICE appends: 0x8100 with a
// candidate-pair id after FINGERPRINT.
type attrAfterFingerprint string

func (a attrAfterFingerprint) AddTo(m *stun.Message) error {
	m.Add(0x8100, []byte(a))
	return nil
}

// officialStyle builds a Binding request as an official peer does, with pwd
// as the receiver's ICE password and 0x8100 after FINGERPRINT.
func officialStyle(t *testing.T, username, pwd string) []byte {
	t.Helper()
	m, err := stun.Build(stun.BindingRequest, stun.TransactionID,
		stun.NewUsername(username),
		ice.AttrControlling(1234),
		ice.PriorityAttr(2130706431),
		stun.NewShortTermIntegrity(pwd),
		stun.Fingerprint,
		attrAfterFingerprint("/rZmv5L7gkA13zXAW7qKkVSjvCDC3xfH:xPlQ0dKxOailLO2hm/W3tyUVAhYBJGhn"))
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestFingerprintGolden(t *testing.T) {
	raw := officialRequest(t)
	if err := CheckFingerprint(raw); err != nil {
		t.Fatalf("official request: %v", err)
	}
	// pion's own check assumes FINGERPRINT is last: it rejects these bytes.
	// This is the bug the checker exists for.
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	if err := stun.Fingerprint.Check(m); err == nil {
		t.Error("pion's fingerprint check accepts the capture: the premise of stuncheck.go changed")
	}
	// Every single flipped bit the fingerprint covers (the header, cookie
	// and length included, up to the end of FINGERPRINT at byte 112) is
	// rejected. The 0x8100 attribute after it is not covered, by the RFC's
	// own rule.
	const covered = 112
	if binary.BigEndian.Uint16(raw[covered-8:]) != attrFingerprint {
		t.Fatalf("fixture: no fingerprint at %d", covered-8)
	}
	for i := 0; i < covered*8; i++ {
		b := append([]byte(nil), raw...)
		b[i/8] ^= 1 << (i % 8)
		if err := CheckFingerprint(b); err == nil {
			t.Fatalf("bit %d flipped: accepted", i)
		}
	}
}

func TestIntegrityAfterFingerprint(t *testing.T) {
	const pwd = "receiverpasswordreceiverpassword"
	raw := officialStyle(t, "ufragA:ufragB", pwd)
	if err := CheckFingerprint(raw); err != nil {
		t.Errorf("fingerprint: %v", err)
	}
	if err := CheckIntegrity(raw, []byte(pwd)); err != nil {
		t.Errorf("integrity with the right password: %v", err)
	}
	if err := CheckRequest(raw, pwd); err != nil {
		t.Errorf("request: %v", err)
	}
	if err := CheckIntegrity(raw, []byte("wrongpassword")); !errors.Is(err, ErrBadIntegrity) {
		t.Errorf("integrity with a wrong password = %v, want ErrBadIntegrity", err)
	}
	if err := CheckRequest(raw, "wrongpassword"); err == nil {
		t.Error("request with a wrong password accepted")
	}
}

func TestSTUNCheckErrors(t *testing.T) {
	const pwd = "receiverpasswordreceiverpassword"
	good := officialStyle(t, "a:b", pwd)
	plain := stunRequest(t, "a:b", pwd).Raw
	noFP, err := stun.Build(stun.BindingRequest, stun.TransactionID, stun.NewUsername("a:b"))
	if err != nil {
		t.Fatal(err)
	}
	// A comprehension-required attribute (0x0006) after FINGERPRINT.
	required := append([]byte(nil), good...)
	required = append(required, 0x00, 0x06, 0x00, 0x04, 'x', 'x', 'x', 'x')
	binary.BigEndian.PutUint16(required[2:4], uint16(len(required)-20))
	tests := []struct {
		name    string
		raw     []byte
		wantFP  error
		wantMI  error
		wantReq bool
	}{
		{"official style", good, nil, nil, true},
		{"fingerprint last (pion)", plain, nil, nil, true},
		{"no fingerprint, no integrity", noFP.Raw, ErrNoFingerprint, ErrNoIntegrity, false},
		{"required attribute after fingerprint", required, ErrBadSTUN, nil, false},
		{"truncated", good[:len(good)-3], ErrBadSTUN, ErrBadSTUN, false},
		{"short", good[:10], ErrBadSTUN, ErrBadSTUN, false},
		{"empty", nil, ErrBadSTUN, ErrBadSTUN, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := CheckFingerprint(tt.raw); !errors.Is(err, tt.wantFP) && (err != nil || tt.wantFP != nil) {
				t.Errorf("fingerprint = %v, want %v", err, tt.wantFP)
			}
			if err := CheckIntegrity(tt.raw, []byte(pwd)); !errors.Is(err, tt.wantMI) && (err != nil || tt.wantMI != nil) {
				t.Errorf("integrity = %v, want %v", err, tt.wantMI)
			}
			if err := CheckRequest(tt.raw, pwd); (err == nil) != tt.wantReq {
				t.Errorf("request = %v, want ok %v", err, tt.wantReq)
			}
		})
	}
}

func FuzzSTUNChecks(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(_ *testing.T, b []byte) {
		_ = CheckFingerprint(b)
		_ = CheckRequest(b, "pwd")
	})
}
