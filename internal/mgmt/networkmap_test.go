package mgmt

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// key is a private key made of one repeated byte, for reproducible tests.
func key(b byte) wgtypes.Key {
	var k wgtypes.Key
	for i := range k {
		k[i] = b
	}
	return k
}

var (
	ownPriv = key(0x01)
	own     = ownPriv.PublicKey()
	peerA   = key(0x0a).PublicKey()
	peerB   = key(0x0b).PublicKey()
	peerC   = key(0x0c).PublicKey()
)

func rp(k wgtypes.Key, ips ...string) *mgmtpb.RemotePeerConfig {
	return &mgmtpb.RemotePeerConfig{WgPubKey: k.String(), AllowedIps: ips, Fqdn: "p.netbird.cloud", AgentVersion: "0.44.0"}
}

func pfx(s ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(s))
	for i, p := range s {
		out[i] = netip.MustParsePrefix(p)
	}
	return out
}

func want(k wgtypes.Key, ips ...string) RemotePeer {
	return RemotePeer{Key: k, AllowedIPs: pfx(ips...), FQDN: "p.netbird.cloud", AgentVersion: "0.44.0"}
}

var ownConfig = &mgmtpb.PeerConfig{Address: "100.91.205.61/16", Fqdn: "me.netbird.cloud", Mtu: 1280, LazyConnectionEnabled: true}

var ownPeer = PeerConfig{Address: netip.MustParsePrefix("100.91.205.61/16"), FQDN: "me.netbird.cloud", MTU: 1280, LazyConnection: true}

func TestConvertNetworkMap(t *testing.T) {
	long := strings.Repeat("x", 200)
	tests := []struct {
		name        string
		resp        *mgmtpb.SyncResponse
		wantNil     bool
		wantErr     error
		wantPeer    PeerConfig
		wantPeers   []RemotePeer
		wantOffline []RemotePeer
		wantSkipped []error
	}{
		{
			name:    "no network map: config only",
			resp:    &mgmtpb.SyncResponse{NetbirdConfig: &mgmtpb.NetbirdConfig{}},
			wantNil: true,
		},
		{
			name:    "nil response",
			resp:    nil,
			wantNil: true,
		},
		{
			name: "full map",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial: 7, PeerConfig: ownConfig,
				RemotePeers:  []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32"), rp(peerB, "100.91.205.63/32", "10.1.0.0/16")},
				OfflinePeers: []*mgmtpb.RemotePeerConfig{rp(peerC, "100.91.205.64/32")},
			}},
			wantPeer:    ownPeer,
			wantPeers:   []RemotePeer{want(peerA, "100.91.205.62/32"), want(peerB, "100.91.205.63/32", "10.1.0.0/16")},
			wantOffline: []RemotePeer{want(peerC, "100.91.205.64/32")},
		},
		{
			name: "bad entries skipped, rest applies",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial: 8, PeerConfig: ownConfig,
				RemotePeers: []*mgmtpb.RemotePeerConfig{
					{WgPubKey: "not-a-key", AllowedIps: []string{"100.91.205.70/32"}},
					{WgPubKey: long},
					rp(peerA, "100.91.205.62/32"),
					rp(peerB, "100.91.205.63"), // no prefix length
					rp(own, "100.91.205.61/32"),
					rp(peerA, "100.91.205.99/32"), // duplicate
					rp(peerC, "300.1.1.1/32"),
				},
				OfflinePeers: []*mgmtpb.RemotePeerConfig{
					rp(peerA, "100.91.205.62/32"), // also online
					rp(peerB, "100.91.205.63/32"),
				},
			}},
			wantPeer:    ownPeer,
			wantPeers:   []RemotePeer{want(peerA, "100.91.205.62/32")},
			wantOffline: []RemotePeer{want(peerB, "100.91.205.63/32")},
			wantSkipped: []error{ErrBadKey, ErrBadKey, ErrBadCIDR, ErrOwnKey, ErrDuplicatePeer, ErrBadCIDR, ErrDuplicatePeer},
		},
		{
			name: "allowed IPs are masked, IPv6 kept",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial:      1,
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/16", "fd00::1/64")},
			}},
			wantPeers: []RemotePeer{want(peerA, "100.91.0.0/16", "fd00::/64")},
		},
		{
			name: "remotePeersIsEmpty: empty set even if the deprecated copy is not",
			resp: &mgmtpb.SyncResponse{
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")},
				NetworkMap:  &mgmtpb.NetworkMap{Serial: 3, PeerConfig: ownConfig, RemotePeersIsEmpty: true},
			},
			wantPeer:  ownPeer,
			wantPeers: []RemotePeer{},
		},
		{
			name: "absent list without flag: deprecated copy used",
			resp: &mgmtpb.SyncResponse{
				PeerConfig:  ownConfig,
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")},
				NetworkMap:  &mgmtpb.NetworkMap{Serial: 4},
			},
			wantPeer:  ownPeer,
			wantPeers: []RemotePeer{want(peerA, "100.91.205.62/32")},
		},
		{
			name:      "absent everywhere: empty set, no own config",
			resp:      &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{Serial: 5}},
			wantPeers: []RemotePeer{},
		},
		{
			name: "map list wins over deprecated copy",
			resp: &mgmtpb.SyncResponse{
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerB, "100.91.205.63/32")},
				NetworkMap:  &mgmtpb.NetworkMap{Serial: 6, RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")}},
			},
			wantPeers: []RemotePeer{want(peerA, "100.91.205.62/32")},
		},
		{
			name: "bad own address rejects the map",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial: 9, PeerConfig: &mgmtpb.PeerConfig{Address: "100.91.205.61"},
				RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")},
			}},
			wantErr: ErrBadPeerConfig,
		},
		{
			name: "negative MTU rejects the map",
			resp: &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
				Serial: 10, PeerConfig: &mgmtpb.PeerConfig{Address: "100.91.205.61/16", Mtu: -1},
			}},
			wantErr: ErrBadPeerConfig,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nm, err := ConvertNetworkMap(own, tt.resp)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil || tt.wantNil {
				if nm != nil {
					t.Fatalf("map = %+v, want nil", nm)
				}
				return
			}
			if nm.Serial != tt.resp.GetNetworkMap().GetSerial() {
				t.Errorf("serial %d", nm.Serial)
			}
			if nm.Peer != tt.wantPeer {
				t.Errorf("peer %+v, want %+v", nm.Peer, tt.wantPeer)
			}
			if !reflect.DeepEqual(nm.Peers, tt.wantPeers) {
				t.Errorf("peers\n got %+v\nwant %+v", nm.Peers, tt.wantPeers)
			}
			if len(tt.wantOffline) > 0 || len(nm.Offline) > 0 {
				if !reflect.DeepEqual(nm.Offline, tt.wantOffline) {
					t.Errorf("offline\n got %+v\nwant %+v", nm.Offline, tt.wantOffline)
				}
			}
			if len(nm.Skipped) != len(tt.wantSkipped) {
				t.Fatalf("skipped %v, want %d entries", nm.Skipped, len(tt.wantSkipped))
			}
			for i, s := range nm.Skipped {
				if !errors.Is(s.Reason, tt.wantSkipped[i]) {
					t.Errorf("skipped[%d] = %v, want %v", i, s, tt.wantSkipped[i])
				}
				if len(s.Entry) > maxEntryText+len("…") {
					t.Errorf("skipped[%d] entry not truncated: %d bytes", i, len(s.Entry))
				}
			}
		})
	}
}

// TestConvertNetworkMapIsPure: converting does not change the input and the
// result shares no slices with it.
func TestConvertNetworkMapIsPure(t *testing.T) {
	resp := &mgmtpb.SyncResponse{NetworkMap: &mgmtpb.NetworkMap{
		Serial: 1, RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")},
	}}
	a, _ := ConvertNetworkMap(own, resp)
	b, _ := ConvertNetworkMap(own, resp)
	a.Peers[0].AllowedIPs[0] = netip.MustParsePrefix("10.0.0.0/8")
	if b.Peers[0].AllowedIPs[0].String() != "100.91.205.62/32" {
		t.Fatal("two conversions share memory")
	}
	if resp.NetworkMap.RemotePeers[0].AllowedIps[0] != "100.91.205.62/32" {
		t.Fatal("input changed")
	}
}
