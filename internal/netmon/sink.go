package netmon

import (
	"context"
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// Engine is what the monitor asks of the engine (client.Client has it).
type Engine interface {
	NetworkChanged(up bool) error
	PathsChanged(gone []netip.Addr) error
	SetLocalAddresses(addrs []netip.Addr)
	// SyncMeta reports the host's addresses to management (one RPC; the
	// sink's goroutine waits for it, the monitor's loop does not).
	SyncMeta(ctx context.Context) error
}

// syncMetaTimeout bounds the SyncMeta RPC after an address change.
const syncMetaTimeout = 10 * time.Second

// EngineSink applies changes to an engine, in order, from one goroutine of
// its own: the monitor's loop never waits for the engine's.
type EngineSink struct {
	e    Engine
	log  *zap.Logger
	ch   chan Change
	done chan struct{}
}

// NewEngineSink starts the sink; Close ends it.
func NewEngineSink(e Engine, log *zap.Logger) *EngineSink {
	if log == nil {
		log = zap.NewNop()
	}
	s := &EngineSink{e: e, log: log.Named("netmon"), ch: make(chan Change, 16), done: make(chan struct{})}
	go s.run()
	return s
}

// Changed queues c (a full queue drops it: a newer change follows and
// carries the same facts).
func (s *EngineSink) Changed(c Change) {
	select {
	case s.ch <- c:
	default:
		s.log.Warn("network change dropped: the engine is behind")
	}
}

// Close stops the sink after the queued changes.
func (s *EngineSink) Close() {
	close(s.ch)
	<-s.done
}

func (s *EngineSink) run() {
	defer close(s.done)
	for c := range s.ch {
		s.apply(c)
	}
}

// syncMeta tells management the new addresses (posture checks read them).
// A failure is logged: the next login and sync carry the same meta.
func (s *EngineSink) syncMeta() {
	ctx, cancel := context.WithTimeout(context.Background(), syncMetaTimeout)
	defer cancel()
	if err := s.e.SyncMeta(ctx); err != nil {
		s.log.Info("sync meta after an address change failed; the next sync carries it", zap.Error(err))
	}
}

// apply: network up (or a changed default route, a vanished address, a
// resume) → both links dial at once; network down → links stop dialing;
// new addresses → the ICE mux gathers on them; paths re-checked when an
// address went away, the default route changed or the host resumed.
func (s *EngineSink) apply(c Change) {
	s.log.Info("network changed", zap.Bool("up", c.Up), zap.Int("added", len(c.Added)), zap.Int("removed", len(c.Removed)),
		zap.Bool("default_route_changed", c.DefaultChanged), zap.Bool("resumed", c.Resumed), zap.Duration("suspended", c.SuspendedFor))
	if len(c.Added) > 0 || len(c.Removed) > 0 {
		s.e.SetLocalAddresses(c.Addrs)
		defer s.syncMeta() // after the links were told: a dial may be needed first
	}
	switch {
	case !c.Up && c.WasUp:
		_ = s.e.NetworkChanged(false)
	case c.Up && (!c.WasUp || c.DefaultChanged || len(c.Removed) > 0 || c.Resumed):
		_ = s.e.NetworkChanged(true)
	}
	if len(c.Removed) > 0 || c.DefaultChanged || c.Resumed {
		_ = s.e.PathsChanged(c.Removed)
	}
}
