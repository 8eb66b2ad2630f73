package daemon

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/nbfsm/nbfsm/internal/config"
	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestParseAddr(t *testing.T) {
	tests := []struct{ in, network, addr, err string }{
		{"", "unix", "/var/run/netbird.sock", ""},
		{"unix:///tmp/x.sock", "unix", "/tmp/x.sock", ""},
		{"tcp://127.0.0.1:41731", "tcp", "127.0.0.1:41731", ""},
		{"unix://relative.sock", "", "", "absolute"},
		{"tcp://nohost", "", "", "tcp://host:port"},
		{"http://x", "", "", "want unix:///path or tcp://host:port"},
	}
	for _, tt := range tests {
		n, a, err := ParseAddr(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || n != tt.network || a != tt.addr {
			t.Errorf("%q: %s %s %v", tt.in, n, a, err)
		}
	}
}

func TestListen(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "run", "netbird.sock")
	l, err := Listen("unix://"+sock, "")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(sock)
	if err != nil || st.Mode().Perm() != 0o600 || st.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v (%v)", st.Mode(), err)
	}
	if _, err := Listen("unix://"+sock, ""); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Fatalf("second daemon on a live socket: %v", err)
	}
	// A stale socket (its daemon died) is replaced: make one that nobody
	// serves by closing a listener without removing the file.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = l.Close()
	l, err = Listen("unix://"+sock, "")
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	_ = l.Close()
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("socket left after close: %v", err)
	}
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen("unix://"+plain, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen over a plain file: %v", err)
	}
	if _, err := Listen("unix://"+filepath.Join(dir, "g.sock"), "no-such-group-nbfsm"); err == nil {
		t.Fatal("unknown socket group accepted")
	}
}

func ptr[T any](v T) *T { return &v }

// testPSK is a preshared key (a WireGuard key, base64).
const testPSK = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk="

func TestSettings(t *testing.T) {
	tests := []struct {
		name    string
		s       *daemonpb.Settings
		err     string
		changed bool
		check   func(c *config.Config) bool
	}{
		{name: "nothing", s: &daemonpb.Settings{}},
		{name: "management URL", s: &daemonpb.Settings{ManagementUrl: ptr("https://nb.example.com:443")}, changed: true,
			check: func(c *config.Config) bool { return c.ManagementURL.S == "https://nb.example.com:443" }},
		{name: "same value is no change", s: &daemonpb.Settings{WireguardPort: ptr(int32(51820))}},
		{name: "port 0", s: &daemonpb.Settings{WireguardPort: ptr(int32(0))}, changed: true,
			check: func(c *config.Config) bool { return c.WgPort == 0 }},
		{name: "monitor off", s: &daemonpb.Settings{NetworkMonitor: ptr(false)}, changed: true,
			check: func(c *config.Config) bool { return !c.MonitorEnabled() }},
		{name: "auto-connect is no engine change", s: &daemonpb.Settings{DisableAutoConnect: ptr(true)},
			check: func(c *config.Config) bool { return c.DisableAutoConnect }},
		{name: "block inbound", s: &daemonpb.Settings{BlockInbound: ptr(true)}, changed: true,
			check: func(c *config.Config) bool { return c.BlockInbound }},
		{name: "preshared key", s: &daemonpb.Settings{PresharedKey: ptr(testPSK)}, changed: true,
			check: func(c *config.Config) bool { return c.PreSharedKey == testPSK }},
		{name: "bad preshared key", s: &daemonpb.Settings{PresharedKey: ptr("c2VjcmV0")}, err: "--preshared-key"},
		{name: "bad URL", s: &daemonpb.Settings{ManagementUrl: ptr("ftp://x")}, err: "--management-url"},
		{name: "bad port", s: &daemonpb.Settings{WireguardPort: ptr(int32(70000))}, err: "--wireguard-port"},
		{name: "bad mtu", s: &daemonpb.Settings{Mtu: ptr(int32(10))}, err: "--mtu"},
		{name: "long name", s: &daemonpb.Settings{InterfaceName: ptr("a-very-long-interface")}, err: "--interface-name"},
	}
	for _, tt := range tests {
		d, err := New(Options{ConfigPath: filepath.Join(t.TempDir(), "config.json")})
		if err != nil {
			t.Fatal(err)
		}
		before := d.Config()
		changed, err := d.updateConfig(tt.s)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: err %v", tt.name, err)
			}
			if tt.s.PresharedKey != nil && strings.Contains(err.Error(), *tt.s.PresharedKey) {
				t.Errorf("%s: the error quotes the key: %v", tt.name, err)
			}
			if after := d.Config(); after.WgPort != before.WgPort || after.ManagementURL != before.ManagementURL {
				t.Errorf("%s: config changed on error", tt.name)
			}
			continue
		}
		if err != nil || changed != tt.changed {
			t.Errorf("%s: changed %v err %v", tt.name, changed, err)
		}
		c := d.Config()
		if tt.check != nil && !tt.check(&c) {
			t.Errorf("%s: config %+v", tt.name, c)
		}
		// Saved: a new daemon reads the same, with the same key.
		d2, err := New(Options{ConfigPath: d.o.ConfigPath})
		if err != nil || d2.Config().PrivateKey != before.PrivateKey || d2.Config().WgPort != c.WgPort {
			t.Errorf("%s: reloaded %+v (%v)", tt.name, d2.Config(), err)
		}
	}
}

// TestNewRefusesCorruptConfig: no daemon with a key of its own invention.
func TestNewRefusesCorruptConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{ConfigPath: path}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("corrupt config: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "{garbage" {
		t.Fatalf("config rewritten: %q", b)
	}
}
