package mgmtsrv

import (
	"net/netip"
	"regexp"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

func TestRegistrationFlow(t *testing.T) {
	s := startServer(t, Config{})
	alice := newClient(t, s.Addr())
	const revoked = "11111111-1111-4111-8111-111111111111"
	s.AddSetupKey(revoked)
	s.RevokeSetupKey(revoked)

	steps := []struct {
		name     string
		setupKey string
		meta     *mgmtpb.PeerSystemMeta
		want     codes.Code
	}{
		{"unknown key without setup key", "", meta("alice"), codes.PermissionDenied},
		{"wrong setup key", "00000000-0000-4000-8000-000000000000", meta("alice"), codes.NotFound},
		{"revoked setup key", revoked, meta("alice"), codes.NotFound},
		{"no meta", testSetupKey, nil, codes.FailedPrecondition},
		{"empty hostname", testSetupKey, meta(""), codes.Internal},
		{"valid setup key registers", testSetupKey, meta("alice"), codes.OK},
		{"later login needs no setup key", "", meta("alice"), codes.OK},
		{"registered peer: setup key not checked", "nonsense", meta("alice"), codes.OK},
		{"registered peer: still no meta", "", nil, codes.FailedPrecondition},
		{"registered peer: still empty hostname", "", meta(""), codes.Internal},
	}
	for _, step := range steps {
		resp, err := alice.login(step.setupKey, step.meta)
		if got := status.Code(err); got != step.want {
			t.Fatalf("%s: Login = %v, want %v", step.name, err, step.want)
		}
		if err != nil {
			continue
		}
		if got := resp.GetPeerConfig().GetAddress(); got != "100.64.0.1/10" {
			t.Fatalf("%s: address = %q, want 100.64.0.1/10", step.name, got)
		}
		if !proto.Equal(resp.GetNetbirdConfig(), testConfig) {
			t.Fatalf("%s: netbirdConfig = %v, want %v", step.name, resp.GetNetbirdConfig(), testConfig)
		}
		if got := resp.GetPeerConfig().GetFqdn(); got != "alice."+DefaultDNSDomain {
			t.Fatalf("%s: fqdn = %q", step.name, got)
		}
	}
	if got := s.Logins(); got != len(steps) {
		t.Fatalf("Logins = %d, want %d", got, len(steps))
	}
	peers := s.Peers()
	if len(peers) != 1 || peers[0].Key != alice.pub() || peers[0].Hostname != "alice" ||
		peers[0].Address != netip.MustParseAddr("100.64.0.1") || peers[0].Version != "0.40.0" {
		t.Fatalf("Peers = %+v", peers)
	}

	// A second peer gets the next address; the revoked key stays refused.
	bob := newClient(t, s.Addr())
	if _, err := bob.login(revoked, meta("bob")); status.Code(err) != codes.NotFound {
		t.Fatalf("bob with revoked key: %v", err)
	}
	if got := bob.mustRegister("bob").GetPeerConfig().GetAddress(); got != "100.64.0.2/10" {
		t.Fatalf("bob address = %q", got)
	}
}

func TestLoginBadRequests(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t, s.Addr())
	server := c.serverKey()
	other, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	good, err := nbcrypto.Seal(c.priv, server, &mgmtpb.LoginRequest{SetupKey: testSetupKey, Meta: meta("c")})
	if err != nil {
		t.Fatal(err)
	}
	toOther, err := nbcrypto.Seal(c.priv, other.PublicKey(), &mgmtpb.LoginRequest{SetupKey: testSetupKey, Meta: meta("c")})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		req  *mgmtpb.EncryptedMessage
		want codes.Code
	}{
		{"no key", &mgmtpb.EncryptedMessage{Body: good}, codes.InvalidArgument},
		{"malformed key", &mgmtpb.EncryptedMessage{WgPubKey: "abc", Body: good}, codes.InvalidArgument},
		{"claims another sender", &mgmtpb.EncryptedMessage{WgPubKey: other.PublicKey().String(), Body: good}, codes.InvalidArgument},
		{"sealed to another key", &mgmtpb.EncryptedMessage{WgPubKey: c.pub().String(), Body: toOther}, codes.InvalidArgument},
		{"empty body", &mgmtpb.EncryptedMessage{WgPubKey: c.pub().String()}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := c.stub.Login(c.ctx, tt.req); status.Code(err) != tt.want {
				t.Fatalf("Login = %v, want %v", err, tt.want)
			}
		})
	}
	if len(s.Peers()) != 0 {
		t.Fatalf("bad requests registered peers: %+v", s.Peers())
	}
}

func TestRefuseLogins(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t, s.Addr())
	c.mustRegister("c")
	for _, code := range []codes.Code{codes.Unavailable, codes.PermissionDenied, codes.Internal} {
		s.RefuseLogins(code)
		if _, err := c.login("", meta("c")); status.Code(err) != code {
			t.Fatalf("refused with %v: Login = %v", code, err)
		}
	}
	s.RefuseLogins(codes.OK)
	if _, err := c.login("", meta("c")); err != nil {
		t.Fatalf("Login after RefuseLogins(OK): %v", err)
	}
}

func TestGetServerKeyAndHealth(t *testing.T) {
	s := startServer(t, Config{})
	c := newClient(t, s.Addr())
	resp, err := c.stub.GetServerKey(c.ctx, &mgmtpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetKey() != s.ServerKey().String() {
		t.Fatalf("key = %s, want %s", resp.GetKey(), s.ServerKey())
	}
	if resp.GetExpiresAt() == nil {
		t.Fatal("expiresAt not set")
	}
	if _, err := c.stub.IsHealthy(c.ctx, &mgmtpb.Empty{}); err != nil {
		t.Fatalf("isHealthy: %v", err)
	}
}

func TestNewSetupKey(t *testing.T) {
	uuid := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
	seen := map[string]bool{}
	for range 50 {
		k := NewSetupKey()
		if !uuid.MatchString(k) {
			t.Fatalf("NewSetupKey = %q, not an upper-case UUIDv4", k)
		}
		if seen[k] {
			t.Fatalf("NewSetupKey repeated %q", k)
		}
		seen[k] = true
	}
}

func TestDNSLabel(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice-Laptop", "alice-laptop"},
		{"host.example.com", "host"},
		{"my_box 2", "my-box-2"},
		{"--x--", "x"},
		{"ÄÖ", "peer"},
		{"", "peer"},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
	}
	for _, tt := range tests {
		if got := dnsLabel(tt.in); got != tt.want {
			t.Errorf("dnsLabel(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestDuplicateHostnamesGetUniqueLabels(t *testing.T) {
	s := startServer(t, Config{})
	want := []string{"box", "box-1", "box-2"}
	for i := range want {
		newClient(t, s.Addr()).mustRegister("box")
		if got := s.Peers()[i].FQDN; got != want[i]+"."+DefaultDNSDomain {
			t.Fatalf("peer %d fqdn = %q, want %s", i, got, want[i])
		}
	}
}
