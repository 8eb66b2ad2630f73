package signalfsm_test

import (
	"context"
	"net"
	"testing"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// A refused server fails the attempt with the pre-dial (no gRPC client is
// built), and the link records the very error gRPC's Connect gives for it.
func TestRefusedDialFailsAsGRPCWould(t *testing.T) {
	addr := refusedAddr(t)
	c := startClient(t, addr)
	recs := c.until(t, signalfsm.Backoff)
	var got string
	for _, r := range recs {
		if r.Event == signalfsm.EvConnectFailed {
			got = r.Cause
		}
	}
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	g, err := sigwire.Dial(addr, false, key)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	_, gerr := g.Connect(context.Background())
	if gerr == nil {
		t.Fatal("gRPC connect to a refused address succeeded")
	}
	if got != gerr.Error() {
		t.Errorf("connect failure recorded as\n  %q\nwant gRPC's\n  %q", got, gerr.Error())
	}
}
