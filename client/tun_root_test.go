//go:build linux

package client_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// Failure deadlines, never expectations.
const (
	e2eHubWait     = 30 * time.Second // the hub's first line
	e2eClientsWait = 60 * time.Second // both clients connected and pinged
	e2eConnectWait = 30 * time.Second // inside a client: its peer connected
)

// TestTUNNamespacesEngines runs the whole client end to end on real TUN
// devices: the test network in a hub namespace behind a bridge, and one
// nbfsm client in each of two namespaces wired to it, each a child process
// of this test binary. Both log in with the setup key, connect to each other
// through ICE on the shared socket, and the system ping crosses the
// WireGuard tunnel both ways.
//
//	nbfsm-a  eth0 198.18.0.2 ─┐
//	                          ├─ br0 198.18.0.1  nbfsm-hub (management, signal, STUN/TURN)
//	nbfsm-b  eth0 198.18.0.3 ─┘
func TestTUNNamespacesEngines(t *testing.T) {
	if os.Getenv(e2eEnvRole) != "" {
		t.Skip("in a child process")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN)")
	}
	for _, tool := range []string{"ip", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (.ci/run installs iproute2 and iputils-ping): %v", tool, err)
		}
	}
	topo := newE2ETopology(t)

	hub := startE2EChild(t, "hub", topo.hub, map[string]string{e2eEnvRole: e2eRoleTestnet, e2eEnvHost: e2eHubAddr})
	line, ok := hub.mark(e2eMarkTestnet, time.Now().Add(e2eHubWait))
	if !ok {
		_ = hub.stop(e2eStopWait)
		t.Fatalf("test network did not start:\n%s", hub.output())
	}
	url, setupKey, ok := strings.Cut(line, " ")
	if !ok || !strings.HasPrefix(url, "http://"+e2eHubAddr+":") || setupKey == "" {
		t.Fatalf("hub printed %q, want <management URL on %s> <setup key>", url, e2eHubAddr)
	}
	t.Logf("test network in %s: management %s", topo.hub, url)

	clients := []*e2eChild{}
	for _, c := range []struct{ name, ns string }{{"a", topo.a}, {"b", topo.b}} {
		clients = append(clients, startE2EChild(t, c.name, c.ns, map[string]string{
			e2eEnvRole: e2eRoleClient, e2eEnvMgmt: url, e2eEnvSetupKey: setupKey, e2eEnvName: "nbfsm-e2e-" + c.name,
		}))
	}
	// Each client stays up after its ping so that the other one can still
	// reach it; they are stopped together once both have reported.
	deadline := time.Now().Add(e2eClientsWait)
	var failed []string
	for _, c := range clients {
		got, ok := c.mark(e2eMarkPinged, deadline)
		if !ok {
			failed = append(failed, c.name)
			continue
		}
		t.Logf("client %s: %s", c.name, got)
	}
	for _, c := range clients {
		err := c.stop(e2eStopWait)
		if err != nil {
			t.Errorf("client %s exited: %v", c.name, err)
		}
		t.Logf("client %s output:\n%s", c.name, c.output())
	}
	if err := hub.stop(e2eStopWait); err != nil {
		t.Errorf("test network exited: %v\n%s", err, hub.output())
	}
	if len(failed) > 0 {
		t.Fatalf("clients %v did not connect and ping within %v (hub output:\n%s)", failed, e2eClientsWait, hub.output())
	}
}

// TestTUNEnginesChild is the child side of TestTUNNamespacesEngines; it
// skips unless run by it. Its TestMain is the package's, so goleak checks
// the child too once it has shut down.
func TestTUNEnginesChild(t *testing.T) {
	switch os.Getenv(e2eEnvRole) {
	case e2eRoleTestnet:
		runE2ETestnet(t)
	case e2eRoleClient:
		runE2EClient(t)
	case e2eRoleFWTestnet:
		runE2EFWTestnet(t)
	case e2eRoleFWAlpha, e2eRoleFWBeta:
		runE2EFWClient(t, os.Getenv(e2eEnvRole))
	default:
		t.Skip("helper process of TestTUNNamespacesEngines")
	}
}

// runE2ETestnet serves the test network on the hub address until stdin
// closes.
func runE2ETestnet(t *testing.T) {
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.Lock(os.Stderr), zap.InfoLevel))
	n, err := testnet.Start(testnet.Options{Host: os.Getenv(e2eEnvHost), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if os.Getenv(e2eEnvPolicy) == e2ePolicyIperf {
		n.Mgmt.SetFirewall(iperfPolicy)
	}
	fmt.Printf("%s %s %s\n", e2eMarkTestnet, n.ManagementURL(), n.SetupKey())
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin when done
}

// runE2EClient runs one client on wt0 until its peer is connected and
// answers ping, reports, and shuts down when stdin closes.
func runE2EClient(t *testing.T) {
	e2ePrivateUAPIDir(t)
	var logs lockedBuffer
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()), &logs, zap.DebugLevel))
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	changes := fsmwatch.NewChanges()
	c, err := client.New(client.Options{
		ManagementURL: os.Getenv(e2eEnvMgmt), PrivateKey: key, SetupKey: os.Getenv(e2eEnvSetupKey),
		Meta: mgmt.Meta{Hostname: os.Getenv(e2eEnvName), GoOS: "linux"}, Mode: wgiface.TUN, Interface: "wt0",
		Listen: netip.MustParseAddrPort("0.0.0.0:51820"), Logger: log,
		DisableFirewall: os.Getenv(e2eEnvFirewall) == e2eFirewallOff, Observers: []fsm.Observer{changes},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		s, err := c.Status()
		t.Logf("status (err %v):\n%s", err, e2eDump(s))
		t.Logf("last log lines:\n%s", logs.tail(300))
		t.Fatalf(format, args...)
	}
	start := time.Now()
	if err := c.Start(context.Background()); err != nil {
		fail("Start: %v", err)
	}
	peer, err := e2eWaitConnected(c, changes)
	if err != nil {
		fail("%v", err)
	}
	connected := time.Since(start)
	first, out, err := e2ePing(peer, start)
	if err != nil {
		fail("ping %s: %v\n%s", peer, err, out)
	}
	t.Logf("ping %s:\n%s", peer, out)
	// The IPv6 overlay: both have an address from management (capability
	// 2) on wt0, and the peer's /128 is in its allowed IPs.
	s, _ := c.Status()
	if !s.AddressV6.IsValid() {
		fail("no IPv6 overlay address")
	}
	peer6, err := e2ePeerV6(s)
	if err != nil {
		fail("%v", err)
	}
	if _, out, err := e2ePing(peer6, time.Now()); err != nil {
		fail("ping -6 %s: %v\n%s", peer6, err, out)
	} else {
		t.Logf("ping -6 %s:\n%s", peer6, out)
	}
	s, _ = c.Status()
	t.Logf("status:\n%s", e2eDump(s))
	fmt.Printf("%s connected after %v, first echo reply after %v (peer %s)\n",
		e2eMarkPinged, connected.Round(time.Millisecond), first.Round(time.Millisecond), peer)
	_, _ = io.Copy(io.Discard, os.Stdin) // stay up for the other side until the parent is done
}

// e2ePrivateUAPIDir gives this process its own /var/run/wireguard. Both
// clients name their device wt0, as NetBird does; network namespaces keep
// the devices apart, but wireguard-go's UAPI socket wt0.sock lives in the
// filesystem, which the namespaces share. `ip netns exec` already runs us
// in a new mount namespace whose mounts do not propagate back (it remounts
// /sys there), so a tmpfs mounted here is private to this child and goes
// away with it. The check refuses to mount anything in the parent's mount
// namespace.
func e2ePrivateUAPIDir(t *testing.T) {
	t.Helper()
	const dir = "/var/run/wireguard"
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	if err != nil {
		t.Fatal(err)
	}
	if self == parent {
		t.Fatalf("mount namespace %s is the parent's: not run by `ip netns exec`", self)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
}

// e2eWaitConnected waits, on the client's transitions, until the single
// peer is in session.ice.connected (or a substate) and returns its overlay
// address.
func e2eWaitConnected(c *client.Client, changes *fsmwatch.Changes) (netip.Addr, error) {
	var peer netip.Addr
	var last []engine.PeerStatus
	err := changes.Wait(context.Background(), e2eConnectWait, func() (bool, error) {
		s, err := c.Status()
		if err != nil {
			return false, fmt.Errorf("status: %w", err)
		}
		last = s.Peers
		if len(s.Peers) != 1 {
			return false, nil
		}
		p := s.Peers[0]
		if p.State != peerfsm.Connected && !strings.HasPrefix(string(p.State), string(peerfsm.Connected)+".") {
			return false, nil
		}
		for _, a := range p.AllowedIPs {
			if a.Bits() == 32 {
				peer = a.Addr()
				return true, nil
			}
		}
		return false, fmt.Errorf("connected peer has no /32 in %v", p.AllowedIPs)
	})
	if errors.Is(err, fsmwatch.ErrTimeout) {
		return netip.Addr{}, fmt.Errorf("peer not %s within %v (peers %+v)", peerfsm.Connected, e2eConnectWait, last)
	}
	return peer, err
}

// e2ePeerV6 is the single peer's IPv6 overlay address (its /128).
func e2ePeerV6(s engine.Status) (netip.Addr, error) {
	if len(s.Peers) == 1 {
		for _, a := range s.Peers[0].AllowedIPs {
			if a.Addr().Is6() && a.Bits() == 128 {
				return a.Addr(), nil
			}
		}
		return netip.Addr{}, fmt.Errorf("peer has no IPv6 /128 in %v", s.Peers[0].AllowedIPs)
	}
	return netip.Addr{}, fmt.Errorf("%d peers", len(s.Peers))
}

// e2ePing runs the system ping through wt0 and returns the time from start
// to its first echo reply, read from ping's output as it comes.
func e2ePing(to netip.Addr, start time.Time) (time.Duration, string, error) {
	family := "-4"
	if to.Is6() {
		family = "-6"
	}
	cmd := exec.Command("ping", family, "-c", "3", "-W", "2", to.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, "", err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	var out strings.Builder
	var first time.Duration
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if first == 0 && strings.Contains(sc.Text(), "bytes from") {
			first = time.Since(start)
		}
		out.WriteString(sc.Text() + "\n")
	}
	if err := cmd.Wait(); err != nil {
		return 0, out.String(), err
	}
	if first == 0 {
		return 0, out.String(), fmt.Errorf("no echo reply")
	}
	return first, out.String(), nil
}

// e2eDump renders a status for a failure report: public keys, states and
// endpoints only.
func e2eDump(s engine.Status) string {
	var b strings.Builder
	fmt.Fprintf(&b, "engine %s since %s, address %v, serial %d\n", s.State, s.Since.Format(time.TimeOnly), s.Address, s.Serial)
	fmt.Fprintf(&b, "management %s (sessions %d) %s\n", s.Management.State, s.Management.Sessions, s.Management.Reason)
	fmt.Fprintf(&b, "signal %s (sessions %d) %s\n", s.Signal.State, s.Signal.Sessions, s.Signal.Reason)
	for _, p := range s.Peers {
		fmt.Fprintf(&b, "peer %s %v: %s since %s, %s %s/%s endpoint %v latency %v, handshake %s rx %d tx %d, timers %d, last error %q\n",
			nbcrypto.Fingerprint(p.Key), p.AllowedIPs, p.State, p.Since.Format(time.TimeOnly), p.Connection,
			p.LocalType, p.RemoteType, p.Endpoint, p.Latency, p.LastHandshake.Format(time.TimeOnly), p.RxBytes, p.TxBytes,
			p.Timers, p.LastErr)
	}
	return b.String()
}
