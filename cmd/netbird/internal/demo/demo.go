// Package demo runs three nbfsm clients against the built-in test network
// and prints what their machines do: they join with a setup key, connect
// every pair over ICE and WireGuard (userspace, netstack: no root) and pass
// traffic; then the signal server goes down (tunnels stay up) and comes back,
// and the management server goes down and comes back. `make demo` /
// `netbird demo`. Nothing leaves 127.0.0.1.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Options tune the demo.
type Options struct {
	// Outage is how long each server stays down (default 4 s).
	Outage time.Duration
	// Timeout bounds each wait (default 60 s).
	Timeout time.Duration
}

// printer writes timestamped lines; observers call it from loop goroutines.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
	names map[string]string // peer machine id → client name
}

func (p *printer) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%7.3fs  %s\n", time.Since(p.start).Seconds(), s)
}

func (p *printer) observer(who string) fsm.Observer {
	return fsm.ObserverFunc(func(r fsm.Record) {
		if r.Internal || r.From == "" || r.Kind == engine.Kind && !strings.HasPrefix(string(r.To), "running.signal") {
			return
		}
		machine := r.Kind
		if r.Kind == peerfsm.Kind {
			machine = "peer:" + p.names[r.Machine]
		}
		cause := ""
		if r.Cause != "" && r.Kind != engine.Kind {
			cause = "  (" + shorten(r.Cause) + ")"
		}
		p.line(fmt.Sprintf("%-6s %-11s %-13s --%s--> %s%s", who, machine, short(r.From), r.Event, short(r.To), cause))
	})
}

func short(s fsm.State) string {
	if i := strings.LastIndexByte(string(s), '.'); i >= 0 {
		return string(s[i+1:])
	}
	return string(s)
}

func shorten(s string) string {
	if len(s) > 60 {
		return s[:57] + "..."
	}
	return s
}

type node struct {
	name    string
	key     wgtypes.Key
	c       *client.Client
	changes *fsmwatch.Changes // a token per transition, for until
	started time.Time
}

// until waits for ok(status) of one client, re-checking it after each of
// the client's transitions (the demo harness waits on events too).
func until(ctx context.Context, nd *node, timeout time.Duration, what string, ok func(engine.Status) bool) error {
	err := nd.changes.Wait(ctx, timeout, func() (bool, error) {
		s, err := nd.c.Status()
		return err == nil && ok(s), err
	})
	if errors.Is(err, fsmwatch.ErrTimeout) {
		return fmt.Errorf("demo: %s: %s not reached within %v", nd.name, what, timeout)
	}
	return err
}

func connected(s engine.Status) int {
	n := 0
	for _, p := range s.Peers {
		if p.Connection != "" {
			n++
		}
	}
	return n
}

// Run runs the demo, writing to w.
func Run(ctx context.Context, w io.Writer, o Options) error {
	if o.Outage == 0 {
		o.Outage = 4 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	out := &printer{w: w, start: time.Now(), names: map[string]string{}}
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		return err
	}
	defer n.Close()
	out.line(fmt.Sprintf("test network up: management %s, signal %s, STUN/TURN %s", n.ManagementURL(), n.SignalAddr(), n.STUNURI()))

	var nodes []*node
	for _, name := range []string{"alpha", "beta", "gamma"} {
		key, err := nbcrypto.GenerateKey()
		if err != nil {
			return err
		}
		out.names[peerfsm.ID(key.PublicKey())] = name
		nodes = append(nodes, &node{name: name, key: key, changes: fsmwatch.NewChanges()})
	}
	for _, nd := range nodes {
		nd.c, err = client.New(client.Options{ManagementURL: n.ManagementURL(), PrivateKey: nd.key,
			SetupKey: n.SetupKey(), Meta: mgmt.Meta{Hostname: nd.name, GoOS: "linux"}, Mode: wgiface.Netstack,
			Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: zap.NewNop(), Observers: []fsm.Observer{out.observer(nd.name), nd.changes}})
		if err != nil {
			return err
		}
		defer nd.c.Close()
	}
	for _, nd := range nodes {
		nd.started = time.Now()
		if err := nd.c.Start(ctx); err != nil {
			return err
		}
	}
	for _, nd := range nodes {
		if err := until(ctx, nd, o.Timeout, "two peers connected", func(s engine.Status) bool { return connected(s) == 2 }); err != nil {
			return err
		}
	}
	if err := pingAll(ctx, out, nodes, o, "first echo reply", true); err != nil {
		return err
	}

	out.line("——— signal server down: connected peers keep their tunnels ———")
	n.Signal.Stop()
	for _, nd := range nodes {
		if err := until(ctx, nd, o.Timeout, "signal down", func(s engine.Status) bool { return s.State == engine.SignalDown }); err != nil {
			return err
		}
	}
	if err := pingAll(ctx, out, nodes, o, "echo reply without signal", false); err != nil {
		return err
	}
	sleep(ctx, o.Outage)
	out.line("——— signal server back ———")
	back := time.Now()
	if err := n.Signal.Start(); err != nil {
		return err
	}
	for _, nd := range nodes {
		if err := until(ctx, nd, o.Timeout, "signal up", func(s engine.Status) bool { return s.Signal.State == signalfsm.Connected }); err != nil {
			return err
		}
	}
	out.line(fmt.Sprintf("——— every signal link back %.2fs after the server ———", time.Since(back).Seconds()))

	out.line("——— management server down ———")
	n.Mgmt.Stop()
	for _, nd := range nodes {
		if err := until(ctx, nd, o.Timeout, "management backoff", func(s engine.Status) bool { return s.Management.State == mgmtfsm.Backoff }); err != nil {
			return err
		}
	}
	sleep(ctx, o.Outage)
	out.line("——— management server back (with a new server key) ———")
	back = time.Now()
	if err := n.Mgmt.Start(); err != nil {
		return err
	}
	for _, nd := range nodes {
		if err := until(ctx, nd, o.Timeout, "management synced", func(s engine.Status) bool { return s.Management.State == mgmtfsm.Synced }); err != nil {
			return err
		}
	}
	out.line(fmt.Sprintf("——— every management link back %.2fs after the server ———", time.Since(back).Seconds()))
	if err := pingAll(ctx, out, nodes, o, "echo reply", false); err != nil {
		return err
	}
	for _, nd := range nodes {
		s, err := nd.c.Status()
		if err != nil {
			return err
		}
		var peers []string
		for _, p := range s.Peers {
			peers = append(peers, fmt.Sprintf("%s %s %s/%s rx %dB tx %dB", out.names[peerfsm.ID(p.Key)], p.Connection, p.LocalType, p.RemoteType, p.RxBytes, p.TxBytes))
		}
		out.line(fmt.Sprintf("%-6s %s: %s; loop events %d, timers armed %d", nd.name, s.Address, strings.Join(peers, ", "), s.Loop.Dispatched, s.Loop.TimersArmed))
	}
	out.line("done: every wait above was a state with one timer; nothing polled.")
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func pingAll(ctx context.Context, out *printer, nodes []*node, o Options, what string, sinceStart bool) error {
	for _, a := range nodes {
		sa, err := a.c.Status()
		if err != nil {
			return err
		}
		for _, b := range nodes {
			if a == b {
				continue
			}
			sb, err := b.c.Status()
			if err != nil {
				return err
			}
			pctx, cancel := context.WithTimeout(ctx, o.Timeout)
			rtt, err := netping.Ping(pctx, a.c.Net(), sa.Address.Addr(), sb.Address.Addr(), 100*time.Millisecond)
			cancel()
			if err != nil {
				return fmt.Errorf("demo: %s → %s: %w", a.name, b.name, err)
			}
			msg := fmt.Sprintf("%-6s ping %s (%s): %s in %v", a.name, b.name, sb.Address.Addr(), what, rtt.Round(10*time.Microsecond))
			if sinceStart {
				msg += fmt.Sprintf(", %v after %s started", time.Since(a.started).Round(time.Millisecond), a.name)
			}
			out.line(msg)
		}
	}
	return nil
}
