package sharedsock

import (
	"bytes"
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

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
