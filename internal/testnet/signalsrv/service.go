package signalsrv

import (
	"context"

	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
)

// service implements signalpb.SignalExchangeServer for a Server; it is a
// separate type so that the RPC methods are not part of Server's API.
type service struct {
	signalpb.UnimplementedSignalExchangeServer
	s *Server
}

// Send routes msg to the stream of msg.remoteKey, or drops it when that peer
// is not connected. Either way the reply is an empty message.
func (v service) Send(_ context.Context, msg *signalpb.EncryptedMessage) (*signalpb.EncryptedMessage, error) {
	s := v.s
	s.sends.Add(1)
	st, tap := s.lookup(msg.GetRemoteKey())
	if tap != nil {
		tap(proto.Clone(msg).(*signalpb.EncryptedMessage))
	}
	switch {
	case st == nil:
		s.log.Debug("dropped: recipient not connected", zap.String("peer", short(msg.GetRemoteKey())))
	case !st.out.Push(msg):
		s.log.Warn("dropped: recipient queue full or closing", zap.String("peer", short(msg.GetRemoteKey())))
	}
	return &signalpb.EncryptedMessage{}, nil
}

// ConnectStream registers the caller under its peer id and delivers what Send
// routes to it until the client goes away, a newer stream replaces it, the
// test closes it, or the server stops. It never reads from the stream.
func (v service) ConnectStream(gs signalpb.SignalExchange_ConnectStreamServer) error {
	s := v.s
	ctx := gs.Context()
	md, _ := metadata.FromIncomingContext(ctx)
	ids := md.Get(HeaderPeerID)
	if len(ids) == 0 || ids[0] == "" {
		return errNoPeerID
	}
	key, err := nbcrypto.ParseKey(ids[0])
	if err != nil {
		return errBadPeerID
	}
	st := newPeerStream(key)
	s.register(st)
	defer s.deregister(st)
	log := s.log.With(zap.String("peer", nbcrypto.Fingerprint(key)))
	// Registered first, header second: a client that has seen the header
	// can be reached through Send.
	if err := gs.SendHeader(metadata.Pairs(HeaderRegistered, "1")); err != nil {
		st.out.Finish(err)
		return err
	}
	log.Debug("stream open")
	for {
		select {
		case <-ctx.Done():
			st.out.Finish(ctx.Err())
			log.Debug("stream gone", zap.NamedError("err", ctx.Err()))
			return status.FromContextError(ctx.Err()).Err()
		case <-st.out.Done():
			err := st.out.Err()
			log.Debug("stream ended", zap.NamedError("err", err))
			return err
		case <-st.out.Wake():
			for _, msg := range st.out.Take() {
				if err := gs.Send(msg); err != nil {
					st.out.Finish(err)
					log.Debug("stream send failed", zap.NamedError("err", err))
					return err
				}
			}
		}
	}
}

// short is a log label for a key given as text; never the whole key.
func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
