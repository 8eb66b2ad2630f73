//go:build !linux

package sharedsock

// No UDP segmentation offload: every datagram is its own message.
const (
	gsoAvailable   = false
	maxGSOSegments = 1
	maxGSOBytes    = 0
)

// gsoControlSize is the control buffer of one segmented message (none).
const gsoControlSize = 0

// putGSOControl is never called without segmentation offload.
func putGSOControl([]byte, uint16) []byte { return nil }

// gsoUnsupported: nothing is ever sent segmented.
func gsoUnsupported(error) bool { return false }
