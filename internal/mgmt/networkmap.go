package mgmt

import (
	"fmt"
	"net/netip"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// maxEntryText bounds the text of a skipped entry kept for logs and status.
const maxEntryText = 64

// Update is one message of the Sync stream, converted.
type Update struct {
	// Config is the new service config; nil means keep the current one.
	Config *Config
	// Map is the new network map; nil means this update is config-only.
	Map *NetworkMap
}

// NetworkMap is the typed, validated network map of this peer.
type NetworkMap struct {
	Serial uint64
	// Peer is this peer's own config; zero Address means none was sent
	// (keep the current one).
	Peer PeerConfig
	// Peers is the whole desired set of online remote peers, in server order.
	Peers []RemotePeer
	// Offline are peers to show but not connect.
	Offline []RemotePeer
	// Skipped are the entries left out, with the reason.
	Skipped []Skipped
}

// RemotePeer is one remote peer of the map.
type RemotePeer struct {
	Key          wgtypes.Key    // public key
	AllowedIPs   []netip.Prefix // masked, in server order
	FQDN         string
	AgentVersion string // the remote's reported NetBird version
}

// Skipped is an entry of the map or config that was left out.
type Skipped struct {
	Entry  string // the key or URI text, truncated
	Reason error  // wraps ErrBadKey, ErrBadCIDR, ErrOwnKey, ErrDuplicatePeer or ErrBadHost
}

func (s Skipped) String() string { return fmt.Sprintf("%q: %v", s.Entry, s.Reason) }

// ConvertNetworkMap converts the NetworkMap of resp for the peer whose public
// key is own. It is pure. It returns (nil, nil) when resp carries no
// NetworkMap (a config-only update) and an error wrapping ErrBadPeerConfig
// when the map's own peer config is unusable; bad remote entries are skipped,
// never fatal. The rules are in the package doc.
func ConvertNetworkMap(own wgtypes.Key, resp *mgmtpb.SyncResponse) (*NetworkMap, error) {
	nm := resp.GetNetworkMap()
	if nm == nil {
		return nil, nil
	}
	out := &NetworkMap{Serial: nm.GetSerial()}

	pc := nm.GetPeerConfig()
	if pc == nil {
		pc = resp.GetPeerConfig() // deprecated copy, filled by old servers
	}
	if pc != nil {
		p, err := convertPeerConfig(pc)
		if err != nil {
			return nil, fmt.Errorf("mgmt: network map serial %d: %w", out.Serial, err)
		}
		out.Peer = p
	}

	remotes := nm.GetRemotePeers()
	if len(remotes) == 0 && !nm.GetRemotePeersIsEmpty() {
		remotes = resp.GetRemotePeers() // deprecated copy, see package doc
	}

	seen := make(map[wgtypes.Key]struct{}, len(remotes)+len(nm.GetOfflinePeers()))
	out.Peers = convertPeers(own, remotes, seen, &out.Skipped)
	out.Offline = convertPeers(own, nm.GetOfflinePeers(), seen, &out.Skipped)
	return out, nil
}

// convertPeers converts a list of remote peers, skipping bad entries and keys
// already in seen (which it extends).
func convertPeers(own wgtypes.Key, in []*mgmtpb.RemotePeerConfig, seen map[wgtypes.Key]struct{}, skipped *[]Skipped) []RemotePeer {
	out := make([]RemotePeer, 0, len(in))
	for _, pb := range in {
		p, err := convertPeer(own, pb, seen)
		if err != nil {
			*skipped = append(*skipped, Skipped{Entry: truncate(pb.GetWgPubKey()), Reason: err})
			continue
		}
		seen[p.Key] = struct{}{}
		out = append(out, p)
	}
	return out
}

func convertPeer(own wgtypes.Key, pb *mgmtpb.RemotePeerConfig, seen map[wgtypes.Key]struct{}) (RemotePeer, error) {
	key, err := nbcrypto.ParseKey(pb.GetWgPubKey())
	if err != nil {
		return RemotePeer{}, fmt.Errorf("%w: %w", ErrBadKey, err)
	}
	if key == own {
		return RemotePeer{}, ErrOwnKey
	}
	if _, dup := seen[key]; dup {
		return RemotePeer{}, ErrDuplicatePeer
	}
	ips := make([]netip.Prefix, 0, len(pb.GetAllowedIps()))
	for _, s := range pb.GetAllowedIps() {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return RemotePeer{}, fmt.Errorf("%w: %q: %w", ErrBadCIDR, truncate(s), err)
		}
		ips = append(ips, p.Masked())
	}
	return RemotePeer{
		Key:          key,
		AllowedIPs:   ips,
		FQDN:         pb.GetFqdn(),
		AgentVersion: pb.GetAgentVersion(),
	}, nil
}

// truncate bounds text taken from the wire before it is kept or logged.
func truncate(s string) string {
	if len(s) <= maxEntryText {
		return s
	}
	return s[:maxEntryText] + "…"
}
