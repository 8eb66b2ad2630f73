package wgiface

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/ipc"
	"golang.zx2c4.com/wireguard/tun"
	"golang.zx2c4.com/wireguard/wgctrl"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/sharedsock"
)

// createTUN creates the kernel TUN device, gives it addr (IPv4) and addr6
// (the IPv6 overlay address, if valid) and brings it up, with ioctls.
func createTUN(name string, mtu int, addr, addr6 netip.Prefix) (tun.Device, error) {
	if !addr.Addr().Is4() {
		return nil, fmt.Errorf("%w: tun address %v: only IPv4", ErrUnsupported, addr)
	}
	dev, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("%w: create tun %s: %w", ErrDevice, name, err)
	}
	real, err := dev.Name()
	if err == nil {
		err = configureLink(real, addr)
	}
	if err == nil && addr6.IsValid() {
		err = addAddr6(real, addr6)
	}
	if err != nil {
		_ = dev.Close()
		return nil, err
	}
	return dev, nil
}

// configureLink sets the IPv4 address and netmask and sets IFF_UP.
func configureLink(name string, addr netip.Prefix) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: socket: %w", ErrDevice, err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("%w: ifreq %s: %w", ErrDevice, name, err)
	}
	a4 := addr.Addr().As4()
	mask := net.CIDRMask(addr.Bits(), 32)
	steps := []struct {
		what string
		req  uint
		set  func() error
	}{
		{"address", unix.SIOCSIFADDR, func() error { return ifr.SetInet4Addr(a4[:]) }},
		{"netmask", unix.SIOCSIFNETMASK, func() error { return ifr.SetInet4Addr(mask) }},
	}
	for _, s := range steps {
		if err := s.set(); err != nil {
			return fmt.Errorf("%w: %s %s: %w", ErrDevice, s.what, name, err)
		}
		if err := unix.IoctlIfreq(fd, s.req, ifr); err != nil {
			return fmt.Errorf("%w: %s %s: %w", ErrDevice, s.what, name, err)
		}
	}
	flags, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("%w: ifreq %s: %w", ErrDevice, name, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, flags); err != nil {
		return fmt.Errorf("%w: get flags %s: %w", ErrDevice, name, err)
	}
	flags.SetUint16(flags.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, flags); err != nil {
		return fmt.Errorf("%w: up %s: %w", ErrDevice, name, err)
	}
	return nil
}

// in6Ifreq is the kernel's struct in6_ifreq.
type in6Ifreq struct {
	addr      [16]byte
	prefixlen uint32
	ifindex   int32
}

// addAddr6 adds an IPv6 address to the link (SIOCSIFADDR on an AF_INET6
// socket); the kernel adds the prefix's route. TUN links are NOARP, so the
// address skips duplicate detection and is usable at once.
func addAddr6(name string, addr netip.Prefix) error {
	if !addr.Addr().Is6() || addr.Addr().Is4In6() {
		return fmt.Errorf("%w: ipv6 address %v", ErrBadConfig, addr)
	}
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrDevice, name, err)
	}
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: socket6: %w", ErrDevice, err)
	}
	defer unix.Close(fd)
	req := in6Ifreq{addr: addr.Addr().As16(), prefixlen: uint32(addr.Bits()), ifindex: int32(ifc.Index)}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCSIFADDR, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return fmt.Errorf("%w: ipv6 address %s: %w", ErrDevice, name, errno)
	}
	return nil
}

// uapiConfigurer serves the device's UAPI socket (/var/run/wireguard/<name>.sock)
// and configures it through wgctrl, as `wg` would. Only wgctrl.Device(name)
// is used: wgctrl.Devices() fails when any stale socket sits in the
// directory.
type uapiConfigurer struct {
	name     string
	client   *wgctrl.Client
	listener net.Listener
	done     sync.WaitGroup
	log      *zap.Logger
}

func newUAPIConfigurer(name string, dev *device.Device, sock *sharedsock.Socket, log *zap.Logger) (*uapiConfigurer, error) {
	f, err := ipc.UAPIOpen(name) // replaces a stale socket, refuses a live one
	if err != nil {
		return nil, fmt.Errorf("%w: uapi open %s: %w", ErrDevice, name, err)
	}
	l, err := ipc.UAPIListen(name, f)
	_ = f.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: uapi listen %s: %w", ErrDevice, name, err)
	}
	client, err := wgctrl.New()
	if err != nil {
		_ = l.Close()
		return nil, fmt.Errorf("%w: wgctrl: %w", ErrDevice, err)
	}
	c := &uapiConfigurer{name: name, client: client, listener: l, log: log}
	c.done.Add(1)
	go c.serve(dev)
	return c, nil
}

// serve accepts UAPI connections. ipc's UAPIListener reports exactly two
// errors over its life (its inotify watcher and its accept loop each send
// one, the second one only after Close); draining both keeps either of its
// goroutines from blocking forever on an unread channel.
func (c *uapiConfigurer) serve(dev *device.Device) {
	defer c.done.Done()
	errs := 0
	for errs < 2 {
		conn, err := c.listener.Accept()
		if err != nil {
			errs++
			continue
		}
		c.done.Add(1)
		go func() {
			defer c.done.Done()
			dev.IpcHandle(conn)
		}()
	}
}

func (c *uapiConfigurer) setPeer(p Peer) error {
	pc := wgtypes.PeerConfig{
		PublicKey:         p.Key,
		ReplaceAllowedIPs: true,
	}
	for _, a := range p.AllowedIPs {
		a = a.Masked()
		pc.AllowedIPs = append(pc.AllowedIPs, net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())})
	}
	if p.Endpoint.IsValid() {
		pc.Endpoint = net.UDPAddrFromAddrPort(p.Endpoint)
	}
	ka := p.Keepalive
	pc.PersistentKeepaliveInterval = &ka
	if p.PresharedKey != (wgtypes.Key{}) {
		psk := p.PresharedKey
		pc.PresharedKey = &psk
	}
	if err := c.client.ConfigureDevice(c.name, wgtypes.Config{Peers: []wgtypes.PeerConfig{pc}}); err != nil {
		return fmt.Errorf("%w: wgctrl set peer: %w", ErrDevice, err)
	}
	return nil
}

func (c *uapiConfigurer) removePeer(k wgtypes.Key) error {
	err := c.client.ConfigureDevice(c.name, wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: k, Remove: true}}})
	if err != nil {
		return fmt.Errorf("%w: wgctrl remove peer: %w", ErrDevice, err)
	}
	return nil
}

func (c *uapiConfigurer) peerStats() (map[wgtypes.Key]PeerStats, error) {
	d, err := c.client.Device(c.name)
	if err != nil {
		return nil, fmt.Errorf("%w: wgctrl device %s: %w", ErrDevice, c.name, err)
	}
	out := make(map[wgtypes.Key]PeerStats, len(d.Peers))
	for _, p := range d.Peers {
		st := PeerStats{RxBytes: uint64(p.ReceiveBytes), TxBytes: uint64(p.TransmitBytes)}
		if !p.LastHandshakeTime.IsZero() && p.LastHandshakeTime.After(time.Unix(0, 0)) {
			st.LastHandshake = p.LastHandshakeTime
		}
		if p.Endpoint != nil {
			st.Endpoint = p.Endpoint.AddrPort()
			st.Endpoint = netip.AddrPortFrom(st.Endpoint.Addr().Unmap(), st.Endpoint.Port())
			st.Relayed = sharedsock.RelayPrefix.Contains(st.Endpoint.Addr())
		}
		out[p.PublicKey] = st
	}
	return out, nil
}

func (c *uapiConfigurer) close() error {
	err := c.listener.Close()
	c.done.Wait()
	if cerr := c.client.Close(); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("%w: close uapi: %w", ErrDevice, err)
	}
	return nil
}
