package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/scenario"
)

func newScenarioCmd() *cobra.Command {
	var o scenario.Options
	var offline bool
	cmd := &cobra.Command{
		Use:   "scenario",
		Short: "Measure idle cost: parked peers with the servers down, offering peers, a connected idle pair",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			o.Out = cmd.OutOrStdout()
			if offline {
				return scenario.RunOffline(ctx, o)
			}
			return scenario.Run(ctx, o)
		},
	}
	cmd.Flags().IntVar(&o.Peers, "peers", 1000, "fake remote peers in the network map")
	cmd.Flags().DurationVar(&o.Duration, "duration", time.Minute, "how long each idle phase is watched")
	cmd.Flags().BoolVar(&offline, "offline", false, "only: servers up, the map's peers offline (never answering)")
	return cmd
}
