package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the demo end to end and checks its outcome: every pair
// pinged in each phase, both outages ridden out, the closing line printed.
func TestDemo(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := Run(ctx, &out, Options{Outage: 300 * time.Millisecond, Timeout: 90 * time.Second}); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	text := out.String()
	for what, want := range map[string]int{
		"first echo reply":           6, // every ordered pair of three clients
		"echo reply without signal":  6,
		": echo reply in":            6, // after management came back
		"every signal link back":     1,
		"every management link back": 1,
		"done: every wait above was a state with one timer; nothing polled.": 1,
	} {
		if got := strings.Count(text, what); got != want {
			t.Errorf("%q printed %d times, want %d\n%s", what, got, want, text)
		}
	}
	for _, name := range []string{"alpha", "beta", "gamma"} {
		if !strings.Contains(text, name+" ") || !strings.Contains(text, "direct") {
			t.Errorf("final status of %s missing a direct peer\n%s", name, text)
		}
	}
}
