//go:build linux

package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// envDispatchChild marks the child process of TestMaxDispatchTUN, run
// inside a fresh network namespace.
const envDispatchChild = "NBFSM_DISPATCH_TUN_CHILD"

// dispatchPeers is the size of the network map of TestMaxDispatchTUN.
const dispatchPeers = 1000

// dispatchWait bounds each phase: a failure deadline, never an expectation.
const dispatchWait = 120 * time.Second

// TestMaxDispatchTUN measures the longest single loop dispatch
// (Stats.MaxDispatch) of an engine with a 1 000-peer map on a real TUN
// interface configured through wgctrl, with the real peer workers (ICE
// agents excepted: a handle that does nothing, so that the figure is the
// WireGuard configuration's and not 1 000 pion agents'). Phases: the map
// (1 000 parked machines); an offer from every peer (1 000 dispatches, each
// one peer entering session.ice: key and allowed IPs); every peer
// connected direct (endpoint, keepalive); one map that changes every
// peer's allowed IPs (one dispatch, 1 000 reconfigurations); an empty map
// (one dispatch, 1 000 removals). It prints the running maximum after each
// phase, and a bound of each phase's own dispatches (each posted alone,
// followed by a loop round trip), since the running maximum is often the
// map's (docs/benchmarks.md). As root only: the TUN device lives in a
// fresh network namespace with a random name (a child process of this
// test binary).
func TestMaxDispatchTUN(t *testing.T) {
	if os.Getenv(envDispatchChild) != "" {
		runMaxDispatchTUN(t)
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespace, TUN)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Fatalf("ip not installed (.ci/run installs iproute2): %v", err)
	}
	ns := "nbfsmd" + randomHex(t, 4)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v: %s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*dispatchWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, os.Args[0], "-test.run", "^TestMaxDispatchTUN$", "-test.v", "-test.count", "1")
	cmd.Env = append(os.Environ(), envDispatchChild+"=1")
	out, err := cmd.CombinedOutput()
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "max dispatch") {
			t.Log(strings.TrimSpace(line))
		}
	}
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// noAgents are the real workers without ICE agents.
type noAgents struct{ *peerfsm.Workers }

func (noAgents) StartICE(fsm.Sender, peerfsm.Agent) peerfsm.ICEHandle { return nopICE{} }

// phaseCounter counts peer machines entering a state; its channel gets a
// value when the count reaches want. Loop goroutine only (an Observer).
type phaseCounter struct {
	state fsm.State
	want  int
	n     int
	done  chan struct{}
}

func (c *phaseCounter) Observe(r fsm.Record) {
	if c == nil || r.Kind != peerfsm.Kind || r.To != c.state || r.From == r.To {
		return
	}
	c.n++
	if c.n == c.want {
		close(c.done)
	}
}

// phases lets the test swap the counter the loop reports to.
type phases struct{ cur *phaseCounter }

func (p *phases) Observe(r fsm.Record) { p.cur.Observe(r) }

func runMaxDispatchTUN(t *testing.T) {
	sock, err := sharedsock.Listen(netip.MustParseAddrPort("127.0.0.1:0"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	own, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	name := "nbd" + randomHex(t, 4)
	iface, err := wgiface.New(wgiface.Config{Mode: wgiface.TUN, Name: name, PrivateKey: own,
		Address: netip.MustParsePrefix("100.64.0.1/10"), Socket: sock})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := iface.Close(); err != nil {
			t.Errorf("iface close: %v", err)
		}
	}()
	w := &peerfsm.Workers{Socket: sock, Iface: iface}
	defer w.Close()
	ph := &phases{}
	e, err := New(Config{PrivateKey: own, Mgmt: &fakeMgmt{}, Signal: &fakeSignal{}, Peers: noAgents{w},
		MeasureDispatch: true, Observers: []fsm.Observer{ph}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	l := e.Loop()
	post := func(env fsm.Envelope) {
		if err := l.Post(env); err != nil {
			t.Fatal(err)
		}
	}
	// expect arms a counter for the next phase (in the loop: the observer
	// is read there).
	expect := func(s fsm.State) *phaseCounter {
		c := &phaseCounter{state: s, want: dispatchPeers, done: make(chan struct{})}
		if err := l.Do(func() { ph.cur = c }); err != nil {
			t.Fatal(err)
		}
		return c
	}
	wait := func(what string, c *phaseCounter) {
		select {
		case <-c.done:
		case <-time.After(dispatchWait):
			t.Fatalf("%s: %d of %d peers in %s after %v", what, c.n, c.want, c.state, dispatchWait)
		}
	}
	report := func(what string) {
		// A round trip through the loop: everything posted before is done.
		if err := l.Do(func() {}); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("max dispatch after %s: %v (TUN, %d peers)\n", what, l.Stats().MaxDispatch, dispatchPeers)
	}

	// alone bounds the dispatch of what send posts, by itself: the time
	// from the post to the end of a loop round trip behind it (the running
	// maximum of report may still be an earlier phase's).
	alone := func(send func()) time.Duration {
		t0 := time.Now()
		send()
		if err := l.Do(func() {}); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	single := func(what string, env fsm.Envelope) {
		fmt.Printf("max dispatch, %s alone: at most %v (post to round trip)\n", what, alone(func() { post(env) }))
	}

	post(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyLogin, Data: login})
	c := expect(peerfsm.Parked)
	nm := networkMap(1, dispatchPeers)
	post(fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: nm})
	wait("map", c)
	report("the map")

	c = expect(peerfsm.Checking)
	var worst time.Duration
	for i, p := range nm.Peers {
		worst = max(worst, alone(func() {
			e.Deliver(sigwire.Message{From: p.Key, To: own.PublicKey(), Kind: sigwire.Offer,
				Ufrag: fmt.Sprintf("ufrag%05d", i), Pwd: "pwd-of-the-remote-peer-of-32-chr", SessionID: []byte{byte(i), byte(i >> 8), 1}})
		}))
	}
	wait("offers", c)
	fmt.Printf("max dispatch, each of 1000 offers alone: at most %v (post to round trip)\n", worst)
	report("1000 offers (key and allowed IPs)")

	c = expect(peerfsm.Direct)
	worst = 0
	for i, p := range nm.Peers {
		worst = max(worst, alone(func() {
			post(fsm.Envelope{To: peerfsm.ID(p.Key), Event: peerfsm.EvICEConnected, Data: peerfsm.Pair{
				LocalType: "host", RemoteType: "host", Local: sock.LocalAddr(),
				Remote: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(20000+i))}})
		}))
	}
	wait("connected", c)
	fmt.Printf("max dispatch, each of 1000 direct paths alone: at most %v (post to round trip)\n", worst)
	report("1000 direct paths (endpoint)")

	changed := &mgmt.NetworkMap{Serial: 2}
	for i, p := range nm.Peers {
		changed.Peers = append(changed.Peers, mgmt.RemotePeer{Key: p.Key, AllowedIPs: []netip.Prefix{
			netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 65, byte(i >> 8), byte(i)}), 32)}})
	}
	single("a map changing every peer's allowed IPs", fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: changed})
	report("a map changing every peer's allowed IPs")

	c = expect(peerfsm.Closed)
	single("an empty map", fsm.Envelope{To: ID, Event: mgmtfsm.NotifyMap, Data: &mgmt.NetworkMap{Serial: 3}})
	wait("removed", c)
	report("an empty map (1000 removals)")
	iface.Flush() // the configuration worker has applied every change
	st, err := iface.PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 0 {
		t.Errorf("WireGuard peers left: %d, want 0", len(st))
	}
}
