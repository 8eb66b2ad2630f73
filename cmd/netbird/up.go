package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/daemon"
	"github.com/nbfsm/nbfsm/internal/config"
	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
	"github.com/nbfsm/nbfsm/internal/version"
)

// upWait bounds `netbird up`'s wait for connected.
const upWait = daemon.DefaultUpWait

type upFlags struct {
	iface              string
	port               int
	mtu                int
	monitor            bool
	disableAutoConnect bool
	disableFirewall    bool
	blockInbound       bool
	foreground         bool
}

func newUpCmd(g *globals) *cobra.Command {
	var u upFlags
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Connect: start the engine (registering with --setup-key the first time) and wait until connected",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := g.key(cmd)
			if err != nil {
				return err
			}
			req := &daemonpb.UpRequest{Settings: g.settings(cmd, &u), SetupKey: key, Wait: durationpb.New(upWait)}
			if u.foreground {
				return runForeground(cmd, g, req)
			}
			return g.withDaemon(cmd, upWait+15*time.Second, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				resp, err := c.Up(ctx, req)
				if err != nil {
					return err
				}
				printConnected(cmd, resp.GetStatus())
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&u.iface, "interface-name", config.DefaultInterface, "WireGuard interface name")
	f.IntVar(&u.port, "wireguard-port", config.DefaultWgPort, "WireGuard and ICE UDP port (0: any free port)")
	f.IntVar(&u.mtu, "mtu", config.DefaultMTU, "MTU of the WireGuard interface")
	f.BoolVarP(&u.monitor, "network-monitor", "N", true, "follow OS network changes (routes, addresses, links)")
	f.BoolVar(&u.disableAutoConnect, "disable-auto-connect", false, "do not connect when the daemon starts")
	f.BoolVar(&u.disableFirewall, "disable-firewall", false, "no packet filter: every peer reaches every port")
	f.BoolVar(&u.blockInbound, "block-inbound", false, "no new inbound connection from any peer, whatever the access policy")
	f.BoolVarP(&u.foreground, "foreground-mode", "F", false, "run the engine in this process, without a daemon")
	return cmd
}

func printConnected(cmd *cobra.Command, s *daemonpb.StatusResponse) {
	if s == nil {
		fmt.Fprintln(cmd.OutOrStdout(), "Connected")
		return
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Connected\nNetBird IP: %s\n", s.GetAddress())
}

// runForeground is `up -F`: the daemon's engine logic in this process,
// until SIGINT or SIGTERM.
func runForeground(cmd *cobra.Command, g *globals, req *daemonpb.UpRequest) error {
	log, _, done, err := g.logger(cmd.OutOrStdout())
	if err != nil {
		return err
	}
	defer done()
	d, err := daemon.New(daemon.Options{ConfigPath: g.configPath, Netstack: netstackMode(), Logger: log, NetworkMonitor: monitorFactory()})
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := d.Up(ctx, req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return userError(err, "")
	}
	printConnected(cmd, s)
	<-ctx.Done()
	return nil
}

func newDownCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "down",
		Short: "Disconnect: stop the engine and remove the interface (the daemon keeps running)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withDaemon(cmd, time.Minute, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				if _, err := c.Down(ctx, &daemonpb.DownRequest{}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "Disconnected")
				return nil
			})
		},
	}
}

func newLoginCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "login",
		Short: "Log in (register with --setup-key) without connecting",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := g.key(cmd)
			if err != nil {
				return err
			}
			return g.withDaemon(cmd, time.Minute, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				resp, err := c.Login(ctx, &daemonpb.LoginRequest{Settings: g.settings(cmd, nil), SetupKey: key})
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "Logged in successfully")
				if resp.GetNetbirdIp() != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "NetBird IP: %s\n", resp.GetNetbirdIp())
				}
				return nil
			})
		},
	}
}

func newLogoutCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "logout",
		Short: "Disconnect and deregister this peer from management",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withDaemon(cmd, time.Minute, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				if _, err := c.Logout(ctx, &daemonpb.LogoutRequest{}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "Logged out successfully")
				return nil
			})
		},
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), version.NBFSM)
		},
	}
}

var errCheckFailed = errors.New("check failed")
