package mgmt

import (
	"sync/atomic"
)

// Stats counts what a Client received and what it dropped. Counters only
// grow; read them with Client.Stats.
type Stats struct {
	updates        atomic.Uint64
	staleMaps      atomic.Uint64
	badBodies      atomic.Uint64
	badMaps        atomic.Uint64
	skippedEntries atomic.Uint64
	emptyUpdates   atomic.Uint64
}

// StatsSnapshot is a copy of the counters at one instant.
type StatsSnapshot struct {
	Updates        uint64 // updates delivered by SyncStream.Recv
	StaleMaps      uint64 // maps dropped: Serial lower than one already delivered
	BadBodies      uint64 // stream messages that did not open or decode
	BadMaps        uint64 // maps rejected whole (ErrBadPeerConfig)
	SkippedEntries uint64 // peers, firewall rules and config entries skipped in delivered updates
	EmptyUpdates   uint64 // messages with neither a config nor a map
}

func (s *Stats) snapshot() StatsSnapshot {
	return StatsSnapshot{
		Updates:        s.updates.Load(),
		StaleMaps:      s.staleMaps.Load(),
		BadBodies:      s.badBodies.Load(),
		BadMaps:        s.badMaps.Load(),
		SkippedEntries: s.skippedEntries.Load(),
		EmptyUpdates:   s.emptyUpdates.Load(),
	}
}
