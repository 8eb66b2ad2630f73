package mgmtsrv

import (
	"crypto/rand"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/relay"
	"github.com/nbfsm/nbfsm/internal/testnet/grpchost"
)

// DefaultDNSDomain is the domain of peer FQDNs (NetBird's self-hosted default).
const DefaultDNSDomain = "netbird.selfhosted"

// Config configures a Server.
type Config struct {
	Logger *zap.Logger // nil → zap.NewNop()
	Addr   string      // "" → "127.0.0.1:0"
	// SetupKeys are the valid, reusable setup keys; more can be added later.
	SetupKeys []string
	// Topology: a sees b iff Topology(a, b). nil → all-to-all.
	Topology func(a, b wgtypes.Key) bool
	// NetbirdConfig is handed out in every LoginResponse and SyncResponse
	// (signal, STUN, TURN). nil → none.
	NetbirdConfig *mgmtpb.NetbirdConfig
	// DNSDomain of the peers' FQDNs; "" → DefaultDNSDomain.
	DNSDomain string
	// Relay, when it has URLs, is handed out as NetbirdConfig.relay with a
	// token signed with Relay.Secret at each Login and Sync.
	Relay Relay
}

// Relay is the NetBird relay service management hands out: its URLs, the
// shared secret tokens are signed with, and their lifetime (0 → 12 h, as
// NetBird's default; negative → already expired, for tests).
type Relay struct {
	URLs   []string
	Secret string
	TTL    time.Duration
}

// PeerInfo describes one registered peer.
type PeerInfo struct {
	Key      wgtypes.Key
	Address  netip.Addr
	Hostname string
	FQDN     string
	Version  string // meta.netbirdVersion of its last Login or Sync
}

// Server is a management server that can be stopped and started again on the
// same port; its registry, setup keys and Serial survive a restart, its
// server key does not. All methods are safe for concurrent use.
type Server struct {
	log    *zap.Logger
	host   *grpchost.Host
	domain string

	logins atomic.Int64
	syncs  atomic.Int64

	lifecycle sync.Mutex // serialises Start and Stop

	mu         sync.Mutex
	priv       wgtypes.Key // server key of the current (or last) run
	setupKeys  map[string]bool
	topology   func(a, b wgtypes.Key) bool
	nbConfig   *mgmtpb.NetbirdConfig
	relay      Relay
	refuse     codes.Code
	firewall   FirewallFunc
	refuseReg  codes.Code
	checkFiles []string      // posture checks' files handed out on Login
	metaSyncs  int           // SyncMeta calls accepted
	metaSynced chan struct{} // closed and replaced at every accepted SyncMeta
	reg        registry
	serial     uint64
	streams    map[wgtypes.Key]*syncStream
}

// New returns a stopped server; call Start.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("management")
	domain := cfg.DNSDomain
	if domain == "" {
		domain = DefaultDNSDomain
	}
	s := &Server{
		log:       log,
		domain:    domain,
		setupKeys: make(map[string]bool),
		topology:  cfg.Topology,
		nbConfig:  cloneConfig(cfg.NetbirdConfig),
		relay:     cfg.Relay,
		reg:       newRegistry(),
		streams:   make(map[wgtypes.Key]*syncStream),
	}
	for _, k := range cfg.SetupKeys {
		s.setupKeys[k] = true
	}
	s.host = grpchost.New(cfg.Addr, log, func(g *grpc.Server) {
		mgmtpb.RegisterManagementServiceServer(g, service{s: s})
	})
	return s
}

// Start generates a new server key, then listens (on the same port as
// before, after a Stop) and serves.
func (s *Server) Start() error {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	if s.host.Running() {
		return grpchost.ErrRunning
	}
	priv, err := nbcrypto.GenerateKey()
	if err != nil {
		return fmt.Errorf("mgmtsrv: server key: %w", err)
	}
	s.mu.Lock()
	s.priv = priv
	s.mu.Unlock()
	if err := s.host.Start(); err != nil {
		return err
	}
	s.log.Info("serving", zap.String("endpoint", s.host.Addr()),
		zap.String("peer", nbcrypto.Fingerprint(priv.PublicKey())))
	return nil
}

// Stop closes the listener and every stream (clients see Unavailable) and
// returns once every handler has returned.
func (s *Server) Stop() {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	s.host.Stop()
}

// Addr is "127.0.0.1:PORT", also while stopped (the port Start reuses).
func (s *Server) Addr() string { return s.host.Addr() }

// ServerKey is the public key of the current run (the last one while stopped).
func (s *Server) ServerKey() wgtypes.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.priv.PublicKey()
}

// Logins counts Login calls since New, whatever their outcome.
func (s *Server) Logins() int { return int(s.logins.Load()) }

// Syncs counts Sync calls since New, whatever their outcome.
func (s *Server) Syncs() int { return int(s.syncs.Load()) }

// Serial is the Serial of the latest network map.
func (s *Server) Serial() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serial
}

// CloseStreams ends every open Sync stream with Unavailable; the server keeps
// serving and clients may reconnect at once.
func (s *Server) CloseStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for key, st := range s.streams {
		st.out.Finish(errClosedTest)
		delete(s.streams, key)
	}
}

// RefuseLogins makes every Login fail with code (before anything else is
// checked); codes.OK accepts logins again. Sync is not affected.
func (s *Server) RefuseLogins(code codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuse = code
}

// RefuseRegistrations makes every registration (a Login of an unknown peer
// with a setup key, valid or not) fail with code, the way official
// management refuses a used-up or expired key: codes.NotFound, or
// codes.FailedPrecondition ("couldn't add peer: setup key is invalid") when
// it finds the key invalid late. Logins of registered peers are not
// affected; codes.OK accepts registrations again.
func (s *Server) RefuseRegistrations(code codes.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseReg = code
}

// SetPostureFiles makes every LoginResponse and full sync carry a posture
// check naming files (nil: none), as an account with file posture checks
// does; as when an account's checks change, every peer gets a new map.
func (s *Server) SetPostureFiles(files []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checkFiles = slices.Clone(files)
	s.changedLocked("posture checks changed")
}

// MetaSynced returns a channel closed at the next accepted SyncMeta call.
func (s *Server) MetaSynced() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.metaSynced == nil {
		s.metaSynced = make(chan struct{})
	}
	return s.metaSynced
}

// Meta returns the last meta key sent (Login, Sync or SyncMeta), nil if
// the peer is unknown, and how many SyncMeta calls were accepted in all.
func (s *Server) Meta(key wgtypes.Key) (*mgmtpb.PeerSystemMeta, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var m *mgmtpb.PeerSystemMeta
	if p := s.reg.peers[key]; p != nil {
		m = proto.Clone(p.meta).(*mgmtpb.PeerSystemMeta)
	}
	return m, s.metaSyncs
}

// AddSetupKey makes key a valid, reusable setup key.
func (s *Server) AddSetupKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setupKeys[key] = true
}

// RevokeSetupKey makes key invalid: registrations with it get NotFound.
// Peers registered with it stay registered.
func (s *Server) RevokeSetupKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.setupKeys, key)
}

// SetTopology replaces the topology (nil → all-to-all) and pushes a new
// network map to every open stream.
func (s *Server) SetTopology(f func(a, b wgtypes.Key) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.topology = f
	s.changedLocked("topology changed")
}

// FirewallFunc returns the firewall rules of peer's network map (NetworkMap
// field 8), given every registered peer in address order; it is called with
// the server's lock held and must not call the Server. Rules need only
// PeerIP: the server adds sourcePrefixes for peers that declare capability
// 1, as NetBird's management does.
type FirewallFunc func(peer PeerInfo, all []PeerInfo) []*mgmtpb.FirewallRule

// SetFirewall makes f the source of every network map's firewall rules
// (an empty result sets firewallRulesIsEmpty, as current management does)
// and pushes a new network map to every open stream. nil (the default) is
// a legacy server: neither rules nor the empty flag.
func (s *Server) SetFirewall(f FirewallFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.firewall = f
	s.changedLocked("firewall changed")
}

// SetNetbirdConfig replaces the config handed out and pushes it, without a
// network map, to every open stream (as NetBird does when, say, a relay token
// rotates).
func (s *Server) SetNetbirdConfig(c *mgmtpb.NetbirdConfig) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nbConfig = cloneConfig(c)
	for _, st := range s.streams {
		s.pushLocked(st, &mgmtpb.SyncResponse{NetbirdConfig: s.configLocked()})
	}
}

// SetRelay replaces the relay service handed out from now on (nothing is
// pushed; see RefreshRelayTokens).
func (s *Server) SetRelay(r Relay) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.relay = r
}

// RefreshRelayTokens pushes to every open stream a config-only SyncResponse
// whose NetbirdConfig carries only the relay with a freshly signed token, as
// NetBird's token manager does every TTL·3/4.
func (s *Server) RefreshRelayTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	rc := s.relayConfigLocked()
	if rc == nil {
		return
	}
	for _, st := range s.streams {
		s.pushLocked(st, &mgmtpb.SyncResponse{NetbirdConfig: &mgmtpb.NetbirdConfig{Relay: proto.Clone(rc).(*mgmtpb.RelayConfig)}})
	}
}

// relayConfigLocked signs a token for the relay service (nil: none).
func (s *Server) relayConfigLocked() *mgmtpb.RelayConfig {
	if len(s.relay.URLs) == 0 {
		return nil
	}
	ttl := s.relay.TTL
	if ttl == 0 {
		ttl = 12 * time.Hour
	}
	payload, sig := relay.Sign(s.relay.Secret, time.Now().Add(ttl))
	return &mgmtpb.RelayConfig{Urls: slices.Clone(s.relay.URLs), TokenPayload: payload, TokenSignature: sig}
}

// configLocked is the NetbirdConfig of a Login or full Sync: the configured
// one with the relay and a fresh token.
func (s *Server) configLocked() *mgmtpb.NetbirdConfig {
	c := cloneConfig(s.nbConfig)
	if rc := s.relayConfigLocked(); rc != nil {
		if c == nil {
			c = &mgmtpb.NetbirdConfig{}
		}
		c.Relay = rc
	}
	return c
}

// RemovePeer unregisters a peer: its Sync stream ends with PermissionDenied,
// its next Login without a setup key gets PermissionDenied, and every other
// open stream gets a new network map.
func (s *Server) RemovePeer(key wgtypes.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.reg.remove(key)
	if p == nil {
		return fmt.Errorf("%w: %s", ErrUnknownPeer, nbcrypto.Fingerprint(key))
	}
	if st := s.streams[key]; st != nil {
		st.out.Finish(errRemoved)
		delete(s.streams, key)
	}
	s.log.Info("peer removed", zap.String("peer", nbcrypto.Fingerprint(key)))
	s.changedLocked("peer removed")
	return nil
}

// Peers lists the registered peers in address order.
func (s *Server) Peers() []PeerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peerInfosLocked()
}

func (s *Server) peerInfosLocked() []PeerInfo {
	all := s.reg.sorted()
	out := make([]PeerInfo, 0, len(all))
	for _, p := range all {
		out = append(out, s.peerInfoLocked(p))
	}
	return out
}

func (s *Server) peerInfoLocked(p *peer) PeerInfo {
	return PeerInfo{Key: p.key, Address: p.addr, Hostname: p.hostname(), FQDN: s.fqdn(p), Version: p.meta.GetNetbirdVersion()}
}

// Connected lists the peers with an open Sync stream, in key order.
func (s *Server) Connected() []wgtypes.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]wgtypes.Key, 0, len(s.streams))
	for k := range s.streams {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b wgtypes.Key) int { return compareKeys(a, b) })
	return keys
}

// PushMap sends a crafted network map, as is (its Serial included), to the
// open Sync stream of peer. The SyncResponse carries the map and its
// deprecated top-level copies, and no NetbirdConfig.
func (s *Server) PushMap(peer wgtypes.Key, nm *mgmtpb.NetworkMap) error {
	nm = proto.Clone(nm).(*mgmtpb.NetworkMap)
	return s.PushSync(peer, &mgmtpb.SyncResponse{
		PeerConfig:         nm.GetPeerConfig(),
		RemotePeers:        nm.GetRemotePeers(),
		RemotePeersIsEmpty: nm.GetRemotePeersIsEmpty(),
		NetworkMap:         nm,
	})
}

// PushSync sends a crafted SyncResponse, as is, to the open Sync stream of
// peer.
func (s *Server) PushSync(peer wgtypes.Key, resp *mgmtpb.SyncResponse) error {
	resp = proto.Clone(resp).(*mgmtpb.SyncResponse)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[peer]
	if st == nil {
		return fmt.Errorf("%w: %s", ErrNotConnected, nbcrypto.Fingerprint(peer))
	}
	if !st.out.Push(resp) {
		return fmt.Errorf("%w: %s", ErrQueueFull, nbcrypto.Fingerprint(peer))
	}
	return nil
}

// NewSetupKey returns a random setup key in the form official clients accept
// (an upper-case UUID, version 4).
func NewSetupKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func cloneConfig(c *mgmtpb.NetbirdConfig) *mgmtpb.NetbirdConfig {
	if c == nil {
		return nil
	}
	return proto.Clone(c).(*mgmtpb.NetbirdConfig)
}
