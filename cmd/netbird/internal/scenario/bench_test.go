package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestBenchShort runs every scenario in --short mode and checks that each
// result is filled and consistent. It asserts counts and orderings, never
// how fast something was.
func TestBenchShort(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := Bench(ctx, BenchOptions{Short: true, Progress: &progress})
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, progress.String())
	}
	if rep.GoVersion == "" || rep.CPU == "" || rep.GOMAXPROCS <= 0 || rep.NumCPU <= 0 || !rep.Short {
		t.Errorf("machine fields: %+v", rep)
	}
	if len(rep.Scenarios) != len(IDs()) {
		t.Fatalf("%d scenarios, want %d", len(rep.Scenarios), len(IDs()))
	}
	get := func(t *testing.T, r Row, name string) float64 {
		t.Helper()
		v, ok := r.Get(name)
		if !ok {
			t.Fatalf("%s: no figure %q in %+v", r.Label, name, r.Figures)
		}
		return v
	}
	res := func(t *testing.T, id string, rows int) Result {
		t.Helper()
		s, ok := rep.Scenario(id)
		if !ok {
			t.Fatalf("no %s", id)
		}
		if s.Error != "" || len(s.Rows) != rows {
			t.Fatalf("%s: error %q, %d rows, want %d: %+v", id, s.Error, len(s.Rows), rows, s.Rows)
		}
		return s
	}
	t.Run("S1", func(t *testing.T) {
		s := res(t, "S1", 4) // N ∈ {100, 1000} × 2 windows
		for _, r := range s.Rows {
			if get(t, r, "parked") != float64(r.N) || get(t, r, "window") <= 0 || get(t, r, "RSS") <= 0 || get(t, r, "goroutines") <= 0 {
				t.Errorf("%s: %+v", r.Label, r.Figures)
			}
		}
	})
	t.Run("S2", func(t *testing.T) {
		s := res(t, "S2", 2)
		sig, mg := s.Rows[0], s.Rows[1]
		if first, last := get(t, sig, "first offer"), get(t, sig, "last offer"); first > last || get(t, sig, "offers") < float64(sig.N) {
			t.Errorf("signal row: %+v", sig.Figures)
		}
		if get(t, sig, "all connected") > get(t, sig, "all direct") || get(t, sig, "peak offers") < 1 {
			t.Errorf("signal row: %+v", sig.Figures)
		}
		if get(t, mg, "clients") != float64(mg.N+1) || get(t, mg, "first synced") > get(t, mg, "last synced") {
			t.Errorf("management row: %+v", mg.Figures)
		}
	})
	t.Run("S3", func(t *testing.T) {
		s := res(t, "S3", 2)
		for _, r := range s.Rows {
			if get(t, r, "samples") < 5 || get(t, r, "min") > get(t, r, "median") || get(t, r, "median") > get(t, r, "max") || get(t, r, "min") <= 0 {
				t.Errorf("%s: %+v", r.Label, r.Figures)
			}
		}
	})
	t.Run("S4", func(t *testing.T) {
		r := res(t, "S4", 1).Rows[0]
		// The loop's counters also see what the client itself dispatches
		// meanwhile (a stream message, a server ping): at least the 3×N
		// posted events, each an internal transition.
		if ev, in := get(t, r, "events"), get(t, r, "internal transitions"); ev < float64(3*r.N) || in < float64(3*r.N) || in > ev || get(t, r, "events/s") <= 0 {
			t.Errorf("%+v", r.Figures)
		}
		if get(t, r, "longest dispatch") <= 0 || get(t, r, "push → applied, changed") <= 0 {
			t.Errorf("%+v", r.Figures)
		}
	})
	t.Run("S5", func(t *testing.T) {
		s := res(t, "S5", 3)
		parked, session, conn := s.Rows[0], s.Rows[1], s.Rows[2]
		if get(t, parked, "in state") != float64(parked.N) || get(t, session, "in state") != float64(session.N) || get(t, conn, "in state") != float64(conn.N) {
			t.Errorf("states: %+v / %+v / %+v", parked.Figures, session.Figures, conn.Figures)
		}
		// A parked peer holds no goroutine and no timer (the design's claim).
		if get(t, parked, "goroutines") >= 0.5 || get(t, parked, "timers") >= 0.5 {
			t.Errorf("parked: %+v", parked.Figures)
		}
		if get(t, conn, "goroutines") <= 0 || get(t, conn, "heap") <= 0 {
			t.Errorf("connected: %+v", conn.Figures)
		}
	})
	t.Run("S6", func(t *testing.T) {
		// The whole process, each client's process, the servers' process.
		s := res(t, "S6", 4)
		for i, r := range s.Rows {
			if get(t, r, "window") <= 0 || get(t, r, "ctx switches") <= 0 {
				t.Errorf("%s: %+v", r.Label, r.Figures)
			}
			if i < 3 && get(t, r, "still connected") != 1 {
				t.Errorf("%s: not connected at the end: %+v", r.Label, r.Figures)
			}
			if 1 <= i && i < 3 && !strings.HasPrefix(r.Label, "client process") {
				t.Errorf("row %d is %q, want a client process", i, r.Label)
			}
		}
		if !strings.HasPrefix(s.Rows[3].Label, "servers process") {
			t.Errorf("row 3 is %q, want the servers process", s.Rows[3].Label)
		}
	})
	t.Run("S7", func(t *testing.T) {
		s := res(t, "S7", 2)
		if get(t, s.Rows[0], "offers") <= 0 {
			t.Errorf("no offers in the first window: %+v", s.Rows[0].Figures)
		}
	})
	t.Run("S8", func(t *testing.T) {
		s := res(t, "S8", 4) // 3 samples and the summary
		sum := s.Rows[3]
		if get(t, sum, "RSS peak") < get(t, sum, "RSS first") || get(t, sum, "RSS first") <= 0 || get(t, sum, "management dials") < 1 {
			t.Errorf("summary: %+v", sum.Figures)
		}
	})
	t.Run("output", func(t *testing.T) {
		var js bytes.Buffer
		if err := rep.WriteJSON(&js); err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Scenarios) != len(rep.Scenarios) || back.GoVersion != rep.GoVersion {
			t.Fatalf("JSON round trip: %v, %+v", err, back)
		}
		var tab bytes.Buffer
		rep.WriteTable(&tab)
		for _, id := range IDs() {
			if !strings.Contains(tab.String(), "\n"+id+" ") {
				t.Errorf("table misses %s", id)
			}
		}
	})
}

func TestBenchSelection(t *testing.T) {
	if _, err := Bench(context.Background(), BenchOptions{Scenarios: []string{"S9"}}); !errors.Is(err, ErrUnknownScenario) {
		t.Fatalf("S9: %v", err)
	}
	rep, err := Bench(context.Background(), BenchOptions{Scenarios: []string{"s3"}, Samples: 1, Short: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Scenarios) != 1 || rep.Scenarios[0].ID != "S3" {
		t.Fatalf("selected S3, got %+v", rep.Scenarios)
	}
	for _, r := range rep.Scenarios[0].Rows {
		if v, _ := r.Get("samples"); v != 1 {
			t.Errorf("%s: %v samples, want 1", r.Label, v)
		}
	}
}

// --cpuprofile and --trace write one file per measurement window,
// --memprofile the heap after the last one; the windows report the GC they
// hold and their voluntary context switches.
func TestBenchProfiles(t *testing.T) {
	dir := t.TempDir()
	cpu, heap, tr := filepath.Join(dir, "cpu"), filepath.Join(dir, "heap"), filepath.Join(dir, "trace")
	rep, err := Bench(context.Background(), BenchOptions{Scenarios: []string{"S1"}, Short: true, Peers: []int{10},
		Window: 200 * time.Millisecond, CPUProfile: cpu, MemProfile: heap, Trace: tr})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := rep.Scenario("S1")
	if !ok || len(s.Rows) != 2 {
		t.Fatalf("S1: %+v", rep.Scenarios)
	}
	for _, r := range s.Rows {
		_, gc := r.Get("GC cycles")
		vol, _ := r.Get("voluntary")
		all, _ := r.Get("ctx switches")
		if !gc || vol > all {
			t.Errorf("%s: GC cycles %v, voluntary %v of %v switches: %+v", r.Label, gc, vol, all, r.Figures)
		}
	}
	for _, f := range []string{cpu + ".1", cpu + ".2", heap} {
		b, err := os.ReadFile(f)
		if err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b { // pprof: gzipped protobuf
			t.Errorf("%s: not a profile (%v, %d bytes)", f, err, len(b))
		}
	}
	for _, f := range []string{tr + ".1", tr + ".2"} {
		if st, err := os.Stat(f); err != nil || st.Size() == 0 {
			t.Errorf("%s: no trace (%v)", f, err)
		}
	}
	if _, err := os.Stat(cpu + ".3"); err == nil {
		t.Errorf("3 CPU profiles for 2 windows")
	}
}

// A window counts the GC cycles that ran in it (observe forces none itself).
func TestObserveCountsGC(t *testing.T) {
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // GCs back to back for as long as the window lasts
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
				runtime.GC()
			}
		}
	}()
	row, err := observe(context.Background(), 300*time.Millisecond, nil, nil, "gc", 0)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := row.Get("GC cycles"); v < 1 {
		t.Fatalf("GC cycles %v with GCs running through the window: %+v", v, row.Figures)
	}
}
