package peerfsm

import (
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeNetConn is a net.Conn that does nothing, standing for a relayed
// agent's connection in table tests.
type fakeNetConn struct{}

func (fakeNetConn) Read([]byte) (int, error)         { return 0, net.ErrClosed }
func (fakeNetConn) Write(b []byte) (int, error)      { return len(b), nil }
func (fakeNetConn) Close() error                     { return nil }
func (fakeNetConn) LocalAddr() net.Addr              { return &net.UDPAddr{} }
func (fakeNetConn) RemoteAddr() net.Addr             { return &net.UDPAddr{} }
func (fakeNetConn) SetDeadline(time.Time) error      { return nil }
func (fakeNetConn) SetReadDeadline(time.Time) error  { return nil }
func (fakeNetConn) SetWriteDeadline(time.Time) error { return nil }
