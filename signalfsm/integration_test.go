package signalfsm_test

import (
	"context"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// fast keeps integration tests short; the schedule's shape is the same.
var fast = backoff.Policy{Base: 50 * time.Millisecond, Cap: 200 * time.Millisecond, Min: 10 * time.Millisecond}

const wait = 20 * time.Second // a failure deadline, not an expectation

type client struct {
	key   wgtypes.Key
	loop  *fsm.Loop
	m     *fsm.Machine[*signalfsm.Link]
	watch *fsmwatch.Watch
	got   chan sigwire.Message
	stop  func()
}

func startClient(t *testing.T, addr string) *client {
	t.Helper()
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{key: key, loop: fsm.NewLoop(fsm.Options{}), watch: fsmwatch.New(1024), got: make(chan sigwire.Message, 16)}
	c.loop.Observe(c.watch)
	d := &signalfsm.Dialer{Key: key, Deliver: func(m sigwire.Message) { c.got <- m }}
	c.m, err = signalfsm.New(c.loop, &signalfsm.Link{Effects: d, Backoff: fast}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.loop.Run(ctx); close(done) }()
	c.stop = func() { cancel(); <-done }
	t.Cleanup(c.stop)
	if err := c.loop.Post(fsm.Envelope{To: signalfsm.ID, Event: signalfsm.EvStart, Data: signalfsm.Server{Addr: addr}}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *client) until(t *testing.T, s fsm.State) []fsm.Record {
	t.Helper()
	recs, err := c.watch.Until(signalfsm.ID, s, wait)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (c *client) dials() int {
	var n int
	_ = c.loop.Do(func() { n = c.m.Data.Dials })
	return n
}

func startNet(t *testing.T) *testnet.Network {
	t.Helper()
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

func TestOutageAndRecovery(t *testing.T) {
	n := startNet(t)
	c := startClient(t, n.SignalAddr())
	c.until(t, signalfsm.Connected)

	n.Signal.Stop()
	c.until(t, signalfsm.Backoff)
	// While the server is down the link dials only when its timer fires:
	// every dial is followed by a backoff, never a second dial.
	c.until(t, signalfsm.Connecting)
	c.until(t, signalfsm.Backoff)
	before := c.dials()

	if err := n.Signal.Start(); err != nil {
		t.Fatal(err)
	}
	recs := c.until(t, signalfsm.Connected)
	after := c.dials()
	// Connected within one backoff step: at most the dial already in flight
	// when the server came back, and the next one.
	if after-before > 2 {
		t.Fatalf("%d dials after the server came back (records %v)", after-before, recs)
	}
	for _, r := range recs {
		if r.To == signalfsm.Connecting && r.From == signalfsm.Backoff && r.Event != signalfsm.EvRetry {
			t.Fatalf("dial not caused by the timer: %+v", r)
		}
	}
}

func TestServerClosesStream(t *testing.T) {
	n := startNet(t)
	c := startClient(t, n.SignalAddr())
	c.until(t, signalfsm.Connected)
	n.Signal.CloseStreams()
	c.until(t, signalfsm.Backoff)
	c.until(t, signalfsm.Connected)
}

func TestMessagesReachTheDeliverFunc(t *testing.T) {
	n := startNet(t)
	a := startClient(t, n.SignalAddr())
	b := startClient(t, n.SignalAddr())
	a.until(t, signalfsm.Connected)
	b.until(t, signalfsm.Connected)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	for _, dir := range []struct{ from, to *client }{{a, b}, {b, a}} {
		s, err := sigwire.Dial(n.SignalAddr(), false, dir.from.key)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Send(ctx, sigwire.Message{To: dir.to.key.PublicKey(), Kind: sigwire.Offer, Ufrag: "ufragufragufrag1",
			Pwd: "pwdpwdpwdpwdpwdpwdpwdpwdpwdpwd12", SessionID: []byte{1, 2, 3, 4, 5}})
		s.Close()
		if err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-dir.to.got:
			if m.From != dir.from.key.PublicKey() || m.Kind != sigwire.Offer {
				t.Fatalf("got %+v", m)
			}
		case <-ctx.Done():
			t.Fatal("message not delivered")
		}
	}
}

func TestStopEndsTheStream(t *testing.T) {
	n := startNet(t)
	c := startClient(t, n.SignalAddr())
	c.until(t, signalfsm.Connected)
	_ = c.loop.Post(fsm.Envelope{To: signalfsm.ID, Event: signalfsm.EvStop})
	c.until(t, signalfsm.Stopped)
	timeout := time.After(wait)
	for {
		changed := n.Signal.Changed()
		if len(n.Signal.Connected()) == 0 {
			return
		}
		select {
		case <-changed:
		case <-timeout:
			t.Fatal("server still sees the stream after stop")
		}
	}
}
