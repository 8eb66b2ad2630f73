package engine

import (
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/nbfsm/nbfsm/fsm"
	"github.com/nbfsm/nbfsm/internal/mgmt"
	"github.com/nbfsm/nbfsm/internal/sigwire"
	"github.com/nbfsm/nbfsm/peerfsm"
	"github.com/nbfsm/nbfsm/signalfsm"
)

// fakeMgmt and fakeSignal start no worker: tests drive the links with
// events, as their workers would.
type fakeMgmt struct{ sessions atomic.Int64 }

func (f *fakeMgmt) FetchKey(fsm.Sender) func() { f.sessions.Add(1); return func() {} }
func (f *fakeMgmt) Login(fsm.Sender, wgtypes.Key, string) func() {
	return func() {}
}
func (f *fakeMgmt) Sync(fsm.Sender, wgtypes.Key) func() { return func() {} }
func (f *fakeMgmt) EndSession()                         {}

type fakeSignal struct{ dials atomic.Int64 }

func (f *fakeSignal) Connect(fsm.Sender, signalfsm.Server) func() { f.dials.Add(1); return func() {} }

type nopICE struct{}

func (nopICE) AddRemoteCandidate(string) {}
func (nopICE) Stop()                     {}

// fakePeers counts what the peer machines ask for.
type fakePeers struct {
	mu     sync.Mutex
	offers map[wgtypes.Key]int
	sets   atomic.Int64
	n      atomic.Int64
}

func (f *fakePeers) NewCredentials() peerfsm.Credentials {
	n := f.n.Add(1)
	return peerfsm.Credentials{Ufrag: fmt.Sprintf("u%d", n), Pwd: "p", SessionID: []byte{byte(n)}}
}

func (f *fakePeers) Send(_ fsm.Sender, m sigwire.Message) {
	if m.Kind != sigwire.Offer {
		return
	}
	f.mu.Lock()
	if f.offers == nil {
		f.offers = map[wgtypes.Key]int{}
	}
	f.offers[m.To]++
	f.mu.Unlock()
}

func (f *fakePeers) offered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.offers)
}

func (f *fakePeers) StartICE(fsm.Sender, peerfsm.Agent) peerfsm.ICEHandle { return nopICE{} }
func (f *fakePeers) SetPeer(peerfsm.Poster, peerfsm.WGPeer) error         { f.sets.Add(1); return nil }
func (f *fakePeers) RemovePeer(wgtypes.Key) error                         { return nil }
func (f *fakePeers) HoldPath(peerfsm.Credentials, netip.AddrPort) func()  { return func() {} }
func (f *fakePeers) LastReceive(netip.AddrPort) time.Time                 { return time.Time{} }
func (f *fakePeers) RelayLastReceive(wgtypes.Key) time.Time               { return time.Time{} }
func (f *fakePeers) CurrentEndpoint(wgtypes.Key) netip.AddrPort           { return netip.AddrPort{} }
func (f *fakePeers) Probe(wgtypes.Key)                                    {}
func (f *fakePeers) Now() time.Time                                       { return time.Now() }

func peerKey(i int) wgtypes.Key {
	var k wgtypes.Key
	k[0], k[1], k[2] = byte(i), byte(i>>8), byte(i>>16)
	k[31] = 0x5a
	return k
}

func networkMap(serial uint64, n int) *mgmt.NetworkMap {
	nm := &mgmt.NetworkMap{Serial: serial}
	for i := range n {
		nm.Peers = append(nm.Peers, mgmt.RemotePeer{Key: peerKey(i),
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), 32)}})
	}
	return nm
}

var ownKey = wgtypes.Key{0x80, 1, 2, 3}

func newTestEngine(fp *fakePeers) (*Engine, error) {
	return New(Config{PrivateKey: ownKey, Mgmt: &fakeMgmt{}, Signal: &fakeSignal{}, Peers: fp})
}

var login = &mgmt.LoginResult{Config: mgmt.Config{Signal: mgmt.HostConfig{URI: "127.0.0.1:1", Protocol: mgmt.ProtocolHTTP}},
	Peer: mgmt.PeerConfig{Address: netip.MustParsePrefix("100.64.0.1/10")}}
