package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
)

func sampleStatus() *daemonpb.StatusResponse {
	at := timestamppb.New(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC))
	return &daemonpb.StatusResponse{DaemonVersion: "0.1.0", EngineRunning: true, EngineState: "running.signal-up.steady", Since: at,
		PublicKey: "own", Address: "100.64.0.1/10", Fqdn: "me.netbird.selfhosted", WireguardPort: 51820,
		Management: &daemonpb.Link{State: "running.session.online.synced", Url: "https://m:443"},
		Signal:     &daemonpb.Link{State: "running.session.connected", Url: "s:443"},
		Peers: []*daemonpb.Peer{
			{PublicKey: "k1", Fqdn: "one.netbird.selfhosted", AllowedIps: []string{"100.64.0.2/32", "10.0.0.0/24"},
				State: "session.ice.connected.direct", Since: at, Connection: "direct", LocalType: "host", RemoteType: "srflx",
				Endpoint: "198.18.0.3:51820", LocalEndpoint: "198.18.0.2:51820", Latency: durationpb.New(3 * time.Millisecond), RxBytes: 10, TxBytes: 20},
			{PublicKey: "k2", Fqdn: "two.netbird.selfhosted", AllowedIps: []string{"100.64.0.3/32"}, State: "session.ice.connected.relayed",
				Since: at, Connection: "relayed", Endpoint: "240.0.0.1:3478"},
			{PublicKey: "k3", Fqdn: "three.netbird.selfhosted", AllowedIps: []string{"100.64.0.4/32"}, State: "session.offering", Since: at},
			{PublicKey: "k4", Fqdn: "four.netbird.selfhosted", AllowedIps: []string{"100.64.0.5/32"}, State: "parked"},
		}}
}

func TestStatusJSONKeys(t *testing.T) {
	var f statusFlags
	f.json = true
	var out bytes.Buffer
	if err := f.render(&out, sampleStatus()); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"peers", "cliVersion", "daemonVersion", "management", "signal", "relays", "netbirdIp", "publicKey",
		"usesKernelInterface", "wireguardPort", "fqdn", "quantumResistance", "networks", "dnsServers", "events",
		"lazyConnectionEnabled", "profileName"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("status --json lacks %q", k)
		}
	}
	peers := doc["peers"].(map[string]any)
	if peers["total"].(float64) != 4 || peers["connected"].(float64) != 2 {
		t.Fatalf("peers: %v", peers)
	}
	p := peers["details"].([]any)[0].(map[string]any)
	for _, k := range []string{"fqdn", "netbirdIp", "publicKey", "status", "lastStatusUpdate", "connectionType", "iceCandidateType",
		"iceCandidateEndpoint", "relayAddress", "lastWireguardHandshake", "transferReceived", "transferSent", "latency",
		"quantumResistance", "networks"} {
		if _, ok := p[k]; !ok {
			t.Errorf("peer lacks %q", k)
		}
	}
	if p["status"] != "Connected" || p["connectionType"] != "P2P" || p["netbirdIp"] != "100.64.0.2" || p["latency"].(float64) != 3e6 ||
		p["networks"].([]any)[0] != "10.0.0.0/24" {
		t.Fatalf("peer: %v", p)
	}
	if ep := p["iceCandidateEndpoint"].(map[string]any); ep["local"] != "198.18.0.2:51820" || ep["remote"] != "198.18.0.3:51820" {
		t.Fatalf("iceCandidateEndpoint: %v", ep)
	}
	if m := doc["management"].(map[string]any); m["connected"] != true || m["url"] != "https://m:443" {
		t.Fatalf("management: %v", m)
	}
}

func TestStatusFiltersAndChecks(t *testing.T) {
	tests := []struct {
		f    statusFlags
		want []string // FQDNs left
	}{
		{statusFlags{}, []string{"one.", "two.", "three.", "four."}},
		{statusFlags{status: "connected"}, []string{"one.", "two."}},
		{statusFlags{status: "Connecting"}, []string{"three."}},
		{statusFlags{status: "idle"}, []string{"four."}},
		{statusFlags{connType: "p2p"}, []string{"one."}},
		{statusFlags{connType: "Relayed"}, []string{"two."}},
		{statusFlags{ips: []string{"100.64.0.3", "100.64.0.5"}}, []string{"two.", "four."}},
		{statusFlags{names: []string{"three", "one.netbird.selfhosted"}}, []string{"one.", "three."}},
		{statusFlags{status: "connected", connType: "relayed"}, []string{"two."}},
	}
	for _, tt := range tests {
		doc := buildStatus(sampleStatus(), false)
		tt.f.filter(&doc)
		var got []string
		for _, p := range doc.Peers.Details {
			got = append(got, strings.SplitAfter(p.FQDN, ".")[0])
		}
		if strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%+v: %v, want %v", tt.f, got, tt.want)
		}
	}
	s := sampleStatus()
	for _, c := range []string{"live", "ready", "startup"} {
		if !checkPasses(c, s) {
			t.Errorf("check %s fails on a connected engine", c)
		}
	}
	s.Signal.State = "running.backoff"
	if !checkPasses("ready", s) || checkPasses("startup", s) {
		t.Error("signal down: ready passes, startup fails")
	}
	down := &daemonpb.StatusResponse{EngineState: "down"}
	if !checkPasses("live", down) || checkPasses("ready", down) {
		t.Error("engine down: live passes, ready fails")
	}
	var f statusFlags
	f.ipv4 = true
	var out bytes.Buffer
	_ = f.render(&out, sampleStatus())
	if out.String() != "100.64.0.1\n" {
		t.Errorf("--ipv4: %q", out.String())
	}
	f = statusFlags{detailed: true}
	out.Reset()
	_ = f.render(&out, sampleStatus())
	for _, want := range []string{"Management: Connected", "Signal: Connected", "Peers count: 2/4 Connected", "NetBird IP: 100.64.0.1/10",
		"Machine: session.ice.connected.direct since", "engine: running.signal-up.steady since"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("status -d lacks %q:\n%s", want, out.String())
		}
	}
}

// The NetBird relay in status --json: relays (uri, available, error) and a
// relayed peer's relayAddress and connection type.
func TestStatusRelays(t *testing.T) {
	s := sampleStatus()
	s.Relays = []*daemonpb.Relay{{Uri: "rels://relay.example:443", Available: true, Address: "rels://relay.example:443"},
		{Uri: "rel://far:80", Error: "relay: dial ws://far:80/relay: refused"}}
	s.Peers = append(s.Peers, &daemonpb.Peer{PublicKey: "k5", AllowedIps: []string{"100.64.0.6/32"}, State: "session.relay-only.connected",
		Connection: "relayed", LocalType: "relay", RemoteType: "relay", RelayAddress: "rels://relay.example:443"})
	var f statusFlags
	f.json = true
	var out bytes.Buffer
	if err := f.render(&out, s); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Relays struct {
			Total, Available int
			Details          []struct {
				URI       string
				Available bool
				Error     string
			}
		}
		Peers struct {
			Details []struct {
				PublicKey, Status, ConnectionType, RelayAddress string
			}
		}
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Relays.Total != 2 || doc.Relays.Available != 1 || doc.Relays.Details[0].URI != "rels://relay.example:443" ||
		doc.Relays.Details[1].Available || !strings.Contains(doc.Relays.Details[1].Error, "refused") {
		t.Fatalf("relays %+v", doc.Relays)
	}
	p := doc.Peers.Details[len(doc.Peers.Details)-1]
	if p.Status != "Connected" || p.ConnectionType != "Relayed" || p.RelayAddress != "rels://relay.example:443" {
		t.Fatalf("relayed peer %+v", p)
	}
}
