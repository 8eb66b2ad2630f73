package mgmt

import (
	"os"
	"runtime"
	"strings"

	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

// FallbackHostname is sent when the host has no name: the server refuses an
// empty hostname (it becomes the peer's name and DNS label).
const FallbackHostname = "nbfsm"

// Meta describes this machine to the management server. The same Meta must
// be sent on every Login and Sync. It becomes PeerSystemMeta with
// netbirdVersion = version.Reported, syncMessageVersion = 0 and no
// capabilities, so the server always sends the classic NetworkMap.
type Meta struct {
	Hostname      string // peer name and DNS label; FallbackHostname if empty
	GoOS          string // runtime.GOOS
	Kernel        string // uname sysname, e.g. "Linux"
	OS            string // distribution name, e.g. "Debian GNU/Linux"
	OSVersion     string // distribution version, e.g. "13"
	KernelVersion string // uname release, e.g. "6.12.0-1-amd64"
	Platform      string // uname machine, e.g. "x86_64"
}

// DefaultMeta describes the running machine from cheap sources: os.Hostname,
// runtime.GOOS, uname(2) and /etc/os-release where they exist. Fields it
// cannot learn stay empty, except Hostname (FallbackHostname).
func DefaultMeta() Meta {
	m := Meta{GoOS: runtime.GOOS}
	if h, err := os.Hostname(); err == nil {
		m.Hostname = h
	}
	if m.Hostname == "" {
		m.Hostname = FallbackHostname
	}
	m.Kernel, m.KernelVersion, m.Platform = uname()
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		m.OS, m.OSVersion = parseOSRelease(string(b))
	}
	if m.OS == "" {
		m.OS = runtime.GOOS
	}
	return m
}

// parseOSRelease returns NAME and VERSION_ID of an os-release file.
func parseOSRelease(s string) (name, ver string) {
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
		if !ok {
			continue
		}
		v = strings.Trim(v, `"'`)
		switch k {
		case "NAME":
			name = v
		case "VERSION_ID":
			ver = v
		}
	}
	return name, ver
}

// proto is the wire form of m.
func (m Meta) proto() *mgmtpb.PeerSystemMeta {
	host := m.Hostname
	if host == "" {
		host = FallbackHostname
	}
	return &mgmtpb.PeerSystemMeta{
		Hostname:           host,
		GoOS:               m.GoOS,
		Kernel:             m.Kernel,
		Core:               m.OSVersion, // upstream sends the OS version as "core"
		Platform:           m.Platform,
		OS:                 m.OS,
		NetbirdVersion:     version.Reported,
		KernelVersion:      m.KernelVersion,
		OSVersion:          m.OSVersion,
		SyncMessageVersion: 0,
		// No capabilities: 1 needs firewall sourcePrefixes, 2 IPv6 overlay
		// addresses, 3 the component network map; nbfsm handles none yet.
	}
}
