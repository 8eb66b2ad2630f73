package mgmtsrv

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// serverKeyLifetime is what ServerKeyResponse.expiresAt claims; clients
// ignore it (PROTOCOL.md §2), but official servers fill it.
const serverKeyLifetime = 24 * time.Hour

// service implements mgmtpb.ManagementServiceServer for a Server; it is a
// separate type so that the RPC methods are not part of Server's API.
type service struct {
	mgmtpb.UnimplementedManagementServiceServer
	s *Server
}

func (v service) GetServerKey(context.Context, *mgmtpb.Empty) (*mgmtpb.ServerKeyResponse, error) {
	return &mgmtpb.ServerKeyResponse{
		Key:       v.s.ServerKey().String(),
		ExpiresAt: timestamppb.New(time.Now().Add(serverKeyLifetime)),
	}, nil
}

func (v service) IsHealthy(context.Context, *mgmtpb.Empty) (*mgmtpb.Empty, error) {
	return &mgmtpb.Empty{}, nil
}

// Login logs in a registered peer or registers a new one with a setup key.
func (v service) Login(_ context.Context, req *mgmtpb.EncryptedMessage) (*mgmtpb.EncryptedMessage, error) {
	s := v.s
	s.logins.Add(1)
	s.mu.Lock()
	refuse, priv := s.refuse, s.priv
	s.mu.Unlock()
	if refuse != codes.OK {
		return nil, status.Error(refuse, "management: login refused by the test network")
	}
	var login mgmtpb.LoginRequest
	key, err := openRequest(priv, req, &login)
	if err != nil {
		return nil, err
	}
	if err := checkMeta(login.GetMeta()); err != nil {
		return nil, err
	}
	log := s.log.With(zap.String("peer", nbcrypto.Fingerprint(key)))

	s.mu.Lock()
	p := s.reg.peers[key]
	switch {
	case p != nil:
		if s.reg.update(p, login.GetMeta()) {
			s.changedLocked("peer meta changed")
		}
		log.Debug("login")
	case login.GetSetupKey() == "":
		s.mu.Unlock()
		log.Debug("login refused: not registered")
		return nil, errNotRegistered
	case s.refuseReg != codes.OK:
		code := s.refuseReg
		s.mu.Unlock()
		log.Info("registration refused by the test network", zap.Stringer("code", code))
		return nil, refusal(code)
	case !s.setupKeys[login.GetSetupKey()]:
		s.mu.Unlock()
		log.Info("registration refused: bad setup key")
		return nil, errBadSetupKey
	default:
		p, err = s.reg.add(key, login.GetMeta())
		if err != nil {
			s.mu.Unlock()
			log.Warn("registration failed", zap.NamedError("err", err))
			return nil, errNoAddress
		}
		log.Info("peer registered as " + p.addr.String())
		s.changedLocked("peer registered")
	}
	resp := &mgmtpb.LoginResponse{
		NetbirdConfig: s.configLocked(),
		PeerConfig:    s.peerConfigLocked(p),
	}
	if len(s.checkFiles) > 0 {
		resp.Checks = []*mgmtpb.Checks{{Files: slices.Clone(s.checkFiles)}}
	}
	s.mu.Unlock()
	return seal(priv, key, resp)
}

// Logout deregisters the calling peer, as NetBird's management does for
// `netbird logout`: the peer is removed and the others get a new map.
func (v service) Logout(_ context.Context, req *mgmtpb.EncryptedMessage) (*mgmtpb.Empty, error) {
	s := v.s
	s.mu.Lock()
	priv := s.priv
	s.mu.Unlock()
	key, err := openRequest(priv, req, &mgmtpb.Empty{})
	if err != nil {
		return nil, err
	}
	if err := s.RemovePeer(key); err != nil {
		return nil, errNotRegistered
	}
	return &mgmtpb.Empty{}, nil
}

// SyncMeta stores a registered peer's new meta (PROTOCOL.md §3).
func (v service) SyncMeta(_ context.Context, req *mgmtpb.EncryptedMessage) (*mgmtpb.Empty, error) {
	s := v.s
	s.mu.Lock()
	priv := s.priv
	s.mu.Unlock()
	var sm mgmtpb.SyncMetaRequest
	key, err := openRequest(priv, req, &sm)
	if err != nil {
		return nil, err
	}
	if err := checkMeta(sm.GetMeta()); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.reg.peers[key]
	if p == nil {
		return nil, errNotRegistered
	}
	s.metaSyncs++
	if s.metaSynced != nil {
		close(s.metaSynced)
		s.metaSynced = nil
	}
	if s.reg.update(p, sm.GetMeta()) {
		s.changedLocked("peer meta changed")
	}
	return &mgmtpb.Empty{}, nil
}

// Sync validates the request like Login, then streams the peer's full state
// and every later change until the client goes away, a newer Sync of the
// same peer replaces it, the test ends it, or the server stops.
func (v service) Sync(req *mgmtpb.EncryptedMessage, ss mgmtpb.ManagementService_SyncServer) error {
	s := v.s
	s.syncs.Add(1)
	s.mu.Lock()
	priv := s.priv
	s.mu.Unlock()
	var sync mgmtpb.SyncRequest
	key, err := openRequest(priv, req, &sync)
	if err != nil {
		return err
	}
	if err := checkMeta(sync.GetMeta()); err != nil {
		return err
	}
	log := s.log.With(zap.String("peer", nbcrypto.Fingerprint(key)))

	st := newSyncStream(key)
	s.mu.Lock()
	p := s.reg.peers[key]
	if p == nil {
		s.mu.Unlock()
		log.Debug("sync refused: not registered")
		return errNotRegistered
	}
	if old := s.streams[key]; old != nil {
		old.out.Finish(errReplaced)
	}
	s.streams[key] = st
	if s.reg.update(p, sync.GetMeta()) {
		s.changedLocked("peer meta changed") // queues the full state on st too
	} else {
		st.out.Push(s.syncResponseLocked(p))
	}
	s.mu.Unlock()
	defer s.dropStream(st)
	log.Debug("sync open")

	ctx := ss.Context()
	serverPub := priv.PublicKey().String()
	for {
		select {
		case <-ctx.Done():
			st.out.Finish(ctx.Err())
			log.Debug("sync gone", zap.NamedError("err", ctx.Err()))
			return status.FromContextError(ctx.Err()).Err()
		case <-st.out.Done():
			err := st.out.Err()
			log.Debug("sync ended", zap.NamedError("err", err))
			return err
		case <-st.out.Wake():
			for _, resp := range st.out.Take() {
				body, err := nbcrypto.Seal(priv, key, resp)
				if err != nil {
					st.out.Finish(err)
					log.Warn("unexpected seal failure", zap.NamedError("err", err))
					return status.Error(codes.Internal, "management: cannot seal sync response")
				}
				if err := ss.Send(&mgmtpb.EncryptedMessage{WgPubKey: serverPub, Body: body}); err != nil {
					st.out.Finish(err)
					log.Debug("sync send failed", zap.NamedError("err", err))
					return err
				}
			}
		}
	}
}

// dropStream forgets st unless a newer stream of the same peer replaced it.
func (s *Server) dropStream(st *syncStream) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams[st.key] == st {
		delete(s.streams, st.key)
	}
}

// openRequest parses the sender's key and opens the body into msg.
func openRequest(priv wgtypes.Key, req *mgmtpb.EncryptedMessage, msg proto.Message) (wgtypes.Key, error) {
	key, err := nbcrypto.ParseKey(req.GetWgPubKey())
	if err != nil {
		return wgtypes.Key{}, errBadPeerKey
	}
	if err := nbcrypto.Open(priv, key, req.GetBody(), msg); err != nil {
		return wgtypes.Key{}, errBadBody
	}
	return key, nil
}

// checkMeta applies NetBird's rules to the meta of Login and Sync.
func checkMeta(meta *mgmtpb.PeerSystemMeta) error {
	switch {
	case meta == nil:
		return errNoMeta
	case meta.GetHostname() == "":
		return errNoHostname
	}
	return nil
}

// seal wraps a reply for the peer.
func seal(priv, peer wgtypes.Key, msg proto.Message) (*mgmtpb.EncryptedMessage, error) {
	body, err := nbcrypto.Seal(priv, peer, msg)
	if err != nil {
		return nil, status.Error(codes.Internal, "management: cannot seal reply")
	}
	return &mgmtpb.EncryptedMessage{WgPubKey: priv.PublicKey().String(), Body: body}, nil
}
