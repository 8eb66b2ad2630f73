package mgmt

import "testing"

func TestSerials(t *testing.T) {
	var s Serials
	if _, ok := s.Last(); ok || s.Stale(0) {
		t.Fatal("the zero value has taken something")
	}
	steps := []struct {
		serial uint64
		admit  bool
		last   uint64
	}{
		{5, true, 5},
		{5, true, 5}, // equal: a resent current map
		{4, false, 5},
		{0, false, 5},
		{9, true, 9},
		{6, false, 9},
	}
	for i, st := range steps {
		if got := s.Admit(st.serial); got != st.admit {
			t.Fatalf("step %d: Admit(%d) = %v", i, st.serial, got)
		}
		if last, ok := s.Last(); !ok || last != st.last {
			t.Fatalf("step %d: Last = %d, %v; want %d", i, last, ok, st.last)
		}
	}
	s.Reset()
	if s.Stale(1) || !s.Admit(1) {
		t.Fatal("after Reset a lower serial is stale")
	}
}
