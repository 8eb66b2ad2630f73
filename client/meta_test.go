package client_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/mgmtfsm"
)

// TestPostureMeta: the files the login's posture checks name are reported
// on Sync (exists, process running: this test's own executable runs), and
// SyncMeta sends the meta again without a new Sync.
func TestPostureMeta(t *testing.T) {
	n := startNet(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "absent")
	n.Mgmt.SetPostureFiles([]string{exe, missing})
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	synced := make(chan struct{}, 4)
	obs := fsm.ObserverFunc(func(r fsm.Record) {
		if r.Machine == mgmtfsm.ID && r.To == mgmtfsm.Synced {
			select {
			case synced <- struct{}{}:
			default:
			}
		}
	})
	meta := mgmt.Meta{Hostname: "posture", GoOS: "linux"}
	c, err := client.New(client.Options{ManagementURL: n.ManagementURL(), PrivateKey: key, SetupKey: n.SetupKey(),
		Meta: meta, BlockInbound: true, Mode: wgiface.Netstack, Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: zap.NewNop(),
		Observers: []fsm.Observer{obs}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-synced:
	case <-time.After(wait):
		t.Fatal("not synced")
	}
	m, syncs := n.Mgmt.Meta(key.PublicKey())
	files := m.GetFiles()
	if len(files) != 2 || files[0].GetPath() != exe || !files[0].GetExist() || !files[0].GetProcessIsRunning() ||
		files[1].GetPath() != missing || files[1].GetExist() || files[1].GetProcessIsRunning() {
		t.Errorf("files on sync: %v", files)
	}
	if !m.GetFlags().GetBlockInbound() {
		t.Errorf("flags: %v", m.GetFlags())
	}
	if err := c.SyncMeta(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, syncs2 := n.Mgmt.Meta(key.PublicKey())
	if syncs2 != syncs+1 || len(m.GetFiles()) != 2 || !m.GetFlags().GetBlockInbound() {
		t.Errorf("after SyncMeta: %d → %d calls, meta %v", syncs, syncs2, m)
	}
	want := mgmt.InterfaceAddresses()
	if got := m.GetNetworkAddresses(); len(got) != len(want) {
		t.Errorf("networkAddresses %v, want %v", got, want)
	}
}

// TestPostureChecksFromSync: an account's posture checks that change
// while the client is synced arrive with the next map (SyncResponse field
// 6); the client looks at the files they name and tells management with
// SyncMeta at once, without a new login or Sync.
func TestPostureChecksFromSync(t *testing.T) {
	n := startNet(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	key, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	synced := make(chan struct{}, 4)
	obs := fsm.ObserverFunc(func(r fsm.Record) {
		if r.Machine == mgmtfsm.ID && r.To == mgmtfsm.Synced {
			select {
			case synced <- struct{}{}:
			default:
			}
		}
	})
	c, err := client.New(client.Options{ManagementURL: n.ManagementURL(), PrivateKey: key, SetupKey: n.SetupKey(),
		Meta: mgmt.Meta{Hostname: "posture-sync", GoOS: "linux"}, Mode: wgiface.Netstack,
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), Logger: zap.NewNop(), Observers: []fsm.Observer{obs}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-synced:
	case <-time.After(wait):
		t.Fatal("not synced")
	}
	if m, _ := n.Mgmt.Meta(key.PublicKey()); len(m.GetFiles()) != 0 {
		t.Fatalf("files before any check: %v", m.GetFiles())
	}
	answered := n.Mgmt.MetaSynced()
	n.Mgmt.SetPostureFiles([]string{exe})
	select {
	case <-answered:
	case <-time.After(wait):
		t.Fatal("the new posture checks were not answered with SyncMeta")
	}
	m, _ := n.Mgmt.Meta(key.PublicKey())
	if f := m.GetFiles(); len(f) != 1 || f[0].GetPath() != exe || !f[0].GetExist() || !f[0].GetProcessIsRunning() {
		t.Errorf("files after the checks changed: %v", f)
	}
}
