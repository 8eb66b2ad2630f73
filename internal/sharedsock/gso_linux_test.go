package sharedsock

import (
	"errors"
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// One ECONNREFUSED (an ICMP port unreachable) must not turn segmentation
// offload off for good; only errors that mean "unsupported" do.
func TestGSOUnsupportedClassification(t *testing.T) {
	wrap := func(errno unix.Errno) error {
		return &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendmsg", errno)}
	}
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{wrap(unix.EIO), true},
		{wrap(unix.EINVAL), true},
		{wrap(unix.ENOPROTOOPT), true},
		{wrap(unix.EOPNOTSUPP), true},
		{wrap(unix.ECONNREFUSED), false},
		{wrap(unix.ENOBUFS), false},
		{wrap(unix.ENETUNREACH), false},
		{errors.New("other"), false},
	} {
		if got := gsoUnsupported(tt.err); got != tt.want {
			t.Errorf("%v: unsupported %v, want %v", tt.err, got, tt.want)
		}
	}
}
