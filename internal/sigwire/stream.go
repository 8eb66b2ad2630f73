package sigwire

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
)

// Stream is an open receive stream. One goroutine calls Recv; Close may be
// called from any goroutine, any number of times.
type Stream struct {
	c      *Client
	st     grpc.BidiStreamingClient[signalpb.EncryptedMessage, signalpb.EncryptedMessage]
	ctx    context.Context
	cancel context.CancelFunc
}

// Connect opens the receive stream: ConnectStream with our public key in
// the x-wiretrustee-peer-id header. It waits for the server's response
// header and fails with ErrNotRegistered unless it says
// x-wiretrustee-peer-registered: 1. The stream lives until ctx is
// cancelled, Close is called, or the server or the connection ends it; a
// newer stream for the same key replaces it on the server.
func (c *Client) Connect(ctx context.Context) (*Stream, error) {
	if c.once.Closed() {
		return nil, ErrClosed
	}
	sctx, cancel := context.WithCancel(ctx)
	sctx = metadata.AppendToOutgoingContext(sctx, HeaderPeerID, c.dec.pubText)
	st, err := c.rpc.ConnectStream(sctx)
	if err != nil {
		cancel()
		return nil, classify(ctx, "connect", err)
	}
	md, err := st.Header()
	if err == nil && md == nil {
		// The stream ended before any header: the status is in Recv.
		if _, err = st.Recv(); err == nil || errors.Is(err, io.EOF) {
			err = fmt.Errorf("signal: connect: %w: stream ended without header", ErrNotRegistered)
		} else {
			err = classify(ctx, "connect", err)
		}
		cancel()
		return nil, err
	}
	if err != nil {
		cancel()
		return nil, classify(ctx, "connect", err)
	}
	if v := md.Get(HeaderRegistered); len(v) != 1 || v[0] != "1" {
		cancel()
		return nil, fmt.Errorf("signal: connect: %w: header %s = %q", ErrNotRegistered, HeaderRegistered, v)
	}
	// Never CloseSend: some servers end the stream when they read EOF.
	return &Stream{c: c, st: st, ctx: sctx, cancel: cancel}, nil
}

// Recv blocks until the next valid message. Messages that fail Decode are
// counted per reason, logged (at most once per 10 s per reason) and skipped.
// When the stream ends, Recv returns an error wrapping ErrStreamClosed and
// its classified cause; the stream is then done and Recv keeps failing.
func (s *Stream) Recv() (Message, error) {
	for {
		em, err := s.st.Recv()
		if err != nil {
			err = classifyStream(s.ctx, err) // before cancel, which would mask the cause
			s.cancel()
			return Message{}, err
		}
		m, err := s.c.dec.decode(em, s.c.accept)
		if err != nil {
			reason := reasonOf(err)
			s.c.stats.count(reason)
			if reason != reasonIgnored {
				s.c.bad.Warn(reason, "unexpected signal message dropped", zap.NamedError("err", err))
			}
			continue
		}
		s.c.stats.in.Add(1)
		return m, nil
	}
}

// Close ends the stream; a blocked Recv returns ErrStreamClosed.
func (s *Stream) Close() { s.cancel() }
