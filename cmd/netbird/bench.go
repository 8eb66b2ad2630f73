package main

import (
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/scenario"
)

func newBenchCmd() *cobra.Command {
	var o scenario.BenchOptions
	var asJSON bool
	var sel, peers string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Run the measured scenarios S1–S8 against the in-process test network and print every figure",
		Long: "bench runs each scenario in this process against the built-in test network on 127.0.0.1 (netstack\n" +
			"clients, no root) and measures the process the way a user would: context switches and CPU time\n" +
			"(getrusage), RSS, goroutines, the loops' events, timer fires and longest dispatch, datagrams on the\n" +
			"shared sockets. Scenarios: " + strings.Join(scenario.IDs(), ", ") + " (docs/benchmarks.md).\n" +
			"--short runs small N and windows of seconds: CI proves each scenario still runs.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if sel != "" {
				o.Scenarios = strings.Split(sel, ",")
			}
			for _, p := range strings.Split(peers, ",") {
				if p = strings.TrimSpace(p); p == "" {
					continue
				}
				n, err := strconv.Atoi(p)
				if err != nil || n <= 0 {
					return fmt.Errorf("--peers: %q is not a positive number", p)
				}
				o.Peers = append(o.Peers, n)
			}
			o.Progress = cmd.ErrOrStderr()
			rep, err := scenario.Bench(ctx, o)
			if rep == nil {
				return err
			}
			if asJSON {
				if jerr := rep.WriteJSON(cmd.OutOrStdout()); jerr != nil {
					return jerr
				}
			} else {
				rep.WriteTable(cmd.OutOrStdout())
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (Go version, CPU, GOMAXPROCS, N, every figure)")
	cmd.Flags().BoolVar(&o.Short, "short", false, "small N and windows of seconds (CI)")
	cmd.Flags().StringVar(&sel, "scenario", "", "comma-separated scenarios to run (default: all), e.g. S1,S3")
	cmd.Flags().StringVar(&peers, "peers", "", "comma-separated N for S1, S2, S7 (S4, S5, S8 take the first)")
	cmd.Flags().DurationVar(&o.Window, "window", 0, "measurement window of every scenario (default: each scenario's own)")
	cmd.Flags().IntVar(&o.Samples, "samples", 0, "S3 samples per key order (default 20, short 5)")
	cmd.Flags().StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of each measurement window to FILE.1, FILE.2, … (go tool pprof FILE.*)")
	cmd.Flags().StringVar(&o.MemProfile, "memprofile", "", "write a heap profile to FILE after each window's GC (the last window's is kept)")
	cmd.Flags().StringVar(&o.Trace, "trace", "", "write an execution trace of each measurement window to FILE.1, FILE.2, … (go tool trace)")
	cmd.Flags().DurationVar(&o.Outage, "outage", 0, "S2 management outage (default 5m, short 2s)")
	return cmd
}
