//go:build linux

package wgiface_test

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// Environment of the child process that runs one TUN interface inside a
// network namespace.
const (
	envChild      = "NBFSM_WGIFACE_TUN_CHILD"
	envKey        = "NBFSM_WGIFACE_KEY"
	envPeer       = "NBFSM_WGIFACE_PEER"
	envListen     = "NBFSM_WGIFACE_LISTEN"
	envAddr       = "NBFSM_WGIFACE_ADDR"
	envPeerAddr   = "NBFSM_WGIFACE_PEER_ADDR"
	envPeerEP     = "NBFSM_WGIFACE_PEER_ENDPOINT"
	envName       = "NBFSM_WGIFACE_NAME"
	envPSK        = "NBFSM_WGIFACE_PSK"
	readyLine     = "NBFSM-WGIFACE-READY"
	tunUnderlayA  = "198.18.0.1"
	tunUnderlayB  = "198.18.0.2"
	tunOverlayA   = "100.64.2.1"
	tunOverlayB   = "100.64.2.2"
	tunListenPort = "51820"
)

// TestTUNNamespaces runs wgiface in TUN mode, configured through wgctrl, in
// two network namespaces joined by a veth pair (underlay 198.18.0.0/24,
// overlay 100.64.0.0/10), one child process of this test binary per
// namespace, and pings across the tunnel with the system ping.
func TestTUNNamespaces(t *testing.T) {
	if os.Getenv(envChild) != "" {
		t.Skip("in the child process")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, TUN)")
	}
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	nsA, nsB := "nbfsmA"+id, "nbfsmB"+id
	vethA, vethB := "nbva"+id, "nbvb"+id
	t.Cleanup(func() {
		for _, ns := range []string{nsA, nsB} {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	for _, args := range [][]string{
		{"netns", "add", nsA},
		{"netns", "add", nsB},
		{"link", "add", vethA, "netns", nsA, "type", "veth", "peer", "name", vethB, "netns", nsB},
		{"-n", nsA, "addr", "add", tunUnderlayA + "/24", "dev", vethA},
		{"-n", nsB, "addr", "add", tunUnderlayB + "/24", "dev", vethB},
		{"-n", nsA, "link", "set", vethA, "up"},
		{"-n", nsB, "link", "set", vethB, "up"},
		{"-n", nsA, "link", "set", "lo", "up"},
		{"-n", nsB, "link", "set", "lo", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	kA, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	kB, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	// Both hold one preshared key, set through wgctrl: the tunnel carries
	// traffic only if both applied it (TestPresharedKey has the refusals).
	psk, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	// A is the controlling side: it sets endpoint + keepalive. B only knows
	// A's key and allowed IPs and learns A's endpoint from the handshake.
	a := startChild(t, nsA, map[string]string{
		envKey: kA.String(), envPeer: kB.PublicKey().String(), envName: "nbtA" + id, envPSK: psk.String(),
		envListen: tunUnderlayA + ":" + tunListenPort, envAddr: tunOverlayA + "/10",
		envPeerAddr: tunOverlayB + "/32", envPeerEP: tunUnderlayB + ":" + tunListenPort,
	})
	b := startChild(t, nsB, map[string]string{
		envKey: kB.String(), envPeer: kA.PublicKey().String(), envName: "nbtB" + id, envPSK: psk.String(),
		envListen: tunUnderlayB + ":" + tunListenPort, envAddr: tunOverlayB + "/10",
		envPeerAddr: tunOverlayA + "/32",
	})
	for _, c := range []*child{a, b} {
		c.waitReady(t)
	}
	nsPing(t, nsA, tunOverlayB)
	nsPing(t, nsB, tunOverlayA)
	for _, c := range []*child{a, b} {
		c.finish(t)
	}
}

func nsPing(t *testing.T, ns, to string) {
	t.Helper()
	// -w: overall deadline (a failure bound); one reply is enough.
	out, err := exec.Command("ip", "netns", "exec", ns, "ping", "-c", "1", "-w", "20", to).CombinedOutput()
	if err != nil {
		t.Fatalf("ping %s from %s: %v\n%s", to, ns, err, out)
	}
}

type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner
	out   strings.Builder
	ns    string
}

func startChild(t *testing.T, ns string, env map[string]string) *child {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^TestTUNChild$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), envChild+"=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c := &child{cmd: cmd, ns: ns}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	c.lines = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child in %s: %v", ns, err)
	}
	t.Cleanup(func() {
		_ = c.stdin.Close()
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return c
}

// waitReady reads the child's output until its ready line.
func (c *child) waitReady(t *testing.T) {
	t.Helper()
	ready := make(chan bool, 1)
	go func() {
		for c.lines.Scan() {
			c.out.WriteString(c.lines.Text() + "\n")
			if c.lines.Text() == readyLine {
				ready <- true
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = c.cmd.Wait()
			t.Fatalf("child in %s exited before ready:\n%s", c.ns, c.out.String())
		}
	case <-time.After(deadline):
		t.Fatalf("child in %s not ready:\n%s", c.ns, c.out.String())
	}
}

// finish closes the child's stdin (its signal to check stats and shut
// down) and requires a clean exit.
func (c *child) finish(t *testing.T) {
	t.Helper()
	_ = c.stdin.Close()
	for c.lines.Scan() {
		c.out.WriteString(c.lines.Text() + "\n")
	}
	if err := c.cmd.Wait(); err != nil {
		t.Errorf("child in %s: %v\n%s", c.ns, err, c.out.String())
		return
	}
	t.Logf("child in %s:\n%s", c.ns, c.out.String())
}

// TestTUNChild is the child side of TestTUNNamespaces; it skips unless run
// by it.
func TestTUNChild(t *testing.T) {
	if os.Getenv(envChild) == "" {
		t.Skip("helper process of TestTUNNamespaces")
	}
	key, err := wgtypes.ParseKey(os.Getenv(envKey))
	if err != nil {
		t.Fatal(err)
	}
	peer, err := wgtypes.ParseKey(os.Getenv(envPeer))
	if err != nil {
		t.Fatal(err)
	}
	sock, err := sharedsock.Listen(netip.MustParseAddrPort(os.Getenv(envListen)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	psk, err := wgtypes.ParseKey(os.Getenv(envPSK))
	if err != nil {
		t.Fatal(err)
	}
	iface, err := wgiface.New(wgiface.Config{
		Mode: wgiface.TUN, Name: os.Getenv(envName), PrivateKey: key,
		Address: netip.MustParsePrefix(os.Getenv(envAddr)), Socket: sock, PresharedKey: psk,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer iface.Close()
	p := wgiface.Peer{Key: peer, AllowedIPs: []netip.Prefix{netip.MustParsePrefix(os.Getenv(envPeerAddr))}}
	if ep := os.Getenv(envPeerEP); ep != "" {
		p.Endpoint, p.Keepalive = netip.MustParseAddrPort(ep), 25*time.Second
	}
	if err := iface.SetPeer(p); err != nil {
		t.Fatal(err)
	}
	// wgctrl reads back what the UAPI socket applied.
	wc, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	dev, err := wc.Device(os.Getenv(envName))
	if err != nil {
		t.Fatalf("wgctrl device: %v", err)
	}
	if len(dev.Peers) != 1 || dev.Peers[0].PresharedKey != psk {
		t.Fatalf("wgctrl: %d peers, preshared key set: %v", len(dev.Peers), len(dev.Peers) == 1 && dev.Peers[0].PresharedKey == psk)
	}
	fmt.Println(readyLine)
	_, _ = io.Copy(io.Discard, os.Stdin) // the parent closes stdin when done
	stats, err := iface.PeerStats()
	if err != nil {
		t.Fatalf("PeerStats (wgctrl): %v", err)
	}
	st := stats[peer]
	t.Logf("peer stats: %+v", st)
	if st.LastHandshake.IsZero() || st.RxBytes == 0 || st.TxBytes == 0 || !st.Endpoint.IsValid() {
		t.Errorf("peer stats %+v: want handshake, bytes and endpoint", st)
	}
}
