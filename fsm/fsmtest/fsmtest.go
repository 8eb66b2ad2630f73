// Package fsmtest holds test helpers for machines built on fsm: the totality
// assertion every machine package runs, a recorder of effects for
// table-driven transition tests, and what the fuzz targets of event
// sequences share (Input, Timers, CheckStep, AssertStaleDropped).
package fsmtest

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
)

// AssertTotal fails t unless every (leaf state × event) of the spec has a
// declared outcome: a transition, an internal action, an ignore, or a
// bubble to a parent state that has one.
func AssertTotal(t testing.TB, d fsm.Describer) {
	t.Helper()
	if err := fsm.CheckTotal(d); err != nil {
		t.Fatal(err)
	}
}

// Recorder records effect calls as strings ("SendOffer", "StartICE gen=2").
// Fakes of a machine package's Effects interface embed it.
type Recorder struct {
	mu    sync.Mutex
	calls []string
}

// Record appends one call; args are formatted with %v and joined by spaces.
func (r *Recorder) Record(name string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(args) == 0 {
		r.calls = append(r.calls, name)
		return
	}
	parts := make([]string, 0, len(args)+1)
	parts = append(parts, name)
	for _, a := range args {
		parts = append(parts, fmt.Sprint(a))
	}
	r.calls = append(r.calls, strings.Join(parts, " "))
}

// Take returns the calls recorded so far and forgets them.
func (r *Recorder) Take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// Names returns only the call names (first word) recorded so far, and
// forgets them.
func (r *Recorder) Names() []string {
	var out []string
	for _, c := range r.Take() {
		name, _, _ := strings.Cut(c, " ")
		out = append(out, name)
	}
	return out
}
