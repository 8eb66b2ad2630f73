package mgmt

import (
	"context"
	"fmt"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// SyncStream is one open Sync stream. One goroutine calls Recv; Close may be
// called from any goroutine, any number of times.
type SyncStream struct {
	c         *Client
	st        grpc.ServerStreamingClient[mgmtpb.EncryptedMessage]
	ctx       context.Context
	cancel    context.CancelFunc
	serverKey wgtypes.Key
}

// Sync opens the Sync stream, sealed to serverKey (fetch it again before
// every Sync: it changes at every server start). It does not wait for the
// first message: Recv does. The stream lives until ctx is cancelled, Close is
// called, or the server or the connection ends it.
func (c *Client) Sync(ctx context.Context, serverKey wgtypes.Key, meta Meta) (*SyncStream, error) {
	if c.once.Closed() {
		return nil, ErrClosed
	}
	em, err := c.seal(serverKey, &mgmtpb.SyncRequest{Meta: meta.proto()})
	if err != nil {
		return nil, fmt.Errorf("mgmt: sync: %w", err)
	}
	sctx, cancel := context.WithCancel(ctx)
	st, err := c.rpc.Sync(sctx, em)
	if err != nil {
		cancel()
		return nil, classify(ctx, "sync", err)
	}
	return &SyncStream{c: c, st: st, ctx: sctx, cancel: cancel, serverKey: serverKey}, nil
}

// Recv blocks until the next usable update. Messages that do not open,
// maps that are rejected or stale, and messages with nothing to apply are
// counted and skipped, not returned. When the stream ends, Recv returns an
// error wrapping ErrStreamClosed and its classified cause; the stream is then
// done and Recv keeps failing.
func (s *SyncStream) Recv() (Update, error) {
	for {
		em, err := s.st.Recv()
		if err != nil {
			err = classifyStream(s.ctx, err) // before cancel, which would mask the cause
			s.cancel()
			return Update{}, err
		}
		if u, ok := s.c.convert(s.serverKey, em); ok {
			return u, nil
		}
	}
}

// Close ends the stream; a blocked Recv returns ErrStreamClosed.
func (s *SyncStream) Close() { s.cancel() }

// convert opens and converts one stream message; ok is false when nothing
// in it is to be delivered.
func (c *Client) convert(serverKey wgtypes.Key, em *mgmtpb.EncryptedMessage) (u Update, ok bool) {
	var resp mgmtpb.SyncResponse
	if err := nbcrypto.Open(c.priv, serverKey, em.GetBody(), &resp); err != nil {
		c.stats.badBodies.Add(1)
		c.bad.Warn("bad-body", "unexpected sync message dropped", zap.NamedError("err", err))
		return Update{}, false
	}
	var skipped int
	if resp.GetNetbirdConfig() != nil {
		cfg := convertConfig(resp.GetNetbirdConfig())
		u.Config = &cfg
		skipped += len(cfg.Skipped)
		c.logSkippedConfig(cfg.Skipped)
	}
	nm, err := ConvertNetworkMap(c.pub, &resp)
	switch {
	case u.Config == nil && nm == nil && err == nil && len(resp.GetChecks()) == 0:
		c.stats.emptyUpdates.Add(1)
		return Update{}, false
	case err != nil:
		c.stats.badMaps.Add(1)
		c.bad.Warn("bad-map", "unexpected network map dropped", zap.NamedError("err", err))
	case nm == nil:
		// config-only update
	case !c.acceptSerial(nm.Serial):
		c.stats.staleMaps.Add(1)
		c.log.Debug("stale network map dropped",
			zap.NamedError("err", fmt.Errorf("serial %d is lower than one already delivered", nm.Serial)))
	default:
		u.Map = nm
		skipped += len(nm.Skipped)
		for _, sk := range nm.Skipped {
			c.bad.Warn("bad-entry", "unexpected network map entry skipped",
				zap.String("peer", short(sk.Entry)), zap.NamedError("err", sk.Reason))
		}
		skipped += len(nm.Firewall.Skipped)
		for _, sk := range nm.Firewall.Skipped {
			c.bad.Warn("bad-rule", "unexpected firewall rule skipped", zap.NamedError("err", fmt.Errorf("%q: %w", sk.Entry, sk.Reason)))
		}
	}
	if u.Map != nil || len(resp.GetChecks()) > 0 {
		u.Checks, u.HasChecks = checkPaths(resp.GetChecks()), true
	}
	if u.Config == nil && u.Map == nil && !u.HasChecks {
		return Update{}, false // a dropped map, already counted
	}
	c.stats.updates.Add(1)
	c.stats.skippedEntries.Add(uint64(skipped))
	return u, true
}

// acceptSerial reports whether a map with this serial may be delivered and,
// if so, records it: serials never go down across the streams of a Client.
func (c *Client) acceptSerial(serial uint64) bool {
	c.serialMu.Lock()
	defer c.serialMu.Unlock()
	return c.serials.Admit(serial)
}

func (c *Client) logSkippedConfig(skipped []Skipped) {
	for _, sk := range skipped {
		c.bad.Warn("bad-config-entry", "unexpected config entry skipped",
			zap.NamedError("err", fmt.Errorf("%q: %w", sk.Entry, sk.Reason)))
	}
}

// short is the first 8 characters of a key text, like nbcrypto.Fingerprint,
// for entries that may not even be keys.
func short(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
