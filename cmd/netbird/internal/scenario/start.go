package scenario

import (
	"context"
	"fmt"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/netping"
	"github.com/nbfsm/nbfsm/internal/testnet"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// runS3: cold start → first packet. Each sample starts two fresh clients
// (new keys) and measures from their start to the first ICMP echo reply
// from b to a ping sent by a every 10 ms; both key orders.
func runS3(ctx context.Context, b *bench, r *Result) error {
	samples := b.o.Samples
	if samples <= 0 {
		samples = 20
		if b.o.Short {
			samples = 5
		}
	}
	r.Notes = append(r.Notes, "registration, login, sync, signal, offer/answer, ICE and the WireGuard handshake included; a fresh pair of keys per sample, one test network per key order, peers removed from management after each sample",
		"official client: 6.4 s median, from the issue's mission text (measured elsewhere)")
	for _, pingerControls := range []bool{true, false} {
		label := "pinger controls ICE"
		if !pingerControls {
			label = "pinger is controlled"
		}
		b.progress("S3 %s, %d samples", label, samples)
		times, err := s3Order(ctx, pingerControls, samples)
		if err != nil {
			return err
		}
		med, mx := median(times)
		row := Row{Label: label, N: 2}
		row.add("samples", float64(len(times)), "")
		row.add("median", ms(med), "ms")
		row.add("max", ms(mx), "ms")
		mn := times[0]
		for _, t := range times {
			mn = min(mn, t)
		}
		row.add("min", ms(mn), "ms")
		r.Rows = append(r.Rows, row)
	}
	return nil
}

// keyPair returns two keys; the first controls ICE iff firstControls.
func keyPair(firstControls bool) (wgtypes.Key, wgtypes.Key, error) {
	a, err := nbcrypto.GenerateKey()
	if err != nil {
		return a, a, err
	}
	c, err := nbcrypto.GenerateKey()
	if err != nil {
		return a, c, err
	}
	if peerfsm.Controlling(a.PublicKey(), c.PublicKey()) != firstControls {
		a, c = c, a
	}
	return a, c, nil
}

func s3Order(ctx context.Context, pingerControls bool, samples int) ([]time.Duration, error) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		return nil, err
	}
	defer n.Close()
	var times []time.Duration
	for i := 0; i < samples; i++ {
		ka, kb, err := keyPair(pingerControls)
		if err != nil {
			return nil, err
		}
		t, err := firstPacket(ctx, n, ka, kb)
		if err != nil {
			return nil, fmt.Errorf("sample %d: %w", i+1, err)
		}
		times = append(times, t)
		_ = n.Mgmt.RemovePeer(ka.PublicKey())
		_ = n.Mgmt.RemovePeer(kb.PublicKey())
	}
	return times, nil
}

func firstPacket(ctx context.Context, n *testnet.Network, ka, kb wgtypes.Key) (time.Duration, error) {
	start := time.Now()
	a, err := join(ctx, n, "s3-a", ka)
	if err != nil {
		return 0, err
	}
	defer a.close()
	c, err := join(ctx, n, "s3-b", kb)
	if err != nil {
		return 0, err
	}
	defer c.close()
	var from, to engine.Status
	if err := wait(ctx, a, joinTimeout, "interface up", func(s engine.Status) bool {
		from = s
		return s.Address.IsValid() && a.c.Net() != nil
	}); err != nil {
		return 0, err
	}
	if err := wait(ctx, c, joinTimeout, "address", func(s engine.Status) bool { to = s; return s.Address.IsValid() }); err != nil {
		return 0, err
	}
	pctx, cancel := context.WithTimeout(ctx, joinTimeout)
	defer cancel()
	if _, err := netping.Ping(pctx, a.c.Net(), from.Address.Addr(), to.Address.Addr(), 10*time.Millisecond); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}
