package soak

import (
	"strings"
	"testing"
)

// Check's margins: the heap against its start, RSS against the larger of
// the start's RSS and heap.
func TestCheck(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		r    Result
		want string // "" = passes; else a substring of the error
	}{
		{"flat", Result{HeapStart: 500 * mib, HeapEnd: 510 * mib, RSSStart: 200 * mib, RSSPeak: 520 * mib, RSSEnd: 500 * mib}, ""},
		{"buffers touched: RSS rises to the heap", Result{HeapStart: 570 * mib, HeapEnd: 580 * mib, RSSStart: 224 * mib, RSSPeak: 700 * mib, RSSEnd: 690 * mib}, ""},
		{"heap grew", Result{HeapStart: 500 * mib, HeapEnd: 900 * mib, RSSStart: 200 * mib, RSSPeak: 500 * mib, RSSEnd: 500 * mib}, "heap 900 MiB"},
		{"RSS beyond what the process held", Result{HeapStart: 500 * mib, HeapEnd: 500 * mib, RSSStart: 200 * mib, RSSPeak: 1100 * mib, RSSEnd: 600 * mib}, "RSS peak 1100 MiB"},
		{"RSS at the end", Result{HeapStart: 100 * mib, HeapEnd: 100 * mib, RSSStart: 300 * mib, RSSPeak: 500 * mib, RSSEnd: 800 * mib}, "bound 706 MiB"},
		{"violation", Result{Violations: []string{"peer offering while signal down"}}, "offering while signal down"},
	} {
		err := tc.r.Check()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
