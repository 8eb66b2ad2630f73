//go:build !linux

package netmon

import (
	"errors"

	"go.uber.org/zap"
)

// Options configure Start.
type Options struct {
	Sink    Sink
	Exclude []string
	Logger  *zap.Logger
}

// Running is a started monitor.
type Running struct{}

// Start fails: the monitor reads netlink, which only Linux has.
func Start(Options) (*Running, error) { return nil, errors.New("netmon: only on Linux (netlink)") }

// Stop does nothing.
func (*Running) Stop() {}
