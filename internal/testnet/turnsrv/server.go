package turnsrv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"sync"

	"github.com/pion/turn/v2"
	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/internal/testnet/grpchost"
)

// Defaults of Config.
const (
	DefaultAddr  = "127.0.0.1:0"
	DefaultUser  = "nbfsm"
	DefaultRealm = "nbfsm.test"
)

// defaultRelayIP is where relays are allocated when the server listens on
// the unspecified address.
var defaultRelayIP = net.IPv4(127, 0, 0, 1)

// relayIPFor is the address of every relay the server allocates: the one it
// listens on, so that peers that reach the server reach its relays too.
func relayIPFor(a net.Addr) net.IP {
	if u, ok := a.(*net.UDPAddr); ok && u.IP != nil && !u.IP.IsUnspecified() {
		return u.IP
	}
	return defaultRelayIP
}

// Config configures a Server.
type Config struct {
	Logger   *zap.Logger // nil → zap.NewNop()
	Addr     string      // "" → DefaultAddr (UDP); relays are allocated on its IP
	User     string      // "" → DefaultUser
	Password string      // "" → random
	Realm    string      // "" → DefaultRealm
}

// Server is a running STUN/TURN server.
type Server struct {
	log   *zap.Logger
	turn  *turn.Server
	conn  *trackedConn
	addr  string
	user  string
	pass  string
	realm string
}

// Start listens on cfg.Addr and serves until Close.
func Start(cfg Config) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("turn")
	s := &Server{log: log, user: cfg.User, pass: cfg.Password, realm: cfg.Realm}
	if s.user == "" {
		s.user = DefaultUser
	}
	if s.pass == "" {
		var b [12]byte
		_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
		s.pass = hex.EncodeToString(b[:])
	}
	if s.realm == "" {
		s.realm = DefaultRealm
	}
	addr := cfg.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	pc, err := grpchost.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		return nil, fmt.Errorf("turnsrv: %w", err)
	}
	s.conn = newTrackedConn(pc)
	s.addr = pc.LocalAddr().String()
	relayIP := relayIPFor(pc.LocalAddr())
	key := turn.GenerateAuthKey(s.user, s.realm, s.pass)
	s.turn, err = turn.NewServer(turn.ServerConfig{
		Realm:         s.realm,
		LoggerFactory: zapFactory{log: log},
		AuthHandler: func(user, realm string, src net.Addr) ([]byte, bool) {
			if user != s.user || realm != s.realm {
				log.Debug("unknown TURN user", zap.String("endpoint", src.String()))
				return nil, false
			}
			return key, true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: s.conn,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: relayIP,
				Address:      relayIP.String(),
			},
		}},
	})
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("turnsrv: %w", err)
	}
	log.Info("serving", zap.String("endpoint", s.addr))
	return s, nil
}

// Addr is "127.0.0.1:PORT" (the host of Config.Addr).
func (s *Server) Addr() string { return s.addr }

// STUNURI is "stun:127.0.0.1:PORT".
func (s *Server) STUNURI() string { return "stun:" + s.addr }

// TURNURI is "turn:127.0.0.1:PORT?transport=udp".
func (s *Server) TURNURI() string { return "turn:" + s.addr + "?transport=udp" }

// Credentials are the static TURN user and password.
func (s *Server) Credentials() (user, pass string) { return s.user, s.pass }

// Realm is the TURN realm.
func (s *Server) Realm() string { return s.realm }

// Allocations counts the live relay allocations.
func (s *Server) Allocations() int { return s.turn.AllocationCount() }

// Close stops the server and its relays. It returns once the server's read
// loop has ended; pion then closes the allocations on that goroutine's way out.
func (s *Server) Close() error {
	err := s.turn.Close()
	<-s.conn.ended
	return err
}

// trackedConn tells when the read loop has seen the socket closed, so Close
// can wait for pion's goroutine instead of guessing.
type trackedConn struct {
	net.PacketConn
	once  sync.Once
	ended chan struct{}
}

func newTrackedConn(pc net.PacketConn) *trackedConn {
	return &trackedConn{PacketConn: pc, ended: make(chan struct{})}
}

func (c *trackedConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if err != nil {
		c.once.Do(func() { close(c.ended) })
	}
	return n, addr, err
}
