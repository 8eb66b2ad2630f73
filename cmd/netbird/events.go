package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/daemon"
	"github.com/nbfsm/nbfsm/internal/proto/daemonpb"
)

// eventDoc is one transition as `events --json` prints it.
type eventDoc struct {
	Machine  string `json:"machine"`
	Kind     string `json:"kind"`
	From     string `json:"from"`
	Event    string `json:"event"`
	To       string `json:"to"`
	At       string `json:"at"`
	Internal bool   `json:"internal,omitempty"`
	Cause    string `json:"cause,omitempty"`
	Gen      uint64 `json:"gen"`
}

func newEventsCmd(g *globals) *cobra.Command {
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Print the engine's recent transitions, one line each (-f: and follow live ones)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withDaemon(cmd, 0, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				st, err := c.Events(ctx, &daemonpb.EventsRequest{Follow: follow, History: true})
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				for {
					ev, err := st.Recv()
					if errors.Is(err, io.EOF) {
						return nil
					}
					if err != nil {
						return err
					}
					if err := printEvent(w, ev, asJSON); err != nil {
						return err
					}
				}
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing transitions as they happen")
	cmd.Flags().BoolVar(&asJSON, "json", false, "one JSON object per line")
	return cmd
}

func printEvent(w io.Writer, ev *daemonpb.Event, asJSON bool) error {
	at := ev.GetAt().AsTime().Local()
	if asJSON {
		b, err := json.Marshal(eventDoc{Machine: ev.GetMachine(), Kind: ev.GetKind(), From: ev.GetFrom(), Event: ev.GetEvent(),
			To: ev.GetTo(), At: at.Format(time.RFC3339Nano), Internal: ev.GetInternal(), Cause: ev.GetCause(), Gen: ev.GetGen()})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, string(b))
		return err
	}
	from := ev.GetFrom()
	if from == "" {
		from = "(new)"
	}
	line := fmt.Sprintf("%s %-16s %s --%s--> %s", at.Format("15:04:05.000"), ev.GetMachine(), from, ev.GetEvent(), ev.GetTo())
	if ev.GetInternal() {
		line = fmt.Sprintf("%s %-16s %s: %s (internal)", at.Format("15:04:05.000"), ev.GetMachine(), from, ev.GetEvent())
	}
	if ev.GetCause() != "" {
		line += " (" + ev.GetCause() + ")"
	}
	_, err := fmt.Fprintln(w, line)
	return err
}

func newDebugCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "debug",
		Short: "Print the engine's counters (stale events dropped, bad signal messages by reason, send failures); debug log level sets the log level, debug bundle writes a bundle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withDaemon(cmd, 30*time.Second, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				d, err := c.Debug(ctx, &daemonpb.DebugRequest{})
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if asJSON {
					b, err := json.MarshalIndent(d, "", "  ")
					if err != nil {
						return err
					}
					_, err = fmt.Fprintln(w, string(b))
					return err
				}
				fmt.Fprintf(w, "Event loop:\n  dispatched %d, transitions %d, internal %d, ignored %d, unhandled %d\n",
					d.GetDispatched(), d.GetTransitions(), d.GetInternal(), d.GetIgnored(), d.GetUnhandled())
				fmt.Fprintf(w, "  dropped as stale: generation %d, timer %d; unknown target %d\n",
					d.GetStaleGeneration(), d.GetStaleTimer(), d.GetUnknownTarget())
				fmt.Fprintf(w, "  timers armed %d, fired %d\n", d.GetTimersArmed(), d.GetTimersFired())
				fmt.Fprintf(w, "Signal messages: in %d, out %d, send errors %d\n", d.GetSignalIn(), d.GetSignalOut(), d.GetSignalSendErrors())
				fmt.Fprintf(w, "  rejected by reason:%s\n", sortedCounts(d.GetSignalRejected()))
				fmt.Fprintf(w, "Peer send failures: %d\n", d.GetPeerSendFailures())
				fmt.Fprintf(w, "Link reconnects:%s\n", sortedCounts(d.GetLinkReconnects()))
				fmt.Fprintf(w, "Network changes: %d\n", d.GetNetworkChanges())
				fmt.Fprintf(w, "Shared socket:%s\n", sortedCounts(d.GetSocket()))
				fmt.Fprintf(w, "Trace records lost by slow readers: %d\n", d.GetTraceDropped())
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "JSON")
	logCmd := &cobra.Command{Use: "log", Short: "The daemon's log", Args: cobra.NoArgs}
	logCmd.AddCommand(&cobra.Command{
		Use:       "level LEVEL",
		Short:     "Set the daemon's log level until it restarts: " + daemon.LevelNames,
		Args:      cobra.ExactArgs(1),
		ValidArgs: daemon.Levels,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := daemon.ParseLevel(args[0]); err != nil {
				return err
			}
			return g.withDaemon(cmd, 30*time.Second, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				r, err := c.SetLogLevel(ctx, &daemonpb.SetLogLevelRequest{Level: args[0]})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Log level set to %s (was %s)\n", r.GetLevel(), r.GetPrevious())
				return nil
			})
		},
	})
	cmd.AddCommand(logCmd, &cobra.Command{
		Use:   "bundle",
		Short: "Write a debug bundle (a zip of status, counters, recent transitions, the config without secrets, goroutines, the log's tail) and print its path",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withDaemon(cmd, time.Minute, func(ctx context.Context, c daemonpb.DaemonServiceClient) error {
				r, err := c.DebugBundle(ctx, &daemonpb.DebugBundleRequest{})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Local file:\n%s\n", r.GetPath())
				return nil
			})
		},
	})
	return cmd
}

func sortedCounts(m map[string]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for _, k := range keys {
		out += fmt.Sprintf(" %s=%d", k, m[k])
	}
	if out == "" {
		return " none"
	}
	return out
}
