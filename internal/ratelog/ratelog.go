// Package ratelog is the rate-limited warning that bad input from the
// network gets: counted by the caller, logged at most once per reason per
// Every, with the number of lines suppressed in between.
package ratelog

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Every is the quiet period of the per-reason log limiter.
const Every = 10 * time.Second

// Limiter logs bad input without letting a flood of it flood the log:
// the first occurrence of a reason is logged, then at most one line per
// Every per reason, carrying how many were suppressed in between. It
// compares timestamps when asked to log: no timer, no goroutine. The reason
// goes in the "cause" field, the count in "suppressed".
type Limiter struct {
	log *zap.Logger
	// Now is the clock (tests set it).
	Now func() time.Time

	mu      sync.Mutex
	reasons map[string]*reasonState // guarded by mu
}

type reasonState struct {
	last       time.Time
	suppressed uint64
}

func New(log *zap.Logger) *Limiter {
	return &Limiter{log: log, Now: time.Now, reasons: make(map[string]*reasonState)}
}

// Warn logs msg for reason unless one was logged less than Every ago. It
// reports whether a line was written.
func (l *Limiter) Warn(reason, msg string, fields ...zap.Field) bool {
	now := l.Now()
	l.mu.Lock()
	st, ok := l.reasons[reason]
	if !ok {
		st = &reasonState{}
		l.reasons[reason] = st
	}
	if ok && now.Sub(st.last) < Every {
		st.suppressed++
		l.mu.Unlock()
		return false
	}
	suppressed := st.suppressed
	st.last, st.suppressed = now, 0
	l.mu.Unlock()
	l.log.Warn(msg, append(fields, zap.String("cause", reason), zap.Uint64("suppressed", suppressed))...)
	return true
}
