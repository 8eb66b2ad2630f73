package wgiface_test

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// pskRefusal bounds the wait in which peers whose preshared keys differ must
// not complete a handshake: on loopback a handshake takes milliseconds.
const pskRefusal = 3 * time.Second

// TestPresharedKey: the interface sets its preshared key on every peer, so
// two peers pass traffic only when they hold the same key (the official
// --preshared-key), and a peer with another key or none never completes a
// handshake.
func TestPresharedKey(t *testing.T) {
	k1, k2 := genKey(t), genKey(t)
	tests := []struct {
		name   string
		a, b   wgtypes.Key
		passes bool
	}{
		{"same key", k1, k1, true},
		{"different keys", k1, k2, false},
		{"only the initiator has one", k1, wgtypes.Key{}, false},
		{"only the responder has one", wgtypes.Key{}, k1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newNodePSK(t, "100.64.7.1/10", tt.a), newNodePSK(t, "100.64.7.2/10", tt.b)
			b.addPeer(t, a)
			a.connectTo(t, b, b.sock.LocalAddr())
			if tt.passes {
				pingBoth(t, a, b)
				return
			}
			if err := tryPing(a.iface.Net(), a.addr.Addr(), b.addr.Addr(), pskRefusal); err == nil {
				t.Fatal("ping passed between peers whose preshared keys differ")
			}
			st, err := a.iface.PeerStats()
			if err != nil {
				t.Fatal(err)
			}
			if hs := st[b.pub()].LastHandshake; !hs.IsZero() {
				t.Fatalf("handshake completed at %v with different preshared keys", hs)
			}
			if a.sock.Stats().WireGuardOut == 0 {
				t.Fatal("no handshake initiation was sent: the test proves nothing")
			}
		})
	}
}

func genKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}
