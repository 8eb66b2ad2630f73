package signalsrv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
)

// deadline bounds every wait: a failure deadline, never an expectation.
const deadline = 20 * time.Second

func startServer(t *testing.T) *Server {
	t.Helper()
	s := New(Config{})
	if err := s.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

func dial(t *testing.T, addr string) signalpb.SignalExchangeClient {
	t.Helper()
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// Reconnect quickly after a Stop/Start: the default backoff starts at 1 s.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.6, MaxDelay: 100 * time.Millisecond},
			MinConnectTimeout: deadline,
		}))
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return signalpb.NewSignalExchangeClient(cc)
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	t.Cleanup(cancel)
	return ctx
}

func newKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// connect opens a stream as the peer whose private key is priv and checks the
// registered header.
func connect(ctx context.Context, t *testing.T, c signalpb.SignalExchangeClient, priv wgtypes.Key) signalpb.SignalExchange_ConnectStreamClient {
	t.Helper()
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, HeaderPeerID, priv.PublicKey().String()))
	t.Cleanup(cancel)
	st, err := c.ConnectStream(sctx, grpc.WaitForReady(true))
	if err != nil {
		t.Fatalf("ConnectStream: %v", err)
	}
	md, err := st.Header()
	if err != nil {
		t.Fatalf("Header: %v", err)
	}
	if got := md.Get(HeaderRegistered); len(got) != 1 || got[0] != "1" {
		t.Fatalf("header %s = %q, want [1]", HeaderRegistered, got)
	}
	return st
}

// message seals body from priv to the peer remote.
func message(t *testing.T, priv, remote wgtypes.Key, body *signalpb.Body) *signalpb.EncryptedMessage {
	t.Helper()
	sealed, err := nbcrypto.Seal(priv, remote, body)
	if err != nil {
		t.Fatal(err)
	}
	return &signalpb.EncryptedMessage{Key: priv.PublicKey().String(), RemoteKey: remote.String(), Body: sealed}
}

// receive reads one message on st and opens it as the peer priv.
func receive(t *testing.T, st signalpb.SignalExchange_ConnectStreamClient, priv wgtypes.Key) (*signalpb.EncryptedMessage, *signalpb.Body) {
	t.Helper()
	msg, err := st.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if msg.GetRemoteKey() != priv.PublicKey().String() {
		t.Fatalf("remoteKey = %s, want own key", msg.GetRemoteKey())
	}
	sender, err := nbcrypto.ParseKey(msg.GetKey())
	if err != nil {
		t.Fatalf("sender key: %v", err)
	}
	var body signalpb.Body
	if err := nbcrypto.Open(priv, sender, msg.GetBody(), &body); err != nil {
		t.Fatalf("Open: %v", err)
	}
	return msg, &body
}

// wantEnd reads until the stream ends and checks the status code.
func wantEnd(t *testing.T, st signalpb.SignalExchange_ConnectStreamClient, want codes.Code) {
	t.Helper()
	for {
		_, err := st.Recv()
		if err == nil {
			continue
		}
		if got := status.Code(err); got != want {
			t.Fatalf("stream ended with %v (%v), want %v", got, err, want)
		}
		return
	}
}

func TestConnectStreamHeader(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	key := newKey(t).PublicKey().String()
	tests := []struct {
		name string
		md   []string
		want codes.Code
	}{
		{"no header", nil, codes.FailedPrecondition},
		{"empty header", []string{HeaderPeerID, ""}, codes.FailedPrecondition},
		{"not a key", []string{HeaderPeerID, "bob"}, codes.InvalidArgument},
		{"short key", []string{HeaderPeerID, key[:43]}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			if tt.md != nil {
				ctx = metadata.AppendToOutgoingContext(ctx, tt.md...)
			}
			st, err := c.ConnectStream(ctx)
			if err != nil {
				t.Fatalf("ConnectStream: %v", err)
			}
			_, err = st.Recv()
			if got := status.Code(err); got != tt.want {
				t.Fatalf("Recv = %v, want %v", err, tt.want)
			}
			md, _ := st.Header()
			if got := md.Get(HeaderRegistered); len(got) != 0 {
				t.Fatalf("refused stream got %s = %q", HeaderRegistered, got)
			}
		})
	}
	if got := s.Connected(); len(got) != 0 {
		t.Fatalf("Connected = %v after refused streams", got)
	}
}

func TestExchangeBothWays(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	ctx := testCtx(t)
	alice, bob := newKey(t), newKey(t)
	sa := connect(ctx, t, c, alice)
	sb := connect(ctx, t, c, bob)

	var mu sync.Mutex
	var tapped []string
	s.Tap(func(m *signalpb.EncryptedMessage) {
		mu.Lock()
		defer mu.Unlock()
		tapped = append(tapped, m.GetKey()+">"+m.GetRemoteKey())
	})

	steps := []struct {
		name     string
		from, to wgtypes.Key
		stream   signalpb.SignalExchange_ConnectStreamClient
		body     *signalpb.Body
	}{
		{"alice offers", alice, bob.PublicKey(), sb, &signalpb.Body{Type: signalpb.Body_OFFER, Payload: "ufragA:pwdA", SessionId: []byte{1, 2, 3, 4, 5}}},
		{"bob answers", bob, alice.PublicKey(), sa, &signalpb.Body{Type: signalpb.Body_ANSWER, Payload: "ufragB:pwdB", WgListenPort: 51820}},
		{"alice sends a candidate", alice, bob.PublicKey(), sb, &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: "1 1 udp 2130706431 127.0.0.1 4242 typ host"}},
	}
	for _, step := range steps {
		reply, err := c.Send(ctx, message(t, step.from, step.to, step.body))
		if err != nil {
			t.Fatalf("%s: Send: %v", step.name, err)
		}
		if reply.GetKey() != "" || reply.GetRemoteKey() != "" || len(reply.GetBody()) != 0 {
			t.Fatalf("%s: reply = %v, want empty", step.name, reply)
		}
		recvKey := alice
		if step.to == bob.PublicKey() {
			recvKey = bob
		}
		msg, body := receive(t, step.stream, recvKey)
		if msg.GetKey() != step.from.PublicKey().String() {
			t.Fatalf("%s: sender = %s", step.name, msg.GetKey())
		}
		if body.GetType() != step.body.GetType() || body.GetPayload() != step.body.GetPayload() {
			t.Fatalf("%s: body = %v, want %v", step.name, body, step.body)
		}
	}
	if got := s.Sends(); got != len(steps) {
		t.Fatalf("Sends = %d, want %d", got, len(steps))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tapped) != len(steps) {
		t.Fatalf("tap saw %d messages, want %d", len(tapped), len(steps))
	}
}

func TestSendToOfflinePeerIsDropped(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	ctx := testCtx(t)
	alice, ghost := newKey(t), newKey(t)
	tests := []struct {
		name string
		msg  *signalpb.EncryptedMessage
	}{
		{"unknown peer", message(t, alice, ghost.PublicKey(), &signalpb.Body{Type: signalpb.Body_OFFER})},
		{"no remote key", &signalpb.EncryptedMessage{Key: alice.PublicKey().String()}},
		{"garbage remote key", &signalpb.EncryptedMessage{Key: alice.PublicKey().String(), RemoteKey: "x"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := c.Send(ctx, tt.msg)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if reply.GetKey() != "" || reply.GetRemoteKey() != "" || len(reply.GetBody()) != 0 {
				t.Fatalf("reply = %v, want empty", reply)
			}
			if got := s.Sends(); got != i+1 {
				t.Fatalf("Sends = %d, want %d", got, i+1)
			}
		})
	}
}

func TestNewerStreamReplacesOlder(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	ctx := testCtx(t)
	alice, bob := newKey(t), newKey(t)
	older := connect(ctx, t, c, bob)
	newer := connect(ctx, t, c, bob)
	wantEnd(t, older, codes.Aborted)

	if _, err := c.Send(ctx, message(t, alice, bob.PublicKey(), &signalpb.Body{Payload: "to the newer"})); err != nil {
		t.Fatal(err)
	}
	if _, body := receive(t, newer, bob); body.GetPayload() != "to the newer" {
		t.Fatalf("payload = %q", body.GetPayload())
	}
	if got := s.Connected(); len(got) != 1 || got[0] != bob.PublicKey() {
		t.Fatalf("Connected = %v, want [bob]", got)
	}
}

func TestDeliveryKeepsOrder(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	ctx := testCtx(t)
	alice, bob := newKey(t), newKey(t)
	sb := connect(ctx, t, c, bob)
	const n = 50
	for i := range n {
		if _, err := c.Send(ctx, message(t, alice, bob.PublicKey(), &signalpb.Body{Payload: fmt.Sprint(i)})); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if _, body := receive(t, sb, bob); body.GetPayload() != fmt.Sprint(i) {
			t.Fatalf("message %d has payload %q", i, body.GetPayload())
		}
	}
}

func TestCloseStreams(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	ctx := testCtx(t)
	alice, bob := newKey(t), newKey(t)
	sa := connect(ctx, t, c, alice)
	sb := connect(ctx, t, c, bob)
	if got := len(s.Connected()); got != 2 {
		t.Fatalf("Connected = %d, want 2", got)
	}
	s.CloseStreams()
	wantEnd(t, sa, codes.Unavailable)
	wantEnd(t, sb, codes.Unavailable)
	// The handler deregisters before its status reaches the client.
	if got := s.Connected(); len(got) != 0 {
		t.Fatalf("Connected = %v after CloseStreams", got)
	}
	// The server still serves: reconnect and exchange.
	sb = connect(ctx, t, c, bob)
	if _, err := c.Send(ctx, message(t, alice, bob.PublicKey(), &signalpb.Body{Payload: "again"})); err != nil {
		t.Fatal(err)
	}
	if _, body := receive(t, sb, bob); body.GetPayload() != "again" {
		t.Fatalf("payload = %q", body.GetPayload())
	}
}

func TestClientCancelDeregisters(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	ctx := testCtx(t)
	bob := newKey(t)
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, HeaderPeerID, bob.PublicKey().String()))
	st, err := c.ConnectStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Header(); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := st.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("Recv after cancel = %v", err)
	}
	// The server learns of the cancel asynchronously: a newer stream of the
	// same peer proves the old one is gone from routing either way.
	st2 := connect(ctx, t, c, bob)
	if _, err := c.Send(ctx, message(t, bob, bob.PublicKey(), &signalpb.Body{Type: signalpb.Body_HEARTBEAT})); err != nil {
		t.Fatal(err)
	}
	if _, body := receive(t, st2, bob); body.GetType() != signalpb.Body_HEARTBEAT {
		t.Fatalf("type = %v", body.GetType())
	}
}

func TestStopStartSamePort(t *testing.T) {
	s := startServer(t)
	addr := s.Addr()
	c := dial(t, addr)
	ctx := testCtx(t)
	alice, bob := newKey(t), newKey(t)
	sb := connect(ctx, t, c, bob)

	s.Stop()
	wantEnd(t, sb, codes.Unavailable)
	if got := s.Connected(); len(got) != 0 {
		t.Fatalf("Connected = %v while stopped", got)
	}
	if _, err := c.Send(ctx, message(t, alice, bob.PublicKey(), &signalpb.Body{})); status.Code(err) != codes.Unavailable {
		t.Fatalf("Send while stopped = %v, want Unavailable", err)
	}
	s.Stop() // idempotent

	if err := s.Start(); err != nil {
		t.Fatalf("Start again: %v", err)
	}
	if err := s.Start(); err == nil {
		t.Fatal("Start of a running server succeeded")
	}
	if s.Addr() != addr {
		t.Fatalf("Addr = %s after restart, want %s", s.Addr(), addr)
	}
	sb = connect(ctx, t, c, bob)
	if _, err := c.Send(ctx, message(t, alice, bob.PublicKey(), &signalpb.Body{Payload: "after restart"})); err != nil {
		t.Fatal(err)
	}
	if _, body := receive(t, sb, bob); body.GetPayload() != "after restart" {
		t.Fatalf("payload = %q", body.GetPayload())
	}
}

func TestServerNeverReads(t *testing.T) {
	s := startServer(t)
	c := dial(t, s.Addr())
	ctx := testCtx(t)
	alice, bob := newKey(t), newKey(t)
	sa := connect(ctx, t, c, alice)
	sb := connect(ctx, t, c, bob)
	// A message written on the stream goes nowhere: only Send routes.
	if err := sa.Send(message(t, alice, bob.PublicKey(), &signalpb.Body{Payload: "on the stream"})); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, message(t, alice, bob.PublicKey(), &signalpb.Body{Payload: "via Send"})); err != nil {
		t.Fatal(err)
	}
	if _, body := receive(t, sb, bob); body.GetPayload() != "via Send" {
		t.Fatalf("payload = %q, want the Send one", body.GetPayload())
	}
	if got := s.Sends(); got != 1 {
		t.Fatalf("Sends = %d, want 1", got)
	}
}
