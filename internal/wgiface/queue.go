package wgiface

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
)

// DefaultMaxQueued is the default bound of the configuration queue
// (Config.MaxQueued): a few changes per peer of a large network map. A
// change costs one wgctrl round trip in TUN mode (~0.2 ms): a full queue is
// seconds of work.
const DefaultMaxQueued = 16384

// ErrQueueFull is returned by Enqueue when Config.MaxQueued changes wait
// for the configuration worker already.
var ErrQueueFull = errors.New("wgiface: configuration queue full")

// Change is one configuration change of one peer, applied in order by the
// interface's configuration worker (Enqueue).
type Change struct {
	// Peer is configured as SetPeer does, unless Remove.
	Peer Peer
	// Reset removes the peer before setting it: WireGuard starts a fresh
	// peer (no endpoint, no handshake state).
	Reset bool
	// Remove removes Peer.Key (removing an unknown peer is no error);
	// nothing is set.
	Remove bool
	// Prepare, if set, runs in the worker just before the change is
	// applied, after every change queued before it: it may fill in the
	// peer (the address of a relay endpoint it sets up, say) or fail the
	// change (its error is the change's result).
	Prepare func(p *Peer) error
	// Initiate sends a handshake initiation once the peer is set (a probe
	// of the endpoint it now has: ordered after every change queued
	// before it, so it goes where this change points WireGuard).
	Initiate bool
}

// queued is one change waiting for the worker; flush marks a Flush.
type queued struct {
	c     Change
	done  func(error)
	flush bool
}

// configQueue is the FIFO between Enqueue (any goroutine, the loop's
// effects in production) and the one worker goroutine that applies the
// changes: the configuration's round trips (wgctrl over the UAPI socket in
// TUN mode, the device's IPC in Netstack mode) never run in the caller.
type configQueue struct {
	mu      sync.Mutex
	cond    *sync.Cond // signalled on a new item or close
	items   []queued
	waiting int // changes in items (Flush markers do not count)
	max     int
	closed  bool
	done    chan struct{} // closed when the worker returned
}

func (q *configQueue) init(max int) {
	if max <= 0 {
		max = DefaultMaxQueued
	}
	q.max = max
	q.cond = sync.NewCond(&q.mu)
	q.done = make(chan struct{})
}

// validPeer checks what SetPeer refuses before anything is queued.
func validPeer(p Peer) error {
	if p.Key == (wgtypes.Key{}) {
		return fmt.Errorf("%w: zero key", ErrBadPeer)
	}
	if p.Keepalive < 0 || p.Keepalive > 65535*time.Second {
		return fmt.Errorf("%w: keepalive %v", ErrBadPeer, p.Keepalive)
	}
	for _, a := range p.AllowedIPs {
		if !a.IsValid() {
			return fmt.Errorf("%w: allowed ip %v", ErrBadPeer, a)
		}
	}
	return nil
}

// Enqueue queues c for the configuration worker and returns at once. The
// worker applies changes one at a time in the order they were queued (so a
// peer's key and allowed IPs are set before the endpoint that starts its
// handshake) and calls done, if not nil, with each one's result, from the
// worker goroutine; done must not block for long, nor call back into the
// interface. An error returned means c was not queued and done is not
// called: ErrBadPeer, ErrClosed, or ErrQueueFull when Config.MaxQueued
// changes wait already. Changes still queued when Close is called are not
// applied: their done gets ErrClosed.
func (i *Interface) Enqueue(c Change, done func(error)) error {
	if c.Remove {
		if c.Peer.Key == (wgtypes.Key{}) {
			return fmt.Errorf("%w: zero key", ErrBadPeer)
		}
	} else if err := validPeer(c.Peer); err != nil {
		return err
	}
	q := &i.q
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case q.closed:
		return ErrClosed
	case q.waiting >= q.max:
		return fmt.Errorf("%w: %d changes wait", ErrQueueFull, q.waiting)
	}
	q.items = append(q.items, queued{c: c, done: done})
	q.waiting++
	q.cond.Signal()
	return nil
}

// Flush waits until every change queued before it has been applied (or
// refused by Close). For tests and tools: never from the loop goroutine.
func (i *Interface) Flush() {
	q := &i.q
	ch := make(chan struct{})
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.done
		return
	}
	q.items = append(q.items, queued{flush: true, done: func(error) { close(ch) }})
	q.cond.Signal()
	q.mu.Unlock()
	<-ch
}

// Queued is how many changes wait for the worker (the one being applied
// excluded).
func (i *Interface) Queued() int {
	i.q.mu.Lock()
	defer i.q.mu.Unlock()
	return i.q.waiting
}

// configure is the configuration worker: started by New, joined by Close.
func (i *Interface) configure() {
	q := &i.q
	defer close(q.done)
	for {
		q.mu.Lock()
		for len(q.items) == 0 && !q.closed {
			q.cond.Wait()
		}
		if q.closed {
			rest := q.items
			q.items, q.waiting = nil, 0
			q.mu.Unlock()
			for _, it := range rest {
				if it.done != nil {
					it.done(ErrClosed)
				}
			}
			return
		}
		it := q.items[0]
		q.items[0] = queued{}
		q.items = q.items[1:]
		if !it.flush {
			q.waiting--
		}
		q.mu.Unlock()
		var err error
		if !it.flush {
			err = i.apply(it.c)
		}
		if it.done != nil {
			it.done(err)
		}
	}
}

// stopQueue makes the worker refuse what is still queued and waits for it
// (at most the change being applied: one round trip to the in-process
// device).
func (i *Interface) stopQueue() {
	q := &i.q
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
	<-q.done
}

// apply runs one change (worker goroutine).
func (i *Interface) apply(c Change) error {
	log := i.log.With(zap.String("peer", nbcrypto.Fingerprint(c.Peer.Key)))
	if c.Prepare != nil {
		if err := c.Prepare(&c.Peer); err != nil {
			return err
		}
	}
	if c.Remove || c.Reset {
		if err := i.conf.removePeer(c.Peer.Key); err != nil {
			return err
		}
		if c.Remove {
			log.Debug("peer removed")
			return nil
		}
	}
	c.Peer.PresharedKey = i.cfg.PresharedKey
	if err := i.conf.setPeer(c.Peer); err != nil {
		return err
	}
	log.Debug("peer set", zap.Stringer("endpoint", c.Peer.Endpoint), zap.Bool("reset", c.Reset))
	if c.Initiate {
		// The peer is set: a probe that could not go is not the change's
		// failure (the prober's check finds the path silent).
		if err := i.Initiate(c.Peer.Key); err != nil {
			log.Debug("probe not sent", zap.Error(err))
		}
	}
	return nil
}
