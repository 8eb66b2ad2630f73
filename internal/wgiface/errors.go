package wgiface

import "errors"

// Sentinel errors of the package. Callers check them with errors.Is.
var (
	// ErrBadConfig is returned by New for a configuration it cannot use.
	ErrBadConfig = errors.New("wgiface: bad config")
	// ErrClosed is returned by operations on a closed Interface.
	ErrClosed = errors.New("wgiface: interface closed")
	// ErrBadPeer is returned by SetPeer for a peer it cannot configure.
	ErrBadPeer = errors.New("wgiface: bad peer")
	// ErrUnsupported is returned for a mode this platform lacks.
	ErrUnsupported = errors.New("wgiface: unsupported on this platform")
	// ErrDevice wraps failures of the WireGuard device (IPC, wgctrl).
	ErrDevice = errors.New("wgiface: device error")
)
