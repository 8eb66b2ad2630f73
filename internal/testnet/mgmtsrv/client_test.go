package mgmtsrv

import (
	"context"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// A hand-written management client for the tests, straight on the generated
// stubs and nbcrypto (internal/mgmt is another package's business).

// deadline bounds every wait: a failure deadline, never an expectation.
const deadline = 20 * time.Second

const testSetupKey = "A2C8E62B-38F5-4553-B31E-DD66C696CEBB"

var testConfig = &mgmtpb.NetbirdConfig{
	Signal: &mgmtpb.HostConfig{Uri: "127.0.0.1:10000", Protocol: mgmtpb.HostConfig_HTTP},
	Stuns:  []*mgmtpb.HostConfig{{Uri: "stun:127.0.0.1:3478"}},
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	if cfg.SetupKeys == nil {
		cfg.SetupKeys = []string{testSetupKey}
	}
	if cfg.NetbirdConfig == nil {
		cfg.NetbirdConfig = testConfig
	}
	s := New(cfg)
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

type client struct {
	t    *testing.T
	ctx  context.Context
	stub mgmtpb.ManagementServiceClient
	priv wgtypes.Key
}

func newClient(t *testing.T, addr string) *client {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond},
			MinConnectTimeout: deadline,
		}))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	priv, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, ctx: testCtx(t), stub: mgmtpb.NewManagementServiceClient(cc), priv: priv}
}

func (c *client) pub() wgtypes.Key { return c.priv.PublicKey() }

func meta(host string) *mgmtpb.PeerSystemMeta {
	return &mgmtpb.PeerSystemMeta{Hostname: host, GoOS: "linux", NetbirdVersion: "0.40.0"}
}

func (c *client) serverKey() wgtypes.Key {
	c.t.Helper()
	resp, err := c.stub.GetServerKey(c.ctx, &mgmtpb.Empty{}, grpc.WaitForReady(true))
	if err != nil {
		c.t.Fatalf("GetServerKey: %v", err)
	}
	k, err := nbcrypto.ParseKey(resp.GetKey())
	if err != nil {
		c.t.Fatalf("server key: %v", err)
	}
	return k
}

// login runs GetServerKey + Login and returns the opened response.
func (c *client) login(setupKey string, m *mgmtpb.PeerSystemMeta) (*mgmtpb.LoginResponse, error) {
	c.t.Helper()
	server := c.serverKey()
	body, err := nbcrypto.Seal(c.priv, server, &mgmtpb.LoginRequest{SetupKey: setupKey, Meta: m})
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := c.stub.Login(c.ctx, &mgmtpb.EncryptedMessage{WgPubKey: c.pub().String(), Body: body})
	if err != nil {
		return nil, err
	}
	if resp.GetWgPubKey() != server.String() {
		c.t.Fatalf("login reply from %s, want server key %s", resp.GetWgPubKey(), server)
	}
	var out mgmtpb.LoginResponse
	if err := nbcrypto.Open(c.priv, server, resp.GetBody(), &out); err != nil {
		c.t.Fatalf("open login response: %v", err)
	}
	return &out, nil
}

// mustRegister logs in with the test setup key.
func (c *client) mustRegister(host string) *mgmtpb.LoginResponse {
	c.t.Helper()
	resp, err := c.login(testSetupKey, meta(host))
	if err != nil {
		c.t.Fatalf("register %s: %v", host, err)
	}
	return resp
}

// clientSync is an open Sync with the server key it was opened with.
type clientSync struct {
	c      *client
	server wgtypes.Key
	st     mgmtpb.ManagementService_SyncClient
	cancel context.CancelFunc
}

// sync runs GetServerKey + Sync.
func (c *client) sync(m *mgmtpb.PeerSystemMeta) *clientSync {
	c.t.Helper()
	server := c.serverKey()
	body, err := nbcrypto.Seal(c.priv, server, &mgmtpb.SyncRequest{Meta: m})
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	c.t.Cleanup(cancel)
	st, err := c.stub.Sync(ctx, &mgmtpb.EncryptedMessage{WgPubKey: c.pub().String(), Body: body})
	if err != nil {
		c.t.Fatalf("Sync: %v", err)
	}
	return &clientSync{c: c, server: server, st: st, cancel: cancel}
}

// recv returns the next opened SyncResponse.
func (s *clientSync) recv() (*mgmtpb.SyncResponse, error) {
	s.c.t.Helper()
	msg, err := s.st.Recv()
	if err != nil {
		return nil, err
	}
	if msg.GetWgPubKey() != s.server.String() {
		s.c.t.Fatalf("sync message from %s, want %s", msg.GetWgPubKey(), s.server)
	}
	var out mgmtpb.SyncResponse
	if err := nbcrypto.Open(s.c.priv, s.server, msg.GetBody(), &out); err != nil {
		s.c.t.Fatalf("open sync response: %v", err)
	}
	return &out, nil
}

func (s *clientSync) mustRecv() *mgmtpb.SyncResponse {
	s.c.t.Helper()
	resp, err := s.recv()
	if err != nil {
		s.c.t.Fatalf("sync Recv: %v", err)
	}
	return resp
}

// wantEnd checks that the stream ends with code.
func (s *clientSync) wantEnd(code codes.Code) {
	s.c.t.Helper()
	for {
		_, err := s.recv()
		if err == nil {
			continue
		}
		if got := status.Code(err); got != code {
			s.c.t.Fatalf("sync ended with %v (%v), want %v", got, err, code)
		}
		return
	}
}

// remoteKeys lists the wgPubKeys of a map's remote peers.
func remoteKeys(nm *mgmtpb.NetworkMap) []string {
	var out []string
	for _, r := range nm.GetRemotePeers() {
		out = append(out, r.GetWgPubKey())
	}
	return out
}
