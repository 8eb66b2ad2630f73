package mgmtfsm

import (
	"context"
	"errors"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc/codes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/fsm/link"
	"github.com/nbfsm/nbfsm/internal/grpcdial"
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

	sess *session // the current session's; loop goroutine only
	// workers are the dialer's goroutines, joined by Close.
	workers link.Workers
	// files answers the last login's posture checks (Meta.Files); written
	// by the login worker before it posts, read by Sync and SyncMeta.
	files atomic.Pointer[[]mgmt.File]
	// checks are the posture-check paths of the last login or sync
	// message that carried them.
	checks atomic.Pointer[[]string]
	// sent is the meta last handed to a Sync or SyncMeta (the loop writes
	// it), for answering new posture checks from the stream's worker.
	sent atomic.Pointer[mgmt.Meta]
}

// meta is d.Meta with the files of the last login's posture checks.
func (d *Dialer) meta() mgmt.Meta {
	m := d.Meta
	if f := d.files.Load(); f != nil {
		m.Files = *f
	}
	return m
}

// ErrCloseTimeout: Close gave up waiting for workers.
var ErrCloseTimeout = errors.New("mgmt dialer: workers still running after the close timeout")

// CloseTimeout bounds Close.
const CloseTimeout = 5 * time.Second

// Close waits, CloseTimeout at most, for every worker of the dialer (calls,
// streams and connection closes). Call it after the machine has stopped:
// leaving a session cancels its workers.
func (d *Dialer) Close() error {
	if !d.workers.Wait(CloseTimeout) {
		return ErrCloseTimeout
	}
	return nil
}

// session is one session's connection: its client, made by the session's
// first call in a worker after a TCP pre-dial (grpcdial.PreDial), so a
// refused connection costs one TCP connect and no gRPC client.
type session struct {
	mu    sync.Mutex
	c     *mgmt.Client
	h     *grpcdial.Handoff
	ended bool
}

// errPreDial marks a failed pre-dial: the call it stood in for failed.
type errPreDial struct{ error }

func (e errPreDial) Unwrap() error { return e.error }

// preDialErrors classifies a failed pre-dial as mgmt classifies the same
// failure of a call (a transport failure: ErrUnavailable).
var preDialErrors = grpcdial.Errors{Prefix: "mgmt", Unavailable: mgmt.ErrUnavailable, StreamClosed: mgmt.ErrStreamClosed,
	Answer: func(codes.Code) error { return mgmt.ErrRequestRejected }, Stream: "sync"}

// client returns the session's client, making it on the first call: a
// pre-dial (its failure is an errPreDial, classified as the call named
// what would be), then mgmt.Dial handed the connection.
func (s *session) client(ctx context.Context, d *Dialer, what string) (*mgmt.Client, error) {
	s.mu.Lock()
	c, ended := s.c, s.ended
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if ended {
		return nil, mgmt.ErrClosed
	}
	h, err := grpcdial.PreDial(ctx, preDialTarget(d.URL))
	if err != nil {
		return nil, errPreDial{preDialErrors.Classify(ctx, what, err)}
	}
	opts := d.Options
	if h != nil {
		opts = append(slices.Clip(opts), mgmt.WithDialer(h.Dial))
	}
	c, err = mgmt.Dial(d.URL, d.Key, opts...)
	if err != nil {
		if h != nil {
			h.Close()
		}
		return nil, err
	}
	s.mu.Lock()
	if s.ended || s.c != nil {
		old := s.c
		s.mu.Unlock()
		_ = c.Close()
		if h != nil {
			h.Close()
		}
		if old == nil {
			return nil, mgmt.ErrClosed
		}
		return old, nil
	}
	s.c, s.h = c, h
	s.mu.Unlock()
	return c, nil
}

// end closes the session's client (made or being made). It waits for
// gRPC's transports: run it in a worker.
func (s *session) end() {
	s.mu.Lock()
	c, h := s.c, s.h
	s.c, s.h, s.ended = nil, nil, true
	s.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
	if h != nil {
		h.Close()
	}
}

// preDialTarget is the host:port of a management URL (http://, https://,
// default ports 80 and 443), or "" if it is not one: PreDial then stands
// aside and mgmt.Dial reports the URL.
func preDialTarget(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Hostname() == "" {
		return ""
	}
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "http":
		port = "80"
	case u.Scheme == "https":
		port = "443"
	default:
		return ""
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// start runs fn in a worker with a cancellable context and the session's
// client. If the session's connection cannot be made, the worker posts
// fail (the event of the call's own transport failure) for a failed
// pre-dial, EvFailed if the client cannot be set up.
func (d *Dialer) start(w fsm.Sender, what string, fail fsm.Event, fn func(ctx context.Context, c *mgmt.Client)) func() {
	if d.sess == nil {
		d.sess = &session{}
	}
	s := d.sess
	ctx, cancel := context.WithCancel(context.Background())
	d.workers.Go(func() {
		c, err := s.client(ctx, d, what)
		var pre errPreDial
		switch {
		case err == nil:
			fn(ctx, c)
		case ctx.Err() != nil:
		case errors.As(err, &pre):
			_ = w.PostCause(fail, pre.error, pre.Error())
		default:
			_ = w.PostCause(EvFailed, err, err.Error())
		}
	})
	return cancel
}

// FetchKey implements Effects.
func (d *Dialer) FetchKey(w fsm.Sender) func() {
	return d.start(w, "get server key", EvFailed, func(ctx context.Context, c *mgmt.Client) {
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
	meta := d.meta()
	return d.start(w, "login", EvFailed, func(ctx context.Context, c *mgmt.Client) {
		r, err := c.Login(ctx, serverKey, setupKey, meta)
		switch {
		case ctx.Err() != nil:
		case err != nil:
			_ = w.PostCause(LoginEvent(err), err, err.Error())
		default:
			// The posture checks' files, answered before Sync sends meta.
			files, checks := mgmt.CheckFiles(r.Checks), r.Checks
			d.files.Store(&files)
			d.checks.Store(&checks)
			_ = w.Post(EvLoginOK, r)
		}
	})
}

// Sync implements Effects. When a message of the stream brings posture
// checks other than the last ones (an account's checks changed), the
// files they name are looked at and sent with SyncMeta at once, in a
// worker of their own, as official clients do; the update is delivered
// as any other.
func (d *Dialer) Sync(w fsm.Sender, serverKey wgtypes.Key) func() {
	meta := d.meta()
	d.sent.Store(&meta)
	return d.start(w, "sync", EvStreamClosed, func(ctx context.Context, c *mgmt.Client) {
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
			if u.HasChecks {
				d.answerChecks(ctx, c, serverKey, u.Checks)
			}
			if w.Post(EvUpdate, u) != nil {
				return
			}
		}
	})
}

// answerChecks answers checks if they differ from the last ones: the
// files are looked at and sent with SyncMeta in a worker (the stream goes
// on meanwhile). One attempt: a failure is the next Sync's to repair, as
// its meta carries the files.
func (d *Dialer) answerChecks(ctx context.Context, c *mgmt.Client, serverKey wgtypes.Key, checks []string) {
	if old := d.checks.Load(); old != nil && slices.Equal(*old, checks) || old == nil && len(checks) == 0 {
		return
	}
	d.checks.Store(&checks)
	d.workers.Go(func() {
		files := mgmt.CheckFiles(checks)
		d.files.Store(&files)
		var meta mgmt.Meta
		if m := d.sent.Load(); m != nil {
			meta = *m
		}
		meta.Files = files
		_ = c.SyncMeta(ctx, serverKey, meta)
	})
}

// EndSession implements Effects.
func (d *Dialer) EndSession() {
	if s := d.sess; s != nil {
		d.sess = nil
		// gRPC's ClientConn.Close waits for its transports: not in the loop.
		d.workers.Go(s.end)
	}
}

// SyncMeta makes meta the meta of later logins and syncs, and returns the
// call that sends it to management at once, without a new Sync (the server
// updates the peer's meta: addresses, posture-check files, PROTOCOL.md §3).
// SyncMeta itself runs in the loop goroutine and does no I/O; run the
// returned send in a worker: it answers the last login's posture checks
// again, dials its own one-shot client and is one attempt.
func (d *Dialer) SyncMeta(meta mgmt.Meta) (send func(context.Context) error) {
	d.Meta = meta
	sent := meta
	d.sent.Store(&sent)
	url, key, opts := d.URL, d.Key, d.Options
	var checks []string
	if c := d.checks.Load(); c != nil {
		checks = *c
	}
	return func(ctx context.Context) error {
		files := mgmt.CheckFiles(checks)
		d.files.Store(&files)
		meta.Files = files
		c, err := mgmt.Dial(url, key, opts...)
		if err != nil {
			return err
		}
		defer c.Close()
		sk, err := c.ServerKey(ctx)
		if err != nil {
			return err
		}
		return c.SyncMeta(ctx, sk, meta)
	}
}
