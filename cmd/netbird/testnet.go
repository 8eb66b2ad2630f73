package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/nbfsm/nbfsm/internal/testnet"
)

// newTestnetCmd is `netbird testnet`: a local management, signal and
// STUN/TURN server on 127.0.0.1 for manual runs, until SIGINT or SIGTERM.
func newTestnetCmd() *cobra.Command {
	var (
		setupKeys                   []string
		mgmtPort, signalPort, tPort int
		logLevel, host              string
	)
	cmd := &cobra.Command{
		Use:   "testnet",
		Short: "Run a local NetBird test network (management, signal, STUN/TURN) on 127.0.0.1",
		Long: `Run a local NetBird test network on 127.0.0.1: a management server, a
signal server and a STUN/TURN server. It prints the management URL and a
setup key, then serves until interrupted (SIGINT or SIGTERM).

Point clients at it. Without root (userspace WireGuard on netstack, one
process, its own config; --wireguard-port 0 lets several share the host):

  NB_USE_NETSTACK_MODE=true netbird up -F -c /tmp/nb1/config.json --log-file console \
      --management-url URL --setup-key KEY --wireguard-port 0

As root, on a TUN device, through the daemon:

  sudo netbird service run --log-file console &
  sudo netbird up --management-url URL --setup-key KEY
  netbird status -d`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			level, err := zapcore.ParseLevel(logLevel)
			if err != nil {
				return fmt.Errorf("testnet: --log-level: %w", err)
			}
			// Catch the signals before anything is printed: whoever reads
			// the URL may interrupt at once.
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log := newTestnetLogger(cmd.ErrOrStderr(), level)
			defer func() { _ = log.Sync() }()

			n, err := testnet.Start(testnet.Options{
				Logger:     log,
				Host:       host,
				SetupKeys:  setupKeys,
				MgmtPort:   mgmtPort,
				SignalPort: signalPort,
				TURNPort:   tPort,
			})
			if err != nil {
				return err
			}
			defer n.Close()
			printTestnet(cmd.OutOrStdout(), n)
			<-ctx.Done()
			log.Info("stopping")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&setupKeys, "setup-key", nil, "valid setup key (repeatable; default: one random key)")
	f.StringVar(&host, "host", testnet.Host, "IPv4 address to listen on and to hand out")
	f.IntVar(&mgmtPort, "management-port", 0, "management port (0: any free port)")
	f.IntVar(&signalPort, "signal-port", 0, "signal port (0: any free port)")
	f.IntVar(&tPort, "turn-port", 0, "STUN/TURN UDP port (0: any free port)")
	f.StringVar(&logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	return cmd
}

// printTestnet writes what a user needs to point clients at the network.
func printTestnet(w io.Writer, n *testnet.Network) {
	// The TURN password is not printed: clients get it from management.
	turnURI, user, _ := n.TURN()
	fmt.Fprintf(w, "management URL: %s\n", n.ManagementURL())
	fmt.Fprintf(w, "setup key:      %s\n", n.SetupKey())
	fmt.Fprintf(w, "signal:         %s\n", n.SignalAddr())
	fmt.Fprintf(w, "stun:           %s\n", n.STUNURI())
	fmt.Fprintf(w, "turn:           %s (user %s)\n", turnURI, user)
	fmt.Fprintln(w, "serving until interrupted (Ctrl-C)")
}

// newTestnetLogger logs to w in zap's console format.
func newTestnetLogger(w io.Writer, level zapcore.Level) *zap.Logger {
	enc := zap.NewDevelopmentEncoderConfig()
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	core := zapcore.NewCore(zapcore.NewConsoleEncoder(enc), zapcore.AddSync(w), level)
	return zap.New(core)
}
