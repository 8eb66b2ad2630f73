package mgmt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// FuzzNetworkMap feeds ConvertNetworkMap and the config conversion with
// arbitrary SyncResponse bytes. They must never panic, a rejected map must
// be ErrBadPeerConfig, and an accepted one must hold unique, valid peers,
// none of them us, and account for every input entry (kept or skipped).
//
// The seed corpus is in testdata/fuzz/FuzzNetworkMap; regenerate it with
// NBFSM_WRITE_CORPUS=1 go test -run TestWriteNetworkMapCorpus.
func FuzzNetworkMap(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var resp mgmtpb.SyncResponse
		if proto.Unmarshal(data, &resp) != nil {
			return
		}
		cfg := convertConfig(resp.GetNetbirdConfig())
		for _, s := range cfg.Skipped {
			if !errors.Is(s.Reason, ErrBadHost) {
				t.Fatalf("config entry skipped for an untyped reason: %v", s)
			}
		}
		nm, err := ConvertNetworkMap(own, &resp)
		if err != nil {
			if !errors.Is(err, ErrBadPeerConfig) || nm != nil {
				t.Fatalf("rejected with %v (map %v)", err, nm)
			}
			return
		}
		if (nm == nil) != (resp.GetNetworkMap() == nil) {
			t.Fatalf("map %v for NetworkMap %v", nm, resp.GetNetworkMap())
		}
		if nm == nil {
			return
		}
		checkMap(t, &resp, nm)
	})
}

func checkMap(t *testing.T, resp *mgmtpb.SyncResponse, nm *NetworkMap) {
	t.Helper()
	seen := map[wgtypes.Key]bool{}
	for _, list := range [][]RemotePeer{nm.Peers, nm.Offline} {
		for _, p := range list {
			if p.Key == own || seen[p.Key] {
				t.Fatalf("peer %v is us or listed twice", p.Key)
			}
			seen[p.Key] = true
			for _, ip := range p.AllowedIPs {
				if !ip.IsValid() || ip != ip.Masked() {
					t.Fatalf("allowed IP %v invalid or not masked", ip)
				}
			}
		}
	}
	for _, s := range nm.Skipped {
		if !errors.Is(s.Reason, ErrBadKey) && !errors.Is(s.Reason, ErrBadCIDR) &&
			!errors.Is(s.Reason, ErrOwnKey) && !errors.Is(s.Reason, ErrDuplicatePeer) {
			t.Fatalf("entry skipped for an untyped reason: %v", s)
		}
		if len(s.Entry) > maxEntryText+len("…") {
			t.Fatalf("skipped entry text not truncated: %d bytes", len(s.Entry))
		}
	}
	m := resp.GetNetworkMap()
	online := len(m.GetRemotePeers())
	if online == 0 && !m.GetRemotePeersIsEmpty() {
		online = len(resp.GetRemotePeers())
	}
	if got, want := len(nm.Peers)+len(nm.Offline)+len(nm.Skipped), online+len(m.GetOfflinePeers()); got != want {
		t.Fatalf("%d entries kept or skipped, %d in the input", got, want)
	}
}

// networkMapSeeds are the committed seed inputs.
func networkMapSeeds() map[string]*mgmtpb.SyncResponse {
	cfg := &mgmtpb.NetbirdConfig{
		Signal: &mgmtpb.HostConfig{Uri: "198.18.0.1:10000", Protocol: mgmtpb.HostConfig_HTTP},
		Stuns:  []*mgmtpb.HostConfig{{Uri: "stun:198.18.0.1:3478"}},
		Turns:  []*mgmtpb.ProtectedHostConfig{{HostConfig: &mgmtpb.HostConfig{Uri: "turn:198.18.0.1:3478"}, User: "u", Password: "p"}},
		Relay:  &mgmtpb.RelayConfig{Urls: []string{"rel://198.18.0.1:80"}, TokenPayload: "x", TokenSignature: "y"},
	}
	full := mapMsg(7, peerA, peerB)
	full.NetbirdConfig = cfg
	full.NetworkMap.OfflinePeers = []*mgmtpb.RemotePeerConfig{rp(peerC, "100.91.205.64/32")}
	bad := mapMsg(8, peerA)
	bad.NetworkMap.RemotePeers = append(bad.NetworkMap.RemotePeers,
		&mgmtpb.RemotePeerConfig{WgPubKey: "not-a-key"}, rp(peerB, "100.91.205.63"), rp(own, "100.91.205.61/32"),
		rp(peerA, "100.91.205.62/32"), rp(peerC, "fd00::1/64", "10.0.0.0/8"))
	return map[string]*mgmtpb.SyncResponse{
		"full":        full,
		"bad-entries": bad,
		"empty-flag":  {RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")}, NetworkMap: &mgmtpb.NetworkMap{Serial: 3, RemotePeersIsEmpty: true}},
		"deprecated":  {PeerConfig: ownConfig, RemotePeers: []*mgmtpb.RemotePeerConfig{rp(peerA, "100.91.205.62/32")}, NetworkMap: &mgmtpb.NetworkMap{Serial: 4}},
		"bad-own":     {NetworkMap: &mgmtpb.NetworkMap{Serial: 9, PeerConfig: &mgmtpb.PeerConfig{Address: "100.91.205.61"}}},
		"config-only": {NetbirdConfig: cfg},
		"bad-config":  {NetbirdConfig: &mgmtpb.NetbirdConfig{Signal: &mgmtpb.HostConfig{Uri: "no-port"}, Stuns: []*mgmtpb.HostConfig{{Uri: "http://x"}}}},
	}
}

// TestWriteNetworkMapCorpus writes the seed corpus; it only runs on request.
func TestWriteNetworkMapCorpus(t *testing.T) {
	if os.Getenv("NBFSM_WRITE_CORPUS") == "" {
		t.Skip("set NBFSM_WRITE_CORPUS=1 to rewrite testdata/fuzz/FuzzNetworkMap")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzNetworkMap")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, resp := range networkMapSeeds() {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		data := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNetworkMapSeedsAreChecked runs the fuzz checks on the seeds directly,
// with the outcome each seed is meant to have.
func TestNetworkMapSeedsAreChecked(t *testing.T) {
	wantErr := map[string]error{"bad-own": ErrBadPeerConfig}
	for name, resp := range networkMapSeeds() {
		nm, err := ConvertNetworkMap(own, resp)
		if !errors.Is(err, wantErr[name]) {
			t.Fatalf("%s: %v", name, err)
		}
		if nm != nil {
			checkMap(t, resp, nm)
		}
	}
}
