package wgiface

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestDeviceLoggerFollowsLevel: wireguard-go's log is checked against the
// level at each line, so a level changed at run time (`netbird debug log
// level`) reaches a device made before the change.
func TestDeviceLoggerFollowsLevel(t *testing.T) {
	level := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	core, logs := observer.New(level)
	lg := deviceLogger(zap.New(core))
	for i, c := range []struct {
		level zapcore.Level
		want  int // lines so far
	}{
		{zapcore.InfoLevel, 0},
		{zapcore.DebugLevel, 2},
		{zapcore.ErrorLevel, 2},
		{zapcore.DebugLevel, 4},
	} {
		level.SetLevel(c.level)
		lg.Verbosef("peer %d - Sending keepalive packet", i)
		lg.Errorf("peer %d - Failed to send handshake initiation", i)
		if n := logs.Len(); n != c.want {
			t.Fatalf("%d: at %v, %d lines; want %d", i, c.level, n, c.want)
		}
	}
	for _, e := range logs.All() {
		if e.Level != zapcore.DebugLevel || e.LoggerName != "wireguard" {
			t.Errorf("line %q at %v from %q; want debug from wireguard", e.Message, e.Level, e.LoggerName)
		}
	}
}
