package wgiface_test

import (
	"errors"
	"net/netip"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/sharedsock"
	"github.com/nbfsm/nbfsm/internal/wgiface"
)

// newQueueIface is a netstack interface with a small configuration queue.
func newQueueIface(t *testing.T, max int) *wgiface.Interface {
	t.Helper()
	sock, err := sharedsock.Listen(loopback, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sock.Close() })
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	i, err := wgiface.New(wgiface.Config{Mode: wgiface.Netstack, Name: "q", PrivateKey: key,
		Address: netip.MustParsePrefix("100.64.6.1/10"), Socket: sock, MaxQueued: max})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = i.Close() })
	return i
}

// results collects the done calls of queued changes, in the order the
// worker made them.
type results struct {
	mu   sync.Mutex
	got  []string
	errs []error
}

func (r *results) done(name string) func(error) {
	return func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, name)
		r.errs = append(r.errs, err)
	}
}

var errPrepare = errors.New("no relay endpoint")

// TestEnqueueAppliesInOrder: changes of one peer are applied in the order
// queued (key and allowed IPs, endpoint, a reset, a removal), each done
// called once with its result, and the device ends as the last change left
// it; a bad change is refused at once, with no done call.
func TestEnqueueAppliesInOrder(t *testing.T) {
	i := newQueueIface(t, 0)
	peer := testPub(t)
	ips := []netip.Prefix{netip.MustParsePrefix("100.64.6.2/32")}
	ep := netip.MustParseAddrPort("127.0.0.1:9")
	r := &results{}
	steps := []struct {
		name string
		c    wgiface.Change
	}{
		{"key", wgiface.Change{Peer: wgiface.Peer{Key: peer, AllowedIPs: ips}}},
		{"endpoint", wgiface.Change{Peer: wgiface.Peer{Key: peer, AllowedIPs: ips, Endpoint: ep}}},
		{"bad relay endpoint", wgiface.Change{Peer: wgiface.Peer{Key: peer, Endpoint: netip.MustParseAddrPort("240.1.2.3:1")}}},
		{"reset", wgiface.Change{Peer: wgiface.Peer{Key: peer, AllowedIPs: ips}, Reset: true}},
		{"remove", wgiface.Change{Peer: wgiface.Peer{Key: peer}, Remove: true}},
		{"again", wgiface.Change{Peer: wgiface.Peer{Key: peer, AllowedIPs: ips}}},
		// Prepare runs after every change before it is applied, and may
		// fill in the peer or fail the change.
		{"prepare", wgiface.Change{Peer: wgiface.Peer{Key: peer, AllowedIPs: ips}, Prepare: func(p *wgiface.Peer) error {
			st, err := i.PeerStats()
			if cur, ok := st[peer]; err != nil || !ok || cur.Endpoint.IsValid() { // "again" set no endpoint
				return errors.New("prepared before the earlier changes were applied")
			}
			p.Endpoint = ep
			return nil
		}}},
		{"prepare fails", wgiface.Change{Peer: wgiface.Peer{Key: peer, Endpoint: netip.MustParseAddrPort("127.0.0.1:7")},
			Prepare: func(*wgiface.Peer) error { return errPrepare }}},
	}
	for _, s := range steps {
		if err := i.Enqueue(s.c, r.done(s.name)); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
	}
	if err := i.Enqueue(wgiface.Change{Peer: wgiface.Peer{}}, r.done("zero key")); !errors.Is(err, wgiface.ErrBadPeer) {
		t.Fatalf("zero key: %v, want ErrBadPeer", err)
	}
	i.Flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.got) != len(steps) {
		t.Fatalf("done calls %q", r.got)
	}
	for k, s := range steps {
		wantFail := s.name == "bad relay endpoint" || s.name == "prepare fails"
		if r.got[k] != s.name || (r.errs[k] != nil) != wantFail {
			t.Errorf("done %d: %s err %v, want %s (failure %v)", k, r.got[k], r.errs[k], s.name, wantFail)
		}
	}
	if !errors.Is(r.errs[2], wgiface.ErrDevice) || !errors.Is(r.errs[len(steps)-1], errPrepare) {
		t.Errorf("bad endpoint: %v, want ErrDevice; failed prepare: %v", r.errs[2], r.errs[len(steps)-1])
	}
	st, err := i.PeerStats()
	if err != nil {
		t.Fatal(err)
	}
	if st[peer].Endpoint != ep {
		t.Errorf("endpoint %v after the last change (a failed Prepare sets nothing), want %v", st[peer].Endpoint, ep)
	}
}

// TestEnqueueBounded: with the worker held (a done that blocks), at most
// MaxQueued changes wait; the next is refused with ErrQueueFull at once.
// Close refuses what still waits (done gets ErrClosed) and joins the
// worker; Enqueue after Close is ErrClosed.
func TestEnqueueBounded(t *testing.T) {
	i := newQueueIface(t, 2)
	peer := testPub(t)
	set := wgiface.Change{Peer: wgiface.Peer{Key: peer}}
	hold, held := make(chan struct{}), make(chan struct{})
	if err := i.Enqueue(set, func(error) { close(held); <-hold }); err != nil {
		t.Fatal(err)
	}
	<-held // the worker is in the first change's done
	r := &results{}
	for _, name := range []string{"a", "b"} {
		if err := i.Enqueue(set, r.done(name)); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if n := i.Queued(); n != 2 {
		t.Fatalf("queued %d, want 2", n)
	}
	if err := i.Enqueue(set, r.done("c")); !errors.Is(err, wgiface.ErrQueueFull) {
		t.Fatalf("third: %v, want ErrQueueFull", err)
	}
	closed := make(chan error)
	go func() { closed <- i.Close() }()
	// Close waits for the change in progress: release it.
	close(hold)
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	got, errs := r.got, r.errs
	r.mu.Unlock()
	// a and b were either applied before Close reached the worker or
	// refused by it; never dropped, never called twice.
	if len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("done calls %q", got)
	}
	for k, err := range errs {
		if err != nil && !errors.Is(err, wgiface.ErrClosed) {
			t.Errorf("%s: %v", got[k], err)
		}
	}
	if err := i.Enqueue(set, nil); !errors.Is(err, wgiface.ErrClosed) {
		t.Errorf("after Close: %v, want ErrClosed", err)
	}
	i.Flush() // returns at once after Close
}
