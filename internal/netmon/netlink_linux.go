//go:build linux

package netmon

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/nbfsm/nbfsm/fsm"
)

// Options configure Start.
type Options struct {
	Sink Sink
	// Exclude names interfaces whose addresses are not the host's (the
	// overlay interface, IFaceBlackList).
	Exclude []string
	Logger  *zap.Logger
	// Namespace, if set, is watched instead of the process's network
	// namespace (tests).
	Namespace *netns.NsHandle
}

// Running is a started monitor; Stop ends it.
type Running struct {
	loop   *fsm.Loop
	done   chan struct{}
	cancel context.CancelFunc
	subs   chan struct{}
	wait   chan struct{}
	handle *netlink.Handle
	clock  *clockWatch
}

// Start subscribes to netlink route, address and link updates (in the
// current network namespace) and runs the monitor machine on its own loop.
func Start(o Options) (*Running, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	log := o.Logger.Named("netmon")
	h := &netlink.Handle{} // the process's namespace
	if o.Namespace != nil {
		var err error
		if h, err = netlink.NewHandleAt(*o.Namespace); err != nil {
			return nil, fmt.Errorf("netmon: %w", err)
		}
	}
	base, err := Take(h, o.Exclude)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netmon: %w", err)
	}
	addrCh := make(chan netlink.AddrUpdate, 64)
	routeCh := make(chan netlink.RouteUpdate, 64)
	linkCh := make(chan netlink.LinkUpdate, 64)
	subs := make(chan struct{})
	onErr := func(err error) { log.Debug("netlink subscription error", zap.Error(err)) }
	if err := netlink.AddrSubscribeWithOptions(addrCh, subs, netlink.AddrSubscribeOptions{ErrorCallback: onErr, Namespace: o.Namespace}); err != nil {
		close(subs)
		return nil, fmt.Errorf("netmon: address subscription: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routeCh, subs, netlink.RouteSubscribeOptions{ErrorCallback: onErr, Namespace: o.Namespace}); err != nil {
		close(subs)
		return nil, fmt.Errorf("netmon: route subscription: %w", err)
	}
	if err := netlink.LinkSubscribeWithOptions(linkCh, subs, netlink.LinkSubscribeOptions{ErrorCallback: onErr, Namespace: o.Namespace}); err != nil {
		close(subs)
		return nil, fmt.Errorf("netmon: link subscription: %w", err)
	}
	loop := fsm.NewLoop(fsm.Options{Logger: log})
	loop.Observe(fsm.ZapObserver{Log: log})
	if _, err := New(loop, &Monitor{Sink: o.Sink}, base); err != nil {
		close(subs)
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{loop: loop, done: make(chan struct{}), cancel: cancel, subs: subs, wait: make(chan struct{}), handle: h}
	go func() {
		defer close(r.done)
		loop.Run(ctx)
	}()
	// The subscriber: every update is a cue to look at the host (outside
	// the loop: netlink dumps are I/O), the snapshot is the event's data.
	go func() {
		defer close(r.wait)
		for addrCh != nil || routeCh != nil || linkCh != nil {
			select {
			case _, ok := <-addrCh:
				if !ok {
					addrCh = nil
					continue
				}
			case _, ok := <-routeCh:
				if !ok {
					routeCh = nil
					continue
				}
			case _, ok := <-linkCh:
				if !ok {
					linkCh = nil
					continue
				}
			}
			if ctx.Err() != nil {
				continue // stopping: drain until netlink closes the channels
			}
			s, err := Take(h, o.Exclude)
			if err != nil {
				log.Debug("netlink dump failed", zap.Error(err))
				continue
			}
			_ = loop.Post(fsm.Envelope{To: ID, Event: EvChange, Data: s})
		}
		if ctx.Err() == nil {
			log.Warn("netlink subscriptions closed: network changes are noticed by the links' timers only")
		}
	}()
	// The clock watcher: a resume from suspend is a clock set to the
	// kernel; the machine compares the clocks to tell.
	if r.clock, err = watchClock(func() { _ = loop.Post(fsm.Envelope{To: ID, Event: EvClockSet}) }); err != nil {
		log.Warn("no clock-set notifications: a resume from suspend is noticed at the next network event", zap.Error(err))
	}
	log.Debug("started", zap.Int("addresses", len(base.Addrs)), zap.String("default", base.Default))
	return r, nil
}

// Stop ends the subscriptions and the loop; it waits for both.
func (r *Running) Stop() {
	r.cancel()
	if r.clock != nil {
		r.clock.Stop()
	}
	close(r.subs) // netlink closes the channels; the subscriber drains them
	<-r.wait
	r.loop.Stop()
	<-r.done
	r.handle.Close()
}

// Take reads the host's usable addresses and default routes through h.
func Take(h *netlink.Handle, exclude []string) (Snapshot, error) {
	links, err := h.LinkList()
	if err != nil {
		return Snapshot{}, err
	}
	usable := map[int]string{}
	for _, l := range links {
		a := l.Attrs()
		if a.Flags&unix.IFF_UP == 0 || a.OperState == netlink.OperDown || slices.Contains(exclude, a.Name) {
			continue
		}
		usable[a.Index] = a.Name
	}
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return Snapshot{}, err
	}
	var s Snapshot
	for _, a := range addrs {
		if _, ok := usable[a.LinkIndex]; !ok || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if !slices.Contains(s.Addrs, ip) {
			s.Addrs = append(s.Addrs, ip)
		}
	}
	slices.SortFunc(s.Addrs, func(a, b netip.Addr) int { return a.Compare(b) })
	routes, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return Snapshot{}, err
	}
	var defs []string
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		name, ok := usable[r.LinkIndex]
		if !ok {
			continue
		}
		defs = append(defs, fmt.Sprintf("%v@%s", r.Gw, name))
	}
	slices.Sort(defs)
	s.Default = strings.Join(defs, ",")
	return s, nil
}
