package soak

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestSoak is `make soak` (NBFSM_SOAKTIME=5m; CI: 2m). NBFSM_SOAKSEED=n
// replays a schedule. Without NBFSM_SOAKTIME it does not run: make test
// stays short, CI runs `make soak SOAKTIME=2m` on its own.
func TestSoak(t *testing.T) {
	v := os.Getenv("NBFSM_SOAKTIME")
	if v == "" {
		t.Skip("set NBFSM_SOAKTIME (make soak)")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		t.Fatalf("NBFSM_SOAKTIME=%q: %v", v, err)
	}
	seed := SeedFromEnv()
	t.Logf("soak seed %d: replay with make soak SOAKSEED=%d SOAKTIME=%v", seed, seed, d)
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Minute)
	defer cancel()
	o := Options{Duration: d, Seed: seed, Faults: FaultsFromEnv(), Log: os.Stdout}
	if v := os.Getenv("NBFSM_SOAKCLIENTS"); v != "" {
		if o.Clients, err = strconv.Atoi(v); err != nil {
			t.Fatalf("NBFSM_SOAKCLIENTS=%q: %v", v, err)
		}
	}
	res, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("seed %d: harness: %v", seed, err)
	}
	if err := res.Check(); err != nil {
		t.Errorf("seed %d: %v", seed, err)
	}
	if want := max(o.Clients, 1); o.Clients == 0 && res.ClientsEnd < 20 || res.ClientsEnd < want ||
		res.Pairs < res.ClientsEnd*(res.ClientsEnd-1)/2 {
		t.Errorf("seed %d: %d pairs pinged among %d clients", seed, res.Pairs, res.ClientsEnd)
	}
	t.Logf("seed %d: faults %v; converged %v after the last; %d pairs pinged; heap %d → %d MiB (live at most %d MiB); RSS %d → %d MiB, peak %d MiB",
		seed, res.Faults, res.Converged, res.Pairs, res.HeapStart>>20, res.HeapEnd>>20, res.LivePeak>>20, res.RSSStart>>20, res.RSSEnd>>20, res.RSSPeak>>20)
	// Every client and server closed: the goroutines are back to the
	// baseline (goleak waits for the ones still ending).
	goleak.VerifyNone(t)
}
