package grpcdial

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestTransient(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want bool
	}{
		{"caller cancelled", done, status.Error(codes.NotFound, "x"), true},
		{"context error", live, context.DeadlineExceeded, true},
		{"not a status", live, errors.New("connection refused"), true},
		{"unavailable", live, status.Error(codes.Unavailable, "x"), true},
		{"aborted: replaced stream", live, status.Error(codes.Aborted, "x"), true},
		{"unknown: torn down", live, status.Error(codes.Unknown, "x"), true},
		{"permission denied", live, status.Error(codes.PermissionDenied, "x"), false},
		{"not found", live, status.Error(codes.NotFound, "x"), false},
		{"failed precondition", live, status.Error(codes.FailedPrecondition, "x"), false},
	}
	for _, tt := range tests {
		if got := Transient(tt.ctx, tt.err); got != tt.want {
			t.Errorf("%s: Transient = %v, want %v", tt.name, got, tt.want)
		}
	}
}
