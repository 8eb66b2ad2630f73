package officialpeer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/pion/ice/v2"
)

// Version is the NetBird version the double reports.
const Version = "0.77.0"

// Config configures a double.
type Config struct {
	ManagementURL string
	SetupKey      string
	Key           wgtypes.Key
	Hostname      string
	Logger        *zap.Logger // nil: none
}

// Peer is a running double.
type Peer struct {
	cfg  Config
	log  *zap.Logger
	pub  wgtypes.Key
	addr netip.Prefix

	sock *udpSocket
	mux  *ice.UDPMuxDefault
	dev  *device.Device
	tnet *netstack.Net

	mc     *mgmt.Client
	sc     *sigwire.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closeOnce sync.Once

	mu    sync.Mutex
	conns map[wgtypes.Key]*remote

	drops     atomic.Int64
	checks    atomic.Int64
	answers   atomic.Int64
	connected chan struct{} // receives on every connect (buffered)
}

// Start registers the double with management, brings up its WireGuard
// device, connects to signal and starts connecting to every peer of its map.
func Start(cfg Config) (*Peer, error) {
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Hostname == "" {
		cfg.Hostname = "official"
	}
	p := &Peer{cfg: cfg, log: cfg.Logger.Named("officialpeer"), pub: cfg.Key.PublicKey(),
		conns: make(map[wgtypes.Key]*remote), connected: make(chan struct{}, 64)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if err := p.start(); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func (p *Peer) start() error {
	var err error
	p.mc, err = mgmt.Dial(p.cfg.ManagementURL, p.cfg.Key)
	if err != nil {
		return err
	}
	meta := mgmt.Meta{Hostname: p.cfg.Hostname, GoOS: "linux"}
	sk, err := p.mc.ServerKey(p.ctx)
	if err != nil {
		return err
	}
	login, err := p.mc.Login(p.ctx, sk, "", meta)
	if errors.Is(err, mgmt.ErrNotRegistered) {
		login, err = p.mc.Login(p.ctx, sk, p.cfg.SetupKey, meta)
	}
	if err != nil {
		return err
	}
	p.addr = login.Peer.Address
	if p.sock, err = listenUDP(); err != nil {
		return err
	}
	p.mux = ice.NewUDPMuxDefault(ice.UDPMuxParams{UDPConn: muxConn{p.sock}})
	tun, tnet, err := netstack.CreateNetTUN([]netip.Addr{p.addr.Addr()}, nil, 1280)
	if err != nil {
		return err
	}
	p.tnet = tnet
	p.dev = device.NewDevice(tun, &wgBind{s: p.sock}, device.NewLogger(device.LogLevelSilent, ""))
	if err := p.dev.IpcSet(fmt.Sprintf("private_key=%x\nlisten_port=%d\n", p.cfg.Key[:], p.sock.port())); err != nil {
		return err
	}
	if err := p.dev.Up(); err != nil {
		return err
	}
	p.sc, err = sigwire.Dial(login.Config.Signal.URI, false, p.cfg.Key)
	if err != nil {
		return err
	}
	st, err := p.sc.Connect(p.ctx)
	if err != nil {
		return err
	}
	sync, err := p.mc.Sync(p.ctx, sk, meta)
	if err != nil {
		st.Close()
		return err
	}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		defer st.Close()
		for {
			m, err := st.Recv()
			if err != nil {
				return
			}
			p.onSignal(m)
		}
	}()
	go func() {
		defer p.wg.Done()
		defer sync.Close()
		for {
			u, err := sync.Recv()
			if err != nil {
				return
			}
			if u.Map != nil {
				p.onMap(u.Map)
			}
		}
	}()
	return nil
}

// Key is the double's public key.
func (p *Peer) Key() wgtypes.Key { return p.pub }

// Addr is the double's overlay address.
func (p *Peer) Addr() netip.Addr { return p.addr.Addr() }

// Net is the double's netstack, for pings.
func (p *Peer) Net() *netstack.Net { return p.tnet }

// Drops counts the paths the double declared dead (6 s without an answer
// to its checks).
func (p *Peer) Drops() int { return int(p.drops.Load()) }

// Checks counts the Binding requests the double sent on selected pairs,
// Answers the authenticated answers it got.
func (p *Peer) Checks() (sent, answered int) { return int(p.checks.Load()), int(p.answers.Load()) }

// Connected receives once per ICE connection the double makes.
func (p *Peer) Connected() <-chan struct{} { return p.connected }

// Close stops everything and waits for the double's goroutines. It is
// idempotent.
func (p *Peer) Close() { p.closeOnce.Do(p.close) }

func (p *Peer) close() {
	p.cancel()
	p.mu.Lock()
	conns := p.conns
	p.conns = map[wgtypes.Key]*remote{}
	p.mu.Unlock()
	for _, r := range conns {
		r.close()
	}
	if p.sc != nil {
		_ = p.sc.Close()
	}
	if p.mc != nil {
		_ = p.mc.Close()
	}
	p.wg.Wait()
	if p.dev != nil {
		p.dev.Close()
	}
	if p.mux != nil {
		_ = p.mux.Close()
	}
	if p.sock != nil {
		p.sock.close()
	}
}

// onMap opens a connection to every new peer of the map; peers that left
// are closed.
func (p *Peer) onMap(nm *mgmt.NetworkMap) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ctx.Err() != nil {
		return
	}
	seen := make(map[wgtypes.Key]bool)
	for _, rp := range nm.Peers {
		seen[rp.Key] = true
		if p.conns[rp.Key] != nil {
			continue
		}
		r := &remote{p: p, key: rp.Key, allowed: rp.AllowedIPs,
			controlling: p.pub.String() > rp.Key.String()}
		p.conns[rp.Key] = r
		r.openLocked()
	}
	for k, r := range p.conns {
		if !seen[k] {
			delete(p.conns, k)
			go r.close()
		}
	}
}

func (p *Peer) onSignal(m sigwire.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.conns[m.From]
	if r == nil {
		return // not in the map yet: dropped, as official peers do
	}
	switch m.Kind {
	case sigwire.Offer:
		r.onOfferLocked(m)
	case sigwire.Answer:
		r.onAnswerLocked(m)
	case sigwire.Candidate:
		r.onCandidateLocked(m.Candidate)
	}
}

// send sends one signal message in the background.
func (p *Peer) send(m sigwire.Message) {
	if p.ctx.Err() != nil {
		return
	}
	m.Version = Version
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.sc.Send(p.ctx, m); err != nil && p.ctx.Err() == nil {
			p.log.Debug("send failed", zap.Stringer("event", m.Kind), zap.Error(err))
		}
	}()
}

// ipc applies a wireguard-go configuration text.
func (p *Peer) ipc(text string) {
	if err := p.dev.IpcSet(text); err != nil {
		p.log.Debug("wireguard config failed", zap.Error(err))
	}
}

// handshakeArrived reports whether WireGuard completed a handshake with k.
func (p *Peer) handshakeArrived(k wgtypes.Key) bool {
	text, err := p.dev.IpcGet()
	if err != nil {
		return false
	}
	var mine bool
	for _, line := range strings.Split(text, "\n") {
		key, val, _ := strings.Cut(line, "=")
		switch key {
		case "public_key":
			mine = val == fmt.Sprintf("%x", k[:])
		case "last_handshake_time_sec":
			if mine && val != "0" {
				return true
			}
		}
	}
	return false
}

const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func randomLetters(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	return string(b)
}
