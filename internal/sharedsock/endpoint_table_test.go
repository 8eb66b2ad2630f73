package sharedsock

import (
	"net/netip"
	"testing"
	"time"
)

func addrN(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), uint16(1000+i%50000))
}

// A full table evicts a stale entry in bounded work, keeps recent ones, and
// hands out untracked endpoints rather than grow.
func TestEndpointTableEvictsInBoundedWork(t *testing.T) {
	tb := newEndpointTable()
	now := time.Now().UnixNano()
	for i := range maxTrackedEndpoints {
		e := tb.get(addrN(i))
		if i%2 == 1 {
			e.lastRecv.Store(now) // recent: must survive
		}
	}
	if tb.direct != maxTrackedEndpoints {
		t.Fatalf("direct %d", tb.direct)
	}
	// Every new source evicts one stale entry (the even ones), never a
	// recent one, and the table never grows.
	for i := range maxTrackedEndpoints / 2 {
		e := tb.get(addrN(maxTrackedEndpoints + i))
		if tb.lookup(e.addr) != e {
			t.Fatalf("new source %d untracked with stale entries left", i)
		}
		e.lastRecv.Store(now)
		if len(tb.m) > maxTrackedEndpoints {
			t.Fatalf("table grew to %d", len(tb.m))
		}
	}
	for i := 1; i < maxTrackedEndpoints; i += 2 {
		if tb.lookup(addrN(i)) == nil {
			t.Fatalf("recent entry %d evicted", i)
		}
	}
	// Full of recent entries: a new source is untracked, the table intact.
	e := tb.get(addrN(3 * maxTrackedEndpoints))
	if tb.lookup(e.addr) != nil || len(tb.m) != maxTrackedEndpoints {
		t.Fatalf("full table of recent entries took a new source (len %d)", len(tb.m))
	}
	if len(tb.fifo)-tb.head > 2*maxTrackedEndpoints {
		t.Fatalf("fifo holds %d", len(tb.fifo)-tb.head)
	}
	// Removal frees room.
	tb.remove(tb.lookup(addrN(1)))
	if e := tb.get(addrN(3*maxTrackedEndpoints + 1)); tb.lookup(e.addr) != e {
		t.Fatal("no room after a removal")
	}
}

func BenchmarkEndpointTableFullOfSpoofedSources(b *testing.B) {
	tb := newEndpointTable()
	for i := range maxTrackedEndpoints {
		tb.get(addrN(i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		tb.get(netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 9))
	}
}
