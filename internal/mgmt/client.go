package mgmt

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"

	"github.com/nbfsm/nbfsm/internal/grpcdial"

	"github.com/nbfsm/nbfsm/internal/ratelog"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// gRPC keepalive of the management connection, as upstream clients set it:
// after KeepaliveTime without traffic gRPC pings the server, and a ping not
// answered within KeepaliveTimeout closes the connection, which ends a
// blocked SyncStream.Recv with ErrStreamClosed. This is how a dead Sync
// stream is noticed (about 40 s at worst) with no ticker of ours. Servers
// must permit pings every 30 s (upstream's enforce a 15 s minimum); one
// that does not answers with GOAWAY and gRPC doubles the interval itself.
const (
	KeepaliveTime    = grpcdial.KeepaliveTime
	KeepaliveTimeout = grpcdial.KeepaliveTimeout
)

// MaxRecvMsgSize bounds one message from the server: the largest body
// nbcrypto opens plus room for the envelope.
const MaxRecvMsgSize = nbcrypto.MaxBodySize + 64<<10

// Option configures a Client.
type Option func(*options)

type options struct {
	log    *zap.Logger
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

// WithDialer replaces the network dialer, for tests.
func WithDialer(d func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(o *options) { o.dialer = d }
}

// WithTLSConfig sets the TLS config of https:// URLs (default: system
// roots), for tests and private CAs. It is cloned.
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) { o.tls = c.Clone() }
}

// Client talks to one management server for one peer key. It is safe for
// concurrent use. It starts no goroutine of its own besides those of its
// gRPC connection, which Close ends.
type Client struct {
	priv    wgtypes.Key
	pub     wgtypes.Key
	pubText string
	target  string
	conn    *grpc.ClientConn
	rpc     mgmtpb.ManagementServiceClient
	log     *zap.Logger
	bad     *ratelog.Limiter
	stats   Stats
	once    grpcdial.Once

	serialMu sync.Mutex
	serials  Serials // guarded by serialMu: of the maps delivered
}

// LoginResult is what a successful Login returns.
type LoginResult struct {
	Config Config
	Peer   PeerConfig
	// Checks are the file paths the account's posture checks look at:
	// report them in Meta.Files (see CheckFiles) on the following Sync.
	Checks []string
}

// Dial prepares a client of the management server at rawURL for the peer
// whose private key is key. It does not connect: the first call does.
// http:// is plaintext (h2c), https:// TLS; the port defaults to 80 or 443.
func Dial(rawURL string, key wgtypes.Key, opts ...Option) (*Client, error) {
	o := options{log: zap.NewNop()}
	for _, opt := range opts {
		opt(&o)
	}
	target, useTLS, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	conn, err := grpcdial.New(target, grpcdial.Options{TLS: useTLS, TLSConfig: o.tls, Dialer: o.dialer, MaxRecvMsgSize: MaxRecvMsgSize})
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrBadURL, rawURL, err)
	}
	pub := key.PublicKey()
	log := o.log.Named("mgmt")
	return &Client{
		priv:    key,
		pub:     pub,
		pubText: pub.String(),
		target:  target,
		conn:    conn,
		rpc:     mgmtpb.NewManagementServiceClient(conn),
		log:     log,
		bad:     ratelog.New(log),
	}, nil
}

// parseURL accepts http(s)://host[:port][/] and returns host:port.
func parseURL(raw string) (target string, useTLS bool, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", false, fmt.Errorf("%w: %w", ErrBadURL, err)
	}
	var port string
	switch u.Scheme {
	case "http":
		port = "80"
	case "https":
		port, useTLS = "443", true
	default:
		return "", false, fmt.Errorf("%w: %q: scheme must be http or https", ErrBadURL, raw)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		return "", false, fmt.Errorf("%w: %q: want scheme://host[:port] only", ErrBadURL, raw)
	}
	if u.Hostname() == "" {
		return "", false, fmt.Errorf("%w: %q: no host", ErrBadURL, raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return "", false, fmt.Errorf("%w: %q: bad port", ErrBadURL, raw)
		}
		port = p
	}
	return net.JoinHostPort(u.Hostname(), port), useTLS, nil
}

// Target is the host:port the client talks to.
func (c *Client) Target() string { return c.target }

// Close closes the connection; blocked calls and streams end with an error.
// It is idempotent.
func (c *Client) Close() error { return c.once.Close("mgmt", c.conn) }

// Stats returns the counters of this client.
func (c *Client) Stats() StatsSnapshot { return c.stats.snapshot() }

// ResetSerial forgets the highest delivered map serial, so that the next map
// is delivered whatever its serial. For a caller that knows the server's
// state was reset; normal reconnects must not call it.
func (c *Client) ResetSerial() {
	c.serialMu.Lock()
	c.serials.Reset()
	c.serialMu.Unlock()
}

// ServerKey fetches the server's current public key (GetServerKey).
func (c *Client) ServerKey(ctx context.Context) (wgtypes.Key, error) {
	if c.once.Closed() {
		return wgtypes.Key{}, ErrClosed
	}
	resp, err := c.rpc.GetServerKey(ctx, &mgmtpb.Empty{})
	if err != nil {
		return wgtypes.Key{}, classify(ctx, "get server key", err)
	}
	k, err := nbcrypto.ParseKey(resp.GetKey())
	if err != nil {
		return wgtypes.Key{}, fmt.Errorf("mgmt: get server key: %w: %w", ErrBadResponse, err)
	}
	return k, nil
}

// Login logs the peer in, or registers it when setupKey is not empty. It is
// one attempt; see the package doc for the registration flow.
func (c *Client) Login(ctx context.Context, serverKey wgtypes.Key, setupKey string, meta Meta) (*LoginResult, error) {
	if c.once.Closed() {
		return nil, ErrClosed
	}
	em, err := c.seal(serverKey, loginRequest(c.pubText, setupKey, meta))
	if err != nil {
		return nil, fmt.Errorf("mgmt: login: %w", err)
	}
	resp, err := c.rpc.Login(ctx, em)
	if err != nil {
		return nil, classifyLogin(ctx, err, setupKey != "")
	}
	var lr mgmtpb.LoginResponse
	if err := nbcrypto.Open(c.priv, serverKey, resp.GetBody(), &lr); err != nil {
		return nil, fmt.Errorf("mgmt: login: %w: %w", ErrBadResponse, err)
	}
	if lr.GetPeerConfig() == nil {
		return nil, fmt.Errorf("mgmt: login: %w: no peer config", ErrBadResponse)
	}
	peer, err := convertPeerConfig(lr.GetPeerConfig())
	if err != nil {
		return nil, fmt.Errorf("mgmt: login: %w: %w", ErrBadResponse, err)
	}
	res := &LoginResult{Config: convertConfig(lr.GetNetbirdConfig()), Peer: peer, Checks: checkPaths(lr.GetChecks())}
	c.logSkippedConfig(res.Config.Skipped)
	return res, nil
}

// Logout deregisters this peer (NetBird's Logout: the body is a box of
// Empty). Afterwards a Login without a setup key is refused.
func (c *Client) Logout(ctx context.Context, serverKey wgtypes.Key) error {
	if c.once.Closed() {
		return ErrClosed
	}
	em, err := c.seal(serverKey, &mgmtpb.Empty{})
	if err != nil {
		return fmt.Errorf("mgmt: logout: %w", err)
	}
	if _, err := c.rpc.Logout(ctx, em); err != nil {
		return classify(ctx, "logout", err)
	}
	return nil
}

// SyncMeta sends this peer's meta without a new Sync (PROTOCOL.md §3), for
// when its addresses or posture-check files changed. One attempt.
func (c *Client) SyncMeta(ctx context.Context, serverKey wgtypes.Key, meta Meta) error {
	if c.once.Closed() {
		return ErrClosed
	}
	em, err := c.seal(serverKey, &mgmtpb.SyncMetaRequest{Meta: meta.proto()})
	if err != nil {
		return fmt.Errorf("mgmt: sync meta: %w", err)
	}
	if _, err := c.rpc.SyncMeta(ctx, em); err != nil {
		return classify(ctx, "sync meta", err)
	}
	return nil
}

// checkPaths flattens the posture checks' file lists, without empty or
// repeated paths, bounded (a hostile server must not make us stat
// millions of paths).
func checkPaths(checks []*mgmtpb.Checks) []string {
	const maxPaths = 256
	seen := make(map[string]bool)
	var out []string
	for _, c := range checks {
		for _, f := range c.GetFiles() {
			if f != "" && !seen[f] && len(out) < maxPaths {
				seen[f] = true
				out = append(out, f)
			}
		}
	}
	return out
}

// loginRequest is the LoginRequest of this peer. Official clients put the
// base64 text of the WireGuard public key in peerKeys.wgPubKey.
func loginRequest(pubText, setupKey string, meta Meta) *mgmtpb.LoginRequest {
	return &mgmtpb.LoginRequest{
		SetupKey: setupKey,
		Meta:     meta.proto(),
		PeerKeys: &mgmtpb.PeerKeys{WgPubKey: []byte(pubText)},
	}
}

// seal seals msg to the server key and wraps it in an EncryptedMessage.
func (c *Client) seal(serverKey wgtypes.Key, msg proto.Message) (*mgmtpb.EncryptedMessage, error) {
	body, err := nbcrypto.Seal(c.priv, serverKey, msg)
	if err != nil {
		return nil, err
	}
	return envelope(c.pubText, body), nil
}

func envelope(pubText string, body []byte) *mgmtpb.EncryptedMessage {
	return &mgmtpb.EncryptedMessage{WgPubKey: pubText, Body: body}
}
