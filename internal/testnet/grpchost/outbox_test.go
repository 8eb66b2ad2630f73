package grpchost

import (
	"errors"
	"slices"
	"testing"
)

func TestOutbox(t *testing.T) {
	errEnd := errors.New("end")
	o := NewOutbox[int](3)
	for i := range 3 {
		if !o.Push(i) {
			t.Fatalf("Push(%d) refused below the limit", i)
		}
	}
	if o.Push(3) {
		t.Fatal("Push above the limit accepted")
	}
	select {
	case <-o.Wake():
	default:
		t.Fatal("no wake after Push")
	}
	if got := o.Take(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("Take = %v", got)
	}
	if got := o.Take(); len(got) != 0 {
		t.Fatalf("second Take = %v", got)
	}
	if !o.Push(4) {
		t.Fatal("Push after Take refused")
	}
	if o.Err() != nil {
		t.Fatal("Err set on an open outbox")
	}
	if !o.Finish(errEnd) || o.Finish(errors.New("later")) {
		t.Fatal("Finish: only the first call counts")
	}
	select {
	case <-o.Done():
	default:
		t.Fatal("Done not closed")
	}
	if !errors.Is(o.Err(), errEnd) {
		t.Fatalf("Err = %v", o.Err())
	}
	if o.Push(5) {
		t.Fatal("Push after Finish accepted")
	}
	if got := o.Take(); len(got) != 0 {
		t.Fatalf("Finish kept %v", got)
	}
}
