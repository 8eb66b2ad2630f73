package sharedsock

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v2"
	"go.uber.org/zap"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"

	"github.com/nbfsm/nbfsm/internal/pionlog"
	"github.com/nbfsm/nbfsm/internal/ratelog"
)

// Stats are the socket's counters since Listen.
type Stats struct {
	WireGuardIn  uint64 // WireGuard datagrams received on the socket
	WireGuardOut uint64 // WireGuard datagrams sent on the socket
	STUNIn       uint64 // STUN datagrams received (mux and responder)
	STUNOut      uint64 // STUN datagrams sent by the mux (ICE agents)
	Responded    uint64 // Binding requests answered by the responder
	Punches      uint64 // "nb" hole punches received and dropped
	Dropped      uint64 // junk datagrams, WireGuard while the Bind was down, mux overflow, bad STUN
	RelayIn      uint64 // WireGuard datagrams received through relay endpoints
	RelayOut     uint64 // WireGuard datagrams sent through relay endpoints
	ReadErrors   uint64 // socket reads that failed (readerr.go)
}

type counters struct {
	wgIn, wgOut, stunIn, stunOut, responded, punches, dropped, relayIn, relayOut atomic.Uint64
	coalesced                                                                    atomic.Uint64 // received buffers that held more than one datagram (UDP GRO)
	readErrors                                                                   atomic.Uint64
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share (their
// Message types are both aliases of x/net's socket.Message).
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// msgConn is the one-datagram read the standby reader does (*net.UDPConn);
// tests swap it to inject read errors.
type msgConn interface {
	ReadMsgUDPAddrPort(b, oob []byte) (n, oobn, flags int, addr netip.AddrPort, err error)
}

// Socket owns the one UDP socket shared by WireGuard and ICE.
type Socket struct {
	log   *zap.Logger
	udp   *net.UDPConn
	batch batchConn   // recvmmsg/sendmmsg on udp
	msg   msgConn     // recvmsg on udp, for the standby reader
	noGSO atomic.Bool // the kernel refused UDP segmentation offload
	gro   bool        // the kernel coalesces received datagrams (UDP_GRO)
	local netip.AddrPort

	mux     *ice.UniversalUDPMuxDefault
	muxView *addrMux // mux with listen addresses that follow the host
	muxConn *muxConn
	resp    *responder
	eps     *endpointTable
	relays  *relayTable
	stats   counters
	bind    *bind
	badRead *ratelog.Limiter
	fault   atomic.Pointer[func(netip.AddrPort) bool] // tests only: fault.go

	// rd guards which goroutine reads the socket: wireguard-go through the
	// Bind's receive function while the Bind is open, else the standby
	// reader. A reader is stopped by a read-deadline kick and the kicker
	// waits on cond until it has left its read, so that resetting the
	// deadline cannot swallow the kick.
	rd struct {
		sync.Mutex
		cond        *sync.Cond
		closed      bool // Socket.Close was called
		bindOpen    bool
		bindReaders int  // Bind receive calls currently in a socket read
		standby     bool // standby reader goroutine running
		stopStandby bool
	}
	standbyWG sync.WaitGroup
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
}

// Listen opens the shared UDP socket on addr (127.0.0.1:0 in tests,
// 0.0.0.0:51820 in production; port 0 lets the kernel pick, see LocalAddr)
// and starts the ICE UDP mux on it. The socket lives until Close: the Bind
// handed to wireguard-go re-attaches to it on every Open.
func Listen(addr netip.AddrPort, log *zap.Logger) (*Socket, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if !addr.IsValid() || addr.Addr().Zone() != "" {
		return nil, fmt.Errorf("%w: %v", ErrBadAddress, addr)
	}
	network := "udp4"
	if addr.Addr().Is6() && !addr.Addr().Is4In6() {
		network = "udp6"
	}
	udp, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(canonical(addr)))
	if err != nil {
		return nil, fmt.Errorf("sharedsock: listen %s: %w", addr, err)
	}
	setBuffers(udp)
	s := &Socket{
		log:     log.Named("sharedsock"),
		udp:     udp,
		msg:     udp,
		local:   canonical(udp.LocalAddr().(*net.UDPAddr).AddrPort()),
		resp:    newResponder(),
		eps:     newEndpointTable(),
		relays:  newRelayTable(),
		closing: make(chan struct{}),
		gro:     enableGRO(udp),
	}
	s.badRead = ratelog.New(s.log)
	if network == "udp6" {
		s.batch = ipv6.NewPacketConn(udp)
	} else {
		s.batch = ipv4.NewPacketConn(udp)
	}
	s.rd.cond = sync.NewCond(&s.rd)
	s.bind = &bind{s: s}
	s.muxConn = newMuxConn(s)
	s.mux = ice.NewUniversalUDPMuxDefault(ice.UniversalUDPMuxParams{
		Logger:  pionlog.New(s.log.Named("pion")),
		UDPConn: s.muxConn,
	})
	s.muxView = &addrMux{UniversalUDPMuxDefault: s.mux}
	s.rd.Lock()
	s.startStandbyLocked()
	s.rd.Unlock()
	s.log.Debug("listening", zap.Stringer("endpoint", s.local))
	return s, nil
}

// Bind returns the wireguard-go conn.Bind reading and writing this socket.
// Hand it to device.NewDevice. It is the same value on every call.
func (s *Socket) Bind() conn.Bind { return s.bind }

// UDPMux returns the ICE mux shared by every agent: set it as both UDPMux and
// UDPMuxSrflx in ice.AgentConfig.
func (s *Socket) UDPMux() ice.UniversalUDPMux { return s.muxView }

// LocalAddr is the bound address, with the port the kernel picked.
func (s *Socket) LocalAddr() netip.AddrPort { return s.local }

// LastReceive returns when the last WireGuard datagram from remote arrived
// (direct address or relay endpoint address), zero if never or forgotten.
// It is one map lookup and one atomic load: cheap enough to call on every
// path check.
func (s *Socket) LastReceive(remote netip.AddrPort) time.Time {
	if e := s.eps.lookup(canonical(remote)); e != nil {
		return e.LastReceive()
	}
	return time.Time{}
}

// Stats returns a snapshot of the counters.
func (s *Socket) Stats() Stats {
	c := &s.stats
	return Stats{
		WireGuardIn: c.wgIn.Load(), WireGuardOut: c.wgOut.Load(),
		STUNIn: c.stunIn.Load(), STUNOut: c.stunOut.Load(), Responded: c.responded.Load(),
		Punches: c.punches.Load(), Dropped: c.dropped.Load(),
		RelayIn: c.relayIn.Load(), RelayOut: c.relayOut.Load(),
		ReadErrors: c.readErrors.Load(),
	}
}

// Close stops relays, closes the mux (and with it every muxed ICE
// connection) and the socket, and waits for the package's goroutines.
// wireguard-go's device must be closed first or its Bind fails from then on.
func (s *Socket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.rd.Lock()
		s.rd.closed = true
		s.rd.cond.Broadcast()
		s.rd.Unlock()
		close(s.closing)
		s.relays.stopAll()
		_ = s.mux.Close()
		err = s.udp.Close()
		s.standbyWG.Wait()
		s.relays.wait()
	})
	return err
}

// startStandbyLocked starts the reader that serves STUN while the Bind is
// closed. Caller holds s.rd.
func (s *Socket) startStandbyLocked() {
	if s.rd.standby || s.rd.closed {
		return
	}
	s.rd.standby = true
	s.rd.stopStandby = false
	s.standbyWG.Add(1)
	go s.standbyLoop()
}

// stopStandbyLocked kicks the standby reader out of its read and waits until
// it has exited. Caller holds s.rd.
func (s *Socket) stopStandbyLocked() {
	if !s.rd.standby {
		return
	}
	s.rd.stopStandby = true
	_ = s.udp.SetReadDeadline(time.Unix(1, 0))
	for s.rd.standby {
		s.rd.cond.Wait()
	}
	_ = s.udp.SetReadDeadline(time.Time{})
}

// standbyLoop reads the socket while wireguard-go is not: STUN is served,
// WireGuard datagrams are dropped and counted (the device is down).
func (s *Socket) standbyLoop() {
	defer s.standbyWG.Done()
	defer func() {
		s.rd.Lock()
		s.rd.standby = false
		s.rd.cond.Broadcast()
		s.rd.Unlock()
	}()
	buf := make([]byte, 64<<10)
	oob := make([]byte, groOOBSize)
	failed := 0 // transient read errors since the last datagram
	for {
		n, oobn, _, from, err := s.msg.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if isTimeout(err) {
				s.rd.Lock()
				stop := s.rd.stopStandby || s.rd.closed
				s.rd.Unlock()
				if stop {
					return
				}
				continue
			}
			if !errors.Is(err, net.ErrClosed) && s.readFailed(err, &failed) {
				continue
			}
			return
		}
		failed = 0
		from = canonical(from)
		if s.faulty(from) {
			continue
		}
		seg, err := groSegmentSize(oob[:oobn])
		if err != nil {
			s.stats.dropped.Add(1)
			continue
		}
		if seg > 0 && seg < n {
			s.stats.coalesced.Add(1)
		}
		segments(buf[:n], seg, func(d []byte) { // one datagram unless coalesced (UDP GRO)
			switch Classify(d) {
			case ClassWireGuard:
				s.stats.dropped.Add(1)
			default:
				s.dispatchNonWireGuard(d, from)
			}
		})
	}
}

// dispatchNonWireGuard handles a datagram that is not for wireguard-go.
func (s *Socket) dispatchNonWireGuard(b []byte, from netip.AddrPort) {
	switch Classify(b) {
	case ClassSTUN:
		s.stats.stunIn.Add(1)
		if s.resp.handle(s, b, from) {
			return
		}
		s.muxConn.deliver(b, from)
	case ClassPunch:
		s.stats.punches.Add(1)
	case ClassJunk:
		s.stats.dropped.Add(1)
	}
}

func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// writeTo sends one datagram on the socket.
func (s *Socket) writeTo(b []byte, to netip.AddrPort) error {
	if s.faulty(to) {
		return nil
	}
	_, err := s.udp.WriteToUDPAddrPort(b, to)
	return err
}
