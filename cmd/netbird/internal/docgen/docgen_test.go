package docgen

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/nbfsm/nbfsm/fsm"
)

// TestDiagramsFresh fails when docs/diagrams is stale: run `make docs`.
func TestDiagramsFresh(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "..", "docs", "diagrams")
	for name, want := range Files() {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v (run `make docs`)", name, err)
			continue
		}
		if string(got) != want {
			t.Errorf("docs/diagrams/%s is stale: run `make docs`", name)
		}
	}
}

func TestEveryPublishedMachineIsTotal(t *testing.T) {
	for _, d := range Machines() {
		if err := fsm.CheckTotal(d); err != nil {
			t.Error(err)
		}
	}
}
