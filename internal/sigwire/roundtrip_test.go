package sigwire_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/nbfsm/nbfsm/internal/grpcdial"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/testnet"
)

// deadline bounds every wait: a failure deadline, never an expectation.
const deadline = 30 * time.Second

const (
	ufrag = "kWzNqRsTuVxYaBcD"
	pwd   = "pQrStUvWxYzAbCdEfGhIjKlMnOpQrStU"
)

type side struct {
	priv wgtypes.Key
	pub  wgtypes.Key
	c    *sigwire.Client
	s    *sigwire.Stream
}

func newSide(ctx context.Context, t *testing.T, addr string, accept func(wgtypes.Key) bool) *side {
	t.Helper()
	priv, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return dialSide(ctx, t, addr, priv, accept)
}

// reconnect is a fresh Client and stream for an existing key.
func reconnect(ctx context.Context, t *testing.T, addr string, priv wgtypes.Key) *side {
	t.Helper()
	return dialSide(ctx, t, addr, priv, func(wgtypes.Key) bool { return true })
}

func dialSide(ctx context.Context, t *testing.T, addr string, priv wgtypes.Key, accept func(wgtypes.Key) bool) *side {
	t.Helper()
	c, err := sigwire.Dial(addr, false, priv, sigwire.WithAccept(accept))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	s, err := c.Connect(ctx)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(s.Close)
	return &side{priv: priv, pub: priv.PublicKey(), c: c, s: s}
}

func recv(t *testing.T, s *sigwire.Stream) sigwire.Message {
	t.Helper()
	type res struct {
		m   sigwire.Message
		err error
	}
	ch := make(chan res, 1)
	go func() { m, err := s.Recv(); ch <- res{m, err} }()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Recv: %v", r.err)
		}
		return r.m
	case <-time.After(deadline):
		s.Close()
		<-ch
		t.Fatal("Recv never returned")
	}
	return sigwire.Message{}
}

// TestRoundTripExchange runs the offer/answer/candidate exchange of
// PROTOCOL.md §5 between two clients through the test network's signal
// server, in both directions, and checks the box rules on the way.
func TestRoundTripExchange(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	var a, b *side
	a = newSide(ctx, t, n.SignalAddr(), func(k wgtypes.Key) bool { return b != nil && k == b.pub })
	b = newSide(ctx, t, n.SignalAddr(), func(k wgtypes.Key) bool { return k == a.pub })

	// Record every body the server sees, to check them against the box
	// rules below.
	var (
		mu     sync.Mutex
		tapped []*signalpb.EncryptedMessage
	)
	n.Signal.Tap(func(em *signalpb.EncryptedMessage) {
		mu.Lock()
		tapped = append(tapped, em)
		mu.Unlock()
	})
	defer n.Signal.Tap(nil)

	sid := []byte{1, 2, 3, 4, 5}
	steps := []struct {
		name     string
		from, to *side
		m        sigwire.Message
	}{
		{"a offers", a, b, sigwire.Message{Kind: sigwire.Offer, Ufrag: ufrag, Pwd: pwd, SessionID: sid, WGListenPort: 51820}},
		{"b answers", b, a, sigwire.Message{Kind: sigwire.Answer, Ufrag: "bbbbBBBBbbbbBBBB", Pwd: pwd, SessionID: []byte{9, 8, 7, 6, 5}}},
		{"b offers", b, a, sigwire.Message{Kind: sigwire.Offer, Ufrag: "ccccCCCCccccCCCC", Pwd: pwd, SessionID: []byte{5, 5, 5, 5, 5}}},
		{"a answers relay-only", a, b, sigwire.Message{Kind: sigwire.Answer, SessionID: sid, RelayServerAddress: "rel://127.0.0.1:1"}},
		{"a sends a candidate", a, b, sigwire.Message{Kind: sigwire.Candidate, Candidate: "3307297372 1 udp 2130706431 127.0.0.1 51820 typ host"}},
		{"b sends a candidate", b, a, sigwire.Message{Kind: sigwire.Candidate, Candidate: "1876583232 1 udp 1694498815 127.0.0.1 40123 typ srflx raddr 127.0.0.1 rport 51820"}},
		{"b goes idle", b, a, sigwire.Message{Kind: sigwire.GoIdle}},
	}
	for _, st := range steps {
		m := st.m
		m.To = st.to.pub
		if err := st.from.c.Send(ctx, m); err != nil {
			t.Fatalf("%s: Send: %v", st.name, err)
		}
		got := recv(t, st.to.s)
		if got.From != st.from.pub || got.To != st.to.pub || got.Kind != m.Kind || got.Ufrag != m.Ufrag ||
			got.Pwd != m.Pwd || got.Candidate != m.Candidate || string(got.SessionID) != string(m.SessionID) ||
			got.RelayServerAddress != m.RelayServerAddress {
			t.Fatalf("%s: received %v, sent %v", st.name, got, m)
		}
	}

	// Every body on the wire opens for its recipient and for no one else.
	eve, _ := nbcrypto.GenerateKey()
	mu.Lock()
	seen := append([]*signalpb.EncryptedMessage(nil), tapped...)
	mu.Unlock()
	if len(seen) != len(steps) {
		t.Fatalf("server saw %d messages, %d were sent", len(seen), len(steps))
	}
	for i, em := range seen {
		to := a
		if em.GetRemoteKey() == b.pub.String() {
			to = b
		}
		if _, err := sigwire.Decode(to.priv, em, nil); err != nil {
			t.Fatalf("message %d does not open for its recipient: %v", i, err)
		}
		em.RemoteKey = eve.PublicKey().String()
		if _, err := sigwire.Decode(eve, em, nil); !errors.Is(err, nbcrypto.ErrDecrypt) {
			t.Fatalf("message %d: a third key got %v, want ErrDecrypt", i, err)
		}
	}

	// Box rules over the real server: a body sealed to another key, or by a
	// sender other than the one it claims, does not open; the receiver
	// counts it and goes on.
	conn, err := grpc.NewClient(n.SignalAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := signalpb.NewSignalExchangeClient(conn)
	sealedToEve, err := sigwire.Encode(a.priv, sigwire.Message{To: eve.PublicKey(), Kind: sigwire.GoIdle})
	if err != nil {
		t.Fatal(err)
	}
	sealedToEve.RemoteKey = b.pub.String() // delivered to b, sealed to eve
	forged, err := sigwire.Encode(eve, sigwire.Message{To: b.pub, Kind: sigwire.GoIdle})
	if err != nil {
		t.Fatal(err)
	}
	forged.Key = a.pub.String() // claims to come from a, sealed by eve
	for _, em := range []*signalpb.EncryptedMessage{sealedToEve, forged} {
		if _, err := raw.Send(ctx, em); err != nil {
			t.Fatal(err)
		}
	}
	// eve cannot open what a sealed to b either.
	toB, _ := sigwire.Encode(a.priv, sigwire.Message{To: b.pub, Kind: sigwire.GoIdle})
	if _, err := sigwire.Decode(eve, toB, nil); !errors.Is(err, sigwire.ErrNotForUs) {
		t.Fatalf("eve decoding b's message: %v", err)
	}
	toB.RemoteKey = eve.PublicKey().String()
	if _, err := sigwire.Decode(eve, toB, nil); !errors.Is(err, nbcrypto.ErrDecrypt) {
		t.Fatalf("eve opening b's body: %v", err)
	}

	if err := a.c.Send(ctx, sigwire.Message{To: b.pub, Kind: sigwire.Candidate, Candidate: "1 1 udp 2130706431 127.0.0.1 1 typ host"}); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, b.s); got.Kind != sigwire.Candidate || got.From != a.pub {
		t.Fatalf("after the bad messages: %v", got)
	}
	if st := b.c.Stats(); st.Decrypt != 2 || st.Dropped() != 2 {
		t.Fatalf("b stats %+v, want 2 undecryptable messages", st)
	}
}

// TestRoundTripStreamLoss: the server ending every stream ends Recv with a
// retryable ErrStreamClosed; the same Client connects again and receives.
func TestRoundTripStreamLoss(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	accept := func(wgtypes.Key) bool { return true }
	a := newSide(ctx, t, n.SignalAddr(), accept)
	b := newSide(ctx, t, n.SignalAddr(), accept)

	n.Signal.CloseStreams()
	type res struct{ err error }
	ch := make(chan res, 1)
	go func() { _, err := b.s.Recv(); ch <- res{err} }()
	select {
	case r := <-ch:
		if !errors.Is(r.err, sigwire.ErrStreamClosed) || !grpcdial.Retryable(r.err) {
			t.Fatalf("Recv = %v, want retryable ErrStreamClosed", r.err)
		}
	case <-time.After(deadline):
		t.Fatal("Recv did not notice the stream loss")
	}

	s, err := b.c.Connect(ctx)
	if err != nil {
		t.Fatalf("reconnect: %v", err)
	}
	defer s.Close()
	if err := a.c.Send(ctx, sigwire.Message{To: b.pub, Kind: sigwire.GoIdle}); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, s); got.Kind != sigwire.GoIdle || got.From != a.pub {
		t.Fatalf("after reconnect: %v", got)
	}
}

// TestRoundTripServerRestart: a signal server restart ends the stream
// (retryable), calls fail fast while it is down, and fresh Clients (as the
// link machine dials them after a transport failure) connect and exchange
// as soon as it is back.
func TestRoundTripServerRestart(t *testing.T) {
	n, err := testnet.Start(testnet.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	accept := func(wgtypes.Key) bool { return true }
	a := newSide(ctx, t, n.SignalAddr(), accept)
	b := newSide(ctx, t, n.SignalAddr(), accept)

	n.Signal.Stop()
	type res struct{ err error }
	ch := make(chan res, 1)
	go func() { _, err := b.s.Recv(); ch <- res{err} }()
	select {
	case r := <-ch:
		if !errors.Is(r.err, sigwire.ErrStreamClosed) || !grpcdial.Retryable(r.err) {
			t.Fatalf("Recv = %v, want retryable ErrStreamClosed", r.err)
		}
	case <-time.After(deadline):
		t.Fatal("Recv did not notice the server stop")
	}
	if _, err := b.c.Connect(ctx); !errors.Is(err, sigwire.ErrUnavailable) {
		t.Fatalf("Connect to a stopped server = %v, want ErrUnavailable", err)
	}
	if err := a.c.Send(ctx, sigwire.Message{To: b.pub, Kind: sigwire.GoIdle}); !errors.Is(err, sigwire.ErrUnavailable) {
		t.Fatalf("Send to a stopped server = %v, want ErrUnavailable", err)
	}
	if err := n.Signal.Start(); err != nil {
		t.Fatal(err)
	}

	a2 := reconnect(ctx, t, n.SignalAddr(), a.priv)
	b2 := reconnect(ctx, t, n.SignalAddr(), b.priv)
	if err := a2.c.Send(ctx, sigwire.Message{To: b.pub, Kind: sigwire.GoIdle}); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, b2.s); got.Kind != sigwire.GoIdle || got.From != a.pub {
		t.Fatalf("after restart: %v", got)
	}
}
