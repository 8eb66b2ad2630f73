//go:build linux

package client_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/filter"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/testnet/mgmtsrv"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// Roles, environment, commands and marks of TestTUNNamespacesFirewall.
const (
	e2eRoleFWTestnet = "fw-testnet" // the test network with fwPolicyFor(alpha, beta)
	e2eRoleFWAlpha   = "fw-alpha"
	e2eRoleFWBeta    = "fw-beta"

	e2eFWAlpha = "nbfsm-fw-alpha" // hostnames
	e2eFWBeta  = "nbfsm-fw-beta"

	// Commands the parent writes, one per line, on a child's stdin.
	e2eCmdAllowICMP = "allow-icmp" // hub: ship the policy that allows ICMP too
	e2eCmdStats     = "stats"      // beta: report the filter's drops
	e2eCmdPing      = "ping"       // alpha: ping beta, which must answer now

	e2eMarkFWReady  = "NBFSM-E2E-FW-READY"  // beta: connected, reached alpha, pinged alpha
	e2eMarkFWPhase1 = "NBFSM-E2E-FW-PHASE1" // alpha: reached beta:22; beta:80 and ping dropped
	e2eMarkFWStats  = "NBFSM-E2E-FW-STATS"  // beta: <rule drops>
	e2eMarkFWPolicy = "NBFSM-E2E-FW-POLICY" // hub: the ICMP policy is out
	e2eMarkFWPhase2 = "NBFSM-E2E-FW-PHASE2" // alpha: ping answered
	e2eMarkFWFailed = "NBFSM-E2E-FW-FAILED" // any: <what>

	e2eFWDropWait = 2 * time.Second // a dropped attempt's budget; the drop is asserted on beta's counter

	// The firewall of the e2eRoleTestnet and e2eRoleClient children (the
	// iperf3 benchmark): the hub ships iperfPolicy when e2eEnvPolicy is
	// e2ePolicyIperf; a client runs without a filter when e2eEnvFirewall is
	// e2eFirewallOff.
	e2eEnvPolicy   = "NBFSM_E2E_POLICY"
	e2eEnvFirewall = "NBFSM_E2E_FIREWALL"
	e2ePolicyIperf = "iperf"
	e2eFirewallOff = "off"
)

// iperfPolicy: every peer accepts ICMP and TCP/5201 (iperf3) from every
// other peer's IPv4 and IPv6 overlay addresses (the clients ping both
// before the benchmark starts), nothing else.
func iperfPolicy(p mgmtsrv.PeerInfo, all []mgmtsrv.PeerInfo) []*mgmtpb.FirewallRule {
	var rules []*mgmtpb.FirewallRule
	for _, q := range all {
		if q.Key == p.Key {
			continue
		}
		for _, a := range []netip.Addr{q.Address, iperfV6Of(q.Address)} {
			rules = append(rules,
				&mgmtpb.FirewallRule{PeerIP: a.String(), Protocol: mgmtpb.RuleProtocol_ICMP},
				&mgmtpb.FirewallRule{PeerIP: a.String(), Protocol: mgmtpb.RuleProtocol_TCP, Port: iperfPort})
		}
	}
	return rules
}

// iperfV6Of is the IPv6 overlay address the test management server gives
// the peer with IPv4 overlay address a: the same host number in
// mgmtsrv.OverlayV6.
func iperfV6Of(a netip.Addr) netip.Addr {
	n := binary.BigEndian.Uint32(a.AsSlice()) - binary.BigEndian.Uint32(mgmtsrv.Overlay.Addr().AsSlice())
	b := mgmtsrv.OverlayV6.Addr().As16()
	binary.BigEndian.PutUint32(b[12:], n)
	return netip.AddrFrom16(b)
}

// TestTUNNamespacesFirewall is TestFirewallPolicyEndToEnd on real TUN
// devices, in the namespaces of TestTUNNamespacesEngines: the policy allows
// only TCP/22 from alpha to beta (and everything from beta to alpha). Alpha
// reaches beta:22 through the kernel's TCP; alpha's TCP to beta:80 and its
// ping are dropped by beta's filter; beta's TCP to alpha and its ping pass,
// replies included; after management ships a policy that allows ICMP,
// alpha's ping passes with nothing restarted.
func TestTUNNamespacesFirewall(t *testing.T) {
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
	hub := startE2EChild(t, "hub", topo.hub, map[string]string{e2eEnvRole: e2eRoleFWTestnet, e2eEnvHost: e2eHubAddr})
	line, ok := hub.mark(e2eMarkTestnet, time.Now().Add(e2eHubWait))
	if !ok {
		t.Fatalf("test network did not start:\n%s", hub.output())
	}
	url, setupKey, _ := strings.Cut(line, " ")
	alpha := startE2EChild(t, "alpha", topo.a, map[string]string{
		e2eEnvRole: e2eRoleFWAlpha, e2eEnvMgmt: url, e2eEnvSetupKey: setupKey, e2eEnvName: e2eFWAlpha})
	beta := startE2EChild(t, "beta", topo.b, map[string]string{
		e2eEnvRole: e2eRoleFWBeta, e2eEnvMgmt: url, e2eEnvSetupKey: setupKey, e2eEnvName: e2eFWBeta})
	report := func(format string, args ...any) {
		t.Helper()
		for _, c := range []*e2eChild{alpha, beta, hub} {
			_ = c.stop(e2eStopWait)
			t.Logf("%s output:\n%s", c.name, c.output())
		}
		t.Fatalf(format, args...)
	}
	deadline := time.Now().Add(e2eClientsWait)
	if got, ok := beta.mark(e2eMarkFWReady, deadline); !ok {
		report("beta not ready: %q", got)
	}
	if got, ok := alpha.mark(e2eMarkFWPhase1, deadline); !ok || got != "ok" {
		report("alpha, phase 1: %q", got)
	}
	fmt.Fprintln(beta.stdin, e2eCmdStats)
	got, ok := beta.mark(e2eMarkFWStats, time.Now().Add(e2eHubWait))
	var drops uint64
	if _, err := fmt.Sscan(got, &drops); !ok || err != nil || drops < 2 {
		report("beta's filter dropped %q packets, want alpha's SYN and echo at least", got)
	}
	fmt.Fprintln(hub.stdin, e2eCmdAllowICMP)
	if _, ok := hub.mark(e2eMarkFWPolicy, time.Now().Add(e2eHubWait)); !ok {
		report("hub did not ship the new policy")
	}
	fmt.Fprintln(alpha.stdin, e2eCmdPing)
	if got, ok := alpha.mark(e2eMarkFWPhase2, time.Now().Add(e2eClientsWait)); !ok || got != "ok" {
		report("alpha, phase 2 (ping after ICMP was allowed): %q", got)
	}
	for _, c := range []*e2eChild{alpha, beta, hub} {
		if err := c.stop(e2eStopWait); err != nil {
			t.Errorf("%s exited: %v\n%s", c.name, err, c.output())
		}
	}
}

// e2eCommands delivers the parent's stdin lines; the channel closes when
// stdin does (the parent's cue to shut down).
func e2eCommands() <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			ch <- strings.TrimSpace(sc.Text())
		}
	}()
	return ch
}

// runE2EFWTestnet serves the test network with the firewall policy and
// ships the ICMP one on command.
func runE2EFWTestnet(t *testing.T) {
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig()),
		zapcore.Lock(os.Stderr), zap.InfoLevel))
	n, err := testnet.Start(testnet.Options{Host: os.Getenv(e2eEnvHost), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.Mgmt.SetFirewall(fwPolicyFor(e2eFWAlpha, e2eFWBeta, false))
	fmt.Printf("%s %s %s\n", e2eMarkTestnet, n.ManagementURL(), n.SetupKey())
	for cmd := range e2eCommands() {
		if cmd == e2eCmdAllowICMP {
			n.Mgmt.SetFirewall(fwPolicyFor(e2eFWAlpha, e2eFWBeta, true))
			fmt.Printf("%s shipped\n", e2eMarkFWPolicy)
		}
	}
}

// e2eServe answers every TCP connection on port with "ok" until the
// listener closes.
func e2eServe(t *testing.T, port int) func() {
	t.Helper()
	l, err := net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("ok"))
			_ = c.Close()
		}
	}()
	return func() { _ = l.Close(); <-done }
}

// e2eDial connects to to:port with the kernel's TCP and reads the greeting.
func e2eDial(to netip.Addr, port uint16, within time.Duration) error {
	d := net.Dialer{Timeout: within}
	c, err := d.Dial("tcp4", netip.AddrPortFrom(to, port).String())
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if string(b) != "ok" {
		return errors.New("no greeting")
	}
	return nil
}

// e2ePingOnce runs `ping -c 1 -w secs`: ping itself resends every second
// until one reply or the deadline.
func e2ePingOnce(to netip.Addr, within time.Duration) error {
	out, err := exec.Command("ping", "-c", "1", "-w", fmt.Sprint(int(within.Seconds())), to.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%w: %s", err, out)
	}
	return nil
}

// runE2EFWClient is one side of TestTUNNamespacesFirewall.
func runE2EFWClient(t *testing.T, role string) {
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
		Listen: netip.MustParseAddrPort("0.0.0.0:51820"), Logger: log, Observers: []fsm.Observer{changes},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}()
	cmds := e2eCommands()
	fail := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...)
		fmt.Printf("%s %s\n", e2eMarkFWFailed, msg)
		s, err := c.Status()
		t.Logf("status (err %v):\n%s", err, e2eDump(s))
		t.Logf("last log lines:\n%s", logs.tail(200))
		t.Error(msg)
	}
	if role == e2eRoleFWBeta {
		defer e2eServe(t, 22)()
		defer e2eServe(t, 80)()
	} else {
		defer e2eServe(t, 8080)()
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	peer, err := e2eWaitConnected(c, changes)
	if err != nil {
		fail("%v", err)
		return
	}
	switch role {
	case e2eRoleFWBeta:
		if err := e2eDial(peer, 8080, e2eConnectWait); err != nil {
			fail("beta → alpha:8080: %v", err)
			return
		}
		if err := e2ePingOnce(peer, e2eConnectWait); err != nil {
			fail("beta → alpha ping: %v", err)
			return
		}
		fmt.Printf("%s ok\n", e2eMarkFWReady)
	case e2eRoleFWAlpha:
		if err := e2eDial(peer, 22, e2eConnectWait); err != nil {
			fail("alpha → beta:22: %v", err)
			return
		}
		if err := e2eDial(peer, 80, e2eFWDropWait); err == nil {
			fail("alpha → beta:80 connected")
			return
		}
		if err := e2ePingOnce(peer, e2eFWDropWait); err == nil {
			fail("alpha's ping to beta answered")
			return
		}
		fmt.Printf("%s ok\n", e2eMarkFWPhase1)
	}
	for cmd := range cmds {
		switch cmd {
		case e2eCmdStats:
			s, _ := c.FirewallStats()
			fmt.Printf("%s %d\n", e2eMarkFWStats, s.Dropped[filter.DropRules])
		case e2eCmdPing:
			if err := e2ePingOnce(peer, e2eConnectWait); err != nil {
				fail("alpha's ping after ICMP was allowed: %v", err)
				continue
			}
			fmt.Printf("%s ok\n", e2eMarkFWPhase2)
		}
	}
}
