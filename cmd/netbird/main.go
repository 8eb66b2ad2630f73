// Command netbird is nbfsm's NetBird-compatible client. Each subcommand lives
// in its own file and is added here.
package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
)

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "netbird",
		Short:         "nbfsm: a NetBird-compatible mesh VPN client built from explicit state machines",
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.AddCommand(newTestnetCmd(), newDemoCmd(), newScenarioCmd(), newDiagramCmd())
	return root
}

func main() {
	if err := newRootCmd().ExecuteContext(context.Background()); err != nil {
		os.Exit(1)
	}
}
