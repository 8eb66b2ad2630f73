package client

import (
	"context"
	"fmt"

	"github.com/nbfsm/nbfsm/internal/mgmt"
)

// SyncMeta tells management this machine's current meta at once, without
// a new Sync: the interface addresses are read again and the last login's
// posture-check files answered again (PROTOCOL.md §3). The daemon's network
// monitor calls it when the addresses change. The new meta is also what
// later logins and syncs send. It blocks for one RPC: call it outside the
// loop.
func (c *Client) SyncMeta(ctx context.Context) error {
	addrs := mgmt.InterfaceAddresses()
	var send func(context.Context) error
	if err := c.Loop().Do(func() {
		m := c.mgmt.Meta
		m.NetworkAddresses = addrs
		send = c.mgmt.SyncMeta(m)
	}); err != nil {
		return fmt.Errorf("client: sync meta: %w", err)
	}
	return send(ctx)
}
