package sharedsock

import "net/netip"

// Fault injection for tests of path loss (the engine's relay fallback
// tests): SetFault installs drop, and from then on every datagram the
// socket would send to or has received from an address for which drop
// reports true is silently discarded (WireGuard, STUN and punches alike),
// as a network that lost the path would. The hook is nil by default; unset,
// it costs one atomic load per received batch and per send. Production
// code never sets it.
//
// It is a plain function of the remote address, called from the socket's
// send and receive paths concurrently: it must be fast and safe for
// concurrent use.
func (s *Socket) SetFault(drop func(remote netip.AddrPort) bool) {
	if drop == nil {
		s.fault.Store(nil)
		return
	}
	s.fault.Store(&drop)
}

// faultFor returns the installed fault hook (nil: none).
func (s *Socket) faultFor() func(netip.AddrPort) bool {
	if f := s.fault.Load(); f != nil {
		return *f
	}
	return nil
}

// faulty reports whether the installed fault drops datagrams of remote.
func (s *Socket) faulty(remote netip.AddrPort) bool {
	f := s.faultFor()
	return f != nil && f(remote)
}
