package testnet

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v2"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/nbfsm/nbfsm/internal/nbcrypto"
	"github.com/nbfsm/nbfsm/internal/proto/mgmtpb"
	"github.com/nbfsm/nbfsm/internal/proto/signalpb"
)

// deadline bounds every wait: a failure deadline, never an expectation.
const deadline = 20 * time.Second

func startNetwork(t *testing.T, opts Options) *Network {
	t.Helper()
	n, err := Start(opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(n.Close)
	return n
}

func dial(t *testing.T, target string) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// register logs a new peer in with setupKey and returns its key and reply.
func register(ctx context.Context, t *testing.T, mc mgmtpb.ManagementServiceClient, setupKey string) (wgtypes.Key, *mgmtpb.LoginResponse) {
	t.Helper()
	priv, err := nbcrypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	sk, err := mc.GetServerKey(ctx, &mgmtpb.Empty{})
	if err != nil {
		t.Fatal(err)
	}
	server, err := nbcrypto.ParseKey(sk.GetKey())
	if err != nil {
		t.Fatal(err)
	}
	body, err := nbcrypto.Seal(priv, server, &mgmtpb.LoginRequest{
		SetupKey: setupKey,
		Meta:     &mgmtpb.PeerSystemMeta{Hostname: "h", GoOS: "linux", NetbirdVersion: "0.40.0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := mc.Login(ctx, &mgmtpb.EncryptedMessage{WgPubKey: priv.PublicKey().String(), Body: body})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	var lr mgmtpb.LoginResponse
	if err := nbcrypto.Open(priv, server, resp.GetBody(), &lr); err != nil {
		t.Fatal(err)
	}
	return priv, &lr
}

func TestNetworkWiring(t *testing.T) {
	n := startNetwork(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()

	url := n.ManagementURL()
	if !strings.HasPrefix(url, "http://127.0.0.1:") || strings.HasSuffix(url, ":0") {
		t.Fatalf("ManagementURL = %q", url)
	}
	if n.SetupKey() == "" {
		t.Fatal("no setup key")
	}
	mc := mgmtpb.NewManagementServiceClient(dial(t, strings.TrimPrefix(url, "http://")))
	priv, lr := register(ctx, t, mc, n.SetupKey())

	cfg := lr.GetNetbirdConfig()
	turnURI, user, pass := n.TURN()
	switch {
	case cfg.GetSignal().GetUri() != n.SignalAddr() || cfg.GetSignal().GetProtocol() != mgmtpb.HostConfig_HTTP:
		t.Fatalf("signal config = %v, want %s over HTTP", cfg.GetSignal(), n.SignalAddr())
	case len(cfg.GetStuns()) != 1 || cfg.GetStuns()[0].GetUri() != n.STUNURI():
		t.Fatalf("stuns = %v, want %s", cfg.GetStuns(), n.STUNURI())
	case len(cfg.GetTurns()) != 1 || cfg.GetTurns()[0].GetHostConfig().GetUri() != turnURI ||
		cfg.GetTurns()[0].GetUser() != user || cfg.GetTurns()[0].GetPassword() != pass:
		t.Fatalf("turns = %v, want %s %s", cfg.GetTurns(), turnURI, user)
	case !strings.HasPrefix(n.STUNURI(), "stun:127.0.0.1:") || !strings.HasSuffix(turnURI, "?transport=udp"):
		t.Fatalf("STUN %q TURN %q", n.STUNURI(), turnURI)
	case lr.GetPeerConfig().GetAddress() != "100.64.0.1/10":
		t.Fatalf("address = %q", lr.GetPeerConfig().GetAddress())
	}

	// The signal server handed out is the one running.
	sc := signalpb.NewSignalExchangeClient(dial(t, cfg.GetSignal().GetUri()))
	sctx := metadata.AppendToOutgoingContext(ctx, "x-wiretrustee-peer-id", priv.PublicKey().String())
	st, err := sc.ConnectStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if md, err := st.Header(); err != nil || len(md.Get("x-wiretrustee-peer-registered")) != 1 {
		t.Fatalf("signal header %v, %v", md, err)
	}
	if got := n.Signal.Connected(); len(got) != 1 || got[0] != priv.PublicKey() {
		t.Fatalf("Signal.Connected = %v", got)
	}
	if got := n.Mgmt.Peers(); len(got) != 1 || got[0].Key != priv.PublicKey() {
		t.Fatalf("Mgmt.Peers = %v", got)
	}
}

func TestTURNFromHandedOutConfig(t *testing.T) {
	n := startNetwork(t, Options{})
	uri, user, pass := n.TURN()
	addr := strings.TrimSuffix(strings.TrimPrefix(uri, "turn:"), "?transport=udp")
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c, err := turn.NewClient(&turn.ClientConfig{
		STUNServerAddr: strings.TrimPrefix(n.STUNURI(), "stun:"),
		TURNServerAddr: addr,
		Conn:           conn,
		Username:       user,
		Password:       pass,
		LoggerFactory:  logging.NewDefaultLoggerFactory(),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	if !strings.HasPrefix(relay.LocalAddr().String(), "127.0.0.1:") {
		t.Fatalf("relay address %v", relay.LocalAddr())
	}
	if _, err := c.SendBindingRequest(); err != nil {
		t.Fatalf("STUN binding: %v", err)
	}
}

func TestOptions(t *testing.T) {
	t.Run("setup keys", func(t *testing.T) {
		n := startNetwork(t, Options{SetupKeys: []string{"K1", "K2"}})
		if n.SetupKey() != "K1" {
			t.Fatalf("SetupKey = %q, want K1", n.SetupKey())
		}
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		mc := mgmtpb.NewManagementServiceClient(dial(t, n.Mgmt.Addr()))
		register(ctx, t, mc, "K2")
	})
	t.Run("no setup keys", func(t *testing.T) {
		if n := startNetwork(t, Options{SetupKeys: []string{}}); n.SetupKey() != "" {
			t.Fatalf("SetupKey = %q, want none", n.SetupKey())
		}
	})
	t.Run("fixed management port", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		n := startNetwork(t, Options{MgmtPort: port})
		if want := "http://127.0.0.1:" + strconv.Itoa(port); n.ManagementURL() != want {
			t.Fatalf("ManagementURL = %q, want %q", n.ManagementURL(), want)
		}
	})
	t.Run("host", func(t *testing.T) {
		n := startNetwork(t, Options{Host: "127.0.0.1"})
		uri, _, _ := n.TURN()
		for _, got := range []string{n.ManagementURL(), n.SignalAddr(), n.STUNURI(), uri} {
			if !strings.Contains(got, "127.0.0.1:") {
				t.Fatalf("%q does not name the host", got)
			}
		}
	})
	t.Run("bad host", func(t *testing.T) {
		for _, h := range []string{"localhost", "::1", "0.0.0.0", "198.18.0.1/24"} {
			if _, err := Start(Options{Host: h}); !errors.Is(err, ErrHost) {
				t.Fatalf("Start(Host %q) = %v, want ErrHost", h, err)
			}
		}
	})
	t.Run("bad port", func(t *testing.T) {
		for _, o := range []Options{{MgmtPort: -1}, {SignalPort: 70000}, {TURNPort: 65536}} {
			if _, err := Start(o); !errors.Is(err, ErrPort) {
				t.Fatalf("Start(%+v) = %v, want ErrPort", o, err)
			}
		}
	})
	t.Run("busy port leaves nothing running", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if _, err := Start(Options{MgmtPort: l.Addr().(*net.TCPAddr).Port}); err == nil {
			t.Fatal("Start on a busy management port succeeded")
		}
		// goleak in TestMain proves that signal and TURN were stopped.
	})
}
