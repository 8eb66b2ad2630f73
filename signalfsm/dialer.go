package signalfsm

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc/codes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/link"
	"github.com/nbfsm/nbfsm/internal/grpcdial"
	"github.com/nbfsm/nbfsm/internal/sigwire"
)

// Dialer is the production Effects: each session dials a fresh gRPC client,
// so the machine's backoff is the only backoff (a long-lived gRPC channel
// would add its own redial backoff, up to 120 s, behind ours).
type Dialer struct {
	Key wgtypes.Key
	// Accept says whether a sender is in the network map; it is called from
	// the stream goroutine before any decryption (nil: accept all).
	Accept func(wgtypes.Key) bool
	// Deliver hands a decrypted message to its peer machine (a Loop.Post).
	// It is called from the stream goroutine and may wait (backpressure).
	Deliver func(sigwire.Message)
	Log     *zap.Logger
	// Options are extra client options (tests: a dialer).
	Options []sigwire.Option

	mu   sync.Mutex
	cur  *sigwire.Client              // the connected session's client, for Send
	past sigwire.StatsSnapshot        // counters of ended sessions
	live map[*sigwire.Client]struct{} // sessions not yet ended

	workers link.Workers // stream workers, joined by Close
}

// Stats sums the counters of every session since the dialer was made.
func (d *Dialer) Stats() sigwire.StatsSnapshot {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.past
	for c := range d.live {
		s = AddStats(s, c.Stats())
	}
	return s
}

func (d *Dialer) track(c *sigwire.Client) (untrack func()) {
	d.mu.Lock()
	if d.live == nil {
		d.live = map[*sigwire.Client]struct{}{}
	}
	d.live[c] = struct{}{}
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.live, c)
		d.past = AddStats(d.past, c.Stats())
		d.mu.Unlock()
	}
}

// AddStats sums two snapshots.
func AddStats(a, b sigwire.StatsSnapshot) sigwire.StatsSnapshot {
	return sigwire.StatsSnapshot{In: a.In + b.In, Out: a.Out + b.Out, SendErrors: a.SendErrors + b.SendErrors,
		BadSender: a.BadSender + b.BadSender, NotForUs: a.NotForUs + b.NotForUs, UnknownSender: a.UnknownSender + b.UnknownSender,
		Oversize: a.Oversize + b.Oversize, ShortBody: a.ShortBody + b.ShortBody, Decrypt: a.Decrypt + b.Decrypt,
		Decode: a.Decode + b.Decode, UnknownType: a.UnknownType + b.UnknownType, BadPayload: a.BadPayload + b.BadPayload,
		Other: a.Other + b.Other, Ignored: a.Ignored + b.Ignored}
}

// ErrNotConnected: Send was called while no session is connected.
var ErrNotConnected = errors.New("signal: not connected")

// Send sends m with one unary call on the connected session's connection
// (so a send never waits behind a stale channel's own redial backoff). It
// fails with ErrNotConnected when the link is not connected. Safe from any
// goroutine.
func (d *Dialer) Send(ctx context.Context, m sigwire.Message) error {
	d.mu.Lock()
	c := d.cur
	d.mu.Unlock()
	if c == nil {
		return ErrNotConnected
	}
	return c.Send(ctx, m)
}

// setCurrent makes c the client Send uses, and returns a function that
// withdraws it (if no newer session replaced it meanwhile).
func (d *Dialer) setCurrent(c *sigwire.Client) (withdraw func()) {
	d.mu.Lock()
	d.cur = c
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		if d.cur == c {
			d.cur = nil
		}
		d.mu.Unlock()
	}
}

// Connect implements Effects.
func (d *Dialer) Connect(w fsm.Sender, srv Server) func() {
	ctx, cancel := context.WithCancel(context.Background())
	d.workers.Go(func() { d.run(ctx, w, srv) })
	return cancel
}

// ErrCloseTimeout: Close gave up waiting for workers.
var ErrCloseTimeout = errors.New("signal dialer: workers still running after the close timeout")

// CloseTimeout bounds Close.
const CloseTimeout = 5 * time.Second

// Close waits, CloseTimeout at most, for every stream worker (each closes
// its own connection). Call it after the machine has stopped: leaving a
// session cancels its worker.
func (d *Dialer) Close() error {
	if !d.workers.Wait(CloseTimeout) {
		return ErrCloseTimeout
	}
	return nil
}

func (d *Dialer) log() *zap.Logger {
	if d.Log == nil {
		return zap.NewNop()
	}
	return d.Log
}

// preDialErrors classifies a failed pre-dial as sigwire classifies the
// same failure of a Connect call (a transport failure: ErrUnavailable).
var preDialErrors = grpcdial.Errors{Prefix: "signal", Unavailable: sigwire.ErrUnavailable, StreamClosed: sigwire.ErrStreamClosed,
	Answer: func(codes.Code) error { return sigwire.ErrRejected }, Stream: "recv"}

func (d *Dialer) run(ctx context.Context, w fsm.Sender, srv Server) {
	opts := append([]sigwire.Option{sigwire.WithLogger(d.log())}, d.Options...)
	if d.Accept != nil {
		opts = append(opts, sigwire.WithAccept(d.Accept))
	}
	// A refused connection costs one TCP connect, no gRPC client
	// (grpcdial.PreDial).
	h, err := grpcdial.PreDial(ctx, srv.Addr)
	if err != nil {
		if ctx.Err() == nil {
			err = preDialErrors.Classify(ctx, "connect", err)
			_ = w.PostCause(EvConnectFailed, err, err.Error())
		}
		return
	}
	if h != nil {
		defer h.Close()
		opts = append(opts, sigwire.WithDialer(h.Dial))
	}
	c, err := sigwire.Dial(srv.Addr, srv.TLS, d.Key, opts...)
	if err != nil {
		_ = w.PostCause(EvConnectFailed, err, err.Error())
		return
	}
	defer c.Close()
	defer d.track(c)()
	s, err := c.Connect(ctx)
	if err != nil {
		if ctx.Err() == nil {
			_ = w.PostCause(EvConnectFailed, err, err.Error())
		}
		return
	}
	defer s.Close()
	defer d.setCurrent(c)()
	if w.Post(EvUp, nil) != nil {
		return
	}
	for {
		m, err := s.Recv()
		if err != nil {
			if ctx.Err() == nil {
				_ = w.PostCause(EvStreamClosed, err, err.Error())
			}
			return
		}
		if d.Deliver != nil {
			d.Deliver(m)
		}
	}
}
