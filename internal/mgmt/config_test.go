package mgmt

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/nbfsm/nbfsm/internal/grpcdial"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

func TestConvertConfig(t *testing.T) {
	signal := &mgmtpb.HostConfig{Uri: "198.18.0.1:10000", Protocol: mgmtpb.HostConfig_HTTP}
	tests := []struct {
		name        string
		in          *mgmtpb.NetbirdConfig
		want        Config
		wantSkipped int
	}{
		{
			name: "complete",
			in: &mgmtpb.NetbirdConfig{
				Signal: &mgmtpb.HostConfig{Uri: "signal.example:443", Protocol: mgmtpb.HostConfig_HTTPS},
				Stuns:  []*mgmtpb.HostConfig{{Uri: "stun:198.18.0.1:3478"}, {Uri: "stuns:stun.example:5349"}},
				Turns: []*mgmtpb.ProtectedHostConfig{{
					HostConfig: &mgmtpb.HostConfig{Uri: "turn:198.18.0.1:3478?transport=udp"}, User: "u", Password: "secret",
				}},
				Relay: &mgmtpb.RelayConfig{Urls: []string{"rels://relay.example:443", "rel://198.18.0.1:80"}, TokenPayload: "p", TokenSignature: "s"},
			},
			want: Config{
				Signal: HostConfig{URI: "signal.example:443", Protocol: ProtocolHTTPS},
				STUNs:  []HostConfig{{URI: "stun:198.18.0.1:3478"}, {URI: "stuns:stun.example:5349"}},
				TURNs:  []TURNConfig{{URI: "turn:198.18.0.1:3478?transport=udp", User: "u", Password: "secret"}},
				Relay:  RelayConfig{URLs: []string{"rels://relay.example:443", "rel://198.18.0.1:80"}, TokenPayload: "p", TokenSignature: "s"},
			},
		},
		{
			name: "bad entries skipped",
			in: &mgmtpb.NetbirdConfig{
				Signal: signal,
				Stuns:  []*mgmtpb.HostConfig{{Uri: "198.18.0.1:3478"}, {Uri: "turn:198.18.0.1:3478"}, {Uri: "stun:198.18.0.1:3478"}},
				Turns: []*mgmtpb.ProtectedHostConfig{
					{HostConfig: &mgmtpb.HostConfig{Uri: "stun:198.18.0.1:3478"}},
					{},
				},
				Relay: &mgmtpb.RelayConfig{Urls: []string{"https://relay.example", "rel://", "rels://relay.example:443"}},
			},
			want: Config{
				Signal: HostConfig{URI: "198.18.0.1:10000", Protocol: ProtocolHTTP},
				STUNs:  []HostConfig{{URI: "stun:198.18.0.1:3478"}},
				Relay:  RelayConfig{URLs: []string{"rels://relay.example:443"}},
			},
			wantSkipped: 6,
		},
		{
			name: "no signal: a partial update",
			in:   &mgmtpb.NetbirdConfig{Relay: &mgmtpb.RelayConfig{Urls: []string{"rels://relay.example:443"}, TokenPayload: "p2", TokenSignature: "s2"}},
			want: Config{Relay: RelayConfig{URLs: []string{"rels://relay.example:443"}, TokenPayload: "p2", TokenSignature: "s2"}},
		},
		{
			name:        "signal with scheme",
			in:          &mgmtpb.NetbirdConfig{Signal: &mgmtpb.HostConfig{Uri: "https://signal.example:443", Protocol: mgmtpb.HostConfig_HTTPS}},
			want:        Config{},
			wantSkipped: 1,
		},
		{
			name:        "signal over UDP",
			in:          &mgmtpb.NetbirdConfig{Signal: &mgmtpb.HostConfig{Uri: "198.18.0.1:10000", Protocol: mgmtpb.HostConfig_UDP}},
			want:        Config{},
			wantSkipped: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := convertConfig(tt.in)
			if len(got.Skipped) != tt.wantSkipped {
				t.Fatalf("skipped %v, want %d", got.Skipped, tt.wantSkipped)
			}
			for _, s := range got.Skipped {
				if !errors.Is(s.Reason, ErrBadHost) {
					t.Errorf("skip reason %v is not ErrBadHost", s.Reason)
				}
			}
			got.Skipped = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	turn := TURNConfig{URI: "turn:198.18.0.1:3478", User: "alice", Password: "hunter2-secret"}
	relay := RelayConfig{URLs: []string{"rels://r.example:443"}, TokenPayload: "payload-secret", TokenSignature: "sig-secret"}
	cfg := Config{TURNs: []TURNConfig{turn}, Relay: relay}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%d"} {
		for _, v := range []any{turn, &turn, relay, cfg, &cfg, LoginResult{Config: cfg}} {
			s := fmt.Sprintf(verb, v)
			for _, secret := range []string{"hunter2-secret", "sig-secret", "payload-secret"} {
				if strings.Contains(s, secret) || strings.Contains(s, fmt.Sprintf("%x", secret)) {
					t.Fatalf("%s of %T printed a secret: %s", verb, v, s)
				}
			}
		}
	}
	if s := fmt.Sprint(turn); !strings.Contains(s, "alice") || !strings.Contains(s, "turn:198.18.0.1:3478") {
		t.Fatalf("TURN config printed without URI or user: %s", s)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		in      string
		target  string
		useTLS  bool
		wantErr bool
	}{
		{"http://127.0.0.1:33073", "127.0.0.1:33073", false, false},
		{"https://api.netbird.io:443", "api.netbird.io:443", true, false},
		{"https://api.netbird.io", "api.netbird.io:443", true, false},
		{"http://mgmt.example/", "mgmt.example:80", false, false},
		{"http://[::1]:33073", "[::1]:33073", false, false},
		{"", "", false, true},
		{"127.0.0.1:33073", "", false, true},
		{"grpc://127.0.0.1:33073", "", false, true},
		{"http://", "", false, true},
		{"http://:33073", "", false, true},
		{"http://host:0", "", false, true},
		{"http://host:99999", "", false, true},
		{"http://user:pw@host:1", "", false, true},
		{"http://host:1/api", "", false, true},
		{"http://host:1?x=y", "", false, true},
		{"http://host:1#f", "", false, true},
		{"http://host\x00:1", "", false, true},
	}
	for _, tt := range tests {
		target, useTLS, err := parseURL(tt.in)
		if tt.wantErr {
			if !errors.Is(err, ErrBadURL) {
				t.Errorf("parseURL(%q) = %q, %v; want ErrBadURL", tt.in, target, err)
			}
			continue
		}
		if err != nil || target != tt.target || useTLS != tt.useTLS {
			t.Errorf("parseURL(%q) = %q, %v, %v; want %q, %v", tt.in, target, useTLS, err, tt.target, tt.useTLS)
		}
	}
}

func TestMetaProto(t *testing.T) {
	m := Meta{Hostname: "box", GoOS: "linux", Kernel: "Linux", OS: "Debian GNU/Linux", OSVersion: "13", KernelVersion: "6.12.0", Platform: "x86_64"}
	pb := m.proto()
	if pb.GetHostname() != "box" || pb.GetGoOS() != "linux" || pb.GetKernel() != "Linux" ||
		pb.GetOS() != "Debian GNU/Linux" || pb.GetOSVersion() != "13" || pb.GetKernelVersion() != "6.12.0" ||
		pb.GetPlatform() != "x86_64" {
		t.Fatalf("meta %v", pb)
	}
	if pb.GetNetbirdVersion() != version.Reported || pb.GetSyncMessageVersion() != 0 ||
		!slices.Equal(pb.GetCapabilities(), []mgmtpb.PeerCapability{mgmtpb.PeerCapability_PeerCapabilitySourcePrefixes, mgmtpb.PeerCapability_PeerCapabilityIPv6Overlay}) {
		t.Fatalf("version %q, syncMessageVersion %d, capabilities %v", pb.GetNetbirdVersion(), pb.GetSyncMessageVersion(), pb.GetCapabilities())
	}
	if f := pb.GetFlags(); f == nil || f.GetDisableFirewall() || f.GetBlockInbound() {
		t.Fatalf("flags %v", f)
	}
	if f := (Meta{DisableFirewall: true, BlockInbound: true}).proto().GetFlags(); !f.GetDisableFirewall() || !f.GetBlockInbound() {
		t.Fatalf("flags %v", f)
	}
	if h := (Meta{}).proto().GetHostname(); h != FallbackHostname {
		t.Fatalf("empty hostname sent as %q", h)
	}
}

func TestDefaultMeta(t *testing.T) {
	m := DefaultMeta()
	if m.Hostname == "" || m.GoOS != runtime.GOOS || m.OS == "" {
		t.Fatalf("DefaultMeta() = %+v", m)
	}
	if m.Flags != NbfsmFlags || m.Flags.LazyConns {
		t.Errorf("DefaultMeta flags %+v, want %+v (no DNS, no routes, eager)", m.Flags, NbfsmFlags)
	}
}

func TestParseOSRelease(t *testing.T) {
	name, ver := parseOSRelease("PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"13\"\n# comment\nbroken line\n")
	if name != "Debian GNU/Linux" || ver != "13" {
		t.Fatalf("got %q %q", name, ver)
	}
	if name, ver := parseOSRelease(""); name != "" || ver != "" {
		t.Fatalf("empty file gave %q %q", name, ver)
	}
}

func TestProtocolString(t *testing.T) {
	for p, want := range map[Protocol]string{ProtocolUDP: "UDP", ProtocolTCP: "TCP", ProtocolHTTP: "HTTP", ProtocolHTTPS: "HTTPS", ProtocolDTLS: "DTLS", 9: "Protocol(9)"} {
		if p.String() != want {
			t.Errorf("%d: %q, want %q", int(p), p.String(), want)
		}
	}
	if !(HostConfig{Protocol: ProtocolHTTPS}).TLS() || (HostConfig{Protocol: ProtocolHTTP}).TLS() {
		t.Fatal("TLS() wrong")
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrUnavailable, true},
		{fmt.Errorf("%w: %w", ErrStreamClosed, ErrUnavailable), true},
		{fmt.Errorf("%w: eof", ErrStreamClosed), true},
		{fmt.Errorf("%w: %w", ErrStreamClosed, ErrNotRegistered), false},
		{ErrNotRegistered, false},
		{ErrSetupKeyRejected, false},
		{ErrRequestRejected, false},
		{ErrBadResponse, false},
		{ErrClosed, false},
		{ErrBadURL, false},
		{errors.New("other"), false},
	}
	for _, tt := range tests {
		if got := grpcdial.Retryable(tt.err); got != tt.want {
			t.Errorf("grpcdial.Retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestCompactPrefix(t *testing.T) {
	v6 := netip.MustParsePrefix("fd00:6e62:6673::2/64")
	tests := []struct {
		name    string
		b       []byte
		want    netip.Prefix
		wantErr bool
	}{
		{"none", nil, netip.Prefix{}, false},
		{"ipv6", CompactPrefix(v6), v6, false},
		{"ipv6 /128", append(netip.MustParseAddr("fde5::7").AsSlice(), 128), netip.MustParsePrefix("fde5::7/128"), false},
		{"ipv4 form", []byte{100, 64, 0, 7, 10}, netip.MustParsePrefix("100.64.0.7/10"), false},
		{"prefix too long", append(netip.MustParseAddr("fde5::7").AsSlice(), 129), netip.Prefix{}, true},
		{"bad length", []byte{1, 2, 3}, netip.Prefix{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCompactPrefix(tt.b)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("parse = %v, %v; want %v (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
	pc, err := convertPeerConfig(&mgmtpb.PeerConfig{Address: "100.64.0.2/10", AddressV6: CompactPrefix(v6)})
	if err != nil || pc.AddressV6 != v6 {
		t.Errorf("convertPeerConfig: %v %v", pc.AddressV6, err)
	}
	if _, err := convertPeerConfig(&mgmtpb.PeerConfig{Address: "100.64.0.2/10", AddressV6: []byte{1}}); !errors.Is(err, ErrBadPeerConfig) {
		t.Errorf("bad address_v6: %v", err)
	}
}
