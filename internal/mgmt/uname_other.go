//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package mgmt

// uname is not available here: the fields stay empty.
func uname() (sysname, release, machine string) { return "", "", "" }
