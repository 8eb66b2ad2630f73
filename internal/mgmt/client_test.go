package mgmt

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nbfsm/nbfsm/internal/grpcdial"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// deadline bounds every wait in these tests. It is a failure deadline on a
// loaded machine, never an expectation.
const deadline = 30 * time.Second

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, url string, priv wgtypes.Key, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(url, priv, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var testMeta = Meta{Hostname: "nbfsm-test", GoOS: "linux"}

func TestRegistrationFlow(t *testing.T) {
	f, url := startFakeMgmt(t)
	c := dial(t, url, ownPriv)
	ctx := testCtx(t)

	sk, err := c.ServerKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sk != f.priv.PublicKey() {
		t.Fatalf("server key %v", sk)
	}
	_, err = c.Login(ctx, sk, "", testMeta)
	if !errors.Is(err, ErrNotRegistered) || grpcdial.Retryable(err) {
		t.Fatalf("first login = %v, want ErrNotRegistered", err)
	}
	_, err = c.Login(ctx, sk, "wrong-key", testMeta)
	if !errors.Is(err, ErrSetupKeyRejected) || grpcdial.Retryable(err) {
		t.Fatalf("login with a wrong setup key = %v, want ErrSetupKeyRejected", err)
	}
	res, err := c.Login(ctx, sk, testSetupKey, testMeta)
	if err != nil {
		t.Fatalf("login with setup key: %v", err)
	}
	if res.Peer != ownPeer || res.Config.Signal != (HostConfig{URI: "127.0.0.1:10000", Protocol: ProtocolHTTP}) {
		t.Fatalf("login result %+v", res)
	}
	if _, err := c.Login(ctx, sk, "", testMeta); err != nil {
		t.Fatalf("later login without setup key: %v", err)
	}

	// What the server saw: meta, version, and the key as base64 text.
	f.mu.Lock()
	last := f.logins[len(f.logins)-1]
	f.mu.Unlock()
	if string(last.GetPeerKeys().GetWgPubKey()) != own.String() {
		t.Fatalf("peerKeys.wgPubKey = %q, want the base64 text of the key", last.GetPeerKeys().GetWgPubKey())
	}
	if last.GetMeta().GetHostname() != "nbfsm-test" || last.GetMeta().GetSyncMessageVersion() != 0 {
		t.Fatalf("meta %v", last.GetMeta())
	}
}

func TestCallErrors(t *testing.T) {
	tests := []struct {
		name      string
		failWith  error
		want      error
		retryable bool
	}{
		{"unavailable", status.Error(codes.Unavailable, "down"), ErrUnavailable, true},
		{"deadline", status.Error(codes.DeadlineExceeded, "slow"), ErrUnavailable, true},
		{"permission denied", status.Error(codes.PermissionDenied, "who"), ErrNotRegistered, false},
		{"not found", status.Error(codes.NotFound, "key"), ErrSetupKeyRejected, false},
		{"failed precondition", status.Error(codes.FailedPrecondition, "meta"), ErrRequestRejected, false},
		{"invalid argument", status.Error(codes.InvalidArgument, "box"), ErrRequestRejected, false},
		{"internal", status.Error(codes.Internal, "db"), ErrRequestRejected, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, url := startFakeMgmt(t)
			c := dial(t, url, ownPriv)
			ctx := testCtx(t)
			f.set(tt.failWith, false)
			_, errKey := c.ServerKey(ctx)
			_, errLogin := c.Login(ctx, f.priv.PublicKey(), "", testMeta)
			s, errSync := c.Sync(ctx, f.priv.PublicKey(), testMeta)
			if errSync == nil {
				_, errSync = s.Recv()
			}
			for what, err := range map[string]error{"server key": errKey, "login": errLogin, "sync": errSync} {
				if !errors.Is(err, tt.want) || grpcdial.Retryable(err) != tt.retryable {
					t.Errorf("%s: %v (retryable %v), want %v (retryable %v)", what, err, grpcdial.Retryable(err), tt.want, tt.retryable)
				}
			}
			if !errors.Is(errSync, ErrStreamClosed) {
				t.Errorf("sync: %v, want ErrStreamClosed", errSync)
			}
		})
	}
}

// TestRegistrationRefused: with a setup key, NotFound and
// FailedPrecondition both mean the key was refused (PROTOCOL.md §3); a
// FailedPrecondition on a plain login stays a rejected request.
func TestRegistrationRefused(t *testing.T) {
	tests := []struct {
		name     string
		code     codes.Code
		setupKey string
		want     error
	}{
		{"not found", codes.NotFound, "key", ErrSetupKeyRejected},
		{"failed precondition", codes.FailedPrecondition, "key", ErrSetupKeyRejected},
		{"failed precondition without setup key", codes.FailedPrecondition, "", ErrRequestRejected},
		{"internal", codes.Internal, "key", ErrRequestRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, url := startFakeMgmt(t)
			c := dial(t, url, ownPriv)
			f.set(status.Error(tt.code, "couldn't add peer: setup key is invalid"), false)
			_, err := c.Login(testCtx(t), f.priv.PublicKey(), tt.setupKey, testMeta)
			if !errors.Is(err, tt.want) || grpcdial.Retryable(err) {
				t.Errorf("login: %v (retryable %v), want %v", err, grpcdial.Retryable(err), tt.want)
			}
		})
	}
}

func TestServerDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + lis.Addr().String()
	_ = lis.Close()
	c := dial(t, url, ownPriv)
	if _, err := c.ServerKey(testCtx(t)); !errors.Is(err, ErrUnavailable) || !grpcdial.Retryable(err) {
		t.Fatalf("ServerKey = %v, want retryable ErrUnavailable", err)
	}
}

func TestBadResponses(t *testing.T) {
	other := key(0x77)
	tests := []struct {
		name  string
		setup func(f *fakeMgmt)
		login bool // the failure shows in Login, not in ServerKey
		want  error
	}{
		{"server key not a key", func(f *fakeMgmt) { f.keyText = "xyz" }, false, ErrBadResponse},
		{"reply sealed with another key", func(f *fakeMgmt) { f.replyPriv = &other }, true, ErrBadResponse},
		{"reply without peer config", func(f *fakeMgmt) { f.noPeerConfig = true }, true, ErrBadResponse},
		{"request sealed to a stale server key", func(f *fakeMgmt) { f.priv = key(0x66) }, true, ErrRequestRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, url := startFakeMgmt(t)
			c := dial(t, url, ownPriv)
			ctx := testCtx(t)
			f.mu.Lock()
			f.registered[own.String()] = true
			if !tt.login {
				tt.setup(f)
			}
			f.mu.Unlock()
			if !tt.login {
				if _, err := c.ServerKey(ctx); !errors.Is(err, tt.want) || grpcdial.Retryable(err) {
					t.Fatalf("ServerKey = %v, want %v", err, tt.want)
				}
				return
			}
			sk, err := c.ServerKey(ctx)
			if err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			tt.setup(f)
			f.mu.Unlock()
			if _, err := c.Login(ctx, sk, "", testMeta); !errors.Is(err, tt.want) || grpcdial.Retryable(err) {
				t.Fatalf("Login = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCancelReturnsPromptly(t *testing.T) {
	f, url := startFakeMgmt(t)
	c := dial(t, url, ownPriv)
	f.set(nil, true)
	calls := map[string]func(context.Context) error{
		"server key": func(ctx context.Context) error { _, err := c.ServerKey(ctx); return err },
		"login":      func(ctx context.Context) error { _, err := c.Login(ctx, f.priv.PublicKey(), "", testMeta); return err },
		"sync": func(ctx context.Context) error {
			s, err := c.Sync(ctx, f.priv.PublicKey(), testMeta)
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- call(ctx) }()
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
					t.Fatalf("%v, want ErrUnavailable wrapping context.Canceled", err)
				}
			case <-time.After(deadline):
				t.Fatal("call ignored cancel")
			}
		})
	}
}

func TestClosedClient(t *testing.T) {
	_, url := startFakeMgmt(t)
	c := dial(t, url, ownPriv)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t)
	if _, err := c.ServerKey(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("ServerKey = %v", err)
	}
	if _, err := c.Login(ctx, own, "", testMeta); !errors.Is(err, ErrClosed) {
		t.Fatalf("Login = %v", err)
	}
	if _, err := c.Sync(ctx, own, testMeta); !errors.Is(err, ErrClosed) {
		t.Fatalf("Sync = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

// openSync registers the peer and opens a Sync stream.
func openSync(t *testing.T, f *fakeMgmt, c *Client) *SyncStream {
	t.Helper()
	f.mu.Lock()
	f.registered[own.String()] = true
	f.mu.Unlock()
	s, err := c.Sync(testCtx(t), f.priv.PublicKey(), testMeta)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	select {
	case <-f.syncReady:
	case <-time.After(deadline):
		t.Fatal("sync stream never opened")
	}
	return s
}

// recv runs Recv with a failure deadline.
func recv(t *testing.T, s *SyncStream) (Update, error) {
	t.Helper()
	type res struct {
		u   Update
		err error
	}
	ch := make(chan res, 1)
	go func() { u, err := s.Recv(); ch <- res{u, err} }()
	select {
	case r := <-ch:
		return r.u, r.err
	case <-time.After(deadline):
		s.Close()
		<-ch
		t.Fatal("Recv never returned")
		return Update{}, nil
	}
}

func mapMsg(serial uint64, peers ...wgtypes.Key) *mgmtpb.SyncResponse {
	nm := &mgmtpb.NetworkMap{Serial: serial, PeerConfig: ownConfig, RemotePeersIsEmpty: len(peers) == 0}
	for _, p := range peers {
		nm.RemotePeers = append(nm.RemotePeers, rp(p, "100.91.205.62/32"))
	}
	return &mgmtpb.SyncResponse{NetworkMap: nm}
}

// TestSyncStream pushes a sequence of messages and checks what Recv delivers.
func TestSyncStream(t *testing.T) {
	f, url := startFakeMgmt(t)
	core, logs := observer.New(zap.WarnLevel)
	c := dial(t, url, ownPriv, WithLogger(zap.New(core)))
	s := openSync(t, f, c)

	cfg := &mgmtpb.NetbirdConfig{Signal: &mgmtpb.HostConfig{Uri: "127.0.0.1:10000", Protocol: mgmtpb.HostConfig_HTTP}}
	first := mapMsg(5, peerA, peerB)
	first.NetbirdConfig = cfg
	f.push(own, first)
	f.push(own, mapMsg(4, peerA))                                                                                                // stale: dropped
	f.syncOut <- &mgmtpb.EncryptedMessage{Body: []byte("not a box at all, not at all")}                                          // bad body
	f.push(own, &mgmtpb.SyncResponse{})                                                                                          // empty: skipped
	f.push(own, &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{Serial: 9, PeerConfig: &mgmtpb.PeerConfig{Address: "bad"}}}) // bad map
	f.push(own, &mgmtpb.SyncResponse{NetbirdConfig: cfg})                                                                        // config only
	stale := mapMsg(3, peerC)
	stale.NetbirdConfig = cfg
	f.push(own, stale)            // stale map, config still delivered
	f.push(own, mapMsg(5, peerC)) // equal serial: applied
	f.push(own, mapMsg(6))        // empty set

	checks := []func(Update) bool{
		func(u Update) bool {
			return u.Config != nil && u.Map != nil && u.Map.Serial == 5 && len(u.Map.Peers) == 2
		},
		func(u Update) bool { return u.Config != nil && u.Map == nil },
		func(u Update) bool { return u.Config != nil && u.Map == nil },
		func(u Update) bool { return u.Config == nil && u.Map.Serial == 5 && u.Map.Peers[0].Key == peerC },
		func(u Update) bool { return u.Config == nil && u.Map.Serial == 6 && len(u.Map.Peers) == 0 },
	}
	for i, check := range checks {
		u, err := recv(t, s)
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if !check(u) {
			t.Fatalf("update %d: %+v (map %+v)", i, u, u.Map)
		}
	}
	want := StatsSnapshot{Updates: 5, StaleMaps: 2, BadBodies: 1, BadMaps: 1, EmptyUpdates: 1}
	if st := c.Stats(); st != want {
		t.Fatalf("stats\n got %+v\nwant %+v", st, want)
	}
	if logs.Len() != 2 { // bad body, bad map
		t.Fatalf("%d warnings, want 2", logs.Len())
	}

	// The server ends the stream.
	f.syncEnd <- status.Error(codes.Unavailable, "restarting")
	_, err := recv(t, s)
	if !errors.Is(err, ErrStreamClosed) || !grpcdial.Retryable(err) {
		t.Fatalf("Recv = %v, want retryable ErrStreamClosed", err)
	}

	// Serials are remembered across streams of the same client.
	s2 := openSync(t, f, c)
	f.push(own, mapMsg(2, peerA))
	f.push(own, mapMsg(7, peerA))
	if u, err := recv(t, s2); err != nil || u.Map.Serial != 7 {
		t.Fatalf("second stream: %+v, %v; want serial 7 (2 is stale)", u.Map, err)
	}
	c.ResetSerial()
	f.push(own, mapMsg(1, peerB))
	if u, err := recv(t, s2); err != nil || u.Map.Serial != 1 {
		t.Fatalf("after ResetSerial: %+v, %v; want serial 1", u.Map, err)
	}

	// Close ends a blocked Recv.
	s2.Close()
	if _, err := recv(t, s2); !errors.Is(err, ErrStreamClosed) {
		t.Fatalf("Recv after Close = %v", err)
	}
}

func TestSyncUnregistered(t *testing.T) {
	f, url := startFakeMgmt(t)
	c := dial(t, url, ownPriv)
	s, err := c.Sync(testCtx(t), f.priv.PublicKey(), testMeta)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = recv(t, s)
	if !errors.Is(err, ErrStreamClosed) || !errors.Is(err, ErrNotRegistered) || grpcdial.Retryable(err) {
		t.Fatalf("Recv = %v, want ErrStreamClosed and ErrNotRegistered", err)
	}
}

func TestDialRejects(t *testing.T) {
	if c, err := Dial("ftp://x", ownPriv); !errors.Is(err, ErrBadURL) {
		if c != nil {
			_ = c.Close()
		}
		t.Fatalf("Dial = %v, want ErrBadURL", err)
	}
}

func TestCheckPaths(t *testing.T) {
	got := checkPaths([]*mgmtpb.Checks{{Files: []string{"/a", "", "/b"}}, {Files: []string{"/a", "/c"}}})
	if want := []string{"/a", "/b", "/c"}; !slices.Equal(got, want) {
		t.Errorf("checkPaths = %q, want %q", got, want)
	}
}

// TestSyncChecks: a map message's posture checks (field 6) replace the
// last ones, none included; a config-only message changes them only when
// it carries some; a message with checks alone is delivered.
func TestSyncChecks(t *testing.T) {
	f, url := startFakeMgmt(t)
	c := dial(t, url, ownPriv)
	s := openSync(t, f, c)
	cfg := &mgmtpb.NetbirdConfig{Signal: &mgmtpb.HostConfig{Uri: "127.0.0.1:10000", Protocol: mgmtpb.HostConfig_HTTP}}
	withChecks := mapMsg(1, peerA)
	withChecks.Checks = []*mgmtpb.Checks{{Files: []string{"/a", "", "/b"}}, {Files: []string{"/a"}}}
	f.push(own, withChecks)
	f.push(own, &mgmtpb.SyncResponse{NetbirdConfig: cfg})
	f.push(own, &mgmtpb.SyncResponse{Checks: []*mgmtpb.Checks{{Files: []string{"/c"}}}})
	f.push(own, mapMsg(2, peerA))
	tests := []struct {
		has    bool
		checks []string
	}{
		{true, []string{"/a", "/b"}},
		{false, nil},
		{true, []string{"/c"}},
		{true, nil},
	}
	for i, tt := range tests {
		u, err := recv(t, s)
		if err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
		if u.HasChecks != tt.has || !slices.Equal(u.Checks, tt.checks) {
			t.Errorf("update %d: checks %v (has %v), want %v (has %v)", i, u.Checks, u.HasChecks, tt.checks, tt.has)
		}
	}
}
