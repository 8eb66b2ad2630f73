package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nbfsm/nbfsm/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var outage time.Duration
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the links against the built-in local test network, through a signal and a management outage",
		Long: "demo starts a local management, signal and STUN/TURN server on 127.0.0.1, two nbfsm clients, and prints\n" +
			"every transition of their management and signal links while each server goes down and comes back.\n" +
			"No root, no network beyond loopback.",
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
