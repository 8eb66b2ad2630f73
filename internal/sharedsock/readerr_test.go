package sharedsock

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"
)

// erringConn fails the first reads with errs, then reads the real socket.
type erringConn struct {
	batchConn
	errs []syscall.Errno
}

func (c *erringConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	if len(c.errs) > 0 {
		errno := c.errs[0]
		c.errs = c.errs[1:]
		return 0, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmmsg", errno)}
	}
	return c.batchConn.ReadBatch(ms, flags)
}

func repeat(errno syscall.Errno, n int) []syscall.Errno {
	out := make([]syscall.Errno, n)
	for i := range out {
		out[i] = errno
	}
	return out
}

// A failed socket read: a transient error (an ICMP error queued on the
// socket, buffer pressure) is counted and the read repeated, so wireguard-go
// gets the next datagram; any other error, or maxReadErrors+1 transient ones
// in a row, ends the receive function with an error that is neither
// temporary nor a timeout, so wireguard-go ends that routine at once instead
// of sleeping and retrying.
func TestBindReadErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		errs  []syscall.Errno
		fatal syscall.Errno // 0: the datagram is delivered
	}{
		{"icmp and pressure", []syscall.Errno{syscall.ECONNREFUSED, syscall.ENOBUFS, syscall.EHOSTUNREACH, syscall.ENOMEM}, 0},
		{"as many as allowed", repeat(syscall.ENETUNREACH, maxReadErrors), 0},
		{"one too many", repeat(syscall.ENOBUFS, maxReadErrors+1), syscall.ENOBUFS},
		{"bad descriptor", []syscall.Errno{syscall.EBADF}, syscall.EBADF},
		{"after transient", []syscall.Errno{syscall.ECONNREFUSED, syscall.EINVAL}, syscall.EINVAL},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := listen(t)
			s.batch = &erringConn{batchConn: s.batch, errs: tt.errs}
			b := s.Bind()
			fns, _, err := b.Open(0)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			c := client(t)
			pkt := wgPacket(4, 64, 7)
			send(t, c, s.LocalAddr(), pkt)
			bufs := [][]byte{make([]byte, 65535)}
			sizes := make([]int, 1)
			eps := make([]conn.Endpoint, 1)
			n, err := fns[0](bufs, sizes, eps)
			if got := s.Stats().ReadErrors; got != uint64(len(tt.errs)) {
				t.Errorf("ReadErrors = %d, want %d", got, len(tt.errs))
			}
			if tt.fatal == 0 {
				if err != nil || n != 1 || !bytes.Equal(bufs[0][:sizes[0]], pkt) {
					t.Fatalf("got %d datagrams, %v; want the datagram", n, err)
				}
				return
			}
			// wireguard-go asserts the type itself, without errors.As.
			ne, ok := err.(interface {
				net.Error
				Temporary() bool
			})
			if !ok || ne.Timeout() || ne.Temporary() || !errors.Is(err, tt.fatal) {
				t.Fatalf("err = %v, want a permanent net.Error wrapping %v", err, tt.fatal)
			}
			if errors.Is(err, net.ErrClosed) {
				t.Fatalf("err = %v reads as closed: wireguard-go would not log it", err)
			}
		})
	}
}

// erringMsgConn fails the first standby reads with errs, then reads the
// real socket.
type erringMsgConn struct {
	msgConn
	errs []syscall.Errno
}

func (c *erringMsgConn) ReadMsgUDPAddrPort(b, oob []byte) (int, int, int, netip.AddrPort, error) {
	if len(c.errs) > 0 {
		errno := c.errs[0]
		c.errs = c.errs[1:]
		return 0, 0, 0, netip.AddrPort{}, &net.OpError{Op: "read", Net: "udp", Err: os.NewSyscallError("recvmsg", errno)}
	}
	return c.msgConn.ReadMsgUDPAddrPort(b, oob)
}

// The standby reader (STUN while the Bind is closed) decides a failed read
// the same way: after transient errors it goes on serving STUN; a permanent
// error, or one transient error too many, ends it, and the next Open and
// Close of the Bind start it again.
func TestStandbyReadErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		errs  []syscall.Errno
		fatal bool
	}{
		{"icmp and pressure", []syscall.Errno{syscall.ECONNREFUSED, syscall.ENOBUFS, syscall.EINTR}, false},
		{"as many as allowed", repeat(syscall.EHOSTUNREACH, maxReadErrors), false},
		{"one too many", repeat(syscall.ENOMEM, maxReadErrors+1), true},
		{"bad descriptor", []syscall.Errno{syscall.EBADF}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := listen(t)
			b := s.Bind()
			if _, _, err := b.Open(0); err != nil { // stops the standby reader
				t.Fatal(err)
			}
			s.msg = &erringMsgConn{msgConn: s.udp, errs: tt.errs}
			if err := b.Close(); err != nil { // starts it again, on the erring reads
				t.Fatal(err)
			}
			muxed, err := s.UDPMux().GetConn("abcd", net.UDPAddrFromAddrPort(s.LocalAddr()))
			if err != nil {
				t.Fatalf("GetConn: %v", err)
			}
			defer muxed.Close()
			c := client(t)
			req := stunRequest(t, "abcd:efgh", "pwd").Raw
			if tt.fatal {
				waitStandbyStopped(t, s)
				// Reopening the Bind is what brings the reader back.
				if _, _, err := b.Open(0); err != nil {
					t.Fatal(err)
				}
				s.msg = s.udp
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
			}
			send(t, c, s.LocalAddr(), req)
			if got, _ := readMux(t, muxed); !bytes.Equal(got, req) {
				t.Errorf("mux got %x, want the STUN request", got)
			}
			if got := s.Stats().ReadErrors; got != uint64(len(tt.errs)) {
				t.Errorf("ReadErrors = %d, want %d", got, len(tt.errs))
			}
		})
	}
}

// waitStandbyStopped waits for the standby reader goroutine to end.
func waitStandbyStopped(t *testing.T, s *Socket) {
	t.Helper()
	stopped := make(chan struct{})
	go func() {
		s.rd.Lock()
		for s.rd.standby {
			s.rd.cond.Wait()
		}
		s.rd.Unlock()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(deadline):
		t.Fatal("the standby reader did not stop on a permanent read error")
	}
}
