// Command netbird is nbfsm's NetBird-compatible client. Each subcommand lives
// in its own file and is added here.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/nbfsm/nbfsm/internal/config"
)

func newRootCmd() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "netbird",
		Short:         "nbfsm: a NetBird-compatible mesh VPN client built from explicit state machines",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every flag can be given as NB_<FLAG>; the command line wins.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return config.ApplyEnv(cmd.Flags(), os.Getenv)
		},
	}
	g.register(root)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see `%s --help`)", err, cmd.CommandPath())
	})
	root.AddCommand(newUpCmd(g), newDownCmd(g), newLoginCmd(g), newLogoutCmd(g), newStatusCmd(g), newVersionCmd(),
		newEventsCmd(g), newDebugCmd(g), newServiceCmd(g),
		newTestnetCmd(), newDemoCmd(), newScenarioCmd(), newBenchCmd(), newDiagramCmd())
	return root
}

func main() { os.Exit(run(os.Args[1:])) }

// run is the whole command line; it returns the exit code.
func run(args []string) int {
	root := newRootCmd()
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	if err == nil {
		return 0
	}
	if !errors.Is(err, errCheckFailed) {
		fmt.Fprintln(os.Stderr, "Error:", err)
	}
	return 1
}
