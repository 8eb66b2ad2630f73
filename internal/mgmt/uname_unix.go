//go:build linux || darwin || freebsd || netbsd || openbsd

package mgmt

import "golang.org/x/sys/unix"

// uname returns sysname, release and machine, or empty strings.
func uname() (sysname, release, machine string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", "", ""
	}
	return unix.ByteSliceToString(u.Sysname[:]), unix.ByteSliceToString(u.Release[:]),
		unix.ByteSliceToString(u.Machine[:])
}
