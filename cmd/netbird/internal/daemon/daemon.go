// Package daemon is `netbird service run`: the long-running process that
// owns one client.Client at a time and serves the local gRPC API of
// internal/proto/daemonpb to the CLI. `down` closes the client (tunnels
// removed, interface deleted), `up` builds a new one from the config: the
// daemon itself never restarts. Status and events are views of the
// engine's snapshot (engine.Status) and its trace (fsm.Ring); the daemon
// keeps one ring for its whole life, so `netbird events` spans down/up
// cycles.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"

	"github.com/nbfsm/nbfsm/client"
	"github.com/nbfsm/nbfsm/engine"
	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/config"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/internal/wgiface"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// DefaultAddr is the official daemon address.
const DefaultAddr = "unix:///var/run/netbird.sock"

// RingSize is how many transitions `netbird events` can replay.
const RingSize = 4096

// Options configure a daemon.
type Options struct {
	ConfigPath string // default config.DefaultPath
	// Addr is unix:///path or tcp://host:port ("" → DefaultAddr). Only
	// Serve uses it.
	Addr string
	// SocketGroup, if set, owns the unix socket (mode 0660); otherwise it
	// is mode 0600 (root only).
	SocketGroup string
	// Netstack runs WireGuard on a userspace stack (NB_USE_NETSTACK_MODE).
	Netstack bool
	Logger   *zap.Logger
	// Level, if set, is Logger's level: SetLogLevel changes it at run time
	// (`netbird debug log level`). nil: the level is fixed.
	Level *zap.AtomicLevel
	// LogFile is the log's path, for debug bundles; "": the log is not a
	// file (stdout, or tests).
	LogFile string
	// NetworkMonitor starts the OS network monitor with each engine (when
	// the config enables it); nil: none.
	NetworkMonitor MonitorFactory
	// MgmtOptions are extra management client options (tests).
	MgmtOptions []mgmt.Option
}

// MonitorFactory starts a network monitor feeding c, leaving out the
// addresses of the interfaces in exclude (the overlay, IFaceBlackList); the
// returned function stops it.
type MonitorFactory func(c *client.Client, exclude []string, log *zap.Logger) (stop func(), err error)

// Daemon owns the config and at most one client.Client.
type Daemon struct {
	o       Options
	log     *zap.Logger
	ring    *fsm.Ring
	counts  *Counters
	started time.Time

	op sync.Mutex // serializes up, down, login, logout, close

	mu          sync.Mutex // guards the fields below
	cfg         *config.Config
	client      *client.Client
	stopMonitor func()
	hostname    string
	closed      bool
	past        totals // counters of the engines already stopped
}

// totals are engine counters summed over the daemon's life (metrics are
// monotonic across down/up).
type totals struct {
	staleGen, staleTimer uint64
	signal               sigwire.StatsSnapshot
}

func (t totals) add(c *client.Client) totals {
	if s, err := c.Status(); err == nil {
		t.staleGen += s.Loop.StaleGen
		t.staleTimer += s.Loop.StaleTimer
	}
	t.signal = signalfsm.AddStats(t.signal, c.SignalStats())
	return t
}

// totals is past plus the running engine's counters.
func (d *Daemon) totals() totals {
	d.mu.Lock()
	t, c := d.past, d.client
	d.mu.Unlock()
	if c != nil {
		t = t.add(c)
	}
	return t
}

// New loads (or creates) the config. An unreadable or corrupt config is an
// error: the daemon does not start with a key of its own invention.
func New(o Options) (*Daemon, error) {
	if o.ConfigPath == "" {
		o.ConfigPath = config.DefaultPath
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	cfg, created, err := config.Load(o.ConfigPath)
	if err != nil {
		return nil, err
	}
	d := &Daemon{o: o, log: o.Logger.Named("daemon"), ring: fsm.NewRing(RingSize), counts: NewCounters(), cfg: cfg,
		started: time.Now()}
	if created {
		k, _ := cfg.Key()
		d.log.Info("config created with a new private key", zap.String("config", o.ConfigPath),
			zap.String("public_key", k.PublicKey().String()))
	}
	return d, nil
}

// Config returns a copy of the current config (tests).
func (d *Daemon) Config() config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return *d.cfg
}

// Client returns the running client, or nil when down.
func (d *Daemon) Client() *client.Client {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.client
}

// Counters returns the daemon's transition counters.
func (d *Daemon) Counters() *Counters { return d.counts }

// Ring returns the trace the daemon keeps for its whole life.
func (d *Daemon) Ring() *fsm.Ring { return d.ring }

// AutoConnect starts the engine unless the config disables it (at boot).
func (d *Daemon) AutoConnect() error {
	if d.Config().DisableAutoConnect {
		d.log.Info("auto-connect disabled in the config: waiting for `netbird up`")
		return nil
	}
	d.op.Lock()
	defer d.op.Unlock()
	return d.startLocked("")
}

// applySettings changes the config as the user asked; it reports whether
// anything the running engine uses changed.
func applySettings(c *config.Config, s *daemonpb.Settings) (changed bool) {
	if s == nil {
		return false
	}
	if s.ManagementUrl != nil && *s.ManagementUrl != c.ManagementURL.S {
		c.ManagementURL.S, changed = *s.ManagementUrl, true
	}
	if s.InterfaceName != nil && *s.InterfaceName != c.WgIface {
		c.WgIface, changed = *s.InterfaceName, true
	}
	if s.WireguardPort != nil && int(*s.WireguardPort) != c.WgPort {
		c.WgPort, changed = int(*s.WireguardPort), true
	}
	if s.Mtu != nil && int(*s.Mtu) != c.MTU {
		c.MTU, changed = int(*s.Mtu), true
	}
	if s.NetworkMonitor != nil && *s.NetworkMonitor != c.MonitorEnabled() {
		v := *s.NetworkMonitor
		c.NetworkMonitor, changed = &v, true
	}
	if s.DisableFirewall != nil && *s.DisableFirewall != c.DisableFirewall {
		c.DisableFirewall, changed = *s.DisableFirewall, true
	}
	if s.BlockInbound != nil && *s.BlockInbound != c.BlockInbound {
		c.BlockInbound, changed = *s.BlockInbound, true
	}
	if s.PresharedKey != nil && strings.TrimSpace(*s.PresharedKey) != c.PreSharedKey {
		c.PreSharedKey, changed = strings.TrimSpace(*s.PresharedKey), true
	}
	if s.DisableAutoConnect != nil {
		c.DisableAutoConnect = *s.DisableAutoConnect // not used by a running engine
	}
	return changed
}

// settingsError checks the values before they reach the config file.
func settingsError(s *daemonpb.Settings) error {
	if s == nil {
		return nil
	}
	if s.ManagementUrl != nil {
		c, err := mgmt.Dial(*s.ManagementUrl, [32]byte{})
		if err != nil {
			return fmt.Errorf("--management-url: %w", err)
		}
		_ = c.Close() // it never connected: Dial only checks the URL

	}
	if s.PresharedKey != nil && strings.TrimSpace(*s.PresharedKey) != "" {
		if _, err := nbcrypto.ParseKey(strings.TrimSpace(*s.PresharedKey)); err != nil {
			return fmt.Errorf("--preshared-key: %w", err) // the error does not quote the key
		}
	}
	if s.WireguardPort != nil && (*s.WireguardPort < 0 || *s.WireguardPort > 65535) {
		return fmt.Errorf("--wireguard-port %d: want 0 (any free port) to 65535", *s.WireguardPort)
	}
	if s.Mtu != nil && (*s.Mtu < 576 || *s.Mtu > 8192) {
		return fmt.Errorf("--mtu %d: want 576 to 8192", *s.Mtu)
	}
	if s.InterfaceName != nil && (*s.InterfaceName == "" || len(*s.InterfaceName) > 15) {
		return fmt.Errorf("--interface-name %q: want 1 to 15 characters", *s.InterfaceName)
	}
	return nil
}

// updateConfig applies s and saves the file if it changed.
func (d *Daemon) updateConfig(s *daemonpb.Settings) (engineChanged bool, err error) {
	if err := settingsError(s); err != nil {
		return false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	next := *d.cfg
	before, _ := d.cfg.Marshal()
	engineChanged = applySettings(&next, s)
	if s != nil && s.Hostname != nil && *s.Hostname != d.hostname {
		d.hostname, engineChanged = *s.Hostname, true
	}
	after, err := next.Marshal()
	if err != nil {
		return false, err
	}
	if string(before) != string(after) {
		if err := next.Save(d.o.ConfigPath); err != nil {
			return false, err
		}
		*d.cfg = next
	}
	return engineChanged, nil
}

func (d *Daemon) meta() mgmt.Meta {
	m := mgmt.DefaultMeta()
	if d.hostname != "" {
		m.Hostname = d.hostname
	}
	return m
}

// startLocked builds and starts a client from the config (d.op held). A
// running client gets the setup key instead.
func (d *Daemon) startLocked(setupKey string) error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return errors.New("daemon: shutting down")
	}
	if c := d.client; c != nil {
		d.mu.Unlock()
		if setupKey != "" {
			return c.SetSetupKey(setupKey)
		}
		return nil
	}
	cfg := *d.cfg
	meta := d.meta()
	d.mu.Unlock()
	key, err := cfg.Key()
	if err != nil {
		return fmt.Errorf("config %s: PrivateKey: %w", d.o.ConfigPath, err)
	}
	var psk wgtypes.Key
	if cfg.PreSharedKey != "" {
		if psk, err = nbcrypto.ParseKey(cfg.PreSharedKey); err != nil {
			return fmt.Errorf("config %s: PreSharedKey: %w", d.o.ConfigPath, err)
		}
	}
	mode := wgiface.TUN
	if d.o.Netstack {
		mode = wgiface.Netstack
	}
	c, err := client.New(client.Options{
		ManagementURL: cfg.ManagementURL.S, PrivateKey: key, PresharedKey: psk, SetupKey: setupKey, Meta: meta,
		Mode: mode, Interface: cfg.WgIface, Listen: netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(cfg.WgPort)),
		MTU: cfg.MTU, DisableFirewall: cfg.DisableFirewall, BlockInbound: cfg.BlockInbound,
		Logger: d.o.Logger, Ring: d.ring, Observers: []fsm.Observer{d.counts}, MgmtOptions: d.o.MgmtOptions,
		ForceRelay: relayEnv.forceRelay(), RelayURLs: relayEnv.homeRelays(),
	})
	if err != nil {
		return err
	}
	if err := c.Start(context.Background()); err != nil {
		_ = c.Close()
		return err
	}
	var stop func()
	if d.o.NetworkMonitor != nil && cfg.MonitorEnabled() {
		exclude := append([]string{cfg.WgIface}, cfg.IFaceBlackList...)
		if stop, err = d.o.NetworkMonitor(c, exclude, d.o.Logger); err != nil {
			d.log.Warn("network monitor not started: network changes are noticed by the links' timers only", zap.Error(err))
			stop = nil
		}
	}
	d.mu.Lock()
	d.client, d.stopMonitor = c, stop
	d.mu.Unlock()
	d.log.Info("engine started", zap.String("management", cfg.ManagementURL.S), zap.Stringer("listen", c.LocalAddr()),
		zap.String("interface", cfg.WgIface), zap.Stringer("mode", mode))
	return nil
}

// stopLocked closes the client, if any (d.op held).
func (d *Daemon) stopLocked() error {
	d.mu.Lock()
	c, stop := d.client, d.stopMonitor
	d.client, d.stopMonitor = nil, nil
	d.mu.Unlock()
	if c == nil {
		return nil
	}
	if stop != nil {
		stop()
	}
	t := d.past.add(c) // before Close: the loop answers
	d.mu.Lock()
	d.past = t
	d.mu.Unlock()
	err := c.Close()
	d.log.Info("engine stopped: tunnels removed, interface deleted")
	return err
}

// Close stops the engine; the daemon cannot be used afterwards.
func (d *Daemon) Close() error {
	d.op.Lock()
	defer d.op.Unlock()
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	return d.stopLocked()
}

// Register registers the daemon's API on s.
func (d *Daemon) Register(s *grpc.Server) { daemonpb.RegisterDaemonServiceServer(s, &api{d: d}) }

// connected: logged in (running) and signal connected.
func connected(s engine.Status) bool {
	return (s.State == engine.Running || strings.HasPrefix(string(s.State), string(engine.Running)+".")) &&
		(s.Signal.State == signalfsm.Connected)
}

// relayEnv reads the official client's relay variables from the daemon's
// environment: NB_FORCE_RELAY=true (no ICE, relay only) and
// NB_HOME_RELAY_SERVERS (a comma list replacing management's relay URLs).
var relayEnv = envReader(os.Getenv)

type envReader func(string) string

func (g envReader) forceRelay() bool {
	v, err := strconv.ParseBool(strings.TrimSpace(g("NB_FORCE_RELAY")))
	return err == nil && v
}

func (g envReader) homeRelays() []string {
	var out []string
	for _, u := range strings.Split(g("NB_HOME_RELAY_SERVERS"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}
