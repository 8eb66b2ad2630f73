// Package backoff computes retry delays for the link and peer machines. It is
// a pure decision: the machines arm one timer with the delay it returns (the
// backoff is a state with one timer); nothing here sleeps or loops.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is exponential backoff with full jitter and a floor: the n-th retry
// (n from 0) waits a uniform random time in [Min, min(Cap, Base·2ⁿ)].
//
// Full jitter spreads the retries of many clients after a common outage; the
// floor keeps a retry from following its failure at once.
type Policy struct {
	Base time.Duration
	Cap  time.Duration
	Min  time.Duration
}

// Links is the policy of the management and signal links: first retry within
// 1 s, doubling up to a 30 s cap (upstream's gRPC redial grows to 120 s).
// With the cap reached, a link waits 15 s on average between dials, so after
// an outage ends it is back on average ~10 s later (the residual of a uniform
// 0–30 s wait), and a link costs ~2 dials a minute while its server is down.
var Links = Policy{Base: time.Second, Cap: 30 * time.Second, Min: 250 * time.Millisecond}

// Delay returns the wait before retry number attempt (0-based), drawing the
// jitter from r (nil: the global source).
func (p Policy) Delay(attempt int, r *rand.Rand) time.Duration {
	ceil := p.Cap
	if attempt < 32 {
		if d := p.Base << attempt; d > 0 && d < p.Cap {
			ceil = d
		}
	}
	if ceil <= p.Min {
		return p.Min
	}
	span := int64(ceil - p.Min)
	var j int64
	if r != nil {
		j = r.Int64N(span + 1)
	} else {
		j = rand.Int64N(span + 1)
	}
	return p.Min + time.Duration(j)
}

// Ceiling returns the largest delay retry number attempt can wait.
func (p Policy) Ceiling(attempt int) time.Duration {
	ceil := p.Cap
	if attempt < 32 {
		if d := p.Base << attempt; d > 0 && d < p.Cap {
			ceil = d
		}
	}
	return max(ceil, p.Min)
}

// DialsWithin replays the schedule: a first attempt at time zero, then one
// per retry whose delay (drawn from r) ends within horizon. Tests compare a
// link's real attempts with it.
func (p Policy) DialsWithin(horizon time.Duration, r *rand.Rand) int {
	dials, at := 1, time.Duration(0)
	for attempt := 0; ; attempt++ {
		at += p.Delay(attempt, r)
		if at > horizon {
			return dials
		}
		dials++
	}
}
