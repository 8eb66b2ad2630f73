package mgmtfsm_test

import (
	"context"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc/codes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/backoff"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/mgmtfsm"
)

var fast = backoff.Policy{Base: 50 * time.Millisecond, Cap: 200 * time.Millisecond, Min: 10 * time.Millisecond}

const wait = 20 * time.Second // a failure deadline, not an expectation

// collector is a minimal supervisor that keeps what the link notifies.
type collector struct {
	maps   chan *mgmt.NetworkMap
	logins chan *mgmt.LoginResult
}

var collectorSpec = fsm.MustCompile(fsm.Spec[*collector]{
	Kind: "collector", Initial: "on", Events: []fsm.Event{mgmtfsm.NotifyLogin, mgmtfsm.NotifyMap, mgmtfsm.NotifyConfig},
	States: []fsm.StateDef[*collector]{{Name: "on", Ignore: []fsm.Event{mgmtfsm.NotifyConfig}}},
	Transitions: []fsm.Transition[*collector]{
		{From: "on", Event: mgmtfsm.NotifyMap, Action: func(m *fsm.Machine[*collector], e fsm.Envelope) {
			select {
			case m.Data.maps <- e.Data.(*mgmt.NetworkMap):
			default:
			}
		}},
		{From: "on", Event: mgmtfsm.NotifyLogin, Action: func(m *fsm.Machine[*collector], e fsm.Envelope) {
			select {
			case m.Data.logins <- e.Data.(*mgmt.LoginResult):
			default:
			}
		}},
	},
})

type client struct {
	key   wgtypes.Key
	loop  *fsm.Loop
	m     *fsm.Machine[*mgmtfsm.Link]
	col   *collector
	watch *fsmwatch.Watch
}

func startClient(t *testing.T, n *testnet.Network, setupKey, host string) *client {
	t.Helper()
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	c := &client{key: key, loop: fsm.NewLoop(fsm.Options{}), watch: fsmwatch.New(4096),
		col: &collector{maps: make(chan *mgmt.NetworkMap, 64), logins: make(chan *mgmt.LoginResult, 64)}}
	c.loop.Observe(c.watch)
	sup, err := fsm.Add(c.loop, collectorSpec, "collector", c.col, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &mgmtfsm.Dialer{URL: n.ManagementURL(), Key: key, Meta: mgmt.Meta{Hostname: host, GoOS: "linux"}}
	c.m, err = mgmtfsm.New(c.loop, &mgmtfsm.Link{Effects: d, Backoff: fast, SetupKey: setupKey}, sup)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.loop.Run(ctx); close(done) }()
	t.Cleanup(func() {
		_ = c.loop.Do(func() { d.EndSession() })
		cancel()
		<-done
	})
	if err := c.loop.Post(fsm.Envelope{To: mgmtfsm.ID, Event: mgmtfsm.EvStart}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *client) until(t *testing.T, s fsm.State) []fsm.Record {
	t.Helper()
	recs, err := c.watch.Until(mgmtfsm.ID, s, wait)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func (c *client) data() mgmtfsm.Link {
	d, _ := c.snapshot()
	return d
}

// snapshot copies the link's data and its armed timers inside the loop.
func (c *client) snapshot() (mgmtfsm.Link, int) {
	var d mgmtfsm.Link
	var timers int
	_ = c.loop.Do(func() { d, timers = *c.m.Data, c.m.Timers() })
	return d, timers
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

func nextMap(t *testing.T, c *client) *mgmt.NetworkMap {
	t.Helper()
	select {
	case m := <-c.col.maps:
		return m
	case <-time.After(wait):
		t.Fatal("no network map")
		return nil
	}
}

func TestRegisterAndReceiveMaps(t *testing.T) {
	n := startNet(t)
	a := startClient(t, n, n.SetupKey(), "alpha")
	recs := a.until(t, mgmtfsm.Synced)
	sawRegistering := false
	for _, r := range recs {
		sawRegistering = sawRegistering || r.To == mgmtfsm.Registering
	}
	if !sawRegistering {
		t.Fatalf("a new peer must register with its setup key: %v", recs)
	}
	if m := nextMap(t, a); len(m.Peers) != 0 {
		t.Fatalf("first map has %d peers", len(m.Peers))
	}
	b := startClient(t, n, n.SetupKey(), "beta")
	b.until(t, mgmtfsm.Synced)
	if m := nextMap(t, b); len(m.Peers) != 1 || m.Peers[0].Key != a.key.PublicKey() {
		t.Fatalf("b's map: %+v", m.Peers)
	}
	m := nextMap(t, a) // pushed when b joined
	if len(m.Peers) != 1 || m.Peers[0].Key != b.key.PublicKey() {
		t.Fatalf("a's map after b joined: %+v", m.Peers)
	}
}

func TestWrongSetupKeyNeedsLoginAndStopsDialing(t *testing.T) {
	n := startNet(t)
	c := startClient(t, n, "not-a-valid-setup-key", "gamma")
	c.until(t, mgmtfsm.NeedsLogin)
	logins := n.Mgmt.Logins()
	dials := c.data().Dials
	// Ten backoff caps later: still waiting, no dial, no login.
	time.Sleep(10 * fast.Cap)
	if d, timers := c.snapshot(); d.Dials != dials || n.Mgmt.Logins() != logins || timers != 0 {
		t.Fatalf("needs-login kept dialing: dials %d → %d, logins %d → %d", dials, d.Dials, logins, n.Mgmt.Logins())
	}
	if d := c.data(); d.LastErr == "" {
		t.Fatal("no status reason for needs-login")
	}
	// A good key gets it going.
	_ = c.loop.Post(fsm.Envelope{To: mgmtfsm.ID, Event: mgmtfsm.EvSetupKey, Data: n.SetupKey()})
	c.until(t, mgmtfsm.Synced)
}

func TestServerRestartRefetchesKey(t *testing.T) {
	n := startNet(t)
	c := startClient(t, n, n.SetupKey(), "delta")
	c.until(t, mgmtfsm.Synced)
	key1 := c.data().ServerKey
	n.Mgmt.Stop()
	c.until(t, mgmtfsm.Backoff)
	c.until(t, mgmtfsm.Backoff) // at least one more dial, on the timer, failing
	if err := n.Mgmt.Start(); err != nil {
		t.Fatal(err)
	}
	recs := c.until(t, mgmtfsm.Synced)
	for _, r := range recs {
		if r.From == mgmtfsm.Backoff && r.Event != mgmtfsm.EvRetry {
			t.Fatalf("dial not caused by the timer: %+v", r)
		}
	}
	if key2 := c.data().ServerKey; key2 == key1 {
		t.Fatal("server key not fetched again after a server restart")
	}
}

func TestServerClosesStream(t *testing.T) {
	n := startNet(t)
	c := startClient(t, n, n.SetupKey(), "epsilon")
	c.until(t, mgmtfsm.Synced)
	n.Mgmt.CloseStreams()
	c.until(t, mgmtfsm.Backoff)
	c.until(t, mgmtfsm.Synced)
}

// TestRegistrationRefusedNeedsLogin: management refuses a registration with
// NotFound or with FailedPrecondition (PROTOCOL.md §3): both end in
// needs-login, and the link neither dials nor arms a timer until a new key.
func TestRegistrationRefusedNeedsLogin(t *testing.T) {
	for _, code := range []codes.Code{codes.NotFound, codes.FailedPrecondition} {
		t.Run(code.String(), func(t *testing.T) {
			n := startNet(t)
			n.Mgmt.RefuseRegistrations(code)
			c := startClient(t, n, n.SetupKey(), "zeta")
			c.until(t, mgmtfsm.NeedsLogin)
			logins, dials := n.Mgmt.Logins(), c.data().Dials
			time.Sleep(10 * fast.Cap)
			if d, timers := c.snapshot(); d.Dials != dials || n.Mgmt.Logins() != logins || timers != 0 {
				t.Fatalf("needs-login kept dialing: dials %d → %d, logins %d → %d, timers %d",
					dials, d.Dials, logins, n.Mgmt.Logins(), timers)
			}
			n.Mgmt.RefuseRegistrations(codes.OK)
			_ = c.loop.Post(fsm.Envelope{To: mgmtfsm.ID, Event: mgmtfsm.EvSetupKey, Data: n.SetupKey()})
			c.until(t, mgmtfsm.Synced)
		})
	}
}
