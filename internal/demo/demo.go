// Package demo runs nbfsm's links against the built-in test network and
// prints their transitions through a signal outage, a management outage and
// the recovery: `make demo` / `netbird demo`. No root, no network beyond
// 127.0.0.1.
package demo

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/signal"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/mgmtfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// Options tune the demo.
type Options struct {
	// Outage is how long each server stays down (default 4 s).
	Outage time.Duration
	// Timeout bounds each wait for a state (default 60 s).
	Timeout time.Duration
}

// client is one nbfsm client: a loop owning a supervisor, the management
// link and the signal link.
type client struct {
	name  string
	key   wgtypes.Key
	loop  *fsm.Loop
	mgmt  *fsm.Machine[*mgmtfsm.Link]
	sig   *fsm.Machine[*signalfsm.Link]
	watch *fsmwatch.Watch
	stop  func()
}

// sup is the demo's stand-in for the engine: it starts the signal link with
// the server the management login hands out, and prints what the links
// notify.
type sup struct {
	name string
	out  *printer
}

const (
	evSignalUp   fsm.Event = "signal-up"
	evSignalDown fsm.Event = "signal-down"
)

var supSpec = fsm.MustCompile(fsm.Spec[*sup]{
	Kind: "client", Initial: "running",
	Events: []fsm.Event{mgmtfsm.NotifyLogin, mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig, evSignalUp, evSignalDown},
	States: []fsm.StateDef[*sup]{{Name: "running", Ignore: []fsm.Event{evSignalUp, evSignalDown}}},
	Transitions: []fsm.Transition[*sup]{
		{From: "running", Event: mgmtfsm.NotifyLogin, Action: func(m *fsm.Machine[*sup], e fsm.Envelope) {
			r := e.Data.(*mgmt.LoginResult)
			m.Data.out.note(m.Data.name, fmt.Sprintf("logged in: overlay address %s, signal %s", r.Peer.Address, r.Config.Signal.URI))
			m.Send(signalfsm.ID, signalfsm.EvStart, signalfsm.Server{Addr: r.Config.Signal.URI, TLS: r.Config.Signal.TLS()})
		}},
		{From: "running", Event: mgmtfsm.NotifyConfig, Action: func(m *fsm.Machine[*sup], e fsm.Envelope) {
			c := e.Data.(*mgmt.Config)
			m.Send(signalfsm.ID, signalfsm.EvServer, signalfsm.Server{Addr: c.Signal.URI, TLS: c.Signal.TLS()})
		}},
		{From: "running", Event: mgmtfsm.NotifyMap, Action: func(m *fsm.Machine[*sup], e fsm.Envelope) {
			nm := e.Data.(*mgmt.NetworkMap)
			m.Data.out.note(m.Data.name, fmt.Sprintf("network map serial %d: %d peer(s)", nm.Serial, len(nm.Peers)))
		}},
	},
	Routes: []fsm.Route{
		{Kind: signalfsm.Kind, Enter: signalfsm.Connected, Raise: evSignalUp},
		{Kind: signalfsm.Kind, Leave: signalfsm.Connected, Raise: evSignalDown},
	},
})

// printer writes timestamped lines; observers call it from loop goroutines.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

func (p *printer) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%7.3fs  %s\n", time.Since(p.start).Seconds(), s)
}

func (p *printer) note(who, s string) { p.line(fmt.Sprintf("%-6s %s", who, s)) }

func (p *printer) observer(who string) fsm.Observer {
	return fsm.ObserverFunc(func(r fsm.Record) {
		if r.Internal || r.Kind == "client" {
			return
		}
		cause := ""
		if r.Cause != "" {
			cause = "  (" + shorten(r.Cause) + ")"
		}
		from := short(r.From)
		if from == "" {
			from = "·"
		}
		p.line(fmt.Sprintf("%-6s %-7s %-13s --%s--> %s%s", who, r.Kind, from, r.Event, short(r.To), cause))
	})
}

func short(s fsm.State) string {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return string(s[i+1:])
		}
	}
	return string(s)
}

func shorten(s string) string {
	if len(s) > 70 {
		return s[:67] + "..."
	}
	return s
}

func newClient(n *testnet.Network, name string, out *printer) (*client, error) {
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	c := &client{name: name, key: key, loop: fsm.NewLoop(fsm.Options{}), watch: fsmwatch.New(4096)}
	c.loop.Observe(out.observer(name))
	c.loop.Observe(c.watch)
	s, err := fsm.Add(c.loop, supSpec, "client", &sup{name: name, out: out}, nil)
	if err != nil {
		return nil, err
	}
	md := &mgmtfsm.Dialer{URL: n.ManagementURL(), Key: key, Meta: mgmt.Meta{Hostname: name, GoOS: "linux"}}
	if c.mgmt, err = mgmtfsm.New(c.loop, &mgmtfsm.Link{Effects: md, SetupKey: n.SetupKey()}, s); err != nil {
		return nil, err
	}
	sd := &signalfsm.Dialer{Key: key, Deliver: func(m signal.Message) {
		out.note(name, fmt.Sprintf("signal message from %s: %s", nbcrypto.Fingerprint(m.From), m.Kind))
	}}
	if c.sig, err = signalfsm.New(c.loop, &signalfsm.Link{Effects: sd}, s); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.loop.Run(ctx); close(done) }()
	c.stop = func() {
		_ = c.loop.Do(func() { md.EndSession() })
		cancel()
		<-done
	}
	return c, c.loop.Post(fsm.Envelope{To: mgmtfsm.ID, Event: mgmtfsm.EvStart})
}

// Run runs the demo, writing to w.
func Run(ctx context.Context, w io.Writer, o Options) error {
	if o.Outage == 0 {
		o.Outage = 4 * time.Second
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	out := &printer{w: w, start: time.Now()}
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		return err
	}
	defer n.Close()
	out.line(fmt.Sprintf("test network up: management %s, signal %s", n.ManagementURL(), n.SignalAddr()))

	var clients []*client
	defer func() {
		for _, c := range clients {
			c.stop()
		}
	}()
	for _, name := range []string{"alpha", "beta"} {
		c, err := newClient(n, name, out)
		if err != nil {
			return err
		}
		clients = append(clients, c)
	}
	waitAll := func(machine string, s fsm.State) error {
		for _, c := range clients {
			if _, err := c.watch.Until(machine, s, o.Timeout); err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
		}
		return ctx.Err()
	}
	if err := waitAll(mgmtfsm.ID, mgmtfsm.Synced); err != nil {
		return err
	}
	if err := waitAll(signalfsm.ID, signalfsm.Connected); err != nil {
		return err
	}
	if err := sendOffer(ctx, n, clients[0], clients[1]); err != nil {
		return err
	}

	phase := func(title string, stop func(), start func() error, machine string, down, up fsm.State) error {
		out.line("——— " + title + " down for " + o.Outage.String() + " ———")
		stop()
		if err := waitAll(machine, down); err != nil {
			return err
		}
		select {
		case <-time.After(o.Outage):
		case <-ctx.Done():
			return ctx.Err()
		}
		out.line("——— " + title + " back ———")
		back := time.Now()
		if err := start(); err != nil {
			return err
		}
		if err := waitAll(machine, up); err != nil {
			return err
		}
		out.line(fmt.Sprintf("——— every %s link recovered %.2fs after the server came back ———", machine, time.Since(back).Seconds()))
		return nil
	}
	if err := phase("signal server", n.Signal.Stop, n.Signal.Start, signalfsm.ID, signalfsm.Backoff, signalfsm.Connected); err != nil {
		return err
	}
	if err := phase("management server", n.Mgmt.Stop, n.Mgmt.Start, mgmtfsm.ID, mgmtfsm.Backoff, mgmtfsm.Synced); err != nil {
		return err
	}
	for _, c := range clients {
		var md, sd int
		var st fsm.Stats
		_ = c.loop.Do(func() { md, sd, st = c.mgmt.Data.Dials, c.sig.Data.Dials, c.loop.Stats() })
		out.note(c.name, fmt.Sprintf("management sessions %d, signal sessions %d, events %d, stale worker events dropped %d",
			md, sd, st.Dispatched, st.StaleGen))
	}
	out.line("done: every wait above was a state with one timer; nothing polled.")
	return nil
}

func sendOffer(ctx context.Context, n *testnet.Network, from, to *client) error {
	s, err := signal.Dial(n.SignalAddr(), false, from.key)
	if err != nil {
		return err
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return s.Send(ctx, signal.Message{To: to.key.PublicKey(), Kind: signal.Offer,
		Ufrag: "demoUfragDemoUfr", Pwd: "demoPwdDemoPwdDemoPwdDemoPwdDemo", SessionID: []byte{1, 2, 3, 4, 5}})
}
