package mgmtfsm

import (
	"context"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
)

// Dialer is the production Effects. Each session dials a fresh gRPC client,
// so the machine's backoff is the only backoff (a long-lived gRPC channel
// keeps redialing on its own schedule, up to 120 s apart, while the server is
// down). Its fields are set before the machine starts; its methods run in the
// loop goroutine.
type Dialer struct {
	URL     string
	Key     wgtypes.Key
	Meta    mgmt.Meta
	Options []mgmt.Option

	client *mgmt.Client // the current session's; loop goroutine only
}

func (d *Dialer) session() (*mgmt.Client, error) {
	if d.client == nil {
		c, err := mgmt.Dial(d.URL, d.Key, d.Options...)
		if err != nil {
			return nil, err
		}
		d.client = c
	}
	return d.client, nil
}

// start runs fn in a worker with a cancellable context, or posts EvFailed
// at once if the session cannot be set up.
func (d *Dialer) start(w fsm.Sender, fn func(ctx context.Context, c *mgmt.Client)) func() {
	c, err := d.session()
	if err != nil {
		go func() { _ = w.PostCause(EvFailed, err, err.Error()) }()
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go fn(ctx, c)
	return cancel
}

// FetchKey implements Effects.
func (d *Dialer) FetchKey(w fsm.Sender) func() {
	return d.start(w, func(ctx context.Context, c *mgmt.Client) {
		k, err := c.ServerKey(ctx)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			_ = w.PostCause(EvFailed, err, err.Error())
		default:
			_ = w.Post(EvKey, k)
		}
	})
}

// Login implements Effects.
func (d *Dialer) Login(w fsm.Sender, serverKey wgtypes.Key, setupKey string) func() {
	meta := d.Meta
	return d.start(w, func(ctx context.Context, c *mgmt.Client) {
		r, err := c.Login(ctx, serverKey, setupKey, meta)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			_ = w.PostCause(LoginEvent(err), err, err.Error())
		default:
			_ = w.Post(EvLoginOK, r)
		}
	})
}

// Sync implements Effects.
func (d *Dialer) Sync(w fsm.Sender, serverKey wgtypes.Key) func() {
	meta := d.Meta
	return d.start(w, func(ctx context.Context, c *mgmt.Client) {
		s, err := c.Sync(ctx, serverKey, meta)
		if err != nil {
			if ctx.Err() == nil {
				_ = w.PostCause(EvStreamClosed, err, err.Error())
			}
			return
		}
		defer s.Close()
		for {
			u, err := s.Recv()
			if err != nil {
				if ctx.Err() == nil {
					_ = w.PostCause(EvStreamClosed, err, err.Error())
				}
				return
			}
			if w.Post(EvUpdate, u) != nil {
				return
			}
		}
	})
}

// EndSession implements Effects.
func (d *Dialer) EndSession() {
	if d.client != nil {
		_ = d.client.Close()
		d.client = nil
	}
}
