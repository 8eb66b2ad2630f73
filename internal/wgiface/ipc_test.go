package wgiface

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

func testKey(t *testing.T) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func TestPeerSetText(t *testing.T) {
	k := testKey(t)
	hexKey := fmt.Sprintf("%x", k[:])
	tests := []struct {
		name string
		peer Peer
		want string
	}{
		{"key and allowed ips only", Peer{Key: k, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("100.64.0.2/32")}},
			"public_key=" + hexKey + "\nreplace_allowed_ips=true\nallowed_ip=100.64.0.2/32\npersistent_keepalive_interval=0\n"},
		{"endpoint and keepalive, unmasked prefix", Peer{Key: k, AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.1.2.3/8")},
			Endpoint: netip.MustParseAddrPort("198.18.0.2:51820"), Keepalive: 25 * time.Second},
			"public_key=" + hexKey + "\nreplace_allowed_ips=true\nallowed_ip=10.0.0.0/8\nendpoint=198.18.0.2:51820\npersistent_keepalive_interval=25\n"},
		{"preshared key before the endpoint", Peer{Key: k, PresharedKey: k, Endpoint: netip.MustParseAddrPort("198.18.0.2:51820")},
			"public_key=" + hexKey + "\nreplace_allowed_ips=true\npreshared_key=" + hexKey + "\nendpoint=198.18.0.2:51820\npersistent_keepalive_interval=0\n"},
		{"relay endpoint", Peer{Key: k, Endpoint: netip.MustParseAddrPort("240.0.0.1:1")},
			"public_key=" + hexKey + "\nreplace_allowed_ips=true\nendpoint=240.0.0.1:1\npersistent_keepalive_interval=0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := peerSetText(tt.peer); got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestParsePeerStats(t *testing.T) {
	k1, k2 := testKey(t), testKey(t)
	text := fmt.Sprintf("private_key=%x\nlisten_port=51820\n"+
		"public_key=%x\nendpoint=127.0.0.1:4000\nlast_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\n"+
		"rx_bytes=10\ntx_bytes=20\nallowed_ip=100.64.0.2/32\n"+
		"public_key=%x\nendpoint=240.0.0.7:1\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nrx_bytes=0\ntx_bytes=0\n",
		make([]byte, 32), k1[:], k2[:])
	got, err := parsePeerStats(text)
	if err != nil {
		t.Fatal(err)
	}
	want := map[wgtypes.Key]PeerStats{
		k1: {LastHandshake: time.Unix(1700000000, 5), RxBytes: 10, TxBytes: 20, Endpoint: netip.MustParseAddrPort("127.0.0.1:4000")},
		k2: {Endpoint: netip.MustParseAddrPort("240.0.0.7:1"), Relayed: true},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d peers, want %d", len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if !g.LastHandshake.Equal(w.LastHandshake) || g.RxBytes != w.RxBytes || g.TxBytes != w.TxBytes ||
			g.Endpoint != w.Endpoint || g.Relayed != w.Relayed {
			t.Errorf("peer %s: got %+v, want %+v", k, g, w)
		}
	}
	bad := []string{"public_key=zz\n", fmt.Sprintf("public_key=%x\nrx_bytes=x\n", k1[:])}
	for _, b := range bad {
		if _, err := parsePeerStats(b); !errors.Is(err, ErrDevice) {
			t.Errorf("parse %q: %v, want ErrDevice", b, err)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	key, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParsePrefix("100.64.0.1/10")
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no socket", Config{PrivateKey: key, Address: addr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); !errors.Is(err, ErrBadConfig) {
				t.Errorf("New: %v, want ErrBadConfig", err)
			}
		})
	}
}
