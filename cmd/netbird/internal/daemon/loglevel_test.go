package daemon

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
)

func TestParseLevel(t *testing.T) {
	for _, c := range []struct {
		in   string
		want zapcore.Level
		err  bool
	}{
		{in: "trace", want: zapcore.DebugLevel},
		{in: "debug", want: zapcore.DebugLevel},
		{in: "INFO", want: zapcore.InfoLevel},
		{in: " warn ", want: zapcore.WarnLevel},
		{in: "warning", want: zapcore.WarnLevel},
		{in: "error", want: zapcore.ErrorLevel},
		{in: "panic", want: zapcore.PanicLevel},
		{in: "fatal", want: zapcore.FatalLevel},
		{in: "dpanic", err: true},
		{in: "", err: true},
		{in: "verbose", err: true},
	} {
		got, err := ParseLevel(c.in)
		if c.err {
			if err == nil || !strings.Contains(err.Error(), LevelNames) {
				t.Errorf("ParseLevel(%q) = %v, %v; want an error listing the levels", c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

// TestSetLogLevel: the API changes the logger's level at run time and logs
// the change at info whichever way it goes; a bad level or a daemon
// without a settable level is an error that changes nothing.
func TestSetLogLevel(t *testing.T) {
	level := zap.NewAtomicLevelAt(zapcore.WarnLevel)
	core, logs := observer.New(level)
	d, err := New(Options{ConfigPath: filepath.Join(t.TempDir(), "config.json"), Logger: zap.New(core), Level: &level})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a := &api{d: d}
	changes := func() int { return logs.FilterMessage("log level changed").Len() }
	for i, c := range []struct {
		level      string
		code       codes.Code
		now, prev  zapcore.Level
		logged     int // "log level changed" lines so far
		debugShown bool
	}{
		{level: "debug", now: zapcore.DebugLevel, prev: zapcore.WarnLevel, logged: 1, debugShown: true},
		{level: "bogus", code: codes.InvalidArgument, now: zapcore.DebugLevel, logged: 1, debugShown: true},
		{level: "error", now: zapcore.ErrorLevel, prev: zapcore.DebugLevel, logged: 2},
		{level: "trace", now: zapcore.DebugLevel, prev: zapcore.ErrorLevel, logged: 3, debugShown: true},
		{level: "info", now: zapcore.InfoLevel, prev: zapcore.DebugLevel, logged: 4},
	} {
		r, err := a.SetLogLevel(context.Background(), &daemonpb.SetLogLevelRequest{Level: c.level})
		if status.Code(err) != c.code {
			t.Fatalf("%d: SetLogLevel(%q): %v, want code %v", i, c.level, err, c.code)
		}
		if err == nil && (r.GetLevel() != c.now.String() || r.GetPrevious() != c.prev.String()) {
			t.Errorf("%d: SetLogLevel(%q) = %v", i, c.level, r)
		}
		if level.Level() != c.now {
			t.Errorf("%d: level %v after %q, want %v", i, level.Level(), c.level, c.now)
		}
		if n := changes(); n != c.logged {
			t.Errorf("%d: %d change lines after %q, want %d", i, n, c.level, c.logged)
		}
		before := logs.FilterMessage("probe").Len()
		d.log.Debug("probe")
		if shown := logs.FilterMessage("probe").Len() > before; shown != c.debugShown {
			t.Errorf("%d: debug line shown %v after %q, want %v", i, shown, c.level, c.debugShown)
		}
	}

	fixed, err := New(Options{ConfigPath: filepath.Join(t.TempDir(), "config.json")})
	if err != nil {
		t.Fatal(err)
	}
	defer fixed.Close()
	if _, err := (&api{d: fixed}).SetLogLevel(context.Background(), &daemonpb.SetLogLevelRequest{Level: "debug"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("fixed level: %v, want FailedPrecondition", err)
	}
}
