package client_test

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/fsmwatch"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// TestPathsChanged: the network monitor's entry point. With no address
// gone, a direct peer's path is checked at once and kept (the remote is
// heard); when the local address of the path is gone, the peer re-gathers
// and re-offers, reconnects, and the tunnel carries ping again. The engine
// itself never restarts.
func TestPathsChanged(t *testing.T) {
	n := startNet(t)
	watch := fsmwatch.New(4096)
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	alpha, err := client.New(client.Options{
		ManagementURL: n.ManagementURL(), PrivateKey: key, SetupKey: n.SetupKey(),
		Meta: mgmt.Meta{Hostname: "alpha", GoOS: "linux"}, Mode: wgiface.Netstack,
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: zap.NewNop(), Observers: []fsm.Observer{watch},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := alpha.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer alpha.Close()
	beta := startNode(t, n, "beta", nil)
	peer := peerfsm.ID(beta.key.PublicKey())
	if recs, err := watch.Until(peer, peerfsm.Direct, wait); err != nil {
		for _, r := range recs {
			t.Logf("%s %s --%s--> %s %s", r.Machine, r.From, r.Event, r.To, r.Cause)
		}
		t.Fatal(err)
	}
	engineSince := func() time.Time {
		s, err := alpha.Status()
		if err != nil {
			t.Fatal(err)
		}
		return s.Since
	}
	since := engineSince()

	// Nothing gone: a path check now, the path kept.
	if err := alpha.PathsChanged(nil); err != nil {
		t.Fatal(err)
	}
	recs, err := untilEvent(watch, peer, peerfsm.EvPathCheck, wait)
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[len(recs)-1]; !r.Internal || r.To != peerfsm.Direct {
		t.Fatalf("path check moved the peer: %+v", r)
	}

	// The path's local address gone: re-gather, re-offer, reconnect.
	if err := alpha.PathsChanged([]netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	recs, err = untilEvent(watch, peer, peerfsm.EvICEFailed, wait)
	if err != nil {
		t.Fatal(err)
	}
	if r := recs[len(recs)-1]; r.To == peerfsm.Direct {
		t.Fatalf("peer kept a path on a gone address: %+v", r)
	}
	start := time.Now()
	if _, err := watch.Until(peer, peerfsm.Direct, wait); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, _ := alpha.Status()
	if _, err := netping.Ping(ctx, alpha.Net(), s.Address.Addr(), addrOf(t, beta), 200*time.Millisecond); err != nil {
		t.Fatalf("ping after re-offer: %v", err)
	}
	t.Logf("reconnected %v after the address went", time.Since(start).Round(time.Millisecond))
	if got := engineSince(); !got.Equal(since) {
		t.Fatalf("engine state changed (%v → %v): it must not restart", since, got)
	}
}

// untilEvent reads records until machine handles ev.
func untilEvent(w *fsmwatch.Watch, machine string, ev fsm.Event, timeout time.Duration) ([]fsm.Record, error) {
	var recs []fsm.Record
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case r := <-w.C:
			recs = append(recs, r)
			if r.Machine == machine && r.Event == ev {
				return recs, nil
			}
		case <-timer.C:
			return recs, context.DeadlineExceeded
		}
	}
}
