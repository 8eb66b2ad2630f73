package relayfsm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/netip"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/relay"
)

// Dialer is the production Effects: each Connect dials a fresh WebSocket
// connection, so the machine's backoff is the only backoff.
type Dialer struct {
	// Key is this peer's public key; its relay id is relay.HashID(Key.String()).
	Key wgtypes.Key
	// TLS is the client config for rels:// (nil: system roots).
	TLS *tls.Config
	Log *zap.Logger
}

func (d *Dialer) log() *zap.Logger {
	if d.Log == nil {
		return zap.NewNop()
	}
	return d.Log
}

// Connect implements Effects.
func (d *Dialer) Connect(w fsm.Sender, urls []string, token Token) func() {
	return d.connect(w, urls, token, netip.Addr{})
}

// ConnectVia implements ViaIP: url is dialed at ip first, then by name.
func (d *Dialer) ConnectVia(w fsm.Sender, url string, ip netip.Addr, token Token) func() {
	return d.connect(w, []string{url}, token, ip)
}

func (d *Dialer) connect(w fsm.Sender, urls []string, token Token, ip netip.Addr) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *relay.Conn, 1)
	go d.run(ctx, w, urls, token, ip, done)
	return func() {
		cancel()
		go func() {
			if c := <-done; c != nil {
				_ = c.Close()
			}
		}()
	}
}

// health posts EvHealth for every health check and the watched remotes'
// state (EvPeersOnline, EvPeersOffline); Unknown is not needed.
type health struct{ w fsm.Sender }

func (h health) HealthCheck()                    { _ = h.w.Post(EvHealth, nil) }
func (health) Unknown(relay.PeerID)              {}
func (h health) PeersOnline(ids []relay.PeerID)  { _ = h.w.Post(EvPeersOnline, ids) }
func (h health) PeersOffline(ids []relay.PeerID) { _ = h.w.Post(EvPeersOffline, ids) }

// ErrNoURL: the config has no relay URL.
var ErrNoURL = errors.New("relay: no URL")

func (d *Dialer) run(ctx context.Context, w fsm.Sender, urls []string, token Token, ip netip.Addr, done chan<- *relay.Conn) {
	tok, err := relay.Token(token.Payload, token.Signature)
	if err != nil {
		done <- nil
		_ = w.PostCause(EvConnectFailed, err, err.Error())
		return
	}
	id := relay.HashID(d.Key.String())
	var c *relay.Conn
	err = ErrNoURL
	for _, u := range urls {
		if ip.IsValid() {
			c, err = relay.Dial(ctx, u, id, tok, relay.DialOptions{TLS: d.TLS, Handler: health{w}, IP: ip})
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				break
			}
			d.log().Debug("relay dial by relayServerIP failed: by name", zap.String("url", u), zap.Stringer("ip", ip), zap.Error(err))
		}
		c, err = relay.Dial(ctx, u, id, tok, relay.DialOptions{TLS: d.TLS, Handler: health{w}})
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			break
		}
		d.log().Debug("relay dial failed", zap.String("url", u), zap.Error(err))
	}
	if err != nil {
		done <- nil
		if ctx.Err() == nil {
			err = fmt.Errorf("relay: %w", err)
			_ = w.PostCause(EvConnectFailed, err, err.Error())
		}
		return
	}
	done <- c
	if ctx.Err() != nil {
		return // cancelled while authenticating: the cancel closes c
	}
	if w.Post(EvUp, UpOf(c)) != nil {
		return
	}
	err = c.Run()
	if ctx.Err() == nil {
		_ = w.PostCause(EvClosed, err, err.Error())
	}
}
