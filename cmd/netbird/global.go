package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/daemon"
	"github.com/nbfsm/nbfsm/internal/config"
	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
)

// Official defaults of the global flags.
const (
	defaultLogFile = "/var/log/netbird/client.log"
)

// globals are the official client's global flags (CLI.md), persistent on
// the root command; every one can be given as NB_<NAME> too.
type globals struct {
	daemonAddr    string
	configPath    string
	managementURL string
	setupKey      string // secret
	setupKeyFile  string
	presharedKey  string // secret
	hostname      string
	logLevel      string
	logFile       string
}

func (g *globals) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringVar(&g.daemonAddr, "daemon-addr", daemon.DefaultAddr, "daemon service address: unix:///path or tcp://host:port")
	f.StringVarP(&g.configPath, "config", "c", config.DefaultPath, "config file (created with a new private key on first run)")
	f.StringVarP(&g.managementURL, "management-url", "m", config.DefaultManagementURL, "management service URL, http(s)://host:port")
	f.StringVarP(&g.setupKey, "setup-key", "k", "", "setup key to register this peer (secret: prefer --setup-key-file or NB_SETUP_KEY)")
	f.StringVar(&g.setupKeyFile, "setup-key-file", "", "file holding the setup key")
	f.StringVar(&g.presharedKey, "preshared-key", "", "WireGuard preshared key (base64), set on every peer: only peers with the same key connect (secret: prefer NB_PRESHARED_KEY)")
	f.StringVarP(&g.hostname, "hostname", "n", "", "hostname the peer registers with (default: the system's)")
	f.StringVarP(&g.logLevel, "log-level", "l", "info", "log level: trace (= debug), debug, info, warn, error")
	f.StringVar(&g.logFile, "log-file", defaultLogFile, "log file; console for stdout")
}

// key is the setup key from --setup-key, --setup-key-file or NB_SETUP_KEY.
func (g *globals) key(cmd *cobra.Command) (string, error) {
	if cmd.Flags().Changed("setup-key") && cmd.Flags().Changed("setup-key-file") {
		return "", errors.New("give --setup-key or --setup-key-file, not both")
	}
	if g.setupKeyFile != "" {
		b, err := os.ReadFile(g.setupKeyFile)
		if err != nil {
			return "", fmt.Errorf("--setup-key-file: %w", err)
		}
		k := strings.TrimSpace(string(b))
		if k == "" {
			return "", fmt.Errorf("--setup-key-file %s is empty", g.setupKeyFile)
		}
		return k, nil
	}
	return strings.TrimSpace(g.setupKey), nil
}

// settings are the flags the user gave (on the command line or as NB_
// variables); the rest keep the config's values.
func (g *globals) settings(cmd *cobra.Command, up *upFlags) *daemonpb.Settings {
	s := &daemonpb.Settings{}
	fl := cmd.Flags()
	if fl.Changed("management-url") {
		s.ManagementUrl = &g.managementURL
	}
	if fl.Changed("hostname") {
		s.Hostname = &g.hostname
	}
	if fl.Changed("preshared-key") {
		s.PresharedKey = &g.presharedKey
	}
	if up == nil {
		return s
	}
	if fl.Changed("interface-name") {
		s.InterfaceName = &up.iface
	}
	if fl.Changed("wireguard-port") {
		p := int32(up.port)
		s.WireguardPort = &p
	}
	if fl.Changed("mtu") {
		m := int32(up.mtu)
		s.Mtu = &m
	}
	if fl.Changed("network-monitor") {
		s.NetworkMonitor = &up.monitor
	}
	if fl.Changed("disable-firewall") {
		s.DisableFirewall = &up.disableFirewall
	}
	if fl.Changed("block-inbound") {
		s.BlockInbound = &up.blockInbound
	}
	if fl.Changed("disable-auto-connect") {
		s.DisableAutoConnect = &up.disableAutoConnect
	}
	return s
}

// logger writes to --log-file ("console": stdout) at --log-level; the
// returned level changes it at run time.
func (g *globals) logger(stdout io.Writer) (*zap.Logger, *zap.AtomicLevel, func(), error) {
	l, err := daemon.ParseLevel(g.logLevel)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--log-level: %w", err)
	}
	level := zap.NewAtomicLevelAt(l)
	var w zapcore.WriteSyncer
	closeFn := func() {}
	switch g.logFile {
	case "console", "":
		w = zapcore.AddSync(stdout)
	default:
		if err := os.MkdirAll(filepath.Dir(g.logFile), 0o755); err != nil {
			return nil, nil, nil, fmt.Errorf("--log-file: %w", err)
		}
		f, err := os.OpenFile(g.logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--log-file: %w", err)
		}
		w, closeFn = zapcore.AddSync(f), func() { _ = f.Close() }
	}
	enc := zap.NewProductionEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	log := zap.New(zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.Lock(w), level))
	return log, &level, func() { _ = log.Sync(); closeFn() }, nil
}

// logFilePath is --log-file when it names a file ("" for the console).
func (g *globals) logFilePath() string {
	if g.logFile == "console" {
		return ""
	}
	return g.logFile
}

// netstackMode is NB_USE_NETSTACK_MODE=true.
func netstackMode() bool { return strings.EqualFold(os.Getenv("NB_USE_NETSTACK_MODE"), "true") }

// withDaemon runs fn with a client of the daemon; gRPC statuses become
// plain messages.
func (g *globals) withDaemon(cmd *cobra.Command, timeout time.Duration, fn func(ctx context.Context, c daemonpb.DaemonServiceClient) error) error {
	conn, err := daemon.Dial(g.daemonAddr)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := cmd.Context()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return userError(fn(ctx, daemonpb.NewDaemonServiceClient(conn)), g.daemonAddr)
}

// userError strips gRPC's framing from the daemon's messages.
func userError(err error, addr string) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.Unavailable:
		if strings.Contains(st.Message(), "management") {
			return errors.New(st.Message())
		}
		return fmt.Errorf("lost the connection to the daemon at %s: %s", addr, st.Message())
	case codes.Canceled:
		return errors.New("interrupted")
	}
	return errors.New(st.Message())
}
