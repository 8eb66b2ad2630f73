package mgmt

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"

	"github.com/pion/stun"

	"github.com/nbfsm/nbfsm/internal/grpcdial"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
)

// Protocol is the transport of a HostConfig, with the wire values of
// management.HostConfig.Protocol.
type Protocol int32

// Protocols. For the signal server, HTTP means plaintext gRPC and HTTPS TLS.
const (
	ProtocolUDP   Protocol = Protocol(mgmtpb.HostConfig_UDP)
	ProtocolTCP   Protocol = Protocol(mgmtpb.HostConfig_TCP)
	ProtocolHTTP  Protocol = Protocol(mgmtpb.HostConfig_HTTP)
	ProtocolHTTPS Protocol = Protocol(mgmtpb.HostConfig_HTTPS)
	ProtocolDTLS  Protocol = Protocol(mgmtpb.HostConfig_DTLS)
)

func (p Protocol) String() string {
	switch p {
	case ProtocolUDP:
		return "UDP"
	case ProtocolTCP:
		return "TCP"
	case ProtocolHTTP:
		return "HTTP"
	case ProtocolHTTPS:
		return "HTTPS"
	case ProtocolDTLS:
		return "DTLS"
	}
	return "Protocol(" + strconv.Itoa(int(p)) + ")"
}

// Config is the service configuration the management server hands out.
//
// In a Sync update it is partial, as NetBird servers send it: they rotate
// TURN credentials and relay tokens with messages that carry only those. A
// zero Signal, an empty STUNs or TURNs list, or a zero Relay means "keep the
// current one", which is also what the upstream client does. A LoginResponse
// carries the whole config; a zero Signal there means the server gave none
// that is usable (see Skipped).
type Config struct {
	Signal HostConfig   // URI "host:port"; zero if absent or unusable
	STUNs  []HostConfig // URIs "stun:host:port" or "stuns:..."
	TURNs  []TURNConfig // URIs "turn:host:port?transport=udp" or "turns:..."
	Relay  RelayConfig
	// Skipped lists the entries left out because they were unusable.
	Skipped []Skipped
}

// HostConfig is one server address.
type HostConfig struct {
	URI      string
	Protocol Protocol
}

// TLS reports whether a signal HostConfig asks for TLS (protocol HTTPS).
func (h HostConfig) TLS() bool { return h.Protocol == ProtocolHTTPS }

// TURNConfig is a TURN server with its credentials. Its String and Format
// never print the password.
type TURNConfig struct {
	URI      string
	User     string
	Password string
}

// String shows the URI and user, never the password.
func (t TURNConfig) String() string {
	return fmt.Sprintf("{URI:%s User:%s Password:%s}", t.URI, t.User, redact(t.Password))
}

// GoString is String, so %#v does not leak the password either.
func (t TURNConfig) GoString() string { return "mgmt.TURNConfig" + t.String() }

// Format makes every verb (%v, %+v, %s, %q, %#v) go through String.
func (t TURNConfig) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, t.GoString())
		return
	}
	fmt.Fprint(f, t.String())
}

// RelayConfig is the NetBird relay service: its URLs ("rel://host:port",
// "rels://" for TLS) and the current access token. String and Format never
// print the token signature.
type RelayConfig struct {
	URLs           []string
	TokenPayload   string
	TokenSignature string
}

// String shows the URLs and whether a token is present.
func (r RelayConfig) String() string {
	return fmt.Sprintf("{URLs:%v TokenPayload:%s TokenSignature:%s}", r.URLs,
		redact(r.TokenPayload), redact(r.TokenSignature))
}

// GoString is String, so %#v does not leak the token either.
func (r RelayConfig) GoString() string { return "mgmt.RelayConfig" + r.String() }

// Format makes every verb go through String.
func (r RelayConfig) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, r.GoString())
		return
	}
	fmt.Fprint(f, r.String())
}

func redact(s string) string {
	if s == "" {
		return `""`
	}
	return "<redacted>"
}

// PeerConfig is this peer's own configuration.
type PeerConfig struct {
	Address netip.Prefix // overlay address with the network's prefix, e.g. 100.91.205.61/16
	// AddressV6 is the IPv6 overlay address with its prefix (address_v6,
	// sent only to peers declaring capability 2); zero if none.
	AddressV6      netip.Prefix
	FQDN           string
	MTU            int  // 0: not given, use the default
	LazyConnection bool // the account enables lazy connections
}

// convertConfig converts a NetbirdConfig. Unusable entries are skipped and
// listed in Config.Skipped; it never fails.
func convertConfig(pb *mgmtpb.NetbirdConfig) Config {
	var c Config
	if s := pb.GetSignal(); s == nil {
		// absent: keep the current one (see Config)
	} else if err := checkSignal(s); err != nil {
		c.Skipped = append(c.Skipped, Skipped{Entry: truncate(s.GetUri()), Reason: err})
	} else {
		c.Signal = HostConfig{URI: s.GetUri(), Protocol: Protocol(s.GetProtocol())}
	}
	for _, h := range pb.GetStuns() {
		if err := checkICEURI(h.GetUri(), stun.SchemeTypeSTUN, stun.SchemeTypeSTUNS); err != nil {
			c.Skipped = append(c.Skipped, Skipped{Entry: truncate(h.GetUri()), Reason: err})
			continue
		}
		c.STUNs = append(c.STUNs, HostConfig{URI: h.GetUri(), Protocol: Protocol(h.GetProtocol())})
	}
	for _, t := range pb.GetTurns() {
		uri := t.GetHostConfig().GetUri()
		if err := checkICEURI(uri, stun.SchemeTypeTURN, stun.SchemeTypeTURNS); err != nil {
			c.Skipped = append(c.Skipped, Skipped{Entry: truncate(uri), Reason: err})
			continue
		}
		c.TURNs = append(c.TURNs, TURNConfig{URI: uri, User: t.GetUser(), Password: t.GetPassword()})
	}
	if r := pb.GetRelay(); r != nil {
		c.Relay = RelayConfig{TokenPayload: r.GetTokenPayload(), TokenSignature: r.GetTokenSignature()}
		for _, u := range r.GetUrls() {
			if err := checkRelayURL(u); err != nil {
				c.Skipped = append(c.Skipped, Skipped{Entry: truncate(u), Reason: err})
				continue
			}
			c.Relay.URLs = append(c.Relay.URLs, u)
		}
	}
	return c
}

// checkSignal accepts a bare "host:port" with protocol HTTP or HTTPS.
func checkSignal(h *mgmtpb.HostConfig) error {
	p := Protocol(h.GetProtocol())
	if p != ProtocolHTTP && p != ProtocolHTTPS {
		return fmt.Errorf("%w: signal protocol %v, want HTTP or HTTPS", ErrBadHost, p)
	}
	if err := grpcdial.CheckHostPort(h.GetUri()); err != nil {
		return fmt.Errorf("%w: signal %q: %w", ErrBadHost, h.GetUri(), err)
	}
	return nil
}

func checkICEURI(raw string, schemes ...stun.SchemeType) error {
	u, err := stun.ParseURI(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadHost, err)
	}
	for _, s := range schemes {
		if u.Scheme == s {
			return nil
		}
	}
	return fmt.Errorf("%w: unexpected scheme %v", ErrBadHost, u.Scheme)
}

func checkRelayURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadHost, err)
	}
	if u.Scheme != "rel" && u.Scheme != "rels" {
		return fmt.Errorf("%w: relay scheme %q, want rel or rels", ErrBadHost, u.Scheme)
	}
	if u.Host == "" {
		return fmt.Errorf("%w: relay URL without host", ErrBadHost)
	}
	return nil
}

// convertPeerConfig converts this peer's own config; the address must parse.
func convertPeerConfig(pb *mgmtpb.PeerConfig) (PeerConfig, error) {
	addr, err := netip.ParsePrefix(pb.GetAddress())
	if err != nil {
		return PeerConfig{}, fmt.Errorf("%w: address %q: %w", ErrBadPeerConfig, truncate(pb.GetAddress()), err)
	}
	mtu := int(pb.GetMtu())
	if mtu < 0 || mtu > 65535 {
		return PeerConfig{}, fmt.Errorf("%w: mtu %d", ErrBadPeerConfig, mtu)
	}
	v6, err := parseCompactPrefix(pb.GetAddressV6())
	if err != nil {
		return PeerConfig{}, fmt.Errorf("%w: address_v6: %w", ErrBadPeerConfig, err)
	}
	return PeerConfig{
		Address:        addr,
		AddressV6:      v6,
		FQDN:           pb.GetFqdn(),
		MTU:            mtu,
		LazyConnection: pb.GetLazyConnectionEnabled(),
	}, nil
}

// parseCompactPrefix parses PeerConfig.address_v6 (PROTOCOL.md §3): 16
// address bytes and one prefix-length byte, or the 5-byte IPv4 form.
// Empty is no address.
func parseCompactPrefix(b []byte) (netip.Prefix, error) {
	if len(b) == 0 {
		return netip.Prefix{}, nil
	}
	if len(b) != 17 && len(b) != 5 {
		return netip.Prefix{}, fmt.Errorf("%d bytes", len(b))
	}
	a, _ := netip.AddrFromSlice(b[:len(b)-1])
	bits := int(b[len(b)-1])
	if bits > a.BitLen() {
		return netip.Prefix{}, fmt.Errorf("prefix length %d", bits)
	}
	return netip.PrefixFrom(a, bits), nil
}

// CompactPrefix is the compact wire form of p (see parseCompactPrefix).
func CompactPrefix(p netip.Prefix) []byte {
	if !p.IsValid() {
		return nil
	}
	return append(p.Addr().AsSlice(), byte(p.Bits()))
}
