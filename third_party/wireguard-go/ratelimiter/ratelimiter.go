/* SPDX-License-Identifier: MIT
 *
 * Copyright (C) 2017-2025 WireGuard LLC. All Rights Reserved.
 */

package ratelimiter

import (
	"net/netip"
	"sync"
	"time"
)

const (
	packetsPerSecond   = 20
	packetsBurstable   = 5
	garbageCollectTime = time.Second
	packetCost         = 1000000000 / packetsPerSecond
	maxTokens          = packetCost * packetsBurstable
)

type RatelimiterEntry struct {
	mu       sync.Mutex
	lastTime time.Time
	tokens   int64
}

type Ratelimiter struct {
	mu      sync.RWMutex
	timeNow func() time.Time

	// nbfsm: garbage collection is a timer, armed while the table has
	// entries, not a goroutine with a ticker that runs every second.
	gc     *time.Timer // nil while the table is empty or closed
	gen    uint64      // bumped by Init and Close: an older timer's fire is stale
	closed bool
	table  map[netip.Addr]*RatelimiterEntry
}

func (rate *Ratelimiter) Close() {
	rate.mu.Lock()
	defer rate.mu.Unlock()

	rate.closed = true
	rate.disarmLocked()
}

func (rate *Ratelimiter) Init() {
	rate.mu.Lock()
	defer rate.mu.Unlock()

	if rate.timeNow == nil {
		rate.timeNow = time.Now
	}

	// stop any ongoing garbage collection
	rate.disarmLocked()
	rate.closed = false
	rate.table = make(map[netip.Addr]*RatelimiterEntry)
}

// disarmLocked stops the garbage collection timer; one already firing
// finds its generation stale. Caller holds rate.mu.
func (rate *Ratelimiter) disarmLocked() {
	rate.gen++
	if rate.gc != nil {
		rate.gc.Stop()
		rate.gc = nil
	}
}

// armLocked starts garbage collection for the table's first entry.
// Caller holds rate.mu.
func (rate *Ratelimiter) armLocked() {
	if rate.gc != nil || rate.closed {
		return
	}
	gen := rate.gen
	rate.gc = time.AfterFunc(garbageCollectTime, func() {
		rate.mu.Lock()
		defer rate.mu.Unlock()
		if rate.gen == gen {
			rate.cleanupLocked()
		}
	})
}

func (rate *Ratelimiter) cleanup() (empty bool) {
	rate.mu.Lock()
	defer rate.mu.Unlock()

	return rate.cleanupLocked()
}

// cleanupLocked removes the entries idle for garbageCollectTime and
// re-arms the timer one garbageCollectTime away while entries are left
// (disarmed once the table is empty), so an entry lives at most twice
// that, as with upstream's ticker. Not at each entry's own expiry: under a
// flood of new source addresses that would scan the table once per entry.
// Caller holds rate.mu.
func (rate *Ratelimiter) cleanupLocked() (empty bool) {
	now := rate.timeNow()
	for key, entry := range rate.table {
		entry.mu.Lock()
		if now.Sub(entry.lastTime) >= garbageCollectTime {
			delete(rate.table, key)
		}
		entry.mu.Unlock()
	}

	if rate.gc != nil {
		if len(rate.table) == 0 {
			rate.gc.Stop()
			rate.gc = nil
		} else {
			rate.gc.Reset(garbageCollectTime)
		}
	}
	return len(rate.table) == 0
}

func (rate *Ratelimiter) Allow(ip netip.Addr) bool {
	var entry *RatelimiterEntry
	// lookup entry
	rate.mu.RLock()
	entry = rate.table[ip]
	rate.mu.RUnlock()

	// make new entry if not found
	if entry == nil {
		entry = new(RatelimiterEntry)
		entry.tokens = maxTokens - packetCost
		entry.lastTime = rate.timeNow()
		rate.mu.Lock()
		rate.table[ip] = entry
		rate.armLocked()
		rate.mu.Unlock()
		return true
	}

	// add tokens to entry
	entry.mu.Lock()
	now := rate.timeNow()
	entry.tokens += now.Sub(entry.lastTime).Nanoseconds()
	entry.lastTime = now
	if entry.tokens > maxTokens {
		entry.tokens = maxTokens
	}

	// subtract cost of packet
	if entry.tokens > packetCost {
		entry.tokens -= packetCost
		entry.mu.Unlock()
		return true
	}
	entry.mu.Unlock()
	return false
}
