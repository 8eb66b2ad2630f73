// Package pionlog sends the log of pion's ICE agents and UDP mux to zap, with
// one level mapping for every pion component nbfsm runs.
//
// Everything pion says goes to zap's debug level. pion reports routine
// network conditions as warnings and errors (a failed connectivity check, a
// closed candidate, a datagram for an unknown ufrag, a read that ended because
// the socket closed); none is unexpected for nbfsm, and several are caused by
// what a stranger sends, which must never raise the log level (a stranger
// could otherwise fill the log). What nbfsm itself learns from pion (a pair
// selected, an agent failed) it logs from its own events.
package pionlog

import (
	"github.com/pion/logging"
	"go.uber.org/zap"
)

// Factory returns the LoggerFactory for pion components that take one (an
// ICE agent): each scope logs under l with a "scope" field.
func Factory(l *zap.Logger) logging.LoggerFactory { return factory{l} }

// New returns one leveled logger for pion components that take a logger
// directly (the UDP mux).
func New(l *zap.Logger) logging.LeveledLogger { return leveled{l.Sugar()} }

type factory struct{ l *zap.Logger }

func (f factory) NewLogger(scope string) logging.LeveledLogger {
	return leveled{f.l.With(zap.String("scope", scope)).Sugar()}
}

type leveled struct{ l *zap.SugaredLogger }

var _ logging.LeveledLogger = leveled{}

func (p leveled) Trace(msg string)                  { p.l.Debug(msg) }
func (p leveled) Tracef(format string, args ...any) { p.l.Debugf(format, args...) }
func (p leveled) Debug(msg string)                  { p.l.Debug(msg) }
func (p leveled) Debugf(format string, args ...any) { p.l.Debugf(format, args...) }
func (p leveled) Info(msg string)                   { p.l.Debug(msg) }
func (p leveled) Infof(format string, args ...any)  { p.l.Debugf(format, args...) }
func (p leveled) Warn(msg string)                   { p.l.Debug(msg) }
func (p leveled) Warnf(format string, args ...any)  { p.l.Debugf(format, args...) }
func (p leveled) Error(msg string)                  { p.l.Debug(msg) }
func (p leveled) Errorf(format string, args ...any) { p.l.Debugf(format, args...) }
