package scenario

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/peerfsm"
)

// parkedClient is a logged-in client with signal down and N fake peers
// parked; it returns the time from the map push to every peer parked.
func parkedClient(ctx context.Context, N int, name string) (*netState, time.Duration, error) {
	n, a, err := loggedIn(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	st := &netState{n: n, a: a}
	n.Signal.Stop()
	if err := wait(ctx, a, joinTimeout, "signal down", func(s engine.Status) bool { return s.State == engine.SignalDown }); err != nil {
		st.close()
		return nil, 0, err
	}
	st.base = measure(true)
	start := time.Now()
	if err := pushFake(n, a, N); err != nil {
		st.close()
		return nil, 0, err
	}
	if err := wait(ctx, a, joinTimeout, "peers parked", func(s engine.Status) bool { return countIn(s, peerfsm.Parked) == N }); err != nil {
		st.close()
		return nil, 0, err
	}
	return st, time.Since(start), nil
}

// runS4: the engine with 10 000 peer machines.
func runS4(ctx context.Context, b *bench, r *Result) error {
	N := b.n(1000, 10000)
	rounds := 20
	if b.o.Short {
		rounds = 3
	}
	b.progress("S4 N=%d", N)
	st, mapTime, err := parkedClient(ctx, N, "s4")
	if err != nil {
		return err
	}
	defer st.close()
	a := st.a
	s, err := a.c.Status()
	if err != nil {
		return err
	}
	r.Notes = append(r.Notes, "events: `update` (allowed IPs, unchanged) posted to every parked peer machine from one goroutine, rounds × N, timed until the loop has dispatched the last; each is an internal transition with an action",
		"reconcile: engine.Reconcile on the current 10 000-peer map and a desired one (median of 5 calls); push → applied: a map through the management stream, timed until Status shows its serial",
		"the changed map moves 10 % of the peers to new allowed IPs, removes 1 % and adds 1 %")

	row := Row{Label: fmt.Sprintf("N=%d", N), N: N}
	row.add("map of N → all parked", ms(mapTime), "ms")

	// Events through the loop.
	l := a.c.Loop()
	before, start := l.Stats(), time.Now()
	for range rounds {
		for _, p := range s.Peers {
			if err := l.Post(fsm.Envelope{To: peerfsm.ID(p.Key), Event: peerfsm.EvUpdate, Data: p.AllowedIPs}); err != nil {
				return err
			}
		}
	}
	if err := l.Do(func() {}); err != nil {
		return err
	}
	elapsed, after := time.Since(start), l.Stats()
	row.add("events", float64(after.Dispatched-before.Dispatched), "")
	row.add("internal transitions", float64(after.Internal-before.Internal), "")
	row.add("events/s", float64(after.Dispatched-before.Dispatched)/elapsed.Seconds(), "")

	// Reconcile, pure.
	curMap := make(map[wgtypes.Key][]netip.Prefix, len(s.Peers))
	var same []mgmt.RemotePeer
	for _, p := range s.Peers {
		curMap[p.Key] = p.AllowedIPs
		same = append(same, mgmt.RemotePeer{Key: p.Key, AllowedIPs: p.AllowedIPs})
	}
	changed, err := changedPeers(same)
	if err != nil {
		return err
	}
	row.add("reconcile unchanged", ms(timeReconcile(curMap, same)), "ms")
	row.add("reconcile changed", ms(timeReconcile(curMap, changed)), "ms")
	if p := engine.Reconcile(curMap, changed); len(p.Change) == 0 || len(p.Add) == 0 || len(p.Remove) == 0 {
		return fmt.Errorf("changed map: plan %d add, %d remove, %d change", len(p.Add), len(p.Remove), len(p.Change))
	}

	// Push → applied, unchanged then changed.
	serial := s.Serial
	for _, c := range []struct {
		name  string
		peers []mgmt.RemotePeer
	}{{"push → applied, unchanged", same}, {"push → applied, changed", changed}} {
		serial++
		t, err := pushAndWait(ctx, st, serial, c.peers)
		if err != nil {
			return err
		}
		row.add(c.name, ms(t), "ms")
	}
	s, err = a.c.Status()
	if err != nil {
		return err
	}
	row.add("longest dispatch", ms(s.Loop.MaxDispatch), "ms")
	r.Rows = append(r.Rows, row)
	return nil
}

func timeReconcile(cur map[wgtypes.Key][]netip.Prefix, desired []mgmt.RemotePeer) time.Duration {
	var ts []time.Duration
	for range 5 {
		start := time.Now()
		_ = engine.Reconcile(cur, desired)
		ts = append(ts, time.Since(start))
	}
	m, _ := median(ts)
	return m
}

// changedPeers: 10 % with new allowed IPs, 1 % removed, 1 % added.
func changedPeers(same []mgmt.RemotePeer) ([]mgmt.RemotePeer, error) {
	N := len(same)
	out := make([]mgmt.RemotePeer, 0, N)
	for i, p := range same {
		switch {
		case i%100 == 1:
			continue // removed
		case i%10 == 0:
			ip := netip.AddrFrom4([4]byte{100, 120 + byte(i>>16), byte(i >> 8), byte(i)})
			p.AllowedIPs = []netip.Prefix{netip.PrefixFrom(ip, 32)}
		}
		out = append(out, p)
	}
	for i := range max(1, N/100) {
		k, err := nbcrypto.GenerateKey()
		if err != nil {
			return nil, err
		}
		ip := netip.AddrFrom4([4]byte{100, 126, byte(i >> 8), byte(i)})
		out = append(out, mgmt.RemotePeer{Key: k.PublicKey(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(ip, 32)}})
	}
	return out, nil
}

func pushAndWait(ctx context.Context, st *netState, serial uint64, peers []mgmt.RemotePeer) (time.Duration, error) {
	nm := &mgmtpb.NetworkMap{Serial: serial}
	for _, p := range peers {
		rp := &mgmtpb.RemotePeerConfig{WgPubKey: p.Key.String(), AgentVersion: "0.44.0"}
		for _, ip := range p.AllowedIPs {
			rp.AllowedIps = append(rp.AllowedIps, ip.String())
		}
		nm.RemotePeers = append(nm.RemotePeers, rp)
	}
	start := time.Now()
	if err := st.n.Mgmt.PushMap(st.a.key.PublicKey(), nm); err != nil {
		return 0, err
	}
	err := wait(ctx, st.a, joinTimeout, fmt.Sprintf("serial %d", serial), func(s engine.Status) bool { return s.Serial == serial })
	return time.Since(start), err
}

// runS5: memory per parked, session and connected peer.
func runS5(ctx context.Context, b *bench, r *Result) error {
	N := b.n(1000, 10000)
	M := 20
	if b.o.Short {
		M = 3
	}
	b.progress("S5 N=%d parked/session, %d connected", N, M)
	r.Notes = append(r.Notes, fmt.Sprintf("parked and session: N = %d fake peers of one client (heap after a GC, against the same client before the map); session = unparked, unanswered: offering or waiting (MaxOffers sent), counts given", N),
		fmt.Sprintf("connected: a hub with %d real netstack clients (star), signal stopped, then the hub's peers removed: the difference per peer (the hub's side only)", M),
		"official client: 4 goroutines and ~45 KiB per peer, from the issue (measured elsewhere)")
	st, _, err := parkedClient(ctx, N, "s5")
	if err != nil {
		return err
	}
	parked := measure(true)
	perPeer := func(label string, u usage, n int, extra func(*Row)) {
		row := Row{Label: label, N: n}
		row.add("heap", float64(int64(u.heap)-int64(st.base.heap))/float64(n), "B/peer")
		row.add("goroutines", float64(u.goroutines-st.base.goroutines)/float64(n), "/peer")
		row.add("RSS", float64(u.rss-st.base.rss)/float64(n), "B/peer")
		if extra != nil {
			extra(&row)
		}
		r.Rows = append(r.Rows, row)
	}
	s, err := st.a.c.Status()
	if err != nil {
		st.close()
		return err
	}
	perPeer("parked", parked, N, func(row *Row) {
		row.add("timers", float64(s.Loop.TimersArmed-countLinkTimers(s))/float64(N), "/peer")
		row.add("in state", float64(countIn(s, peerfsm.Parked)), "")
	})
	if err := st.n.Signal.Start(); err != nil {
		st.close()
		return err
	}
	if err := wait(ctx, st.a, 2*joinTimeout, "every peer unparked", func(s engine.Status) bool { return countIn(s, peerfsm.Parked) == 0 }); err != nil {
		st.close()
		return err
	}
	session := measure(true)
	s, err = st.a.c.Status()
	st.close()
	if err != nil {
		return err
	}
	perPeer("session (offering or waiting)", session, N, func(row *Row) {
		row.add("timers", float64(s.Loop.TimersArmed-countLinkTimers(s))/float64(N), "/peer")
		row.add("in state", float64(countIn(s, peerfsm.Offering)+countIn(s, peerfsm.Waiting)), "")
		row.add("offering", float64(countIn(s, peerfsm.Offering)), "")
	})

	// Connected: a star of real clients.
	sn, err := newStar(ctx, M, false)
	if err != nil {
		return err
	}
	defer sn.close()
	if err := sn.allConnected(ctx, directCount); err != nil {
		return err
	}
	sn.n.Signal.Stop()
	if err := wait(ctx, sn.hub, joinTimeout, "signal down", func(s engine.Status) bool { return s.State == engine.SignalDown }); err != nil {
		return err
	}
	hs, err := sn.hub.c.Status()
	if err != nil {
		return err
	}
	with := measure(true)
	if err := sn.n.Mgmt.PushMap(sn.hub.key.PublicKey(), &mgmtpb.NetworkMap{Serial: hs.Serial + 100, RemotePeersIsEmpty: true}); err != nil {
		return err
	}
	if err := wait(ctx, sn.hub, joinTimeout, "peers removed", func(s engine.Status) bool { return len(s.Peers) == 0 }); err != nil {
		return err
	}
	// The machines are gone; their WireGuard peers go in the interface's
	// configuration worker: measured before that, the peers' goroutines
	// were still there (0 goroutines per peer, seen under load).
	sn.hub.c.FlushWireGuard()
	without := measure(true)
	row := Row{Label: "connected (" + string(hs.Peers[0].State) + ")", N: M}
	row.add("heap", float64(int64(with.heap)-int64(without.heap))/float64(M), "B/peer")
	row.add("goroutines", float64(with.goroutines-without.goroutines)/float64(M), "/peer")
	row.add("RSS", float64(with.rss-without.rss)/float64(M), "B/peer")
	timers := 0
	for _, p := range hs.Peers {
		timers += p.Timers
	}
	row.add("timers", float64(timers)/float64(M), "/peer")
	row.add("in state", float64(len(hs.Peers)), "")
	r.Rows = append(r.Rows, row)
	return nil
}
