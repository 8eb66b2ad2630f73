package pionlog

import (
	"testing"

	"github.com/pion/logging"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestEveryLevelIsDebug: whatever level pion chooses, the entry is at debug,
// with its scope when it comes through the factory.
func TestEveryLevelIsDebug(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := zap.New(core)
	loggers := map[string]logging.LeveledLogger{
		"factory": Factory(l).NewLogger("ice"),
		"direct":  New(l),
	}
	for name, p := range loggers {
		calls := []func(){
			func() { p.Trace("t") }, func() { p.Tracef("t%d", 1) },
			func() { p.Debug("d") }, func() { p.Debugf("d%d", 1) },
			func() { p.Info("i") }, func() { p.Infof("i%d", 1) },
			func() { p.Warn("w") }, func() { p.Warnf("w%d", 1) },
			func() { p.Error("e") }, func() { p.Errorf("e%d", 1) },
		}
		for _, c := range calls {
			c()
		}
		got := logs.TakeAll()
		if len(got) != len(calls) {
			t.Fatalf("%s: %d entries, want %d", name, len(got), len(calls))
		}
		for _, e := range got {
			if e.Level != zapcore.DebugLevel {
				t.Errorf("%s: %q logged at %v, want debug", name, e.Message, e.Level)
			}
			scope, ok := e.ContextMap()["scope"]
			if want := name == "factory"; ok != want || ok && scope != "ice" {
				t.Errorf("%s: %q has scope %v (%v)", name, e.Message, scope, ok)
			}
		}
	}
	// At info, pion's errors and warnings are not shown at all.
	core, logs = observer.New(zapcore.InfoLevel)
	p := Factory(zap.New(core)).NewLogger("mux")
	p.Error("failed to read")
	p.Warn("discarded")
	if n := logs.Len(); n != 0 {
		t.Fatalf("%d entries at info level, want none", n)
	}
}
