package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

const testKey = "qEh6uL1QfL8A3o3tdHuMDtDaC3BQ3iJYZ3m6ZXvsI0o=" // a valid private key, test only

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		content *string // nil: no file
		mode    os.FileMode
		dir     bool // the path is a directory: unreadable even for root
		wantErr error
		check   func(t *testing.T, c *Config)
	}{
		{name: "missing: created with a new key", check: func(t *testing.T, c *Config) {
			if _, err := c.Key(); err != nil || c.WgIface != "wt0" || c.WgPort != 51820 || c.MTU != 1280 ||
				c.ManagementURL.S != DefaultManagementURL || !c.MonitorEnabled() {
				t.Fatalf("defaults: %+v (key err %v)", c, err)
			}
		}},
		{name: "corrupt JSON", content: ptr(`{"PrivateKey": "`), wantErr: ErrCorrupt},
		{name: "not an object", content: ptr(`[1,2]`), wantErr: ErrCorrupt},
		{name: "no key", content: ptr(`{"WgIface":"wt0"}`), wantErr: ErrCorrupt},
		{name: "bad key", content: ptr(`{"PrivateKey":"bm90IGEga2V5"}`), wantErr: ErrCorrupt},
		{name: "bad port", content: ptr(`{"PrivateKey":"` + testKey + `","WgPort":70000}`), wantErr: ErrCorrupt},
		{name: "unreadable", content: ptr(`{"PrivateKey":"` + testKey + `"}`), mode: 0o000, wantErr: ErrRead},
		{name: "unreadable: a directory", dir: true, wantErr: ErrRead},
		{name: "official object URL", content: ptr(`{"PrivateKey":"` + testKey + `","ManagementURL":{"Scheme":"https","Opaque":"","User":null,"Host":"nb.example.com:443","Path":"","RawPath":"","ForceQuery":false,"RawQuery":"","Fragment":"","RawFragment":""},"WgIface":"wt1","WgPort":51821,"MTU":1400,"NetworkMonitor":false,"DisableAutoConnect":true}`),
			check: func(t *testing.T, c *Config) {
				if c.ManagementURL.S != "https://nb.example.com:443" || c.WgIface != "wt1" || c.WgPort != 51821 || c.MTU != 1400 ||
					c.MonitorEnabled() || !c.DisableAutoConnect {
					t.Fatalf("got %+v", c)
				}
			}},
		{name: "old field forms: string URL, other case, unknown fields", content: ptr(`{"privatekey":"` + testKey + `","ManagementURL":"http://127.0.0.1:33073","wgport":0,"SSHKey":"x","AdminURL":{"Scheme":"https","Host":"app.netbird.io:443"}}`),
			check: func(t *testing.T, c *Config) {
				if c.PrivateKey != testKey || c.ManagementURL.S != "http://127.0.0.1:33073" || c.WgPort != 0 || c.extra["SSHKey"] == nil || c.extra["AdminURL"] == nil {
					t.Fatalf("got %+v extra %v", c, c.extra)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "netbird", "config.json")
			if tt.dir {
				if err := os.MkdirAll(path, 0o755); err != nil {
					t.Fatal(err)
				}
				_, _, err := Load(path)
				if !errors.Is(err, ErrRead) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err %v", err)
				}
				return
			}
			if tt.content != nil {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				mode := tt.mode
				if mode == 0 {
					mode = 0o600
				}
				if err := os.WriteFile(path, []byte(*tt.content), mode); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(path, mode); err != nil {
					t.Fatal(err)
				}
				if tt.mode == 0o000 && os.Geteuid() == 0 {
					t.Skip("root reads any file")
				}
			}
			c, created, err := Load(path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("err %v, want %v naming %s", err, tt.wantErr, path)
				}
				if strings.Contains(err.Error(), testKey) {
					t.Fatalf("error shows the key: %v", err)
				}
				_ = os.Chmod(path, 0o600)
				b, rerr := os.ReadFile(path)
				if rerr != nil || string(b) != *tt.content {
					t.Fatalf("file changed: %q (%v)", b, rerr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if created != (tt.content == nil) {
				t.Fatalf("created %v", created)
			}
			tt.check(t, c)
			// A rewrite keeps the key, the unknown fields, and mode 0600; a
			// second load reads the same.
			if err := c.Save(path); err != nil {
				t.Fatal(err)
			}
			st, err := os.Stat(path)
			if err != nil || st.Mode().Perm() != 0o600 {
				t.Fatalf("mode %v (%v)", st.Mode(), err)
			}
			c2, created, err := Load(path)
			if err != nil || created || c2.PrivateKey != c.PrivateKey || c2.ManagementURL != c.ManagementURL || len(c2.extra) != len(c.extra) {
				t.Fatalf("reload: %+v created %v err %v", c2, created, err)
			}
			b, _ := os.ReadFile(path)
			if !strings.Contains(string(b), `"Scheme"`) {
				t.Fatalf("ManagementURL not written in the official object form:\n%s", b)
			}
			ents, _ := os.ReadDir(filepath.Dir(path))
			if len(ents) != 1 {
				t.Fatalf("temp files left: %v", ents)
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestApplyEnv(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
		port int
	}{
		{name: "default", want: "https://api.netbird.io:443", port: 51820},
		{name: "env", env: map[string]string{"NB_MANAGEMENT_URL": "http://env:1", "NB_WIREGUARD_PORT": "0"}, want: "http://env:1", port: 0},
		{name: "flag wins", args: []string{"--management-url", "http://flag:2", "--wireguard-port=7"},
			env: map[string]string{"NB_MANAGEMENT_URL": "http://env:1", "NB_WIREGUARD_PORT": "0"}, want: "http://flag:2", port: 7},
		{name: "short flag wins", args: []string{"-m", "http://flag:3"}, env: map[string]string{"NB_MANAGEMENT_URL": "http://env:1"},
			want: "http://flag:3", port: 51820},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			u := fs.StringP("management-url", "m", "https://api.netbird.io:443", "")
			p := fs.Int("wireguard-port", 51820, "")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := ApplyEnv(fs, func(k string) string { return tt.env[k] }); err != nil {
				t.Fatal(err)
			}
			if *u != tt.want || *p != tt.port {
				t.Fatalf("got %s %d", *u, *p)
			}
			if fs.Changed("management-url") != (tt.want != "https://api.netbird.io:443") {
				t.Fatalf("Changed not set")
			}
		})
	}
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.Int("mtu", 1280, "")
	if err := ApplyEnv(fs, func(string) string { return "big" }); err == nil || !strings.Contains(err.Error(), "NB_MTU") {
		t.Fatalf("bad env value: %v", err)
	}
}

// TestRedacted: a bundle's config shows every known setting, the secrets
// only as set, and unknown fields (the official SSHKey) by name only.
func TestRedacted(t *testing.T) {
	const psk = "c2VjcmV0LXByZXNoYXJlZC1rZXktdGVzdC1vbmx5LTA="
	for _, tc := range []struct {
		name, file string
		hidden     []string // fields shown as Hidden
		absent     []string // fields not in the output
	}{
		{name: "secrets and an unknown field",
			file:   `{"PrivateKey":"` + testKey + `","PreSharedKey":"` + psk + `","SSHKey":"-----BEGIN PRIVATE sshsecret","WgIface":"wt7","DisableDNS":true}`,
			hidden: []string{"PrivateKey", "PreSharedKey", "SSHKey"}},
		{name: "no preshared key", file: `{"PrivateKey":"` + testKey + `","WgIface":"wt7","DisableDNS":true}`,
			hidden: []string{"PrivateKey"}, absent: []string{"PreSharedKey", "SSHKey"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse([]byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.Redacted()
			if err != nil {
				t.Fatal(err)
			}
			out := string(b)
			for _, secret := range []string{testKey, psk, "sshsecret"} {
				if strings.Contains(out, secret) {
					t.Errorf("secret %q shown:\n%s", secret, out)
				}
			}
			for _, f := range tc.hidden {
				if !strings.Contains(out, `"`+f+`": "`+Hidden+`"`) {
					t.Errorf("%s not shown as hidden:\n%s", f, out)
				}
			}
			for _, f := range tc.absent {
				if strings.Contains(out, `"`+f+`"`) {
					t.Errorf("%s shown:\n%s", f, out)
				}
			}
			for _, want := range []string{`"WgIface": "wt7"`, `"DisableDNS": true`, `"MTU": 1280`} {
				if !strings.Contains(out, want) {
					t.Errorf("lacks %s:\n%s", want, out)
				}
			}
			if again, _ := c.Marshal(); !strings.Contains(string(again), testKey) {
				t.Error("Redacted changed the config itself")
			}
		})
	}
}
