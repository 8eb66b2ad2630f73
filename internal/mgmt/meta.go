package mgmt

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

// FallbackHostname is sent when the host has no name: the server refuses an
// empty hostname (it becomes the peer's name and DNS label).
const FallbackHostname = "nbfsm"

// Meta describes this machine to the management server. The same Meta must
// be sent on every Login and Sync. It becomes PeerSystemMeta with
// netbirdVersion = version.Reported, syncMessageVersion = 0 and
// capabilities 1 (SourcePrefixes) and 2 (IPv6 overlay) only, so the server
// always sends the classic NetworkMap.
type Meta struct {
	Hostname      string // peer name and DNS label; FallbackHostname if empty
	GoOS          string // runtime.GOOS
	Kernel        string // uname sysname, e.g. "Linux"
	OS            string // distribution name, e.g. "Debian GNU/Linux"
	OSVersion     string // distribution version, e.g. "13"
	KernelVersion string // uname release, e.g. "6.12.0-1-amd64"
	Platform      string // uname machine, e.g. "x86_64"
	// The user's switches, reported in Flags (the server shows them).
	DisableFirewall bool // no packet filter at all
	BlockInbound    bool // no new inbound flows, whatever the policies
	// NetworkAddresses are the machine's non-loopback interface addresses
	// with the interface's MAC (posture checks read them).
	NetworkAddresses []NetworkAddress
	// Files answer the paths the server's posture checks name
	// (LoginResponse.checks): see CheckFiles.
	Files []File
	// Flags are the client's other switches from its config
	// (DisableFirewall and BlockInbound above go into the same message).
	Flags Flags
}

// NetworkAddress is one interface address.
type NetworkAddress struct {
	Prefix netip.Prefix // address with the interface's prefix length
	MAC    string       // "aa:bb:cc:dd:ee:ff", "" for interfaces without one
}

// File is the state of one path a posture check names.
type File struct {
	Path           string
	Exist          bool
	ProcessRunning bool // a running process's executable is Path
}

// Flags are the client switches official peers report (PeerSystemMeta
// flags); management's posture checks and the dashboard read them.
type Flags struct {
	RosenpassEnabled, RosenpassPermissive, ServerSSHAllowed bool
	DisableClientRoutes, DisableServerRoutes, DisableDNS    bool
	BlockLANAccess, LazyConns                               bool
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
	m.NetworkAddresses = InterfaceAddresses()
	m.Flags = NbfsmFlags
	return m
}

// NbfsmFlags are the switches that are true of every nbfsm client today,
// reported as an official client with the same behaviour would report them:
// nbfsm manages no DNS and installs no routes (client or server side), and
// connects eagerly (no lazy connections), whatever the config says.
var NbfsmFlags = Flags{DisableDNS: true, DisableClientRoutes: true, DisableServerRoutes: true}

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
		NetworkAddresses:   m.networkAddresses(),
		Files:              m.files(),
		Flags:              m.flags(),
		SyncMessageVersion: 0,
		// 1: firewall sourcePrefixes are parsed (ConvertFirewallRule); 2:
		// nbfsm takes its IPv6 overlay address (address_v6) and routes v6
		// overlay traffic. Not 3 (the component network map).
		Capabilities: []mgmtpb.PeerCapability{mgmtpb.PeerCapability_PeerCapabilitySourcePrefixes,
			mgmtpb.PeerCapability_PeerCapabilityIPv6Overlay},
	}
}

func (m Meta) networkAddresses() []*mgmtpb.NetworkAddress {
	var out []*mgmtpb.NetworkAddress
	for _, a := range m.NetworkAddresses {
		if a.Prefix.IsValid() {
			out = append(out, &mgmtpb.NetworkAddress{NetIP: a.Prefix.String(), Mac: a.MAC})
		}
	}
	return out
}

func (m Meta) files() []*mgmtpb.File {
	var out []*mgmtpb.File
	for _, f := range m.Files {
		out = append(out, &mgmtpb.File{Path: f.Path, Exist: f.Exist, ProcessIsRunning: f.ProcessRunning})
	}
	return out
}

func (m Meta) flags() *mgmtpb.Flags {
	f := m.Flags
	return &mgmtpb.Flags{
		RosenpassEnabled: f.RosenpassEnabled, RosenpassPermissive: f.RosenpassPermissive,
		ServerSSHAllowed: f.ServerSSHAllowed, DisableClientRoutes: f.DisableClientRoutes,
		DisableServerRoutes: f.DisableServerRoutes, DisableDNS: f.DisableDNS,
		DisableFirewall: m.DisableFirewall, BlockLANAccess: f.BlockLANAccess,
		BlockInbound: m.BlockInbound, LazyConnectionEnabled: f.LazyConns,
	}
}

// InterfaceAddresses lists the addresses of the machine's interfaces that
// are up, except loopback ones, with each interface's MAC, sorted by
// address. Errors give an empty list: meta is best effort.
func InterfaceAddresses() []NetworkAddress {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []NetworkAddress
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok || ip.Unmap().IsLoopback() {
				continue
			}
			ones, _ := ipn.Mask.Size()
			out = append(out, NetworkAddress{Prefix: netip.PrefixFrom(ip.Unmap(), ones), MAC: ifc.HardwareAddr.String()})
		}
	}
	slices.SortFunc(out, func(a, b NetworkAddress) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out
}

// CheckFiles answers the posture checks' paths: whether each exists, and
// whether a running process's executable is that path (from /proc: the
// exe link where readable, else the first word of cmdline). Duplicates are
// answered once, in the order given.
func CheckFiles(paths []string) []File {
	return checkFiles(paths, "/proc")
}

func checkFiles(paths []string, proc string) []File {
	if len(paths) == 0 {
		return nil
	}
	running := runningExecutables(proc)
	seen := make(map[string]bool)
	var out []File
	for _, p := range paths {
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		_, err := os.Stat(p)
		out = append(out, File{Path: p, Exist: err == nil, ProcessRunning: running[filepath.Clean(p)]})
	}
	return out
}

// runningExecutables is the set of executable paths of the processes in
// proc (a /proc file system).
func runningExecutables(proc string) map[string]bool {
	out := make(map[string]bool)
	ents, err := os.ReadDir(proc)
	if err != nil {
		return out
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		dir := filepath.Join(proc, e.Name())
		if exe, err := os.Readlink(filepath.Join(dir, "exe")); err == nil {
			out[filepath.Clean(strings.TrimSuffix(exe, " (deleted)"))] = true
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(b) > 0 {
			arg0, _, _ := strings.Cut(string(b), "\x00")
			if filepath.IsAbs(arg0) {
				out[filepath.Clean(arg0)] = true
			}
		}
	}
	return out
}
