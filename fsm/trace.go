package fsm

import (
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Record is one transition, as observers see it. An internal transition has
// From == To and Internal set. A machine's creation is recorded with From ""
// and Event EventStart.
type Record struct {
	Machine  string
	Kind     string
	From     State
	Event    Event
	To       State
	At       time.Time
	Internal bool
	Cause    string
	Gen      uint64
}

// Observer is told of every transition, inside the loop goroutine: it must
// be quick and must not block.
type Observer interface {
	Observe(r Record)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Record)

// Observe calls f(r).
func (f ObserverFunc) Observe(r Record) { f(r) }

// ZapObserver logs every state change at debug level, with the house field
// names (machine, from, event, to). Internal transitions are not logged.
type ZapObserver struct{ Log *zap.Logger }

// Observe logs r.
func (z ZapObserver) Observe(r Record) {
	if r.Internal {
		return
	}
	if ce := z.Log.Check(zapcore.DebugLevel, "transition"); ce != nil {
		fields := []zap.Field{zap.String("machine", r.Machine), zap.String("from", string(r.From)),
			zap.String("event", string(r.Event)), zap.String("to", string(r.To))}
		if r.Cause != "" {
			fields = append(fields, zap.String("cause", r.Cause))
		}
		ce.Write(fields...)
	}
}

// Ring keeps the last N records for `netbird events` and hands live records
// to subscribers. Observe runs in the loop; readers may be anywhere, so the
// ring has its own small lock. A subscriber that does not keep up loses
// records (counted), it never slows the loop.
type Ring struct {
	mu      sync.Mutex
	buf     []Record
	next    int
	full    bool
	subs    map[*Subscription]struct{}
	dropped uint64
}

// NewRing returns a ring holding the last n records.
func NewRing(n int) *Ring {
	if n <= 0 {
		n = 1
	}
	return &Ring{buf: make([]Record, n), subs: map[*Subscription]struct{}{}}
}

// Observe stores r and offers it to every subscriber.
func (g *Ring) Observe(r Record) {
	g.mu.Lock()
	g.buf[g.next] = r
	g.next++
	if g.next == len(g.buf) {
		g.next, g.full = 0, true
	}
	for s := range g.subs {
		select {
		case s.c <- r:
		default:
			g.dropped++
			s.lost++
		}
	}
	g.mu.Unlock()
}

// Snapshot returns the stored records, oldest first.
func (g *Ring) Snapshot() []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.full {
		return append([]Record(nil), g.buf[:g.next]...)
	}
	out := make([]Record, 0, len(g.buf))
	out = append(out, g.buf[g.next:]...)
	return append(out, g.buf[:g.next]...)
}

// Dropped counts records subscribers missed because they were slow.
func (g *Ring) Dropped() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.dropped
}

// Subscription is a live stream of records.
type Subscription struct {
	c    chan Record
	ring *Ring
	lost uint64
}

// C returns the channel records arrive on. It is closed by Close.
func (s *Subscription) C() <-chan Record { return s.c }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.ring.mu.Lock()
	defer s.ring.mu.Unlock()
	if _, ok := s.ring.subs[s]; ok {
		delete(s.ring.subs, s)
		close(s.c)
	}
}

// Subscribe starts a live stream with a buffer of size records.
func (g *Ring) Subscribe(size int) *Subscription {
	if size <= 0 {
		size = 256
	}
	s := &Subscription{c: make(chan Record, size), ring: g}
	g.mu.Lock()
	g.subs[s] = struct{}{}
	g.mu.Unlock()
	return s
}
