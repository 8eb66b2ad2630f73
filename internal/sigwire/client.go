package sigwire

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"

	"github.com/nbfsm/nbfsm/internal/grpcdial"

	"github.com/nbfsm/nbfsm/internal/ratelog"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"

	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
)

// gRPC keepalive of the signal connection, as upstream clients set it:
// after KeepaliveTime without traffic gRPC pings the server, and a ping not
// answered within KeepaliveTimeout closes the connection, which ends a
// blocked Stream.Recv with ErrStreamClosed. A quiet receive stream is the
// normal state of signal, so this is how a dead one is noticed (about 40 s
// at worst) with no ticker of ours. Servers must permit pings every 30 s
// (upstream's enforce a 15 s minimum); one that does not answers with
// GOAWAY and gRPC doubles the interval itself.
const (
	KeepaliveTime    = grpcdial.KeepaliveTime
	KeepaliveTimeout = grpcdial.KeepaliveTimeout
)

// MaxRecvMsgSize is gRPC's default server-side limit: whatever the server
// accepts from a sender reaches Decode, which drops bodies over MaxBodySize
// and goes on. A lower limit here would let one oversize message from any
// sender end our stream.
const MaxRecvMsgSize = 4 << 20

// Metadata headers of ConnectStream.
const (
	HeaderPeerID     = "x-wiretrustee-peer-id"         // sent: our public key
	HeaderRegistered = "x-wiretrustee-peer-registered" // received: "1"
)

// Option configures a Client.
type Option func(*options)

type options struct {
	log    *zap.Logger
	accept func(wgtypes.Key) bool
	dialer func(context.Context, string) (net.Conn, error)
	tls    *tls.Config
}

// WithLogger sets the logger (default: zap.NewNop()).
func WithLogger(l *zap.Logger) Option {
	return func(o *options) {
		if l != nil {
			o.log = l
		}
	}
}

// WithAccept sets the function that says whether a sender is known (default:
// every sender). It is called from the goroutine that calls Stream.Recv,
// for every received message before any cryptography: it must be
// goroutine-safe and cheap.
func WithAccept(accept func(wgtypes.Key) bool) Option {
	return func(o *options) { o.accept = accept }
}

// WithDialer replaces the network dialer, for tests.
func WithDialer(d func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dialer = d }
}

// WithTLSConfig sets the TLS config used when useTLS is true (default:
// system roots), for tests and private CAs. It is cloned.
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) { o.tls = c.Clone() }
}

// Client talks to one signal server for one peer key. It is safe for
// concurrent use. It starts no goroutine of its own besides those of its
// gRPC connection, which Close ends.
type Client struct {
	priv   wgtypes.Key
	dec    decoder
	addr   string
	conn   *grpc.ClientConn
	rpc    signalpb.SignalExchangeClient
	accept func(wgtypes.Key) bool
	log    *zap.Logger
	bad    *ratelog.Limiter
	stats  Stats
	once   grpcdial.Once
}

// Dial prepares a client of the signal server at addr ("host:port", as the
// management config gives it) for the peer whose private key is key. It
// does not connect: the first call does.
func Dial(addr string, useTLS bool, key wgtypes.Key, opts ...Option) (*Client, error) {
	o := options{log: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}
	if err := grpcdial.CheckHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadAddr, addr, err)
	}
	conn, err := grpcdial.New(addr, grpcdial.Options{TLS: useTLS, TLSConfig: o.tls, Dialer: o.dialer, MaxRecvMsgSize: MaxRecvMsgSize})
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadAddr, addr, err)
	}
	log := o.log.Named("signal")
	return &Client{
		priv:   key,
		dec:    newDecoder(key),
		addr:   addr,
		conn:   conn,
		rpc:    signalpb.NewSignalExchangeClient(conn),
		accept: o.accept,
		log:    log,
		bad:    ratelog.New(log),
	}, nil
}

// Addr is the server address the client talks to.
func (c *Client) Addr() string { return c.addr }

// Close closes the connection; blocked calls and streams end with an error.
// It is idempotent.
func (c *Client) Close() error { return c.once.Close("signal", c.conn) }

// Stats returns the counters of this client.
func (c *Client) Stats() StatsSnapshot { return c.stats.snapshot() }

// Send seals m to m.To and sends it with one unary Send call. The server
// drops, without error, a message to a peer that is not connected.
func (c *Client) Send(ctx context.Context, m Message) error {
	if c.once.Closed() {
		return ErrClosed
	}
	em, err := encode(c.priv, c.dec.pub, m, nil)
	if err != nil {
		return err
	}
	if _, err := c.rpc.Send(ctx, em); err != nil {
		c.stats.sendErrors.Add(1)
		return classify(ctx, "send "+m.Kind.String(), err)
	}
	c.stats.out.Add(1)
	return nil
}
