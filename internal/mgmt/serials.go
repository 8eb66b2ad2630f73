package mgmt

// Serials is the one stale-map filter: the serials of the network maps that
// were taken never go down. A map whose serial is lower than the highest one
// taken is stale; an equal serial is not (a server resends its current map on
// every new Sync). The Client keeps one across its streams (SyncStream.Recv),
// the management machine one across its sessions (a session dials a new
// Client). The zero value has taken nothing. It is not safe for concurrent
// use: its owner guards it.
type Serials struct {
	highest uint64
	taken   bool // highest is meaningful
}

// Stale reports whether a map with serial is older than one already taken.
func (s *Serials) Stale(serial uint64) bool { return s.taken && serial < s.highest }

// Take records a map with serial as taken. The caller has checked Stale.
func (s *Serials) Take(serial uint64) { s.highest, s.taken = serial, true }

// Admit takes serial unless it is stale, and reports whether it did.
func (s *Serials) Admit(serial uint64) bool {
	if s.Stale(serial) {
		return false
	}
	s.Take(serial)
	return true
}

// Last returns the serial of the last map taken; ok is false before any.
func (s *Serials) Last() (serial uint64, ok bool) { return s.highest, s.taken }

// Reset forgets every serial: the next map is taken whatever its serial.
func (s *Serials) Reset() { *s = Serials{} }
