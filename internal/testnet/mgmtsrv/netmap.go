package mgmtsrv

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/testnet/grpchost"
)

// Overlay is the network peers get their addresses from (NetBird's CGNAT
// range); PeerConfig.address carries its prefix length.
var Overlay = netip.MustParsePrefix("100.64.0.0/10")

// OverlayV6 is the IPv6 overlay (fd00::/8, unique local): a peer that
// declares capability 2 (IPv6 overlay) gets the address with the same host
// number as its IPv4 one, in PeerConfig.address_v6 with this prefix, and
// its /128 is in the others' allowed IPs.
var OverlayV6 = netip.MustParsePrefix("fd00:6e62:6673::/64")

// v6Of is the IPv6 overlay address of the peer with IPv4 overlay address a.
func v6Of(a netip.Addr) netip.Addr {
	n := binary.BigEndian.Uint32(a.AsSlice()) - binary.BigEndian.Uint32(Overlay.Addr().AsSlice())
	b := OverlayV6.Addr().As16()
	binary.BigEndian.PutUint32(b[12:], n)
	return netip.AddrFrom16(b)
}

// hasV6 tells whether the peer declared capability 2.
func (p *peer) hasV6() bool {
	return slices.Contains(p.meta.GetCapabilities(), mgmtpb.PeerCapability_PeerCapabilityIPv6Overlay)
}

// outboxLimit bounds the messages waiting for one slow Sync client; past it
// the stream ends (the client reconnects and gets the full state).
const outboxLimit = 1024

// peer is one registered peer.
type peer struct {
	key   wgtypes.Key
	addr  netip.Addr
	label string // DNS label, unique in the network
	meta  *mgmtpb.PeerSystemMeta
}

func (p *peer) hostname() string { return p.meta.GetHostname() }

// registry holds the registered peers and hands out addresses and labels.
// It is guarded by Server.mu.
type registry struct {
	peers map[wgtypes.Key]*peer
	next  netip.Addr // next address to hand out; addresses are never reused
}

func newRegistry() registry {
	return registry{peers: make(map[wgtypes.Key]*peer), next: Overlay.Addr().Next()}
}

// add registers key with meta and gives it the next overlay address.
func (r *registry) add(key wgtypes.Key, meta *mgmtpb.PeerSystemMeta) (*peer, error) {
	addr := r.next
	if !Overlay.Contains(addr.Next()) { // keep the broadcast address free
		return nil, ErrAddressesExhausted
	}
	r.next = addr.Next()
	p := &peer{key: key, addr: addr, meta: meta}
	p.label = r.uniqueLabel(dnsLabel(meta.GetHostname()), p)
	r.peers[key] = p
	return p, nil
}

// update stores a newer meta; true when what others see of the peer changed.
func (r *registry) update(p *peer, meta *mgmtpb.PeerSystemMeta) bool {
	changed := p.meta.GetHostname() != meta.GetHostname() ||
		p.meta.GetNetbirdVersion() != meta.GetNetbirdVersion() ||
		p.hasV6() != (&peer{meta: meta}).hasV6()
	if p.meta.GetHostname() != meta.GetHostname() {
		p.label = r.uniqueLabel(dnsLabel(meta.GetHostname()), p)
	}
	p.meta = meta
	return changed
}

func (r *registry) remove(key wgtypes.Key) *peer {
	p := r.peers[key]
	delete(r.peers, key)
	return p
}

// sorted returns the peers in address order.
func (r *registry) sorted() []*peer {
	all := make([]*peer, 0, len(r.peers))
	for _, p := range r.peers {
		all = append(all, p)
	}
	slices.SortFunc(all, func(a, b *peer) int { return a.addr.Compare(b.addr) })
	return all
}

// uniqueLabel returns base, or base-N, not used by another peer than self.
func (r *registry) uniqueLabel(base string, self *peer) string {
	taken := func(l string) bool {
		for _, p := range r.peers {
			if p != self && p.label == l {
				return true
			}
		}
		return false
	}
	label := base
	for n := 1; taken(label); n++ {
		label = base + "-" + strconv.Itoa(n)
	}
	return label
}

// dnsLabel turns a hostname into a DNS label: lower case, [a-z0-9-], at most
// 63 characters, never empty.
func dnsLabel(host string) string {
	host, _, _ = strings.Cut(host, ".")
	var b strings.Builder
	for _, r := range strings.ToLower(host) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	label := strings.Trim(b.String(), "-")
	if len(label) > 58 { // room for a "-NNNN" suffix
		label = label[:58]
	}
	if label == "" {
		label = "peer"
	}
	return label
}

func (s *Server) fqdn(p *peer) string { return p.label + "." + s.domain }

func (s *Server) sees(a, b wgtypes.Key) bool {
	if s.topology == nil {
		return true
	}
	return s.topology(a, b)
}

// peerConfigLocked is p's own config: address with the overlay's prefix.
func (s *Server) peerConfigLocked(p *peer) *mgmtpb.PeerConfig {
	pc := &mgmtpb.PeerConfig{
		Address: netip.PrefixFrom(p.addr, Overlay.Bits()).String(),
		Fqdn:    s.fqdn(p),
	}
	if p.hasV6() {
		a := v6Of(p.addr).As16()
		pc.AddressV6 = append(a[:], byte(OverlayV6.Bits()))
	}
	return pc
}

// networkMapLocked is the network map of p at the current Serial.
func (s *Server) networkMapLocked(p *peer) *mgmtpb.NetworkMap {
	var remotes []*mgmtpb.RemotePeerConfig
	for _, q := range s.reg.sorted() {
		if q == p || !s.sees(p.key, q.key) {
			continue
		}
		allowed := []string{netip.PrefixFrom(q.addr, 32).String()}
		if q.hasV6() {
			allowed = append(allowed, netip.PrefixFrom(v6Of(q.addr), 128).String())
		}
		remotes = append(remotes, &mgmtpb.RemotePeerConfig{
			WgPubKey:     q.key.String(),
			AllowedIps:   allowed,
			Fqdn:         s.fqdn(q),
			AgentVersion: q.meta.GetNetbirdVersion(),
		})
	}
	nm := &mgmtpb.NetworkMap{
		Serial:             s.serial,
		PeerConfig:         s.peerConfigLocked(p),
		RemotePeers:        remotes,
		RemotePeersIsEmpty: len(remotes) == 0,
	}
	if s.firewall != nil {
		nm.FirewallRules = s.firewallRulesLocked(p)
		nm.FirewallRulesIsEmpty = len(nm.FirewallRules) == 0
	}
	return nm
}

// firewallRulesLocked asks the FirewallFunc for p's rules and, if p declared
// capability 1, fills sourcePrefixes from PeerIP (compact form: address
// bytes and prefix length), as NetBird's management does.
func (s *Server) firewallRulesLocked(p *peer) []*mgmtpb.FirewallRule {
	rules := s.firewall(s.peerInfoLocked(p), s.peerInfosLocked())
	prefixes := slices.Contains(p.meta.GetCapabilities(), mgmtpb.PeerCapability_PeerCapabilitySourcePrefixes)
	out := make([]*mgmtpb.FirewallRule, 0, len(rules))
	for _, r := range rules {
		r = proto.Clone(r).(*mgmtpb.FirewallRule)
		if a, err := netip.ParseAddr(r.GetPeerIP()); err == nil && prefixes && len(r.GetSourcePrefixes()) == 0 {
			bits := byte(a.BitLen())
			if a.IsUnspecified() {
				bits = 0
			}
			r.SourcePrefixes = [][]byte{append(a.AsSlice(), bits)}
		}
		out = append(out, r)
	}
	return out
}

// syncResponseLocked is the full state of p: config, peer config, network
// map, and the deprecated top-level copies official servers still fill.
func (s *Server) syncResponseLocked(p *peer) *mgmtpb.SyncResponse {
	nm := s.networkMapLocked(p)
	resp := &mgmtpb.SyncResponse{
		NetbirdConfig:      s.configLocked(),
		PeerConfig:         proto.Clone(nm.PeerConfig).(*mgmtpb.PeerConfig),
		RemotePeers:        cloneRemotes(nm.RemotePeers),
		RemotePeersIsEmpty: nm.RemotePeersIsEmpty,
		NetworkMap:         nm,
	}
	if len(s.checkFiles) > 0 {
		resp.Checks = []*mgmtpb.Checks{{Files: slices.Clone(s.checkFiles)}}
	}
	return resp
}

// changedLocked raises the Serial and pushes the new full state to every
// open stream.
func (s *Server) changedLocked(why string) {
	s.serial++
	s.log.Debug(fmt.Sprintf("network changed, serial %d", s.serial), zap.String("event", why))
	for key, st := range s.streams {
		p := s.reg.peers[key]
		if p == nil { // cannot happen: RemovePeer ends the stream
			s.log.Warn("unexpected stream of an unregistered peer", zap.String("peer", nbcrypto.Fingerprint(key)))
			continue
		}
		s.pushLocked(st, s.syncResponseLocked(p))
	}
}

// pushLocked queues resp on st; a stream whose client does not keep up ends.
func (s *Server) pushLocked(st *syncStream, resp *mgmtpb.SyncResponse) {
	if st.out.Push(resp) {
		return
	}
	st.out.Finish(errSlowSyncClient)
	if s.streams[st.key] == st {
		delete(s.streams, st.key)
	}
	s.log.Warn("sync client too slow, stream closed", zap.String("peer", nbcrypto.Fingerprint(st.key)))
}

// syncStream is one open Sync stream and its outbox.
type syncStream struct {
	key wgtypes.Key
	out *grpchost.Outbox[*mgmtpb.SyncResponse]
}

func newSyncStream(key wgtypes.Key) *syncStream {
	return &syncStream{key: key, out: grpchost.NewOutbox[*mgmtpb.SyncResponse](outboxLimit)}
}

func cloneRemotes(in []*mgmtpb.RemotePeerConfig) []*mgmtpb.RemotePeerConfig {
	out := make([]*mgmtpb.RemotePeerConfig, len(in))
	for i, r := range in {
		out[i] = proto.Clone(r).(*mgmtpb.RemotePeerConfig)
	}
	return out
}

// compareKeys orders keys by their base64 text, as the signal server does.
func compareKeys(a, b wgtypes.Key) int { return strings.Compare(a.String(), b.String()) }
