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

	// nbfsm: garbage collection is a timer armed for the next entry's
	// expiry while the table has entries, not a ticker every second.
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
// re-arms the timer for the next one's expiry (disarmed once the table is
// empty). Caller holds rate.mu.
func (rate *Ratelimiter) cleanupLocked() (empty bool) {
	now := rate.timeNow()
	next := time.Duration(-1)
	for key, entry := range rate.table {
		entry.mu.Lock()
		if idle := now.Sub(entry.lastTime); idle >= garbageCollectTime {
			delete(rate.table, key)
		} else if left := garbageCollectTime - idle; next < 0 || left < next {
			next = left
		}
		entry.mu.Unlock()
	}

	if rate.gc != nil {
		if next < 0 {
			rate.gc.Stop()
			rate.gc = nil
		} else {
			rate.gc.Reset(next)
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
