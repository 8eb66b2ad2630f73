//go:build linux

package netmon

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// chanSink hands changes to the test.
type chanSink chan Change

func (c chanSink) Changed(ch Change) { c <- ch }

// newNetns makes an unnamed network namespace (gone when its handle is
// closed) without moving the test's other goroutines into it.
func newNetns(t *testing.T) netns.NsHandle {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := netns.Set(orig); err != nil {
		t.Fatal(err) // the thread stays locked and dies with the test
	}
	t.Cleanup(func() { _ = ns.Close() })
	return ns
}

// TestNetlinkRoot: real netlink in a namespace of the test's own: a link (veth)
// with an address comes up → one debounced change (up, the address added);
// the address goes → removed, network down; the overlay interface is left
// out.
func TestNetlinkRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	ns := newNetns(t)
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sink := make(chanSink, 16)
	r, err := Start(Options{Sink: sink, Namespace: &ns, Exclude: []string{"wt0"}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Stop()

	add := func(name, cidr string) {
		t.Helper()
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: name + "p"}); err != nil {
			t.Fatal(err)
		}
		l, err := h.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		ip, ipn, _ := net.ParseCIDR(cidr)
		ipn.IP = ip
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipn}); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	next := func() Change {
		t.Helper()
		select {
		case c := <-sink:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no change within 10 s")
		}
		return Change{}
	}
	addr := netip.MustParseAddr("198.18.5.2")
	add("wt0", "100.64.9.9/16") // the overlay: ignored
	add("eth9", "198.18.5.2/24")
	c := next()
	if !c.Up || c.WasUp || !slices.Equal(c.Added, []netip.Addr{addr}) || slices.Contains(c.Addrs, netip.MustParseAddr("100.64.9.9")) {
		t.Fatalf("after link up: %+v", c)
	}
	l, _ := h.LinkByName("eth9")
	if err := h.LinkSetDown(l); err != nil {
		t.Fatal(err)
	}
	c = next()
	if c.Up || !c.WasUp || !slices.Equal(c.Removed, []netip.Addr{addr}) {
		t.Fatalf("after link down: %+v", c)
	}
}

// TestClockWatchRoot: the kernel's clock-set notification reaches the
// watcher. The realtime clock is set to what it reads (a step of well
// under a millisecond), as root; the watcher re-arms and hears a second
// set too, and Stop joins it (goleak in TestMain).
func TestClockWatchRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (setting the clock)")
	}
	sets := make(chan struct{}, 4)
	w, err := watchClock(func() { sets <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for i := range 2 {
		var now unix.Timespec
		if err := unix.ClockGettime(unix.CLOCK_REALTIME, &now); err != nil {
			t.Fatal(err)
		}
		if err := unix.ClockSettime(unix.CLOCK_REALTIME, &now); err != nil {
			t.Fatalf("clock_settime: %v", err)
		}
		select {
		case <-sets:
		case <-time.After(10 * time.Second):
			t.Fatalf("clock set %d not reported", i+1)
		}
	}
}
