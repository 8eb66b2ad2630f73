// Command docgen writes docs/diagrams from the machine Specs (`make docs`).
package main

import (
	"fmt"
	"os"

	"github.com/nbfsm/nbfsm/cmd/netbird/internal/docgen"
)

func main() {
	dir := "docs/diagrams"
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := docgen.Write(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
