package sigwire

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/grpcdial"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
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

func dial(t *testing.T, addr string, priv wgtypes.Key, opts ...Option) *Client {
	t.Helper()
	c, err := Dial(addr, false, priv, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func connect(t *testing.T, f *fakeSignal, c *Client) *Stream {
	t.Helper()
	s, err := c.Connect(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	select {
	case <-f.joined:
	case <-time.After(deadline):
		t.Fatal("stream never registered")
	}
	return s
}

// recv runs Recv with a failure deadline.
func recv(t *testing.T, s *Stream) (Message, error) {
	t.Helper()
	type res struct {
		m   Message
		err error
	}
	ch := make(chan res, 1)
	go func() { m, err := s.Recv(); ch <- res{m, err} }()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(deadline):
		s.Close()
		<-ch
		t.Fatal("Recv never returned")
		return Message{}, nil
	}
}

func TestExchangeBothDirections(t *testing.T) {
	f, addr := startFakeSignal(t, headerOK)
	a := dial(t, addr, alicePriv, WithAccept(func(k wgtypes.Key) bool { return k == bob }))
	b := dial(t, addr, bobPriv, WithAccept(func(k wgtypes.Key) bool { return k == alice }))
	as, bs := connect(t, f, a), connect(t, f, b)
	ctx := testCtx(t)

	steps := []struct {
		from   *Client
		to     *Stream
		toKey  wgtypes.Key
		fromPK wgtypes.Key
		m      Message
	}{
		{a, bs, bob, alice, Message{Kind: Offer, Ufrag: testUfrag, Pwd: testPwd, SessionID: []byte{1, 2, 3, 4, 5}, WGListenPort: 51820}},
		{b, as, alice, bob, Message{Kind: Answer, Ufrag: "bbbbBBBBbbbbBBBB", Pwd: testPwd, SessionID: []byte{6, 7, 8, 9, 10}}},
		{a, bs, bob, alice, Message{Kind: Candidate, Candidate: hostCand}},
		{b, as, alice, bob, Message{Kind: Candidate, Candidate: srflxCand}},
		{b, as, alice, bob, Message{Kind: GoIdle}},
	}
	for _, st := range steps {
		m := st.m
		m.To = st.toKey
		if err := st.from.Send(ctx, m); err != nil {
			t.Fatalf("Send %v: %v", m.Kind, err)
		}
		got, err := recv(t, st.to)
		if err != nil {
			t.Fatalf("Recv %v: %v", m.Kind, err)
		}
		if got.From != st.fromPK || got.To != st.toKey || got.Kind != m.Kind ||
			got.Ufrag != m.Ufrag || got.Pwd != m.Pwd || got.Candidate != m.Candidate {
			t.Fatalf("got %v, want %v", got, m)
		}
	}
	if s := a.Stats(); s.Out != 2 || s.In != 3 || s.Dropped() != 0 {
		t.Fatalf("alice stats %+v", s)
	}
	if s := b.Stats(); s.Out != 3 || s.In != 2 || s.Dropped() != 0 {
		t.Fatalf("bob stats %+v", s)
	}
}

func TestConnectRejections(t *testing.T) {
	tests := []struct {
		name      string
		mode      headerMode
		want      error
		retryable bool
	}{
		{"no registered header", headerMissing, ErrNotRegistered, true},
		{"registered header not 1", headerWrong, ErrNotRegistered, true},
		{"server refuses", headerReject, ErrRejected, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, addr := startFakeSignal(t, tt.mode)
			c := dial(t, addr, alicePriv)
			s, err := c.Connect(testCtx(t))
			if !errors.Is(err, tt.want) || s != nil {
				t.Fatalf("Connect = %v, %v; want %v", s, err, tt.want)
			}
			if grpcdial.Retryable(err) != tt.retryable {
				t.Fatalf("grpcdial.Retryable(%v) = %v", err, !tt.retryable)
			}
		})
	}
}

func TestServerDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close() // nothing listens there now
	c := dial(t, addr, alicePriv)
	ctx := testCtx(t)
	if _, err := c.Connect(testCtx(t)); !errors.Is(err, ErrUnavailable) || !grpcdial.Retryable(err) {
		t.Fatalf("Connect = %v, want retryable ErrUnavailable", err)
	}
	err = c.Send(ctx, Message{To: bob, Kind: GoIdle})
	if !errors.Is(err, ErrUnavailable) || !grpcdial.Retryable(err) {
		t.Fatalf("Send = %v, want retryable ErrUnavailable", err)
	}
	if s := c.Stats(); s.SendErrors != 1 || s.Out != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestCancelAndClose(t *testing.T) {
	t.Run("connect returns on cancel", func(t *testing.T) {
		_, addr := startFakeSignal(t, headerHold)
		c := dial(t, addr, alicePriv)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { _, err := c.Connect(ctx); errc <- err }()
		cancel()
		select {
		case err := <-errc:
			if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrUnavailable) {
				t.Fatalf("Connect = %v, want ErrUnavailable wrapping context.Canceled", err)
			}
		case <-time.After(deadline):
			t.Fatal("Connect ignored cancel")
		}
	})
	t.Run("stream close ends recv", func(t *testing.T) {
		f, addr := startFakeSignal(t, headerOK)
		s := connect(t, f, dial(t, addr, alicePriv))
		s.Close()
		if _, err := recv(t, s); !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("Recv = %v, want ErrStreamClosed", err)
		}
		s.Close() // idempotent
	})
	t.Run("server ends stream", func(t *testing.T) {
		f, addr := startFakeSignal(t, headerOK)
		s := connect(t, f, dial(t, addr, alicePriv))
		f.kick(alice.String())
		_, err := recv(t, s)
		if !errors.Is(err, ErrStreamClosed) || !errors.Is(err, ErrUnavailable) || !grpcdial.Retryable(err) {
			t.Fatalf("Recv = %v, want retryable ErrStreamClosed", err)
		}
		if _, err := recv(t, s); !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("second Recv = %v, want ErrStreamClosed", err)
		}
	})
	t.Run("client close ends recv and later calls", func(t *testing.T) {
		f, addr := startFakeSignal(t, headerOK)
		c := dial(t, addr, alicePriv)
		s := connect(t, f, c)
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := recv(t, s); !errors.Is(err, ErrStreamClosed) {
			t.Fatalf("Recv = %v, want ErrStreamClosed", err)
		}
		if err := c.Send(testCtx(t), Message{To: bob, Kind: GoIdle}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after Close = %v", err)
		}
		if _, err := c.Connect(testCtx(t)); !errors.Is(err, ErrClosed) {
			t.Fatalf("Connect after Close = %v", err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
	})
}

// TestBadInputIsSkippedAndCounted injects one message per drop reason ahead
// of a valid one: Recv must return the valid one and count the others.
func TestBadInputIsSkippedAndCounted(t *testing.T) {
	f, addr := startFakeSignal(t, headerOK)
	core, logs := observer.New(zap.WarnLevel)
	b := dial(t, addr, bobPriv, WithAccept(func(k wgtypes.Key) bool { return k == alice }), WithLogger(zap.New(core)))
	s := connect(t, f, b)

	good, err := Encode(alicePriv, Message{To: bob, Kind: Candidate, Candidate: hostCand})
	if err != nil {
		t.Fatal(err)
	}
	bad := []*signalpb.EncryptedMessage{
		{Key: "garbage", RemoteKey: bob.String(), Body: good.Body},                        // bad sender
		{Key: alice.String(), RemoteKey: eve.String(), Body: good.Body},                   // not for us (a buggy server)
		sealBody(t, evePriv, bob, &signalpb.Body{Type: signalpb.Body_GO_IDLE}),            // unknown sender
		{Key: alice.String(), RemoteKey: bob.String(), Body: make([]byte, MaxBodySize+1)}, // oversize
		{Key: alice.String(), RemoteKey: bob.String(), Body: []byte{1, 2, 3}},             // short
		sealBody(t, alicePriv, eve, &signalpb.Body{Type: signalpb.Body_GO_IDLE}),          // sealed to eve
		sealRaw(alicePriv, bob, []byte{0x17}, [24]byte{}),                                 // not a Body
		sealBody(t, alicePriv, bob, &signalpb.Body{Type: 77}),                             // unknown type
		sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_OFFER, Payload: "nocolon"}),
		sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_CANDIDATE, Payload: "bogus"}),
		sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_HEARTBEAT}), // ignored
		sealBody(t, alicePriv, bob, &signalpb.Body{Type: signalpb.Body_MODE}),      // ignored
	}
	bad[5].RemoteKey = bob.String() // addressed to us, sealed to eve: does not open
	for _, m := range bad {
		f.inject(bob.String(), m)
	}
	f.inject(bob.String(), good)

	got, err := recv(t, s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Kind != Candidate || got.From != alice {
		t.Fatalf("got %v", got)
	}
	want := StatsSnapshot{
		In: 1, BadSender: 1, NotForUs: 1, UnknownSender: 1, Oversize: 1, ShortBody: 1,
		Decrypt: 1, Decode: 1, UnknownType: 1, BadPayload: 2, Ignored: 2,
	}
	if st := b.Stats(); st != want {
		t.Fatalf("stats\n got %+v\nwant %+v", st, want)
	}
	// One line per reason: bad-payload twice in a row logs once; ignored
	// messages are not logged.
	if n := logs.Len(); n != 9 {
		for _, e := range logs.All() {
			t.Log(e.Message, e.ContextMap())
		}
		t.Fatalf("%d log lines, want 9", n)
	}
}

func TestDialRejects(t *testing.T) {
	for _, addr := range []string{"", "host", "host:", ":80", "host:0", "host:65536", "host:http", "http://host:80"} {
		if c, err := Dial(addr, false, alicePriv); !errors.Is(err, ErrBadAddr) {
			if c != nil {
				_ = c.Close()
			}
			t.Errorf("Dial(%q) = %v, want ErrBadAddr", addr, err)
		}
	}
}
