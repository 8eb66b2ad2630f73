package sigwire

import (
	"context"
	"net"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
)

// headerMode says how the fake answers ConnectStream.
type headerMode int

const (
	headerOK      headerMode = iota // x-wiretrustee-peer-registered: 1, then route
	headerMissing                   // end the stream with OK, no header
	headerWrong                     // x-wiretrustee-peer-registered: 0
	headerHold                      // never answer until the client gives up
	headerReject                    // FailedPrecondition
)

// fakeSignal is a hand-written signal server: it routes Send by remoteKey to
// the stream registered under that key, like the real one, and lets a test
// inject raw messages or end streams.
type fakeSignal struct {
	signalpb.UnimplementedSignalExchangeServer
	mode headerMode

	mu      sync.Mutex
	streams map[string]*fakePeer // guarded by mu
	joined  chan string          // ids of registered streams, for the test
}

type fakePeer struct {
	out  chan *signalpb.EncryptedMessage
	kick chan struct{}
}

// startFakeSignal serves a fakeSignal on 127.0.0.1 until the test ends.
func startFakeSignal(t *testing.T, mode headerMode) (*fakeSignal, string) {
	t.Helper()
	f := &fakeSignal{mode: mode, streams: map[string]*fakePeer{}, joined: make(chan string, 16)}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	signalpb.RegisterSignalExchangeServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(lis) }()
	t.Cleanup(func() { srv.Stop(); <-done })
	return f, lis.Addr().String()
}

func (f *fakeSignal) ConnectStream(st grpc.BidiStreamingServer[signalpb.EncryptedMessage, signalpb.EncryptedMessage]) error {
	md, _ := metadata.FromIncomingContext(st.Context())
	ids := md.Get(HeaderPeerID)
	if len(ids) != 1 {
		return status.Error(codes.FailedPrecondition, "missing peer id")
	}
	switch f.mode {
	case headerReject:
		return status.Error(codes.FailedPrecondition, "rejected")
	case headerMissing:
		return nil
	case headerHold:
		<-st.Context().Done()
		return nil
	case headerWrong:
		return st.SendHeader(metadata.Pairs(HeaderRegistered, "0"))
	}
	if err := st.SendHeader(metadata.Pairs(HeaderRegistered, "1")); err != nil {
		return err
	}
	p := &fakePeer{out: make(chan *signalpb.EncryptedMessage, 64), kick: make(chan struct{})}
	f.mu.Lock()
	f.streams[ids[0]] = p
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		if f.streams[ids[0]] == p {
			delete(f.streams, ids[0])
		}
		f.mu.Unlock()
	}()
	f.joined <- ids[0]
	for {
		select {
		case <-st.Context().Done():
			return nil
		case <-p.kick:
			return status.Error(codes.Unavailable, "kicked")
		case m := <-p.out:
			if err := st.Send(m); err != nil {
				return err
			}
		}
	}
}

// Send routes by remoteKey; a message to a peer without a stream is dropped.
func (f *fakeSignal) Send(_ context.Context, m *signalpb.EncryptedMessage) (*signalpb.EncryptedMessage, error) {
	f.inject(m.GetRemoteKey(), m)
	return &signalpb.EncryptedMessage{}, nil
}

// inject delivers m to the stream of id, if there is one.
func (f *fakeSignal) inject(id string, m *signalpb.EncryptedMessage) {
	f.mu.Lock()
	p := f.streams[id]
	f.mu.Unlock()
	if p != nil {
		p.out <- m
	}
}

// kick ends the stream of id with Unavailable.
func (f *fakeSignal) kick(id string) {
	f.mu.Lock()
	p := f.streams[id]
	f.mu.Unlock()
	if p != nil {
		close(p.kick)
	}
}
