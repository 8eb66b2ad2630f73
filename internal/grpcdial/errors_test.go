package grpcdial

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	testUnavailable = Sentinel("svc: server unavailable", ErrUnavailable)
	testClosed      = Sentinel("svc: stream closed", ErrStreamClosed)
	testRejected    = Sentinel("svc: request rejected", ErrRejected)
	testDenied      = Sentinel("svc: denied", ErrRejected)
	testErrs        = Errors{Prefix: "svc", Unavailable: testUnavailable, StreamClosed: testClosed, Stream: "recv",
		Answer: func(c codes.Code) error {
			if c == codes.PermissionDenied {
				return testDenied
			}
			return testRejected
		}}
)

func TestSentinel(t *testing.T) {
	if testUnavailable.Error() != "svc: server unavailable" {
		t.Fatalf("message %q", testUnavailable)
	}
	if !errors.Is(testUnavailable, ErrUnavailable) || errors.Is(testUnavailable, ErrRejected) {
		t.Fatal("a sentinel matches its kind only")
	}
	if errors.Is(testDenied, testRejected) {
		t.Fatal("two sentinels of one kind are distinct")
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{testUnavailable, true},
		{fmt.Errorf("%w: eof", testClosed), true},
		{fmt.Errorf("%w: %w", testClosed, testUnavailable), true},
		{fmt.Errorf("%w: %w", testClosed, testDenied), false},
		{testRejected, false},
		{Sentinel("svc: closed", ErrClosed), false},
		{Sentinel("svc: bad address", ErrBadTarget), false},
		{errors.New("other"), false},
	}
	for _, tt := range tests {
		if got := Retryable(tt.err); got != tt.want {
			t.Errorf("Retryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	done, cancel := context.WithCancel(context.Background())
	cancel()
	live := context.Background()
	tests := []struct {
		name   string
		ctx    context.Context
		stream bool
		err    error
		want   []error
		msg    string
	}{
		{"unavailable", live, false, status.Error(codes.Unavailable, "down"), []error{testUnavailable}, "svc: call: svc: server unavailable: rpc error: code = Unavailable desc = down"},
		{"cancelled wraps ctx", done, false, status.Error(codes.NotFound, "x"), []error{testUnavailable, context.Canceled}, ""},
		{"answer by code", live, false, status.Error(codes.PermissionDenied, "x"), []error{testDenied, ErrRejected}, ""},
		{"other answer", live, false, status.Error(codes.InvalidArgument, "x"), []error{testRejected}, ""},
		{"stream eof", live, true, io.EOF, []error{testClosed, io.EOF}, "svc: recv: svc: stream closed: EOF"},
		{"stream torn down", live, true, status.Error(codes.Unavailable, "x"), []error{testClosed, testUnavailable}, ""},
		{"stream refused", live, true, status.Error(codes.PermissionDenied, "x"), []error{testClosed, testDenied}, ""},
		{"stream eof after cancel", done, true, io.EOF, []error{testClosed, testUnavailable, context.Canceled}, ""},
	}
	for _, tt := range tests {
		var got error
		if tt.stream {
			got = testErrs.ClassifyStream(tt.ctx, tt.err)
		} else {
			got = testErrs.Classify(tt.ctx, "call", tt.err)
		}
		for _, w := range tt.want {
			if !errors.Is(got, w) {
				t.Errorf("%s: %v is not %v", tt.name, got, w)
			}
		}
		if tt.msg != "" && got.Error() != tt.msg {
			t.Errorf("%s: message %q, want %q", tt.name, got, tt.msg)
		}
	}
	if testErrs.Classify(live, "call", nil) != nil {
		t.Fatal("nil classified to an error")
	}
}

func TestCheckHostPort(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"signal.example:443", true},
		{"127.0.0.1:10000", true},
		{"[fd00::1]:1", true},
		{"host", false},
		{":443", false},
		{"host:0", false},
		{"host:65536", false},
		{"host:https", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := CheckHostPort(tt.in); (err == nil) != tt.ok {
			t.Errorf("CheckHostPort(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}

type countCloser struct {
	n   int
	err error
}

func (c *countCloser) Close() error { c.n++; return c.err }

func TestOnce(t *testing.T) {
	var o Once
	c := &countCloser{err: errors.New("boom")}
	if o.Closed() {
		t.Fatal("zero value closed")
	}
	if err := o.Close("svc", c); err == nil || err.Error() != "svc: close: boom" || !errors.Is(err, c.err) {
		t.Fatalf("first Close = %v", err)
	}
	if err := o.Close("svc", c); err != nil || c.n != 1 || !o.Closed() {
		t.Fatalf("second Close = %v, %d closes, closed %v", err, c.n, o.Closed())
	}
}
