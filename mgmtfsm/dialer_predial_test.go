package mgmtfsm_test

import (
	"context"
	"net"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/mgmtfsm"
)

// A refused server fails the session's first call with the pre-dial (no
// gRPC client is built), and the link records the very error gRPC's
// GetServerKey gives for it.
func TestRefusedDialFailsAsGRPCWould(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	_ = l.Close()
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
	d := &mgmtfsm.Dialer{URL: url, Key: key}
	c.m, err = mgmtfsm.New(c.loop, &mgmtfsm.Link{Effects: d, Backoff: fast}, sup)
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
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := c.loop.Post(fsm.Envelope{To: mgmtfsm.ID, Event: mgmtfsm.EvStart}); err != nil {
		t.Fatal(err)
	}
	recs := c.until(t, mgmtfsm.Backoff)
	var got string
	for _, r := range recs {
		if r.Event == mgmtfsm.EvFailed && r.From == mgmtfsm.FetchingKey {
			got = r.Cause
		}
	}
	g, err := mgmt.Dial(url, key)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, gerr := g.ServerKey(context.Background())
	if gerr == nil {
		t.Fatal("gRPC call to a refused address succeeded")
	}
	if got != gerr.Error() {
		t.Errorf("failure recorded as\n  %q\nwant gRPC's\n  %q", got, gerr.Error())
	}
}
