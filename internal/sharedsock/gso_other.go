//go:build !linux

package sharedsock

import "net/netip"

// writeGSO is not available: the caller uses sendmmsg.
func (s *Socket) writeGSO([][]byte, netip.AddrPort) (int, bool, error) { return 0, false, nil }
