package peerfsm

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/pion/ice/v2"

	"go.uber.org/zap"
)

// Remote candidates are capped per agent and handed over by one worker at
// a time, not one goroutine each.
func TestRemoteCandidatesAreCappedWithOneWorker(t *testing.T) {
	w := &Workers{}
	ctx, cancel := context.WithCancel(context.Background())
	h := &iceAgent{w: w, ctx: ctx, cancel: cancel, ready: make(chan struct{}), log: zap.NewNop()}
	for i := range 1000 {
		h.AddRemoteCandidate(fmt.Sprintf("%d 1 udp 2130706431 198.18.0.%d 5%d typ host", i, i%250+1, i%1000))
	}
	w.workers.mu.Lock()
	workers := w.workers.n
	w.workers.mu.Unlock()
	h.remote.Lock()
	queued, dropped := len(h.remote.queue), h.remote.dropped
	h.remote.Unlock()
	if workers != 1 || queued != MaxRemoteCandidates || dropped != 1000-MaxRemoteCandidates {
		t.Fatalf("workers %d, queued %d, dropped %d", workers, queued, dropped)
	}
	close(h.ready) // no agent (nil): the worker drains the queue and ends
	w.Close()
	if h.remote.draining || len(h.remote.queue) != 0 {
		t.Fatalf("draining %v, queue %d", h.remote.draining, len(h.remote.queue))
	}
	cancel()
}

func TestCandidateTypes(t *testing.T) {
	host, srflx, relay := ice.CandidateTypeHost, ice.CandidateTypeServerReflexive, ice.CandidateTypeRelay
	for _, tc := range []struct {
		configured []ice.CandidateType
		noTURN     bool
		want       []ice.CandidateType
	}{
		{nil, false, []ice.CandidateType{host, srflx, relay}},
		{nil, true, []ice.CandidateType{host, srflx}},
		{[]ice.CandidateType{host, relay}, true, []ice.CandidateType{host}},
		{[]ice.CandidateType{relay}, true, []ice.CandidateType{relay}}, // never the empty list pion reads as "all"
		{[]ice.CandidateType{relay}, false, []ice.CandidateType{relay}},
	} {
		if got := candidateTypes(tc.configured, tc.noTURN); !slices.Equal(got, tc.want) {
			t.Errorf("candidateTypes(%v, %v) = %v, want %v", tc.configured, tc.noTURN, got, tc.want)
		}
	}
}
