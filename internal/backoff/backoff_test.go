package backoff

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestDelayBounds(t *testing.T) {
	p := Policy{Base: time.Second, Cap: 30 * time.Second, Min: 250 * time.Millisecond}
	r := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		attempt int
		ceil    time.Duration
	}{
		{0, time.Second}, {1, 2 * time.Second}, {4, 16 * time.Second}, {5, 30 * time.Second},
		{40, 30 * time.Second}, {1000, 30 * time.Second},
	}
	for _, tt := range tests {
		if c := p.Ceiling(tt.attempt); c != tt.ceil {
			t.Errorf("ceiling(%d) = %v, want %v", tt.attempt, c, tt.ceil)
		}
		for range 1000 {
			d := p.Delay(tt.attempt, r)
			if d < p.Min || d > tt.ceil {
				t.Fatalf("delay(%d) = %v outside [%v, %v]", tt.attempt, d, p.Min, tt.ceil)
			}
		}
	}
}

func TestDelayIsDeterministicForASeed(t *testing.T) {
	a, b := rand.New(rand.NewPCG(7, 7)), rand.New(rand.NewPCG(7, 7))
	for i := range 50 {
		if Links.Delay(i, a) != Links.Delay(i, b) {
			t.Fatal("same seed, different schedule")
		}
	}
}

func TestMinAboveCeiling(t *testing.T) {
	p := Policy{Base: time.Millisecond, Cap: time.Second, Min: 10 * time.Millisecond}
	if d := p.Delay(0, nil); d != 10*time.Millisecond {
		t.Fatalf("delay %v", d)
	}
}

func TestDialsWithin(t *testing.T) {
	fixed := Policy{Base: time.Second, Cap: time.Second, Min: time.Second}
	tests := []struct {
		horizon time.Duration
		want    int
	}{{0, 1}, {999 * time.Millisecond, 1}, {time.Second, 2}, {10 * time.Second, 11}}
	for _, tt := range tests {
		if got := fixed.DialsWithin(tt.horizon, nil); got != tt.want {
			t.Errorf("DialsWithin(%v) = %d, want %d", tt.horizon, got, tt.want)
		}
	}
}
