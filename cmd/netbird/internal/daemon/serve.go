package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ParseAddr splits unix:///path or tcp://host:port into a network and an
// address.
func ParseAddr(addr string) (network, address string, err error) {
	if addr == "" {
		addr = DefaultAddr
	}
	switch {
	case strings.HasPrefix(addr, "unix://"):
		p := strings.TrimPrefix(addr, "unix://")
		if p == "" || !strings.HasPrefix(p, "/") {
			return "", "", fmt.Errorf("daemon address %q: want unix:///absolute/path", addr)
		}
		return "unix", p, nil
	case strings.HasPrefix(addr, "tcp://"):
		hp := strings.TrimPrefix(addr, "tcp://")
		if _, _, err := net.SplitHostPort(hp); err != nil {
			return "", "", fmt.Errorf("daemon address %q: want tcp://host:port: %w", addr, err)
		}
		return "tcp", hp, nil
	}
	return "", "", fmt.Errorf("daemon address %q: want unix:///path or tcp://host:port", addr)
}

// Listen opens the API socket. A unix socket is mode 0600 (root only), or
// 0660 owned by group when one is named; a stale socket file of a dead
// daemon is replaced, a live daemon's is not.
func Listen(addr, group string) (net.Listener, error) {
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	if network == "tcp" {
		return net.Listen("tcp", address)
	}
	if c, err := net.DialTimeout("unix", address, time.Second); err == nil {
		_ = c.Close()
		return nil, fmt.Errorf("a daemon is already serving on %s", addr)
	}
	if st, err := os.Lstat(address); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: not removing it", address)
		}
		_ = os.Remove(address)
	}
	if err := os.MkdirAll(dirOf(address), 0o755); err != nil {
		return nil, err
	}
	// The socket is created with the umask's mode; closing the window
	// between bind and chmod: a restrictive umask for the bind.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", address)
	syscall.Umask(old)
	if err != nil {
		return nil, err
	}
	mode := os.FileMode(0o600)
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("--socket-group %q: %w", group, err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(address, -1, gid); err != nil {
			_ = l.Close()
			return nil, fmt.Errorf("socket %s: chown to group %s: %w", address, group, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(address, mode); err != nil {
		_ = l.Close()
		return nil, err
	}
	return l, nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}

// Serve serves the API on l until ctx ends (SIGTERM), then stops the engine:
// tunnels removed, interface deleted, socket file removed.
func (d *Daemon) Serve(ctx context.Context, l net.Listener) error {
	s := grpc.NewServer()
	d.Register(s)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(l) }()
	d.log.Info("serving the local API", zap.String("addr", l.Addr().Network()+"://"+l.Addr().String()))
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.Stop() // ends streams (events -f) at once
	if cerr := d.Close(); cerr != nil {
		d.log.Warn("engine stop", zap.Error(cerr))
	}
	if errors.Is(err, grpc.ErrServerStopped) {
		err = nil
	}
	d.log.Info("daemon stopped")
	return err
}

// ErrDaemonNotRunning and ErrPermission are the two errors of Dial a user
// acts on; their messages say how.
var (
	ErrDaemonNotRunning = errors.New("the netbird daemon is not running")
	ErrPermission       = errors.New("permission denied on the daemon socket")
)

// Dial connects the CLI to the daemon at addr. It checks the socket first,
// so that a missing daemon or a permission problem is reported as such.
func Dial(addr string) (*grpc.ClientConn, error) {
	if addr == "" {
		addr = DefaultAddr
	}
	network, address, err := ParseAddr(addr)
	if err != nil {
		return nil, err
	}
	c, err := net.DialTimeout(network, address, 5*time.Second)
	switch {
	case err == nil:
		_ = c.Close()
	case errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EPERM):
		return nil, fmt.Errorf("%w %s: run the command with sudo, or start the daemon with --socket-group GROUP and join that group",
			ErrPermission, addr)
	case errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("%w at %s: start it with `sudo netbird service start` (after `sudo netbird service install`), "+
			"or run it in the foreground with `sudo netbird service run`, or use `netbird up -F` without a daemon", ErrDaemonNotRunning, addr)
	default:
		return nil, fmt.Errorf("cannot reach the netbird daemon at %s: %w", addr, err)
	}
	target := "unix://" + address
	if network == "tcp" {
		target = "passthrough:///" + address
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
}
