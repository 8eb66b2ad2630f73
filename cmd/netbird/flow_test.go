package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/daemon"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/config"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// Failure deadlines of the flow tests, never expectations.
const (
	flowConnectWait = 60 * time.Second
	flowPingWait    = 30 * time.Second
)

// flowDaemon is one `netbird service run` in this process: netstack mode,
// its own config and socket in a temp dir, a free WireGuard port.
type flowDaemon struct {
	name   string
	dir    string
	addr   string
	d      *daemon.Daemon
	cancel context.CancelFunc
	done   chan error
}

// writeTestConfig writes a config that points at the test network before
// the daemon first starts (so that auto-connect never dials the default
// management URL on the internet).
func writeTestConfig(t *testing.T, path, mgmtURL string) *config.Config {
	t.Helper()
	c, err := config.Defaults()
	if err != nil {
		t.Fatal(err)
	}
	c.ManagementURL.S, c.WgPort = mgmtURL, 0
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	return c
}

func startFlowDaemon(t *testing.T, name, dir string, log *zap.Logger) *flowDaemon {
	t.Helper()
	f := &flowDaemon{name: name, dir: dir, addr: "unix://" + filepath.Join(dir, "netbird.sock"), done: make(chan error, 1)}
	d, err := daemon.New(daemon.Options{ConfigPath: filepath.Join(dir, "config.json"), Netstack: true, Logger: log.Named(name)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := daemon.Listen(f.addr, "")
	if err != nil {
		t.Fatal(err)
	}
	f.d = d
	var ctx context.Context
	ctx, f.cancel = context.WithCancel(context.Background())
	if err := d.AutoConnect(); err != nil {
		t.Fatal(err)
	}
	go func() { f.done <- d.Serve(ctx, l) }()
	t.Cleanup(f.stop)
	return f
}

// stop is SIGTERM: the daemon stops its engine and removes its socket.
func (f *flowDaemon) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	<-f.done
}

// cli runs one netbird command against the daemon, in this process.
func (f *flowDaemon) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--daemon-addr", f.addr))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func (f *flowDaemon) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := f.cli(t, args...)
	if err != nil {
		t.Fatalf("%s: netbird %s: %v\n%s", f.name, strings.Join(args, " "), err, out)
	}
	return out
}

func (f *flowDaemon) status(t *testing.T) statusDoc {
	t.Helper()
	var doc statusDoc
	out := f.mustCLI(t, "status", "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%s: status --json: %v\n%s", f.name, err, out)
	}
	return doc
}

// waitPeerConnected reads the daemon's trace until a peer machine enters
// connected (the subscription was taken before the connect started).
func waitPeerConnected(t *testing.T, name string, sub *fsm.Subscription) {
	t.Helper()
	timer := time.NewTimer(flowConnectWait)
	defer timer.Stop()
	for {
		select {
		case r := <-sub.C():
			if r.Kind == peerfsm.Kind && strings.HasPrefix(string(r.To), string(peerfsm.Connected)) {
				return
			}
		case <-timer.C:
			t.Fatalf("%s: no peer connected within %v", name, flowConnectWait)
		}
	}
}

func ping(t *testing.T, from, to *flowDaemon) time.Duration {
	t.Helper()
	c := from.d.Client()
	if c == nil || c.Net() == nil {
		t.Fatalf("%s: no netstack", from.name)
	}
	src, dst := overlay(t, from), overlay(t, to)
	ctx, cancel := context.WithTimeout(context.Background(), flowPingWait)
	defer cancel()
	rtt, err := netping.Ping(ctx, c.Net(), src, dst, 200*time.Millisecond)
	if err != nil {
		t.Fatalf("ping %s → %s: %v", from.name, to.name, err)
	}
	return rtt
}

func overlay(t *testing.T, f *flowDaemon) netip.Addr {
	t.Helper()
	p, err := netip.ParsePrefix(f.status(t).NetbirdIP)
	if err != nil {
		t.Fatalf("%s: netbirdIp: %v", f.name, err)
	}
	return p.Addr()
}

// TestNetstackDaemonsFlow is the user's flow without root: two daemons
// (NB_USE_NETSTACK_MODE), `netbird up --setup-key` on each (a flag on one,
// NB_SETUP_KEY on the other), status --json shows the other peer Connected
// over P2P, ping crosses, down/up without a daemon restart, a restarted
// daemon keeps its key, logout deregisters.
func TestNetstackDaemonsFlow(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// Every daemon log line at debug level, to check no secret is in it.
	var logs lockedBuf
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Core(),
		zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), &logs, zap.DebugLevel)))
	var ds []*flowDaemon
	for _, name := range []string{"a", "b"} {
		dir := t.TempDir()
		writeTestConfig(t, filepath.Join(dir, "config.json"), n.ManagementURL())
		ds = append(ds, startFlowDaemon(t, name, dir, log))
	}
	a, b := ds[0], ds[1]
	sub := a.d.Ring().Subscribe(4096)
	defer sub.Close()

	// Before up: the daemon answers, the engine waits for a login.
	if _, err := a.cli(t, "status", "--check", "live"); err != nil {
		t.Fatalf("check live: %v", err)
	}
	out, err := a.cli(t, "up", "--wireguard-port", "0", "-n", "flow-a")
	if err == nil || !strings.Contains(err.Error(), "needs login") || !strings.Contains(err.Error(), "setup-key") {
		t.Fatalf("up without a setup key: %v\n%s", err, out)
	}
	if _, err := a.cli(t, "up", "--setup-key", "00000000-0000-4000-8000-000000000000"); err == nil ||
		!strings.Contains(err.Error(), "refused the setup key") {
		t.Fatalf("up with a wrong setup key: %v", err)
	}
	// One preshared key for the network: a gets it as a flag, b and f as
	// NB_PRESHARED_KEY; WireGuard carries nothing unless all applied it.
	pskKey, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	psk := pskKey.String()
	if _, err := a.cli(t, "up", "--preshared-key", "not-a-key"); err == nil || !strings.Contains(err.Error(), "--preshared-key") ||
		strings.Contains(err.Error(), "not-a-key") {
		t.Fatalf("up with a bad preshared key: %v", err)
	}
	if out := a.mustCLI(t, "up", "--setup-key", n.SetupKey(), "--wireguard-port", "0", "-n", "flow-a", "--preshared-key", psk); !strings.Contains(out, "Connected") {
		t.Fatalf("up a: %s", out)
	}
	t.Setenv("NB_SETUP_KEY", n.SetupKey())
	t.Setenv("NB_HOSTNAME", "flow-b")
	t.Setenv("NB_PRESHARED_KEY", psk)
	b.mustCLI(t, "up")
	waitPeerConnected(t, "a", sub)

	st := a.status(t)
	if st.Peers.Total != 1 || st.Peers.Details[0].Status != peerConnected || st.Peers.Details[0].ConnectionType != "P2P" ||
		!st.Management.Connected || !st.Signal.Connected {
		t.Fatalf("status of a: %+v", st)
	}
	if !strings.HasPrefix(st.Peers.Details[0].FQDN, "flow-b.") {
		t.Fatalf("peer fqdn %q, want flow-b.…", st.Peers.Details[0].FQDN)
	}
	if _, err := a.cli(t, "status", "--check", "startup"); err != nil {
		t.Fatalf("check startup: %v", err)
	}
	t.Logf("first ping a → b: %v", ping(t, a, b))
	t.Logf("ping b → a: %v", ping(t, b, a))

	// Prometheus metrics: the same counters.
	stopMetrics, bound, err := daemon.ServeMetrics("127.0.0.1:0", a.d, log)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + bound.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	stopMetrics()
	for _, want := range []string{`nbfsm_transitions_total{kind="peer",state="session.ice.connected.direct"} 1`,
		`nbfsm_peers{state="session.ice.connected.direct"} 1`, `nbfsm_events_dropped_stale_total{cause="generation"}`,
		`nbfsm_signal_messages_rejected_total{reason="decrypt"} 0`, `nbfsm_peer_send_failures_total 0`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s:\n%s", want, body)
		}
	}

	// up -F: a third client in this process, no daemon; a sees it.
	subF := a.d.Ring().Subscribe(4096)
	defer subF.Close()
	dirF := t.TempDir()
	writeTestConfig(t, filepath.Join(dirF, "config.json"), n.ManagementURL())
	t.Setenv("NB_USE_NETSTACK_MODE", "true")
	fgCtx, fgStop := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	fg := newRootCmd()
	fg.SetOut(pw)
	fg.SetErr(pw)
	fg.SetArgs([]string{"up", "-F", "-c", filepath.Join(dirF, "config.json"), "--log-file", filepath.Join(dirF, "client.log"),
		"--setup-key", n.SetupKey(), "-n", "flow-f"})
	fgDone := make(chan error, 1)
	go func() { fgDone <- fg.ExecuteContext(fgCtx); _ = pw.Close() }()
	line, _ := bufio.NewReader(pr).ReadString('\n')
	if !strings.HasPrefix(line, "Connected") {
		fgStop()
		t.Fatalf("up -F printed %q (err %v)", line, <-fgDone)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	waitPeerConnected(t, "a (to f)", subF)
	if st := a.status(t); st.Peers.Total != 2 {
		t.Fatalf("a sees %d peers with f up, want 2", st.Peers.Total)
	}
	fgStop()
	if err := <-fgDone; err != nil {
		t.Fatalf("up -F: %v", err)
	}

	// events and debug are views of the engine's trace and counters.
	if ev := a.mustCLI(t, "events"); !strings.Contains(ev, "--ice-connected--> session.ice.connected") {
		t.Fatalf("events lack the connect:\n%s", ev)
	}
	if dbg := a.mustCLI(t, "debug"); !strings.Contains(dbg, "dropped as stale") || !strings.Contains(dbg, "rejected by reason") {
		t.Fatalf("debug:\n%s", dbg)
	}

	// down / up: the same daemon, a new engine.
	a.mustCLI(t, "down")
	if a.d.Client() != nil {
		t.Fatal("engine still up after down")
	}
	if _, err := a.cli(t, "status", "--check", "ready"); err == nil {
		t.Fatal("check ready passes while down")
	}
	a.mustCLI(t, "up")
	waitPeerConnected(t, "a", sub)
	t.Logf("ping after down/up: %v", ping(t, a, b))

	// The config: mode 0600, the same key after a daemon restart.
	cfgPath := filepath.Join(a.dir, "config.json")
	before := a.status(t).PublicKey
	a.stop()
	if _, err := os.Stat(strings.TrimPrefix(a.addr, "unix://")); !os.IsNotExist(err) {
		t.Fatalf("socket left after stop: %v", err)
	}
	st0, err := os.Stat(cfgPath)
	if err != nil || st0.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v (%v)", st0.Mode(), err)
	}
	a = startFlowDaemon(t, "a2", a.dir, log) // auto-connects: registered already
	sub2 := a.d.Ring().Subscribe(4096)
	defer sub2.Close()
	if got := a.status(t).PublicKey; got != before {
		t.Fatalf("public key after restart %s, want %s", got, before)
	}
	a.mustCLI(t, "up")
	if a.status(t).Peers.Connected != 1 {
		waitPeerConnected(t, "a2", sub2)
	}
	t.Logf("ping after daemon restart: %v", ping(t, a, b))

	// Secrets never in logs, status or events.
	var cfgA config.Config
	if c, _, err := config.Load(cfgPath); err == nil {
		cfgA = *c
	}
	shown := logs.String() + a.mustCLI(t, "status", "-d") + a.mustCLI(t, "status", "--json") + a.mustCLI(t, "events") +
		a.mustCLI(t, "debug", "--json") + bundleText(t, a.mustCLI(t, "debug", "bundle"))
	if !strings.Contains(shown, "engine started") || !strings.Contains(shown, "transition") {
		t.Fatal("the daemon's debug log was not captured")
	}
	if cfgA.PreSharedKey != psk {
		t.Errorf("config PreSharedKey not the one given to up")
	}
	for name, secret := range map[string]string{"setup key": n.SetupKey(), "private key": cfgA.PrivateKey,
		"preshared key": psk, "preshared key (hex)": fmt.Sprintf("%x", pskKey[:])} {
		if secret == "" || strings.Contains(shown, secret) {
			t.Errorf("%s shown (or unknown): %q", name, secret)
		}
	}

	// logout: deregistered; up without a key needs a login again.
	a.mustCLI(t, "logout")
	for _, p := range n.Mgmt.Peers() {
		if p.Key.String() == before {
			t.Fatalf("a still registered after logout: %+v", n.Mgmt.Peers())
		}
	}
	t.Setenv("NB_SETUP_KEY", "")
	if _, err := a.cli(t, "up"); err == nil || !strings.Contains(err.Error(), "not registered") {
		t.Fatalf("up after logout: %v", err)
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) Sync() error { return nil }

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestCLIErrors: the errors a user acts on.
func TestCLIErrors(t *testing.T) {
	dir := t.TempDir()
	missing := "unix://" + filepath.Join(dir, "none.sock")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"status", "--daemon-addr", missing}, "daemon is not running"},
		{[]string{"status", "--daemon-addr", missing}, "netbird service"},
		{[]string{"up", "--daemon-addr", missing}, "netbird up -F"},
		{[]string{"status", "--no-such-flag"}, "unknown flag: --no-such-flag"},
		{[]string{"status", "--daemon-addr", "http://x"}, "want unix:///path or tcp://host:port"},
		{[]string{"status", "--filter-by-status", "weird", "--daemon-addr", missing}, "--filter-by-status"},
		{[]string{"up", "--setup-key", "x", "--setup-key-file", "/nonexistent"}, "not both"},
		{[]string{"debug", "log", "level", "verbose", "--daemon-addr", missing}, "unknown log level \"verbose\": one of trace"},
		{[]string{"debug", "log", "level", "--daemon-addr", missing}, "accepts 1 arg"},
		{[]string{"service", "run", "--log-level", "verbose", "--daemon-addr", missing}, "--log-level: unknown log level"},
	}
	for _, tt := range tests {
		cmd := newRootCmd()
		var out bytes.Buffer
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		cmd.SetArgs(tt.args)
		err := cmd.ExecuteContext(context.Background())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want %q", tt.args, err, tt.want)
		}
	}
	// A socket the user may not open.
	if os.Geteuid() != 0 {
		sock := filepath.Join(dir, "locked.sock")
		l, err := daemon.Listen("unix://"+sock, "")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if err := os.Chmod(sock, 0); err != nil {
			t.Fatal(err)
		}
		_, err = daemon.Dial("unix://" + sock)
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("locked socket: %v", err)
		}
	}
}

func TestServiceUnit(t *testing.T) {
	unit, err := renderUnit("/usr/local/bin/netbird", []string{"--config", "/etc/netbird/config.json", "--daemon-addr",
		"unix:///var/run/netbird.sock", "--log-file", "/var/log/net bird/client.log"}, []string{"NB_USE_NETSTACK_MODE=true"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ExecStart=/usr/local/bin/netbird service run --config /etc/netbird/config.json --daemon-addr unix:///var/run/netbird.sock --log-file \"/var/log/net bird/client.log\"\n",
		"Environment=NB_USE_NETSTACK_MODE=true\n",
		"WantedBy=multi-user.target",
		"KillSignal=SIGTERM",
		"After=network-online.target",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q:\n%s", want, unit)
		}
	}
	if systemdQuote(`a"b$c`) != `"a\"b$$c"` {
		t.Errorf("quote: %s", systemdQuote(`a"b$c`))
	}
}

// bundleText reads the zip `debug bundle` printed the path of, checks it
// holds a connected engine's status and trace, and removes it.
func bundleText(t *testing.T, out string) string {
	t.Helper()
	path := strings.TrimSpace(strings.TrimPrefix(out, "Local file:"))
	defer os.Remove(path)
	files, err := daemon.ReadBundle(path)
	if err != nil {
		t.Fatalf("debug bundle printed %q: %v", out, err)
	}
	var all strings.Builder
	for _, b := range files {
		all.WriteString(b)
	}
	if !strings.Contains(files["status.json"], "Connected") && !strings.Contains(files["status.json"], "connected") {
		t.Errorf("bundle status.json has no connected peer:\n%s", files["status.json"])
	}
	if !strings.Contains(files["events.jsonl"], "peer/") {
		t.Errorf("bundle events.jsonl has no peer transition:\n%.2000s", files["events.jsonl"])
	}
	return all.String()
}
