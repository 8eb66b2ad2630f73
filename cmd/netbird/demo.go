package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var outage time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Three clients on the built-in local test network: connect, pass traffic, ride out server outages",
		Long: "demo starts a local management, signal and STUN/TURN server on 127.0.0.1 and three nbfsm clients\n" +
			"(userspace WireGuard on netstack), prints every transition of their links and peers while they connect,\n" +
			"pings through every tunnel, and rides out a signal and a management outage. No root, loopback only.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demo.Run(ctx, cmd.OutOrStdout(), demo.Options{Outage: outage})
		},
	}
	cmd.Flags().DurationVar(&outage, "outage", 4*time.Second, "how long each server stays down")
	return cmd
}
