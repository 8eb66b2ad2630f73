package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/docgen"
	"github.com/nbfsm/nbfsm/fsm"
)

func newDiagramCmd() *cobra.Command {
	var dot bool
	cmd := &cobra.Command{
		Use:   "diagram [kind...]",
		Short: "Print the state machines (Mermaid, or DOT with --dot), rendered from the Specs the engine runs",
		RunE: func(cmd *cobra.Command, args []string) error {
			want := map[string]bool{}
			for _, a := range args {
				want[a] = true
			}
			var kinds []string
			found := 0
			for _, d := range docgen.Machines() {
				desc := d.Describe()
				kinds = append(kinds, desc.Kind)
				if len(want) > 0 && !want[desc.Kind] {
					continue
				}
				found++
				if dot {
					fmt.Fprint(cmd.OutOrStdout(), fsm.DOT(desc))
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "%%%% %s\n%s\n", desc.Kind, fsm.Mermaid(desc))
				}
			}
			if found < len(want) {
				return fmt.Errorf("unknown machine kind in %q; kinds: %s", args, strings.Join(kinds, ", "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dot, "dot", false, "print Graphviz DOT instead of Mermaid")
	return cmd
}
