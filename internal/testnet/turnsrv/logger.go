package turnsrv

import (
	"github.com/pion/logging"
	"go.uber.org/zap"
)

// zapFactory routes pion's logs to zap at the level pion chose, except that
// pion's errors log as warnings: they are about single datagrams a client got
// wrong ("Failed to handle datagram"), not failures of the server.
type zapFactory struct{ log *zap.Logger }

func (f zapFactory) NewLogger(scope string) logging.LeveledLogger {
	return zapLeveled{s: f.log.Named(scope).Sugar()}
}

type zapLeveled struct{ s *zap.SugaredLogger }

func (l zapLeveled) Trace(msg string)                  { l.s.Debug(msg) }
func (l zapLeveled) Tracef(format string, args ...any) { l.s.Debugf(format, args...) }
func (l zapLeveled) Debug(msg string)                  { l.s.Debug(msg) }
func (l zapLeveled) Debugf(format string, args ...any) { l.s.Debugf(format, args...) }
func (l zapLeveled) Info(msg string)                   { l.s.Info(msg) }
func (l zapLeveled) Infof(format string, args ...any)  { l.s.Infof(format, args...) }
func (l zapLeveled) Warn(msg string)                   { l.s.Warn(msg) }
func (l zapLeveled) Warnf(format string, args ...any)  { l.s.Warnf(format, args...) }
func (l zapLeveled) Error(msg string)                  { l.s.Warn(msg) }
func (l zapLeveled) Errorf(format string, args ...any) { l.s.Warnf(format, args...) }
