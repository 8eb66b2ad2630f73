// Package grpcdial builds the gRPC client connection both NetBird services
// use: plaintext (h2c) or TLS with the system roots, keepalive pings so a
// dead stream is noticed without any ticker of ours, and a receive limit.
// grpc.NewClient does not connect: the first call does.
package grpcdial

import (
	"context"
	"crypto/tls"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
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
