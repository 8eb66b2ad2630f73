package modelcheck

import (
	"flag"
	"testing"
	"time"
)

var (
	duration = flag.Duration("modelcheck.duration", 0, "run random sequences for this long (make check); 0: the short run")
	seed0    = flag.Uint64("modelcheck.seed", 1, "first seed")
	steps    = flag.Int("modelcheck.steps", 200, "steps per sequence")
)

// TestModel is the short run of make test (a few seconds): seeds from
// -modelcheck.seed on, each a sequence of random external events, every
// invariant checked after every step. make check runs it for minutes.
func TestModel(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	deadline := time.Now().Add(*duration)
	total := 0
	for s := *seed0; ; s++ {
		if *duration == 0 && int(s-*seed0) >= seeds {
			break
		}
		if *duration > 0 && time.Now().After(deadline) {
			break
		}
		if f := Run(s, *steps); f != nil {
			t.Fatalf("after %d steps of earlier seeds: %v", total, f)
		}
		total += *steps
	}
	t.Logf("%d steps, every invariant held after each", total)
}

var explore = flag.Int("modelcheck.explore", 0, "seeds to run past failures, reporting the first find of each invariant")

// TestExplore runs past failures and reports, per invariant, how many steps
// (over all seeds so far) it took to first break it, with the shortened
// sequence. It is how the numbers in the closing note of issue 10 were
// taken on the unfixed engine.
func TestExplore(t *testing.T) {
	if *explore == 0 {
		t.Skip("-modelcheck.explore=N")
	}
	first := map[string]bool{}
	total := 0
	for s := *seed0; s < *seed0+uint64(*explore); s++ {
		f := Run(s, *steps)
		if f == nil {
			total += *steps
			continue
		}
		total += f.Step
		for _, inv := range Invariants(f.Err) {
			if !first[inv] {
				first[inv] = true
				t.Logf("%s: first broken after %d steps in all (seed %d, step %d)\n%v", inv, total, s, f.Step, f)
			}
		}
	}
	t.Logf("%d steps in all", total)
}

var depth = flag.Int("modelcheck.depth", 2, "depth of the exhaustive search after Prefix")

// TestExhaustive runs every sequence of -modelcheck.depth events (2 in
// make test: 1 444 sequences; make check: 3, ~55 000) from the Alphabet after Prefix.
func TestExhaustive(t *testing.T) {
	d := *depth
	if testing.Short() {
		d = 1
	}
	runs, f := Exhaustive(Prefix, Alphabet(), d)
	if f != nil {
		t.Fatalf("after %d sequences of depth %d: %v", runs, d, f)
	}
	t.Logf("%d sequences of depth %d after the prefix: every invariant held after every step", runs, d)
}
