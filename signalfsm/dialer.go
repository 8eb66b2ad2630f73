package signalfsm

import (
	"context"
	"errors"
	"sync"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/signal"
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
	Deliver func(signal.Message)
	Log     *zap.Logger
	// Options are extra client options (tests: a dialer).
	Options []signal.Option

	mu  sync.Mutex
	cur *signal.Client // the connected session's client, for Send
}

// ErrNotConnected: Send was called while no session is connected.
var ErrNotConnected = errors.New("signal: not connected")

// Send sends m with one unary call on the connected session's connection
// (so a send never waits behind a stale channel's own redial backoff). It
// fails with ErrNotConnected when the link is not connected. Safe from any
// goroutine.
func (d *Dialer) Send(ctx context.Context, m signal.Message) error {
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
func (d *Dialer) setCurrent(c *signal.Client) (withdraw func()) {
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
	go d.run(ctx, w, srv)
	return cancel
}

func (d *Dialer) log() *zap.Logger {
	if d.Log == nil {
		return zap.NewNop()
	}
	return d.Log
}

func (d *Dialer) run(ctx context.Context, w fsm.Sender, srv Server) {
	opts := append([]signal.Option{signal.WithLogger(d.log())}, d.Options...)
	if d.Accept != nil {
		opts = append(opts, signal.WithAccept(d.Accept))
	}
	c, err := signal.Dial(srv.Addr, srv.TLS, d.Key, opts...)
	if err != nil {
		_ = w.PostCause(EvConnectFailed, err, err.Error())
		return
	}
	defer c.Close()
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
