// Package grpcdial builds the gRPC client connection both NetBird services
// use: plaintext (h2c) or TLS with the system roots, keepalive pings so a
// dead stream is noticed without any ticker of ours, and a receive limit.
// grpc.NewClient does not connect: the first call does.
package grpcdial

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
)

// gRPC keepalive of both clients: a ping after 30 s without activity, the
// connection declared dead 10 s after an unanswered ping, also without an
// open stream. NetBird's servers (and the test network) allow pings every
// 10 s; upstream clients use the same values.
const (
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 10 * time.Second
)

// Options of one connection.
type Options struct {
	TLS bool
	// TLSConfig replaces the default (TLS 1.2+, system roots).
	TLSConfig *tls.Config
	// Dialer replaces the network dialer (tests).
	Dialer func(ctx context.Context, addr string) (net.Conn, error)
	// MaxRecvMsgSize bounds a received message.
	MaxRecvMsgSize int
}

// New returns a lazy client connection to target ("host:port").
func New(target string, o Options) (*grpc.ClientConn, error) {
	var creds credentials.TransportCredentials
	if o.TLS {
		tc := o.TLSConfig
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12} // nil RootCAs: system roots
		}
		creds = credentials.NewTLS(tc)
	} else {
		creds = insecure.NewCredentials()
	}
	dopts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                KeepaliveTime,
			Timeout:             KeepaliveTimeout,
			PermitWithoutStream: true,
		}),
	}
	if o.MaxRecvMsgSize > 0 {
		dopts = append(dopts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(o.MaxRecvMsgSize)))
	}
	if o.Dialer != nil {
		dopts = append(dopts, grpc.WithContextDialer(o.Dialer))
	}
	return grpc.NewClient("dns:///"+target, dopts...)
}

// Transient reports whether err, from a call made with ctx, is a transport
// failure that a later attempt may cure (the caller's context ended, the
// connection failed or was torn down, the server is shedding load or went
// away) rather than the server's answer to the request. Both clients sort
// their errors with it, so the list of transient codes lives in one place.
func Transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		return true // not a gRPC status: a transport error
	}
	switch st.Code() {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled,
		codes.Aborted, codes.ResourceExhausted, codes.Unknown:
		// Unknown is what gRPC reports for a connection torn down mid-call
		// by a proxy; Aborted for a stream replaced by a newer one;
		// ResourceExhausted for a server shedding load.
		return true
	}
	return false
}

// Once closes a client's connection once: Close is idempotent, and Closed
// tells calls made after it to fail at once. The zero value is open.
type Once struct{ closed atomic.Bool }

// Closed reports whether Close was called.
func (o *Once) Closed() bool { return o.closed.Load() }

// Close closes conn the first time it is called (prefix names the client in
// the error) and does nothing after.
func (o *Once) Close(prefix string, conn io.Closer) error {
	if o.closed.Swap(true) {
		return nil
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("%s: close: %w", prefix, err)
	}
	return nil
}
