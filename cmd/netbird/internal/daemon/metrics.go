package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// metrics is a Prometheus collector reading the daemon's counters and the
// engine's snapshot at scrape time: nothing is sampled in between.
type metrics struct {
	d *Daemon

	transitions, peers, stale, rejected, reconnects, sendFailed *prometheus.Desc
}

func newMetrics(d *Daemon) *metrics {
	return &metrics{d: d,
		transitions: prometheus.NewDesc("nbfsm_transitions_total", "State changes, by machine kind and state entered.", []string{"kind", "state"}, nil),
		peers:       prometheus.NewDesc("nbfsm_peers", "Peer machines by state.", []string{"state"}, nil),
		stale:       prometheus.NewDesc("nbfsm_events_dropped_stale_total", "Events dropped as stale, by cause (generation, timer).", []string{"cause"}, nil),
		rejected:    prometheus.NewDesc("nbfsm_signal_messages_rejected_total", "Received signal messages dropped, by reason.", []string{"reason"}, nil),
		reconnects:  prometheus.NewDesc("nbfsm_link_reconnects_total", "Re-dials of the service links, by link.", []string{"link"}, nil),
		sendFailed:  prometheus.NewDesc("nbfsm_peer_send_failures_total", "Signal messages peers could not send.", nil, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.transitions, m.peers, m.stale, m.rejected, m.reconnects, m.sendFailed} {
		ch <- d
	}
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	snap := m.d.counts.Snapshot()
	for k, v := range snap.Transitions {
		ch <- prometheus.MustNewConstMetric(m.transitions, prometheus.CounterValue, float64(v), k[0], k[1])
	}
	for k, v := range snap.Reconnects {
		ch <- prometheus.MustNewConstMetric(m.reconnects, prometheus.CounterValue, float64(v), k)
	}
	ch <- prometheus.MustNewConstMetric(m.sendFailed, prometheus.CounterValue, float64(snap.SendFailures))
	tot := m.d.totals()
	ch <- prometheus.MustNewConstMetric(m.stale, prometheus.CounterValue, float64(tot.staleGen), "generation")
	ch <- prometheus.MustNewConstMetric(m.stale, prometheus.CounterValue, float64(tot.staleTimer), "timer")
	for k, v := range SignalRejected(tot.signal) {
		ch <- prometheus.MustNewConstMetric(m.rejected, prometheus.CounterValue, float64(v), k)
	}
	byState := map[string]int{}
	if c := m.d.Client(); c != nil {
		if s, err := c.Status(); err == nil {
			for _, p := range s.Peers {
				st := string(p.State)
				if i := strings.IndexByte(st, '.'); i > 0 && !strings.HasPrefix(st, "session.ice") {
					st = st[:i]
				}
				byState[st]++
			}
		}
	}
	for k, v := range byState {
		ch <- prometheus.MustNewConstMetric(m.peers, prometheus.GaugeValue, float64(v), k)
	}
}

// ServeMetrics serves /metrics on addr until the returned stop is called;
// bound is the address it listens on.
func ServeMetrics(addr string, d *Daemon, log *zap.Logger) (stop func(), bound net.Addr, err error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(newMetrics(d)); err != nil {
		return nil, nil, err
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server", zap.Error(err))
		}
	}()
	log.Info("serving Prometheus metrics", zap.String("addr", "http://"+l.Addr().String()+"/metrics"))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, l.Addr(), nil
}
