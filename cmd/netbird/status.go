package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

// The official `status --json` document (CLI.md). Every value is the
// daemon's view of the engine's snapshot; nothing here is computed from
// anything but that snapshot.
type statusDoc struct {
	Peers                 peersDoc    `json:"peers" yaml:"peers"`
	CLIVersion            string      `json:"cliVersion" yaml:"cliVersion"`
	DaemonVersion         string      `json:"daemonVersion" yaml:"daemonVersion"`
	Management            serviceDoc  `json:"management" yaml:"management"`
	Signal                serviceDoc  `json:"signal" yaml:"signal"`
	Relays                relaysDoc   `json:"relays" yaml:"relays"`
	NetbirdIP             string      `json:"netbirdIp" yaml:"netbirdIp"`
	PublicKey             string      `json:"publicKey" yaml:"publicKey"`
	UsesKernelInterface   bool        `json:"usesKernelInterface" yaml:"usesKernelInterface"`
	WireguardPort         int32       `json:"wireguardPort" yaml:"wireguardPort"`
	FQDN                  string      `json:"fqdn" yaml:"fqdn"`
	QuantumResistance     bool        `json:"quantumResistance" yaml:"quantumResistance"`
	Networks              []string    `json:"networks" yaml:"networks"`
	DNSServers            []string    `json:"dnsServers" yaml:"dnsServers"`
	Events                []string    `json:"events" yaml:"events"`
	LazyConnectionEnabled bool        `json:"lazyConnectionEnabled" yaml:"lazyConnectionEnabled"`
	ProfileName           string      `json:"profileName" yaml:"profileName"`
	Machines              []machineNB `json:"nbfsmMachines,omitempty" yaml:"nbfsmMachines,omitempty"` // nbfsm's own, with -d
}

type peersDoc struct {
	Total     int       `json:"total" yaml:"total"`
	Connected int       `json:"connected" yaml:"connected"`
	Details   []peerDoc `json:"details" yaml:"details"`
}

type serviceDoc struct {
	URL       string `json:"url" yaml:"url"`
	Connected bool   `json:"connected" yaml:"connected"`
	Error     string `json:"error" yaml:"error"`
}

type relaysDoc struct {
	Total     int        `json:"total" yaml:"total"`
	Available int        `json:"available" yaml:"available"`
	Details   []relayDoc `json:"details" yaml:"details"`
}

type relayDoc struct {
	URI       string `json:"uri" yaml:"uri"`
	Available bool   `json:"available" yaml:"available"`
	Error     string `json:"error" yaml:"error"`
}

type pairDoc struct {
	Local  string `json:"local" yaml:"local"`
	Remote string `json:"remote" yaml:"remote"`
}

type peerDoc struct {
	FQDN                   string   `json:"fqdn" yaml:"fqdn"`
	NetbirdIP              string   `json:"netbirdIp" yaml:"netbirdIp"`
	PublicKey              string   `json:"publicKey" yaml:"publicKey"`
	Status                 string   `json:"status" yaml:"status"`
	LastStatusUpdate       string   `json:"lastStatusUpdate" yaml:"lastStatusUpdate"`
	ConnectionType         string   `json:"connectionType" yaml:"connectionType"`
	ICECandidateType       pairDoc  `json:"iceCandidateType" yaml:"iceCandidateType"`
	ICECandidateEndpoint   pairDoc  `json:"iceCandidateEndpoint" yaml:"iceCandidateEndpoint"`
	RelayAddress           string   `json:"relayAddress" yaml:"relayAddress"`
	LastWireguardHandshake string   `json:"lastWireguardHandshake" yaml:"lastWireguardHandshake"`
	TransferReceived       uint64   `json:"transferReceived" yaml:"transferReceived"`
	TransferSent           uint64   `json:"transferSent" yaml:"transferSent"`
	Latency                int64    `json:"latency" yaml:"latency"`
	QuantumResistance      bool     `json:"quantumResistance" yaml:"quantumResistance"`
	Networks               []string `json:"networks" yaml:"networks"`
	// nbfsm's own: the peer machine's state and since when.
	Machine      string `json:"nbfsmState" yaml:"nbfsmState"`
	MachineSince string `json:"nbfsmSince" yaml:"nbfsmSince"`
	LastError    string `json:"nbfsmLastError,omitempty" yaml:"nbfsmLastError,omitempty"`
}

type machineNB struct {
	Machine string `json:"machine" yaml:"machine"`
	State   string `json:"state" yaml:"state"`
	Since   string `json:"since" yaml:"since"`
}

// Official peer statuses.
const (
	peerIdle       = "Idle"
	peerConnecting = "Connecting"
	peerConnected  = "Connected"
)

// peerStatus maps the peer machine's state to the official three.
func peerStatus(state string) string {
	switch {
	case strings.HasPrefix(state, "session.ice.connected"), state == "session.ice.over-relay",
		state == "session.relay-only.connected":
		return peerConnected
	case state == "" || state == "parked" || state == "idle" || state == "closed":
		return peerIdle
	}
	return peerConnecting
}

func rfc3339(t interface{ AsTime() time.Time }, valid bool) string {
	if !valid {
		return time.Time{}.Format(time.RFC3339)
	}
	return t.AsTime().Format(time.RFC3339Nano)
}

// overlayIP is the /32 (or /128) of a peer's allowed IPs.
func overlayIP(allowed []string) string {
	for _, a := range allowed {
		if p, err := netip.ParsePrefix(a); err == nil && p.IsSingleIP() {
			return p.Addr().String()
		}
	}
	return ""
}

func buildStatus(s *daemonpb.StatusResponse, detailed bool) statusDoc {
	doc := statusDoc{CLIVersion: version.NBFSM, DaemonVersion: s.GetDaemonVersion(), NetbirdIP: s.GetAddress(),
		PublicKey: s.GetPublicKey(), UsesKernelInterface: s.GetKernelInterface(), WireguardPort: s.GetWireguardPort(),
		FQDN: s.GetFqdn(), Networks: []string{}, DNSServers: []string{}, Events: []string{}, ProfileName: "default",
		Relays: relaysDoc{Details: []relayDoc{}}, Peers: peersDoc{Details: []peerDoc{}}}
	m, sig := s.GetManagement(), s.GetSignal()
	doc.Management = serviceDoc{URL: m.GetUrl(), Connected: strings.HasPrefix(m.GetState(), "running.session.online")}
	if !doc.Management.Connected {
		doc.Management.Error = m.GetReason()
	}
	doc.Signal = serviceDoc{URL: sig.GetUrl(), Connected: sig.GetState() == "running.session.connected"}
	if !doc.Signal.Connected {
		doc.Signal.Error = sig.GetReason()
	}
	for _, r := range s.GetRelays() {
		doc.Relays.Details = append(doc.Relays.Details, relayDoc{URI: r.GetUri(), Available: r.GetAvailable(), Error: r.GetError()})
		doc.Relays.Total++
		if r.GetAvailable() {
			doc.Relays.Available++
		}
	}
	for _, p := range s.GetPeers() {
		pd := peerDoc{FQDN: p.GetFqdn(), NetbirdIP: overlayIP(p.GetAllowedIps()), PublicKey: p.GetPublicKey(),
			Status: peerStatus(p.GetState()), LastStatusUpdate: rfc3339(p.GetSince(), p.GetSince() != nil),
			ConnectionType: "-", LastWireguardHandshake: rfc3339(p.GetLastHandshake(), p.GetLastHandshake() != nil),
			TransferReceived: p.GetRxBytes(), TransferSent: p.GetTxBytes(), Networks: []string{},
			Machine: p.GetState(), MachineSince: rfc3339(p.GetSince(), p.GetSince() != nil), LastError: p.GetLastError()}
		switch p.GetConnection() {
		case "direct":
			pd.ConnectionType = "P2P"
		case "relayed":
			pd.ConnectionType = "Relayed"
			pd.RelayAddress = p.GetEndpoint() // TURN: the relayed candidate's endpoint
			if a := p.GetRelayAddress(); a != "" && p.GetLocalType() == "relay" && p.GetEndpoint() == "" {
				pd.RelayAddress = a // the NetBird relay
			}
		}
		if pd.Status == peerConnected {
			pd.ICECandidateType = pairDoc{Local: p.GetLocalType(), Remote: p.GetRemoteType()}
			pd.ICECandidateEndpoint = pairDoc{Local: p.GetLocalEndpoint(), Remote: p.GetEndpoint()}
			pd.Latency = int64(p.GetLatency().AsDuration())
			doc.Peers.Connected++
		}
		for _, a := range p.GetAllowedIps() {
			if overlayIP([]string{a}) == "" {
				pd.Networks = append(pd.Networks, a)
			}
		}
		doc.Peers.Details = append(doc.Peers.Details, pd)
	}
	doc.Peers.Total = len(doc.Peers.Details)
	if detailed {
		since := func(t interface{ AsTime() time.Time }, ok bool) string { return rfc3339(t, ok) }
		doc.Machines = []machineNB{
			{"engine", s.GetEngineState(), since(s.GetSince(), s.GetSince() != nil)},
			{"mgmt", m.GetState(), since(m.GetSince(), m.GetSince() != nil)},
			{"signal", sig.GetState(), since(sig.GetSince(), sig.GetSince() != nil)},
		}
	}
	return doc
}

type statusFlags struct {
	detailed, json, yaml, ipv4 bool
	ips, names                 []string
	status, connType, check    string
}

func newStatusCmd(g *globals) *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the connection status (-d per peer; --json/--yaml; --check live|ready|startup)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := f.validate(); err != nil {
				return err
			}
			return g.withDaemon(cmd, 30*time.Second, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				s, err := c.Status(ctx, &daemonpb.StatusRequest{})
				if err != nil {
					if f.check != "" {
						return errCheckFailed
					}
					return err
				}
				return f.render(cmd.OutOrStdout(), s)
			})
		},
	}
	fl := cmd.Flags()
	fl.BoolVarP(&f.detailed, "detail", "d", false, "one block per peer, and each machine's state and since when")
	fl.BoolVar(&f.json, "json", false, "JSON with the official keys")
	fl.BoolVar(&f.yaml, "yaml", false, "YAML with the official keys")
	fl.BoolVar(&f.ipv4, "ipv4", false, "print only the NetBird IPv4 address")
	fl.StringSliceVar(&f.ips, "filter-by-ips", nil, "only peers with these NetBird IPs")
	fl.StringSliceVar(&f.names, "filter-by-names", nil, "only peers with these FQDNs or names")
	fl.StringVar(&f.status, "filter-by-status", "", "only peers in this status: idle, connecting, connected")
	fl.StringVar(&f.connType, "filter-by-connection-type", "", "only peers with this connection type: P2P, Relayed")
	fl.StringVar(&f.check, "check", "", "exit 0 if the check passes, 1 if not: live, ready, startup")
	return cmd
}

func (f *statusFlags) validate() error {
	switch strings.ToLower(f.status) {
	case "", "idle", "connecting", "connected":
	default:
		return fmt.Errorf("--filter-by-status %q: want idle, connecting or connected", f.status)
	}
	switch strings.ToLower(f.connType) {
	case "", "p2p", "relayed":
	default:
		return fmt.Errorf("--filter-by-connection-type %q: want P2P or Relayed", f.connType)
	}
	switch f.check {
	case "", "live", "ready", "startup":
	default:
		return fmt.Errorf("--check %q: want live, ready or startup", f.check)
	}
	if f.json && f.yaml {
		return fmt.Errorf("give --json or --yaml, not both")
	}
	return nil
}

// filter keeps the peers every given filter accepts.
func (f *statusFlags) filter(doc *statusDoc) {
	keep := doc.Peers.Details[:0]
	for _, p := range doc.Peers.Details {
		if len(f.ips) > 0 && !slices.Contains(f.ips, p.NetbirdIP) {
			continue
		}
		if len(f.names) > 0 && !slices.ContainsFunc(f.names, func(n string) bool {
			return n == p.FQDN || strings.HasPrefix(p.FQDN, n+".")
		}) {
			continue
		}
		if f.status != "" && !strings.EqualFold(f.status, p.Status) {
			continue
		}
		if f.connType != "" && !strings.EqualFold(f.connType, p.ConnectionType) {
			continue
		}
		keep = append(keep, p)
	}
	doc.Peers.Details = keep
}

// checkPasses: live — the daemon answers; ready — the engine is logged in
// with its interface up; startup — management and signal connected too.
func checkPasses(check string, s *daemonpb.StatusResponse) bool {
	running := strings.HasPrefix(s.GetEngineState(), "running")
	switch check {
	case "live":
		return true
	case "ready":
		return running && s.GetAddress() != ""
	case "startup":
		return running && strings.HasPrefix(s.GetManagement().GetState(), "running.session.online") &&
			s.GetSignal().GetState() == "running.session.connected"
	}
	return false
}

func (f *statusFlags) render(w io.Writer, s *daemonpb.StatusResponse) error {
	if f.check != "" {
		if !checkPasses(f.check, s) {
			return errCheckFailed
		}
		return nil
	}
	if f.ipv4 {
		if p, err := netip.ParsePrefix(s.GetAddress()); err == nil {
			fmt.Fprintln(w, p.Addr())
		}
		return nil
	}
	doc := buildStatus(s, f.detailed || f.json || f.yaml)
	f.filter(&doc)
	switch {
	case f.json:
		b, err := json.MarshalIndent(doc, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	case f.yaml:
		b, err := yaml.Marshal(doc)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	writeHuman(w, s, doc, f.detailed)
	return nil
}

func connectedWord(ok bool) string {
	if ok {
		return "Connected"
	}
	return "Disconnected"
}

func writeHuman(w io.Writer, s *daemonpb.StatusResponse, doc statusDoc, detailed bool) {
	if detailed {
		fmt.Fprintln(w, "Peers detail:")
		for _, p := range doc.Peers.Details {
			fmt.Fprintf(w, " %s:\n", p.FQDN)
			fmt.Fprintf(w, "  NetBird IP: %s\n  Public key: %s\n  Status: %s\n  -- detail --\n", p.NetbirdIP, p.PublicKey, p.Status)
			fmt.Fprintf(w, "  Connection type: %s\n", p.ConnectionType)
			fmt.Fprintf(w, "  ICE candidate (Local/Remote): %s/%s\n", dash(p.ICECandidateType.Local), dash(p.ICECandidateType.Remote))
			fmt.Fprintf(w, "  ICE candidate endpoints (Local/Remote): %s/%s\n", dash(p.ICECandidateEndpoint.Local), dash(p.ICECandidateEndpoint.Remote))
			fmt.Fprintf(w, "  Relay server address: %s\n", dash(p.RelayAddress))
			fmt.Fprintf(w, "  Last connection update: %s\n", p.LastStatusUpdate)
			fmt.Fprintf(w, "  Last WireGuard handshake: %s\n", p.LastWireguardHandshake)
			fmt.Fprintf(w, "  Transfer status (received/sent) %d B/%d B\n", p.TransferReceived, p.TransferSent)
			fmt.Fprintf(w, "  Latency: %v\n", time.Duration(p.Latency))
			fmt.Fprintf(w, "  Machine: %s since %s\n", p.Machine, p.MachineSince)
			if p.LastError != "" {
				fmt.Fprintf(w, "  Last error: %s\n", p.LastError)
			}
			fmt.Fprintln(w)
		}
	}
	fmt.Fprintf(w, "Daemon version: %s\nCLI version: %s\n", doc.DaemonVersion, doc.CLIVersion)
	if !s.GetEngineRunning() {
		fmt.Fprintln(w, "Daemon status: Down (netbird up connects)")
	}
	fmt.Fprintf(w, "Management: %s", connectedWord(doc.Management.Connected))
	if detailed {
		fmt.Fprintf(w, " to %s", doc.Management.URL)
	}
	if doc.Management.Error != "" {
		fmt.Fprintf(w, " (%s)", doc.Management.Error)
	}
	fmt.Fprintf(w, "\nSignal: %s", connectedWord(doc.Signal.Connected))
	if detailed && doc.Signal.URL != "" {
		fmt.Fprintf(w, " to %s", doc.Signal.URL)
	}
	if doc.Signal.Error != "" {
		fmt.Fprintf(w, " (%s)", doc.Signal.Error)
	}
	fmt.Fprintf(w, "\nRelays: %d/%d Available\n", doc.Relays.Available, doc.Relays.Total)
	if detailed {
		for _, r := range doc.Relays.Details {
			if r.Available {
				fmt.Fprintf(w, "  [%s] is Available\n", r.URI)
			} else {
				fmt.Fprintf(w, "  [%s] is Unavailable, reason: %s\n", r.URI, dash(r.Error))
			}
		}
	}
	fmt.Fprintf(w, "FQDN: %s\nNetBird IP: %s\n", dash(doc.FQDN), dash(doc.NetbirdIP))
	iface := "Userspace"
	if s.GetNetstack() {
		iface = "Userspace (netstack)"
	}
	fmt.Fprintf(w, "Interface type: %s\n", iface)
	fmt.Fprintf(w, "Peers count: %d/%d Connected\n", doc.Peers.Connected, doc.Peers.Total)
	if detailed {
		fmt.Fprintln(w, "Machines:")
		for _, m := range doc.Machines {
			fmt.Fprintf(w, "  %s: %s since %s\n", m.Machine, dash(m.State), m.Since)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
