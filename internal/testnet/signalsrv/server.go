package signalsrv

import (
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
	"github.com/nbfsm/nbfsm/internal/testnet/grpchost"
)

// Metadata headers of ConnectStream (PROTOCOL.md §4).
const (
	HeaderPeerID     = "x-wiretrustee-peer-id"
	HeaderRegistered = "x-wiretrustee-peer-registered"
)

// queueLimit bounds the messages waiting for one slow recipient.
const queueLimit = 4096

// Config configures a Server.
type Config struct {
	Logger *zap.Logger // nil → zap.NewNop()
	Addr   string      // "" → "127.0.0.1:0"
}

// Server is a signal server that can be stopped and started again on the same
// port. All methods are safe for concurrent use.
type Server struct {
	log  *zap.Logger
	host *grpchost.Host

	sends atomic.Int64

	mu      sync.Mutex
	streams map[string]*peerStream // by peer id (base64 public key)
	tap     func(*signalpb.EncryptedMessage)
	changed chan struct{} // closed and replaced when a stream comes or goes
}

// New returns a stopped server; call Start.
func New(cfg Config) *Server {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("signal")
	s := &Server{log: log, streams: make(map[string]*peerStream), changed: make(chan struct{})}
	s.host = grpchost.New(cfg.Addr, log, func(g *grpc.Server) {
		signalpb.RegisterSignalExchangeServer(g, service{s: s})
	})
	// Official signal servers ping every client connection every 5 s: a
	// connected idle client pays for that, so the test network's does too.
	s.host.SetServerPings(true)
	return s
}

// Start listens (on the same port as before, after a Stop) and serves.
func (s *Server) Start() error { return s.host.Start() }

// Stop closes the listener and every stream (clients see Unavailable) and
// returns once every handler has returned.
func (s *Server) Stop() { s.host.Stop() }

// Addr is "127.0.0.1:PORT", also while stopped (the port Start reuses).
func (s *Server) Addr() string { return s.host.Addr() }

// CloseStreams ends every open stream with Unavailable; the server keeps
// serving and clients may reconnect at once.
func (s *Server) CloseStreams() {
	s.mu.Lock()
	all := make([]*peerStream, 0, len(s.streams))
	for _, st := range s.streams {
		all = append(all, st)
	}
	s.mu.Unlock()
	for _, st := range all {
		st.out.Finish(errClosedTest)
	}
}

// Connected lists the peers with an open stream, sorted by key text.
func (s *Server) Connected() []wgtypes.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.streams))
	for id := range s.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	keys := make([]wgtypes.Key, 0, len(ids))
	for _, id := range ids {
		keys = append(keys, s.streams[id].key)
	}
	return keys
}

// Changed returns a channel closed at the next stream registered or
// removed: a test takes it, reads Connected, and waits on it if that is not
// what it waits for yet.
func (s *Server) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// changedLocked wakes the waiters of Changed (s.mu held).
func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Sends counts Send calls since New, delivered or not.
func (s *Server) Sends() int { return int(s.sends.Load()) }

// Tap sets a function that sees a copy of every message given to Send, before
// routing, on the caller's goroutine; nil removes it. It must not block long.
func (s *Server) Tap(f func(*signalpb.EncryptedMessage)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tap = f
}

// register makes st the stream of its peer and ends the one it replaces.
func (s *Server) register(st *peerStream) {
	s.mu.Lock()
	old := s.streams[st.id]
	s.streams[st.id] = st
	s.changedLocked()
	s.mu.Unlock()
	if old != nil {
		old.out.Finish(errReplaced)
		s.log.Debug("stream replaced", zap.String("peer", nbcrypto.Fingerprint(st.key)))
	}
}

// deregister removes st unless a newer stream has replaced it already.
func (s *Server) deregister(st *peerStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[st.id] == st {
		delete(s.streams, st.id)
		s.changedLocked()
	}
}

func (s *Server) lookup(id string) (*peerStream, func(*signalpb.EncryptedMessage)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.streams[id], s.tap
}

// peerStream is one open ConnectStream: who it belongs to and its outbox.
type peerStream struct {
	id  string
	key wgtypes.Key
	out *grpchost.Outbox[*signalpb.EncryptedMessage]
}

func newPeerStream(key wgtypes.Key) *peerStream {
	return &peerStream{id: key.String(), key: key, out: grpchost.NewOutbox[*signalpb.EncryptedMessage](queueLimit)}
}
