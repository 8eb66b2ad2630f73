package main

import (
	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/cmd/netbird/internal/daemon"
	"github.com/nbfsm/nbfsm/internal/netmon"
)

// monitorFactory is the OS network monitor the daemon starts with each
// engine (when the config's NetworkMonitor is on): netlink events into the
// engine's network-change entry points.
func monitorFactory() daemon.MonitorFactory {
	return func(c *client.Client, exclude []string, log *zap.Logger) (func(), error) {
		sink := netmon.NewEngineSink(c, log)
		r, err := netmon.Start(netmon.Options{Sink: sink, Exclude: exclude, Logger: log})
		if err != nil {
			sink.Close()
			return nil, err
		}
		return func() { r.Stop(); sink.Close() }, nil
	}
}
