package mgmt

import (
	"context"
	"net"
	"sync"
	"testing"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

const testSetupKey = "A2C8E62B-38F5-4553-B31E-DD66C696CEBB"

// fakeMgmt is a hand-written management server with the registration rules
// of PROTOCOL.md §3. A test drives Sync by pushing messages into syncOut.
type fakeMgmt struct {
	mgmtpb.UnimplementedManagementServiceServer
	priv wgtypes.Key // server key

	mu         sync.Mutex
	registered map[string]bool // guarded by mu
	logins     []*mgmtpb.LoginRequest
	failWith   error // guarded by mu: every call fails with it
	hold       bool  // guarded by mu: calls wait for the client to give up
	// Broken replies, guarded by mu.
	keyText      string       // GetServerKey answers this instead of the key
	replyPriv    *wgtypes.Key // Login replies are sealed with this key instead
	noPeerConfig bool         // Login replies carry no peer config

	syncOut   chan *mgmtpb.EncryptedMessage // messages for the open Sync stream
	syncEnd   chan error                    // ends the open Sync stream with this status
	syncReady chan struct{}                 // a Sync stream opened
}

func startFakeMgmt(t *testing.T) (*fakeMgmt, string) {
	t.Helper()
	f := &fakeMgmt{
		priv:       key(0x5e),
		registered: map[string]bool{},
		syncOut:    make(chan *mgmtpb.EncryptedMessage, 16),
		syncEnd:    make(chan error, 1),
		syncReady:  make(chan struct{}, 4),
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	mgmtpb.RegisterManagementServiceServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f, "http://" + lis.Addr().String()
}

func (f *fakeMgmt) gate(ctx context.Context) error {
	f.mu.Lock()
	err, hold := f.failWith, f.hold
	f.mu.Unlock()
	if hold {
		<-ctx.Done()
		return ctx.Err()
	}
	return err
}

func (f *fakeMgmt) GetServerKey(ctx context.Context, _ *mgmtpb.Empty) (*mgmtpb.ServerKeyResponse, error) {
	if err := f.gate(ctx); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.keyText != "" {
		return &mgmtpb.ServerKeyResponse{Key: f.keyText}, nil
	}
	return &mgmtpb.ServerKeyResponse{Key: f.priv.PublicKey().String()}, nil
}

// open opens a peer's request the way the real server does.
func (f *fakeMgmt) open(em *mgmtpb.EncryptedMessage, msg proto.Message) (wgtypes.Key, error) {
	peer, err := nbcrypto.ParseKey(em.GetWgPubKey())
	if err != nil {
		return wgtypes.Key{}, status.Error(codes.InvalidArgument, "bad key")
	}
	if err := nbcrypto.Open(f.priv, peer, em.GetBody(), msg); err != nil {
		return wgtypes.Key{}, status.Error(codes.InvalidArgument, "invalid request message")
	}
	return peer, nil
}

func (f *fakeMgmt) seal(peer wgtypes.Key, msg proto.Message) *mgmtpb.EncryptedMessage {
	body, err := nbcrypto.Seal(f.priv, peer, msg)
	if err != nil {
		panic(err) // test server only
	}
	return &mgmtpb.EncryptedMessage{WgPubKey: f.priv.PublicKey().String(), Body: body}
}

func (f *fakeMgmt) Login(ctx context.Context, em *mgmtpb.EncryptedMessage) (*mgmtpb.EncryptedMessage, error) {
	if err := f.gate(ctx); err != nil {
		return nil, err
	}
	var req mgmtpb.LoginRequest
	peer, err := f.open(em, &req)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.logins = append(f.logins, &req)
	switch {
	case req.GetMeta() == nil:
		return nil, status.Error(codes.FailedPrecondition, "no meta")
	case req.GetMeta().GetHostname() == "":
		return nil, status.Error(codes.Internal, "empty hostname")
	case f.registered[peer.String()]:
	case req.GetSetupKey() == "":
		return nil, status.Error(codes.PermissionDenied, "peer is not registered")
	case req.GetSetupKey() != testSetupKey:
		return nil, status.Error(codes.NotFound, "setup key not found")
	default:
		f.registered[peer.String()] = true
	}
	resp := &mgmtpb.LoginResponse{
		NetbirdConfig: &mgmtpb.NetbirdConfig{Signal: &mgmtpb.HostConfig{Uri: "127.0.0.1:10000", Protocol: mgmtpb.HostConfig_HTTP}},
		PeerConfig:    ownConfig,
	}
	if f.noPeerConfig {
		resp.PeerConfig = nil
	}
	if f.replyPriv != nil {
		body, _ := nbcrypto.Seal(*f.replyPriv, peer, resp)
		return &mgmtpb.EncryptedMessage{Body: body}, nil
	}
	return f.seal(peer, resp), nil
}

func (f *fakeMgmt) Sync(em *mgmtpb.EncryptedMessage, st grpc.ServerStreamingServer[mgmtpb.EncryptedMessage]) error {
	if err := f.gate(st.Context()); err != nil {
		return err
	}
	var req mgmtpb.SyncRequest
	peer, err := f.open(em, &req)
	if err != nil {
		return err
	}
	f.mu.Lock()
	ok := f.registered[peer.String()]
	f.mu.Unlock()
	if !ok {
		return status.Error(codes.PermissionDenied, "peer is not registered")
	}
	f.syncReady <- struct{}{}
	for {
		select {
		case <-st.Context().Done():
			return nil
		case err := <-f.syncEnd:
			return err
		case m := <-f.syncOut:
			if err := st.Send(m); err != nil {
				return err
			}
		}
	}
}

// push sends a SyncResponse, sealed to peer, on the open stream.
func (f *fakeMgmt) push(peer wgtypes.Key, resp *mgmtpb.SyncResponse) {
	f.syncOut <- f.seal(peer, resp)
}

func (f *fakeMgmt) set(failWith error, hold bool) {
	f.mu.Lock()
	f.failWith, f.hold = failWith, hold
	f.mu.Unlock()
}
