package daemon

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
)

// Levels are the names ParseLevel takes (and "warning"), for messages,
// help and completion; LevelNames is them in a line.
var (
	Levels     = []string{"trace", "debug", "info", "warn", "error", "panic", "fatal"}
	LevelNames = strings.Join(Levels, ", ")
)

// ParseLevel reads a log level the way the official client's flags and
// `netbird debug log level` take it: zap's names, and trace, which is debug
// (nbfsm has no finer level). Case does not matter.
func ParseLevel(s string) (zapcore.Level, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch s {
	case "trace":
		return zapcore.DebugLevel, nil
	case "warning":
		return zapcore.WarnLevel, nil
	case "dpanic", "":
		// zap's development-only level, and nothing: not user levels.
	default:
		if l, err := zapcore.ParseLevel(s); err == nil {
			return l, nil
		}
	}
	return 0, fmt.Errorf("unknown log level %q: one of %s", s, LevelNames)
}

func (a *api) SetLogLevel(_ context.Context, req *daemonpb.SetLogLevelRequest) (*daemonpb.SetLogLevelResponse, error) {
	next, err := ParseLevel(req.GetLevel())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	prev, err := a.d.SetLogLevel(next)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &daemonpb.SetLogLevelResponse{Level: next.String(), Previous: prev.String()}, nil
}

// SetLogLevel changes the level of Options.Level until the daemon stops,
// and logs the change at info while either level lets it through.
func (d *Daemon) SetLogLevel(next zapcore.Level) (prev zapcore.Level, err error) {
	lvl := d.o.Level
	if lvl == nil {
		return 0, fmt.Errorf("this daemon's log level cannot be changed while it runs (restart it with --log-level)")
	}
	prev = lvl.Level()
	logIt := func() {
		d.log.Info("log level changed", zap.Stringer("from", prev), zap.Stringer("to", next))
	}
	if next > zapcore.InfoLevel {
		logIt() // before the level hides it
		lvl.SetLevel(next)
	} else {
		lvl.SetLevel(next)
		logIt()
	}
	return prev, nil
}
