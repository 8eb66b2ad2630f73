package soak

import (
	"strings"
	"testing"
)

// Check's margins: the live heap at the end and in between against the
// start's, RSS against the GC's goal of the larger.
func TestCheck(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name string
		r    Result
		want string // "" = passes; else a substring of the error
	}{
		{"flat", Result{HeapStart: 500 * mib, HeapEnd: 510 * mib, RSSStart: 200 * mib, RSSPeak: 520 * mib, RSSEnd: 500 * mib}, ""},
		{"buffers touched: RSS rises to the heap", Result{HeapStart: 570 * mib, HeapEnd: 580 * mib, RSSStart: 224 * mib, RSSPeak: 700 * mib, RSSEnd: 690 * mib}, ""},
		{"8-minute soak: RSS rises to the heap in use", Result{HeapStart: 558 * mib, HeapEnd: 545 * mib, LivePeak: 951 * mib,
			RSSStart: 204 * mib, RSSPeak: 1306 * mib, RSSEnd: 1063 * mib}, ""},
		{"heap grew", Result{HeapStart: 500 * mib, HeapEnd: 900 * mib, RSSStart: 200 * mib, RSSPeak: 500 * mib, RSSEnd: 500 * mib}, "heap 900 MiB"},
		{"live heap held during the soak", Result{HeapStart: 500 * mib, HeapEnd: 500 * mib, LivePeak: 1200 * mib, RSSStart: 200 * mib,
			RSSPeak: 900 * mib, RSSEnd: 600 * mib}, "live heap 1200 MiB at a GC during the soak, bound 1128 MiB"},
		{"RSS beyond the GC's goal", Result{HeapStart: 500 * mib, HeapEnd: 500 * mib, LivePeak: 520 * mib, RSSStart: 200 * mib,
			RSSPeak: 1500 * mib, RSSEnd: 600 * mib}, "RSS peak 1500 MiB / end 600 MiB, bound 1400 MiB"},
		{"RSS at the end", Result{HeapStart: 100 * mib, HeapEnd: 100 * mib, RSSStart: 300 * mib, RSSPeak: 400 * mib, RSSEnd: 800 * mib}, "bound 476 MiB"},
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
