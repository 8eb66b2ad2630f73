package officialpeer_test

import (
	"context"
	"testing"
	"time"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/internal/testnet/officialpeer"
)

// Two doubles connect to each other and pass traffic: the double is a
// working peer on its own, checks answered by pion's agent on the other
// side (which ignores what follows FINGERPRINT).
func TestTwoDoubles(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	var ds []*officialpeer.Peer
	for _, name := range []string{"a", "b"} {
		k, err := nbcrypto.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		d, err := officialpeer.Start(officialpeer.Config{ManagementURL: n.ManagementURL(), SetupKey: n.SetupKey(), Key: k, Hostname: name})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		ds = append(ds, d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := netping.Ping(ctx, ds[0].Net(), ds[0].Addr(), ds[1].Addr(), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := netping.Ping(ctx, ds[1].Net(), ds[1].Addr(), ds[0].Addr(), 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
}
