// Package scenario measures what nbfsm costs in the situations the mission
// names: peers parked with the servers down, peers offering to remotes that
// never answer, and a connected pair left idle. `netbird scenario` runs it
// and prints a table; docs/benchmarks.md records the numbers.
//
// Everything runs in this process against the built-in test network on
// 127.0.0.1, with real clients (netstack WireGuard, no root).
package scenario

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	nbclient "github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// Options of a run.
type Options struct {
	Peers    int           // fake remote peers pushed in the network map
	Duration time.Duration // how long each idle phase is watched
	Out      io.Writer
}

// process is a snapshot of the process's cost counters.
type process struct {
	at         time.Time
	goroutines int
	heap       uint64
	cpu        time.Duration
	switches   uint64
}

// sample reads the counters (measure, bench.go): CPU and context switches
// first, then a GC for an honest heap figure (the GC's own cost falls
// outside the window).
func sample() process {
	u := measure(true)
	return process{at: u.at, goroutines: u.goroutines, heap: u.heap, cpu: u.cpu, switches: uint64(u.switches)}
}

// warnings counts log entries at warn level and above of every client: the
// mission compares error log lines with the official client's.
var warnings atomic.Int64

func countingLogger() *zap.Logger {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.WarnLevel)
	return zap.New(zapcore.RegisterHooks(core, func(zapcore.Entry) error { warnings.Add(1); return nil }))
}

type client struct {
	c       *nbclient.Client
	key     wgtypes.Key
	changes *fsmwatch.Changes
}

func newClient(n *testnet.Network, name string) (*client, error) {
	return newClientWith(n, name, false)
}

func newClientWith(n *testnet.Network, name string, measure bool) (*client, error) {
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	changes := fsmwatch.NewChanges()
	c, err := nbclient.New(nbclient.Options{ManagementURL: n.ManagementURL(), PrivateKey: key, SetupKey: n.SetupKey(),
		Meta: mgmt.Meta{Hostname: name, GoOS: runtime.GOOS}, Mode: wgiface.Netstack,
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: countingLogger(), Observers: []fsm.Observer{changes},
		MeasureDispatch: measure})
	if err != nil {
		return nil, err
	}
	if err := c.Start(context.Background()); err != nil {
		return nil, err
	}
	return &client{c: c, key: key, changes: changes}, nil
}

// until waits for ok(status), re-checking it after each of the client's
// transitions: the harness waits on events, it does not poll the status.
func until(c *client, what string, ok func(engine.Status) bool) error {
	var last engine.Status
	err := c.changes.Wait(context.Background(), 30*time.Second, func() (bool, error) {
		s, err := c.c.Status()
		last = s
		return err == nil && ok(s), err
	})
	if errors.Is(err, fsmwatch.ErrTimeout) {
		return fmt.Errorf("scenario: %s: not reached in 30 s (engine %s)", what, last.State)
	}
	return err
}

func countIn(s engine.Status, in fsm.State) int {
	n := 0
	for _, p := range s.Peers {
		if p.State == in || strings.HasPrefix(string(p.State), string(in)+".") {
			n++
		}
	}
	return n
}

// fakeMap is a network map of n peers that do not exist.
func fakeMap(serial uint64, n int) (*mgmtpb.NetworkMap, error) {
	nm := &mgmtpb.NetworkMap{Serial: serial}
	for i := range n {
		k, err := nbcrypto.GenerateKey()
		if err != nil {
			return nil, err
		}
		ip := netip.AddrFrom4([4]byte{100, 100 + byte(i>>16), byte(i >> 8), byte(i)})
		nm.RemotePeers = append(nm.RemotePeers, &mgmtpb.RemotePeerConfig{WgPubKey: k.PublicKey().String(),
			AllowedIps: []string{ip.String() + "/32"}, AgentVersion: "0.44.0"})
	}
	return nm, nil
}

// Run runs every phase and prints the table.
func Run(ctx context.Context, o Options) error {
	if o.Peers <= 0 {
		o.Peers = 1000
	}
	if o.Duration <= 0 {
		o.Duration = time.Minute
	}
	out := o.Out
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		return err
	}
	defer n.Close()

	fmt.Fprintf(out, "scenario: %d fake peers, %v per idle phase, GOMAXPROCS %d\n", o.Peers, o.Duration, runtime.GOMAXPROCS(0))
	base := sample()
	a, err := newClient(n, "scenario-a")
	if err != nil {
		return err
	}
	defer a.c.Close()
	if err := until(a, "logged in", func(s engine.Status) bool { return s.Serial > 0 }); err != nil {
		return err
	}
	st, _ := a.c.Status()

	// Phase 1: signal down, N peers in the map → all parked.
	n.Signal.Stop()
	if err := until(a, "signal down", func(s engine.Status) bool { return s.State == "running.signal-down" }); err != nil {
		return err
	}
	before := sample()
	nm, err := fakeMap(st.Serial+1, o.Peers)
	if err != nil {
		return err
	}
	if err := n.Mgmt.PushMap(a.key.PublicKey(), nm); err != nil {
		return err
	}
	if err := until(a, "peers parked", func(s engine.Status) bool { return countIn(s, peerfsm.Parked) == o.Peers }); err != nil {
		return err
	}
	parked := sample()
	ps, _ := a.c.Status()
	fmt.Fprintf(out, "\nper peer, parked (signal down): %.2f goroutines, %.2f timers, %.1f KiB heap\n",
		float64(parked.goroutines-before.goroutines)/float64(o.Peers), float64(ps.Loop.TimersArmed-countLinkTimers(ps))/float64(o.Peers),
		(float64(parked.heap)-float64(before.heap))/1024/float64(o.Peers))

	// Phase 2: both servers down, watch the idle process.
	n.Mgmt.Stop()
	if err := idle(ctx, out, a.c, o, fmt.Sprintf("%d peers parked, management and signal down", o.Peers)); err != nil {
		return err
	}

	// Phase 3: servers back; signal up → the fake peers offer (never answered).
	if err := n.Mgmt.Start(); err != nil {
		return err
	}
	if err := n.Signal.Start(); err != nil {
		return err
	}
	if err := until(a, "peers offering", func(s engine.Status) bool { return countIn(s, peerfsm.Offering) == o.Peers }); err != nil {
		return err
	}
	off := sample()
	ofs, _ := a.c.Status()
	fmt.Fprintf(out, "per peer, offering (unanswered, resend timer): %.2f goroutines, %.2f timers, %.1f KiB heap\n",
		float64(off.goroutines-before.goroutines)/float64(o.Peers), float64(ofs.Loop.TimersArmed-countLinkTimers(ofs))/float64(o.Peers),
		(float64(off.heap)-float64(before.heap))/1024/float64(o.Peers))
	_ = a.c.Close()

	// Phase 4: a connected pair, idle.
	n2, err := testnet.Start(testnet.Options{})
	if err != nil {
		return err
	}
	defer n2.Close()
	p1, err := newClient(n2, "pair-1")
	if err != nil {
		return err
	}
	defer p1.c.Close()
	p2, err := newClient(n2, "pair-2")
	if err != nil {
		return err
	}
	defer p2.c.Close()
	for _, c := range []*client{p1, p2} {
		if err := until(c, "connected", func(s engine.Status) bool { return countIn(s, peerfsm.Connected) == 1 }); err != nil {
			return err
		}
	}

	s1, _ := p1.c.Status()
	s2, _ := p2.c.Status()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = netping.Ping(pctx, p1.c.Net(), s1.Address.Addr(), s2.Address.Addr(), 100*time.Millisecond)
	cancel()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "connected pair: %s (%s/%s)\n", s1.Peers[0].State, s1.Peers[0].LocalType, s1.Peers[0].RemoteType)
	sock1, sock2 := p1.c.SocketStats(), p2.c.SocketStats()
	if err := idle(ctx, out, p1.c, o, "a connected pair, idle (both clients in this process)"); err != nil {
		return err
	}
	e1, e2 := p1.c.SocketStats(), p2.c.SocketStats()
	fmt.Fprintf(out, "  datagrams on the two sockets: WireGuard %d, STUN %d (sent by agents %d, answered by the responder %d)\n",
		e1.WireGuardIn+e2.WireGuardIn-sock1.WireGuardIn-sock2.WireGuardIn, e1.STUNIn+e2.STUNIn-sock1.STUNIn-sock2.STUNIn,
		e1.STUNOut+e2.STUNOut-sock1.STUNOut-sock2.STUNOut, e1.Responded+e2.Responded-sock1.Responded-sock2.Responded)

	// What a connected peer costs: with signal down (its stream gone, the
	// tunnel kept), compare the pair with and without its peers.
	n2.Signal.Stop()
	for _, c := range []*client{p1, p2} {
		if err := until(c, "signal down", func(s engine.Status) bool { return s.State == "running.signal-down" }); err != nil {
			return err
		}
	}
	c1, _ := p1.c.Status()
	withPeers := sample()
	for _, c := range []*client{p1, p2} {
		st, _ := c.c.Status()
		if err := n2.Mgmt.PushMap(c.key.PublicKey(), &mgmtpb.NetworkMap{Serial: st.Serial + 100, RemotePeersIsEmpty: true}); err != nil {
			return err
		}
	}
	for _, c := range []*client{p1, p2} {
		if err := until(c, "peers removed", func(s engine.Status) bool { return len(s.Peers) == 0 }); err != nil {
			return err
		}
	}
	without := sample()
	fmt.Fprintf(out, "per peer, %s: %.1f goroutines (wireguard-go's peer routines; the ICE agent is closed), %d timer (the path check), %.1f KiB heap\n",
		c1.Peers[0].State, float64(withPeers.goroutines-without.goroutines)/2, c1.Peers[0].Timers,
		(float64(withPeers.heap)-float64(without.heap))/1024/2)
	fmt.Fprintf(out, "\nprocess baseline before any client: %d goroutines\n", base.goroutines)
	return nil
}

func countLinkTimers(s engine.Status) int64 {
	n := int64(0)
	for _, l := range []engine.LinkStatus{s.Management, s.Signal} {
		if strings.HasSuffix(string(l.State), "backoff") {
			n++
		}
	}
	return n
}

// idle watches the process for o.Duration and prints its cost per minute.
func idle(ctx context.Context, out io.Writer, c *nbclient.Client, o Options, title string) error {
	s0, err := c.Status()
	if err != nil {
		return err
	}
	p0 := sample()
	w0 := warnings.Load()
	select {
	case <-time.After(o.Duration):
	case <-ctx.Done():
		return ctx.Err()
	}
	p1 := sample()
	s1, err := c.Status()
	if err != nil {
		return err
	}
	min := p1.at.Sub(p0.at).Minutes()
	fmt.Fprintf(out, "\n%s, over %v:\n", title, p1.at.Sub(p0.at).Round(time.Second))
	fmt.Fprintf(out, "  loop events %d (%.1f/min), context switches %.0f/min, CPU %.3f s/min, goroutines %d, heap %.1f MiB\n",
		s1.Loop.Dispatched-s0.Loop.Dispatched, float64(s1.Loop.Dispatched-s0.Loop.Dispatched)/min,
		float64(p1.switches-p0.switches)/min, (p1.cpu-p0.cpu).Seconds()/min, p1.goroutines, float64(p1.heap)/(1<<20))
	fmt.Fprintf(out, "  management %s (%d sessions), signal %s (%d sessions), timers armed %d, warn/error log lines %d\n",
		s1.Management.State, s1.Management.Sessions, s1.Signal.State, s1.Signal.Sessions, s1.Loop.TimersArmed, warnings.Load()-w0)
	return nil
}

// RunOffline measures the normal state of a real network: both servers up
// and o.Peers peers in the map that are offline (they never answer an
// offer). It watches two consecutive windows of o.Duration: the first holds
// the first resends, the second what an unanswered peer costs for good.
func RunOffline(ctx context.Context, o Options) error {
	if o.Peers <= 0 {
		o.Peers = 1000
	}
	if o.Duration <= 0 {
		o.Duration = time.Minute
	}
	out := o.Out
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		return err
	}
	defer n.Close()
	fmt.Fprintf(out, "scenario offline: %d offline peers in the map, servers up, %v per window, GOMAXPROCS %d\n",
		o.Peers, o.Duration, runtime.GOMAXPROCS(0))
	a, err := newClientWith(n, "scenario-offline", true)
	if err != nil {
		return err
	}
	defer a.c.Close()
	if err := until(a, "signal up", func(s engine.Status) bool {
		return s.Serial > 0 && strings.HasPrefix(string(s.State), "running.signal-up")
	}); err != nil {
		return err
	}
	st, _ := a.c.Status()
	nm, err := fakeMap(st.Serial+1, o.Peers)
	if err != nil {
		return err
	}
	if err := n.Mgmt.PushMap(a.key.PublicKey(), nm); err != nil {
		return err
	}
	if err := until(a, "peers unparked", func(s engine.Status) bool {
		return len(s.Peers) == o.Peers && countIn(s, peerfsm.Parked) == 0
	}); err != nil {
		return err
	}
	if s, err := a.c.Status(); err == nil {
		fmt.Fprintf(out, "longest single dispatch so far (login, the %d-peer map, unparking): %v\n", o.Peers, s.Loop.MaxDispatch)
	}
	for w := 1; w <= 2; w++ {
		sends := n.Signal.Sends()
		if err := idle(ctx, out, a.c, o, fmt.Sprintf("window %d: %d offline peers, servers up", w, o.Peers)); err != nil {
			return err
		}
		s, _ := a.c.Status()
		fmt.Fprintf(out, "  offers (signal sends) %.0f/min; peers offering %d, waiting %d\n",
			float64(n.Signal.Sends()-sends)/o.Duration.Minutes(), countIn(s, peerfsm.Offering), countIn(s, peerfsm.Waiting))
	}
	return nil
}
