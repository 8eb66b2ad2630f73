//go:build !unix

package grpchost

import "syscall"

// reuseAddr does nothing where SO_REUSEADDR has other semantics (Windows):
// the bounded retry in Listen covers the rare busy port.
func reuseAddr(_, _ string, _ syscall.RawConn) error { return nil }
