//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/config"
)

// Bounds of the root end-to-end test: failure deadlines, never
// expectations. The recovery bound is what the test promises: after the
// veth of one namespace was down for e2eOutage and is up again, ping
// through the tunnel passes within e2eRecoverBound, the daemon never
// restarted.
const (
	e2eOutage        = 20 * time.Second
	e2eRecoverBound  = 45 * time.Second
	e2eStartWait     = 30 * time.Second
	e2eConnectWait   = 60 * time.Second
	e2eStopWait      = 20 * time.Second
	e2eHubAddr       = "198.18.0.1"
	e2eUnderlayShift = 2 // a: 198.18.0.2, b: 198.18.0.3
)

// e2eNet is a hub namespace (bridge, the test network's servers) and one
// namespace per daemon, wired by veth pairs. Names carry a random suffix:
// other tests create namespaces on this machine at the same time.
type e2eNet struct {
	id  string
	hub string
	ns  []string
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func newE2ENet(t *testing.T, clients int) *e2eNet {
	t.Helper()
	id := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	n := &e2eNet{id: id, hub: "nb9-hub-" + id}
	for i := range clients {
		n.ns = append(n.ns, fmt.Sprintf("nb9-%c-%s", 'a'+i, id))
	}
	t.Cleanup(func() {
		for _, ns := range append([]string{n.hub}, n.ns...) {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("ip netns del %s: %v: %s", ns, err, out)
			}
		}
	})
	ipCmd(t, "netns", "add", n.hub)
	ipCmd(t, "-n", n.hub, "link", "set", "lo", "up")
	ipCmd(t, "-n", n.hub, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", n.hub, "addr", "add", e2eHubAddr+"/24", "dev", "br0")
	ipCmd(t, "-n", n.hub, "link", "set", "br0", "up")
	for i, ns := range n.ns {
		hubEnd := fmt.Sprintf("veth-%c", 'a'+i)
		ipCmd(t, "netns", "add", ns)
		ipCmd(t, "-n", ns, "link", "set", "lo", "up")
		ipCmd(t, "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", hubEnd, "netns", n.hub)
		ipCmd(t, "-n", n.hub, "link", "set", hubEnd, "master", "br0")
		ipCmd(t, "-n", n.hub, "link", "set", hubEnd, "up")
		ipCmd(t, "-n", ns, "addr", "add", fmt.Sprintf("198.18.0.%d/24", i+e2eUnderlayShift), "dev", "eth0")
		ipCmd(t, "-n", ns, "link", "set", "eth0", "up")
	}
	return n
}

// e2eProc is this test binary re-executed as `netbird …` in a namespace.
type e2eProc struct {
	name string
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	line chan string // stdout lines, for the hub's URL
	done chan struct{}
}

func startNetbird(t *testing.T, name, ns string, env []string, args ...string) *e2eProc {
	t.Helper()
	p := &e2eProc{name: name, line: make(chan string, 64), done: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, os.Args[0]}, args...)...)
	p.cmd.Env = append(append(os.Environ(), envRunCLI+"=1"), env...)
	r, w := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			p.mu.Lock()
			p.out.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			select {
			case p.line <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	go func() {
		_ = p.cmd.Wait()
		_ = w.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *e2eProc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// stop sends SIGTERM (ip netns exec passes it on by exec'ing) and waits.
func (p *e2eProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(e2eStopWait)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		t.Errorf("%s did not stop within %v after SIGTERM; killed", p.name, e2eStopWait)
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	if st := p.cmd.ProcessState; st != nil && !st.Success() {
		t.Errorf("%s exited: %v\n%s", p.name, st, p.output())
	}
}

// e2eNode is one daemon: its namespace, files and interface.
type e2eNode struct {
	name, ns, dir, iface, addr string
	proc                       *e2eProc
}

func (nd *e2eNode) start(t *testing.T) {
	nd.proc = startNetbird(t, "daemon "+nd.name, nd.ns, nil, "service", "run",
		"--config", filepath.Join(nd.dir, "config.json"), "--daemon-addr", nd.addr,
		"--log-file", "console", "--log-level", "debug")
	// Serving once it logs so (the socket is listening by then).
	if !nd.proc.waitLine("serving the local API", e2eStartWait) {
		t.Fatalf("daemon %s not serving within %v:\n%s", nd.name, e2eStartWait, nd.proc.output())
	}
}

// waitLine reads the process's lines until one contains s.
func (p *e2eProc) waitLine(s string, within time.Duration) bool {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case l := <-p.line:
			if strings.Contains(l, s) {
				return true
			}
		case <-p.done:
			return false
		case <-timer.C:
			return false
		}
	}
}

func (nd *e2eNode) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append(args, "--daemon-addr", nd.addr))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func (nd *e2eNode) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := nd.cli(t, args...)
	if err != nil {
		t.Fatalf("%s: netbird %s: %v\n%s\nlog tail:\n%s", nd.name, strings.Join(args, " "), err, out, nd.logTail(60))
	}
	return out
}

func (nd *e2eNode) logTail(n int) string {
	lines := strings.SplitAfter(nd.proc.output(), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}

func (nd *e2eNode) status(t *testing.T) statusDoc {
	t.Helper()
	var doc statusDoc
	out := nd.mustCLI(t, "status", "--json")
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("%s: status --json: %v\n%s", nd.name, err, out)
	}
	return doc
}

// waitConnected follows `netbird events -f` (the daemon's trace) until a
// peer enters connected, after checking the status once: no polling.
func (nd *e2eNode) waitConnected(t *testing.T, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	pr, pw := io.Pipe()
	cmd := newRootCmd()
	cmd.SetOut(pw)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"events", "-f", "--json", "--daemon-addr", nd.addr})
	errc := make(chan error, 1)
	go func() { errc <- cmd.ExecuteContext(ctx); _ = pw.Close() }()
	defer func() { cancel(); _, _ = io.Copy(io.Discard, pr); <-errc }()
	// Connected directly: peers are connected over the NetBird relay first
	// and ICE then upgrades them (issue 11).
	allP2P := func(st statusDoc) bool {
		for _, p := range st.Peers.Details {
			if p.ConnectionType != "P2P" {
				return false
			}
		}
		return st.Peers.Connected == st.Peers.Total && st.Peers.Total > 0
	}
	if allP2P(nd.status(t)) {
		return
	}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var ev eventDoc
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Kind == "peer" && strings.HasPrefix(ev.To, "session.ice.connected") {
			if allP2P(nd.status(t)) {
				return
			}
		}
	}
	t.Fatalf("%s: peers not connected within %v: %+v\nlog tail:\n%s", nd.name, within, nd.status(t).Peers, nd.logTail(80))
}

// follow streams `netbird events -f --json` of nd (live records only)
// until stop.
func (nd *e2eNode) follow(t *testing.T) (<-chan eventDoc, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	cmd := newRootCmd()
	cmd.SetOut(pw)
	cmd.SetErr(io.Discard)
	cmd.SetArgs([]string{"events", "-f", "--json", "--daemon-addr", nd.addr})
	errc := make(chan error, 1)
	go func() { errc <- cmd.ExecuteContext(ctx); _ = pw.Close() }()
	out := make(chan eventDoc, 4096)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var ev eventDoc
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				select {
				case out <- ev:
				default:
				}
			}
		}
	}()
	var once sync.Once
	return out, func() { once.Do(func() { cancel(); <-errc }) }
}

// pingFrom runs the system ping in nd's namespace; ping keeps sending one
// request a second until the first reply or its deadline.
func pingFrom(t *testing.T, nd *e2eNode, to string, within time.Duration) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	out, err := exec.Command("ip", "netns", "exec", nd.ns, "ping", "-c", "1", "-w", fmt.Sprint(int(within.Seconds())), to).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ping %s from %s: %v\n%s", to, nd.name, err, out)
	}
	return time.Since(start), nil
}

func linkExists(ns, name string) bool {
	return exec.Command("ip", "-n", ns, "link", "show", name).Run() == nil
}

// TestTUNDaemonsE2E: two `netbird service run` daemons in two network
// namespaces on TUN devices, the test network in a hub namespace; `netbird
// up --setup-key` on each; status --json shows the other peer Connected
// over P2P; ping passes; one namespace's veth down for 20 s and up again:
// the daemon recovers without restart; `netbird down` removes the
// interface; the config is 0600 and keeps its key across a daemon restart.
func TestTUNDaemonsE2E(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN); TestNetstackDaemonsFlow is the same flow without root")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (make test installs iproute2, iputils-ping and iperf3): %v", tool, err)
		}
	}
	net := newE2ENet(t, 2)
	setupKey := "E2E0" + net.id + "-0000-4000-8000-000000000000"
	hub := startNetbird(t, "testnet", net.hub, nil, "testnet", "--host", e2eHubAddr, "--setup-key", setupKey)
	var mgmtURL string
	timer := time.NewTimer(e2eStartWait)
	for mgmtURL == "" {
		select {
		case l := <-hub.line:
			if u, ok := strings.CutPrefix(l, "management URL: "); ok {
				mgmtURL = strings.TrimSpace(u)
			}
		case <-hub.done:
			t.Fatalf("testnet exited:\n%s", hub.output())
		case <-timer.C:
			t.Fatalf("testnet did not start:\n%s", hub.output())
		}
	}
	timer.Stop()

	var nodes []*e2eNode
	for i, ns := range net.ns {
		nd := &e2eNode{name: string(rune('a' + i)), ns: ns, dir: t.TempDir(), iface: fmt.Sprintf("wt%c%s", 'a'+i, net.id)}
		nd.addr = "unix://" + filepath.Join(nd.dir, "netbird.sock")
		c, err := config.Defaults()
		if err != nil {
			t.Fatal(err)
		}
		c.ManagementURL.S, c.WgIface = mgmtURL, nd.iface
		c.DisableAutoConnect = false
		if err := c.Save(filepath.Join(nd.dir, "config.json")); err != nil {
			t.Fatal(err)
		}
		nd.start(t)
		nodes = append(nodes, nd)
	}
	a, b := nodes[0], nodes[1]
	// One preshared key, as a flag: set on the wt devices through wgctrl.
	psk, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	a.mustCLI(t, "up", "--setup-key", setupKey, "-n", "e2e-a", "--preshared-key", psk.String())
	b.mustCLI(t, "up", "--setup-key", setupKey, "-n", "e2e-b", "--preshared-key", psk.String())
	for _, nd := range nodes {
		nd.waitConnected(t, e2eConnectWait)
		st := nd.status(t)
		if len(st.Peers.Details) != 1 || st.Peers.Details[0].Status != "Connected" || st.Peers.Details[0].ConnectionType != "P2P" {
			t.Fatalf("%s: status --json peers %+v", nd.name, st.Peers)
		}
		if !linkExists(nd.ns, nd.iface) {
			t.Fatalf("%s: interface %s missing", nd.name, nd.iface)
		}
	}
	// The devices hold the preshared key (their UAPI sockets are in the
	// host's /var/run/wireguard, outside the namespaces).
	wc, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	for _, nd := range nodes {
		dev, err := wc.Device(nd.iface)
		if err != nil {
			t.Fatalf("%s: wgctrl %s: %v", nd.name, nd.iface, err)
		}
		if len(dev.Peers) != 1 || dev.Peers[0].PresharedKey != psk {
			t.Fatalf("%s: %d WireGuard peers, preshared key set: %v", nd.name, len(dev.Peers), len(dev.Peers) == 1 && dev.Peers[0].PresharedKey == psk)
		}
	}
	// The selected pair's endpoints are underlay ip:port on both sides, and
	// the controlling side (one of the two) has the round trip of the check
	// that selected it.
	measured := 0
	for _, nd := range nodes {
		p := nd.status(t).Peers.Details[0]
		for _, ep := range []string{p.ICECandidateEndpoint.Local, p.ICECandidateEndpoint.Remote} {
			if ap, err := netip.ParseAddrPort(ep); err != nil || !netip.MustParsePrefix("198.18.0.0/24").Contains(ap.Addr()) {
				t.Errorf("%s: iceCandidateEndpoint %+v, want underlay ip:port on both sides", nd.name, p.ICECandidateEndpoint)
			}
		}
		if p.Latency > 0 {
			measured++
		}
	}
	if measured == 0 {
		t.Error("status --json: latency 0 on both sides")
	}
	ipA, ipB := strings.Split(a.status(t).NetbirdIP, "/")[0], strings.Split(b.status(t).NetbirdIP, "/")[0]
	if d, err := pingFrom(t, a, ipB, 20*time.Second); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("ping a → b over wt: first reply after %v", d.Round(time.Millisecond))
	}
	if _, err := pingFrom(t, b, ipA, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// The veth of b's namespace down for 20 s, then up: the same daemon
	// recovers.
	pidB := b.proc.cmd.Process.Pid
	evB, stopEvB := b.follow(t)
	defer stopEvB()
	outage := time.Now()
	ipCmd(t, "-n", b.ns, "link", "set", "eth0", "down")
	time.Sleep(e2eOutage) // the outage itself, not a wait for state
	ipCmd(t, "-n", b.ns, "link", "set", "eth0", "up")
	d, err := pingFrom(t, a, ipB, e2eRecoverBound)
	if err != nil {
		t.Fatalf("no ping within %v after the veth came back: %v\nstatus a %+v\nstatus b %+v\nlog b:\n%s", e2eRecoverBound, err,
			a.status(t).Peers, b.status(t).Peers, b.logTail(120))
	}
	t.Logf("after %v with b's veth down: ping a → b passes %v after the link came up (bound %v)", e2eOutage, d.Round(time.Millisecond), e2eRecoverBound)
	select {
	case <-b.proc.done:
		t.Fatal("daemon b exited during the outage")
	default:
	}
	if b.proc.cmd.Process.Pid != pidB {
		t.Fatal("daemon b restarted")
	}
	// The OS network monitor told b's engine: network down, then up.
	changes := 0
	deadline := time.NewTimer(e2eConnectWait)
	for changes < 2 {
		select {
		case ev, ok := <-evB:
			if !ok {
				t.Fatal("events stream of b ended")
			}
			if at, err := time.Parse(time.RFC3339Nano, ev.At); err == nil && at.After(outage) &&
				ev.Machine == "engine" && ev.Event == "network-changed" {
				changes++
			}
		case <-deadline.C:
			t.Fatalf("daemon b's engine heard %d network changes within %v, want down and up\n%s", changes, e2eConnectWait, b.logTail(80))
		}
	}
	deadline.Stop()
	stopEvB()
	b.waitConnected(t, e2eConnectWait)
	if st := b.status(t); st.Peers.Details[0].ConnectionType != "P2P" {
		t.Fatalf("b after recovery: %+v", st.Peers)
	}

	// down removes the interface; the daemon keeps running.
	a.mustCLI(t, "down")
	if linkExists(a.ns, a.iface) {
		t.Fatalf("interface %s still there after netbird down", a.iface)
	}
	if _, err := a.cli(t, "status", "--check", "live"); err != nil {
		t.Fatalf("daemon a gone after down: %v", err)
	}

	// The config: 0600, the same key after a daemon restart (SIGTERM).
	cfg := filepath.Join(a.dir, "config.json")
	st, err := os.Stat(cfg)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v (%v)", st.Mode(), err)
	}
	before, _, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pubBefore := a.status(t).PublicKey
	a.mustCLI(t, "up")
	a.waitConnected(t, e2eConnectWait)
	a.proc.stop(t)
	if linkExists(a.ns, a.iface) {
		t.Fatalf("interface %s left after SIGTERM", a.iface)
	}
	if _, err := os.Stat(strings.TrimPrefix(a.addr, "unix://")); !os.IsNotExist(err) {
		t.Fatalf("socket left after SIGTERM: %v", err)
	}
	a.start(t) // auto-connects
	after, _, err := config.Load(cfg)
	if err != nil || after.PrivateKey != before.PrivateKey || a.status(t).PublicKey != pubBefore {
		t.Fatalf("key changed across a daemon restart (err %v)", err)
	}
	a.waitConnected(t, e2eConnectWait)
	if _, err := pingFrom(t, a, ipB, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}
