package main

import (
	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/daemon"
)

// serveMetrics serves Prometheus metrics on addr ("" → off).
func serveMetrics(addr string, d *daemon.Daemon, log *zap.Logger) (func(), error) {
	if addr == "" {
		return func() {}, nil
	}
	stop, _, err := daemon.ServeMetrics(addr, d, log)
	return stop, err
}
