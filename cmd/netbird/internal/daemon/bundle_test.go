package daemon

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/nbfsm/nbfsm/internal/config"
	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
)

const (
	bundleTestKey = "qEh6uL1QfL8A3o3tdHuMDtDaC3BQ3iJYZ3m6ZXvsI0o=" // test only
	bundleTestPSK = "c2VjcmV0LXByZXNoYXJlZC1rZXktdGVzdC1vbmx5LTA=" // test only
)

// TestBundle: a bundle of a daemon with no engine holds every part, mode
// 0600, the log's tail from a line's start, and none of the config's
// secrets; a log that cannot be read is a line in the bundle, not a
// failure.
func TestBundle(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	file := `{"PrivateKey":"` + bundleTestKey + `","PreSharedKey":"` + bundleTestPSK +
		`","SSHKey":"sshsecret","ManagementURL":"http://127.0.0.1:1","WgIface":"wt9","DisableAutoConnect":true}`
	if err := os.WriteFile(cfgPath, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "client.log")
	long := strings.Repeat("x", BundleLogMax-20) // the tail starts inside the first line
	if err := os.WriteFile(logPath, []byte("first line, cut\n"+long+"\nlast line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, logFile string
		logWant       func(string) bool // nil: no client.log entry
	}{
		{"log file", logPath, func(s string) bool {
			return strings.HasPrefix(s, "xxx") && strings.HasSuffix(s, "x\nlast line\n") && !strings.Contains(s, "first line")
		}},
		{"missing log file", filepath.Join(dir, "none.log"), func(s string) bool { return strings.HasPrefix(s, "unavailable: ") }},
		{"no log file", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := New(Options{ConfigPath: cfgPath, LogFile: tc.logFile})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			path, err := d.Bundle(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
				t.Fatalf("bundle %s: %v, mode %v", path, err, fi.Mode())
			}
			files, err := ReadBundle(path)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n := range files {
				names = append(names, n)
			}
			sort.Strings(names)
			want := "config.json debug.json events.jsonl goroutines.txt status.json version.txt"
			if tc.logWant != nil {
				want = "client.log " + want
			}
			if strings.Join(names, " ") != want {
				t.Fatalf("entries %v, want %s", names, want)
			}
			if tc.logWant != nil && !tc.logWant(files["client.log"]) {
				t.Errorf("client.log: %.200q…", files["client.log"])
			}
			for _, secret := range []string{bundleTestKey, bundleTestPSK, "sshsecret"} {
				for n, s := range files {
					if strings.Contains(s, secret) {
						t.Errorf("%s holds a secret", n)
					}
				}
			}
			for n, want := range map[string]string{
				"config.json":    `"WgIface": "wt9"`,
				"version.txt":    "nbfsm ",
				"goroutines.txt": "goroutine profile:",
			} {
				if !strings.Contains(files[n], want) {
					t.Errorf("%s lacks %q:\n%s", n, want, files[n])
				}
			}
			var st daemonpb.StatusResponse
			if err := protojson.Unmarshal([]byte(files["status.json"]), &st); err != nil || st.GetInterfaceName() != "wt9" {
				t.Errorf("status.json: %v, interface %q", err, st.GetInterfaceName())
			}
			if err := protojson.Unmarshal([]byte(files["debug.json"]), &daemonpb.DebugResponse{}); err != nil {
				t.Errorf("debug.json: %v", err)
			}
			if !strings.Contains(files["config.json"], `"PreSharedKey": "`+config.Hidden+`"`) {
				t.Errorf("config.json does not say the preshared key is set:\n%s", files["config.json"])
			}
		})
	}
}
