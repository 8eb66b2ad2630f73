/* SPDX-License-Identifier: MIT
 *
 * nbfsm's test of its patch: garbage collection is a timer, armed while
 * the table has entries.
 */

package ratelimiter

import (
	"net/netip"
	"testing"
	"time"
)

func TestGarbageCollectionTimer(t *testing.T) {
	var rate Ratelimiter
	now := time.Unix(1_800_000_000, 0)
	rate.timeNow = func() time.Time { return now }
	rate.Init()
	defer rate.Close()
	armed := func() bool {
		rate.mu.RLock()
		defer rate.mu.RUnlock()
		return rate.gc != nil
	}
	a, b := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")

	if armed() {
		t.Fatal("armed with an empty table")
	}
	rate.Allow(a)
	if !armed() {
		t.Fatal("not armed with an entry")
	}
	now = now.Add(garbageCollectTime / 2)
	rate.Allow(b)
	now = now.Add(garbageCollectTime / 2) // a expires, b has half its time left
	if empty := rate.cleanup(); empty || len(rate.table) != 1 || rate.table[b] == nil || !armed() {
		t.Fatalf("after a's expiry: empty %v, table %v, armed %v; want b left, armed", empty, rate.table, armed())
	}
	now = now.Add(garbageCollectTime / 2)
	if empty := rate.cleanup(); !empty || armed() {
		t.Fatalf("after b's expiry: empty %v, armed %v; want empty, disarmed", empty, armed())
	}
	rate.Allow(a)
	if !armed() {
		t.Fatal("not re-armed by a new entry")
	}
	rate.Init()
	if armed() || len(rate.table) != 0 {
		t.Fatal("Init kept the timer or the table")
	}
	rate.Allow(a)
	rate.Close()
	if armed() {
		t.Fatal("armed after Close")
	}
}
