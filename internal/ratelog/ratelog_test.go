package ratelog

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestLimitedLog(t *testing.T) {
	core, logs := observer.New(zap.WarnLevel)
	l := New(zap.New(core))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.Now = func() time.Time { return now }

	steps := []struct {
		advance        time.Duration
		reason         string
		want           bool
		wantSuppressed int64
	}{
		{0, "decrypt", true, 0},            // first occurrence
		{time.Second, "decrypt", false, 0}, // within 10 s
		{time.Second, "decrypt", false, 0},
		{0, "bad-payload", true, 0}, // other reasons have their own budget
		{8 * time.Second, "decrypt", true, 2},
		{Every - 1, "decrypt", false, 0},
		{1, "decrypt", true, 1},
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		before := logs.Len()
		if got := l.Warn(st.reason, "dropped"); got != st.want {
			t.Fatalf("step %d: warn = %v, want %v", i, got, st.want)
		}
		if !st.want {
			continue
		}
		e := logs.All()[before]
		if e.ContextMap()["cause"] != st.reason || e.ContextMap()["suppressed"] != uint64(st.wantSuppressed) {
			t.Fatalf("step %d: logged %v", i, e.ContextMap())
		}
	}
}
